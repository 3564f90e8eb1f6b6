"""The `sentry` command: run, test and syscalls, as DESIGN.md specifies them.

The sentry's own failures print one line, `sentry: ...`, and exit 125-127
(127 not found, 126 cannot execute, 125 anything else), never a traceback."""
import os
import sys

import click

from sentry.errors import SentryError
from sentry.platform import PLATFORMS

NOT_YET = "is not supported yet"


def _log(message: str) -> None:
    sys.stderr.write(f"sentry: {message}\n")
    sys.stderr.flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Run Linux programs in a sandbox whose every syscall is answered by sentry."""


@cli.command(context_settings={"allow_interspersed_args": False})
@click.option("--platform", type=click.Choice(PLATFORMS), help="ptrace (native, x86-64 host) or unicorn (emulated)")
@click.option("--arch", type=click.Choice(["x86_64", "aarch64"]), help="expected architecture of PROGRAM")
@click.option("--rootfs", metavar="DIR", help=f"replace the default filesystem view ({NOT_YET})")
@click.option("--mount", "mounts", multiple=True, metavar="HOST:GUEST[:ro|rw]", help=f"expose a host path ({NOT_YET})")
@click.option("--workdir", metavar="DIR", help="working directory inside the sandbox (default /)")
@click.option("--env", "env", multiple=True, metavar="K=V", help="add a variable to the program's environment")
@click.option("--net", type=click.Choice(["none", "host"]), default="none", show_default=True)
@click.option("--publish", multiple=True, metavar="HOST:GUEST", help=f"publish a sandbox port ({NOT_YET})")
@click.option("--memory", metavar="BYTES", help=f"memory limit ({NOT_YET})")
@click.option("--cpu-time", metavar="SEC", help=f"CPU time limit ({NOT_YET})")
@click.option("--timeout", metavar="SEC", help=f"wall-clock limit ({NOT_YET})")
@click.option("--max-procs", metavar="N", help=f"process limit ({NOT_YET})")
@click.option("--deterministic", is_flag=True, help=f"virtual clock and fixed scheduling ({NOT_YET})")
@click.option("--seed", type=int, help="seed for the sandbox's random sources (getrandom, /dev/urandom, AT_RANDOM)")
@click.option("--strace", is_flag=True, help="print every syscall with its arguments and result")
@click.option("--strace-file", metavar="FILE", help="write the --strace output to FILE instead of stderr")
@click.argument("program")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(platform, arch, rootfs, mounts, workdir, env, net, publish, memory, cpu_time, timeout,
        max_procs, deterministic, seed, strace, strace_file, program, args):
    """Run PROGRAM with ARGS in a fresh sandbox; exit with its status."""
    refused = [name for name, value in (
        ("--rootfs", rootfs), ("--mount", mounts), ("--publish", publish), ("--memory", memory),
        ("--cpu-time", cpu_time), ("--timeout", timeout), ("--max-procs", max_procs),
        ("--deterministic", deterministic), ("--net host", net == "host")) if value]
    if refused:
        raise SentryError(f"{refused[0]} {NOT_YET}")
    for item in env:
        if "=" not in item or item.startswith("="):
            raise SentryError(f"--env {item!r}: expected K=V")
    from sentry.api import execute
    from sentry.vfs.file import O_RDONLY, O_WRONLY, HostStream
    from sentry.vfs.inode import Inode

    def host_stdio(fd, flags):
        return lambda kernel: HostStream(Inode(0o600), fd, flags)

    tracer = None
    if strace or strace_file:
        from syscalls.strace import Strace
        stream = open(strace_file, "w", buffering=1) if strace_file else sys.stderr
        tracer = Strace(stream.write)
    if arch:
        from sentry.api import _elf_machine, read_program, resolve_program
        actual = _elf_machine(read_program(resolve_program(program)))
        if actual != arch:
            raise SentryError(f"{program}: an {actual} program, not {arch}", 126)
    code, signo = execute(program, [os.fsencode(a) for a in args], env=[os.fsencode(e) for e in env],
                          platform=platform, seed=seed, strace=tracer, workdir=workdir, log=_log,
                          stdio=[host_stdio(0, O_RDONLY), host_stdio(1, O_WRONLY), host_stdio(2, O_WRONLY)])
    sys.exit(128 + signo if signo else code)


@cli.command()
@click.option("--arch", type=click.Choice(["x86_64", "aarch64"]), default="x86_64", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
def syscalls(arch, fmt):
    """Print the compatibility table: every syscall number, its handler's status and note."""
    from syscalls.compat import render
    click.echo(render(arch, fmt), nl=False)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="sentry", standalone_mode=False)
    except SentryError as e:
        _log(str(e))
        sys.exit(e.exit_code)
    except click.UsageError as e:
        if type(e).__name__.startswith("NoArgsIsHelp") and e.ctx:
            click.echo(e.ctx.get_help())
            sys.exit(0)
        _log(e.format_message().replace("\n", " "))
        sys.exit(125)
    except click.exceptions.Abort:
        _log("aborted")
        sys.exit(125)
    except KeyboardInterrupt:
        _log("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as e:  # a bug in the sentry: one line, never a traceback
        if os.environ.get("SENTRY_DEBUG"):
            raise
        _log(f"internal error: {type(e).__name__}: {e} (SENTRY_DEBUG=1 shows more)")
        sys.exit(125)
