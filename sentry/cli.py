"""The `sentry` command: run, test and syscalls, with the surface DESIGN.md specifies.

The sentry's own failures print one line, `sentry: ...`, and exit 125-127
(127 not found, 126 cannot execute, 125 anything else), never a traceback.

argparse (the standard library's) parses: it imports in ~5 ms where click
took ~30 ms, and start-up time is most of what a short run costs.
"""
import argparse
import os
import sys
import time

from sentry.errors import SentryError
from sentry.platform import PLATFORMS

NOT_YET = "is not supported yet"


def _log(message: str) -> None:
    sys.stderr.write(f"sentry: {message}\n")
    sys.stderr.flush()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _bytes(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.rstrip("KMGkmgB").strip(), text[len(text.rstrip("KMGkmgB")):].upper().rstrip("B")
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError):
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (K, M, G suffixes), not {text!r}")
    return value


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog):
        # A fixed width: asking the terminal's would import shutil (and bz2, lzma) on every start.
        super().__init__(prog, width=100, max_help_position=32)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kw):
        super().__init__(*args, formatter_class=_Formatter, **kw)

    def error(self, message):  # one line and 125, not usage text and 2
        raise SentryError(message)


def _parser() -> argparse.ArgumentParser:
    top = _Parser(prog="sentry", description="Run Linux programs in a sandbox whose every syscall "
                  "is answered by sentry.")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run PROGRAM with ARGS in a fresh sandbox; exit with its status",
                         description="Run PROGRAM with ARGS in a fresh sandbox; exit with its status "
                         "(128+N when signal N killed it).")
    run.add_argument("--platform", choices=PLATFORMS, help="ptrace (native, x86-64 hosts) or unicorn (emulated)")
    run.add_argument("--arch", choices=("x86_64", "aarch64"), help="expected architecture of PROGRAM")
    run.add_argument("--rootfs", metavar="DIR", help="a root filesystem instead of the default view: "
                     "read-only below, writes kept in memory")
    run.add_argument("--mount", action="append", default=[], metavar="HOST:GUEST[:ro|rw]",
                     help="lend a host directory at GUEST, read-only unless :rw")
    run.add_argument("--workdir", metavar="DIR", help="working directory inside the sandbox (default: the "
                     "current directory, lent read-only at its own path)")
    run.add_argument("--no-cwd", action="store_true",
                     help="do not lend the current directory: the working directory is / (or --workdir)")
    run.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                     help="set a variable in the program's environment (NAME alone: the host's value, if set)")
    run.add_argument("--env-file", action="append", default=[], metavar="FILE",
                     help="read variables from FILE: NAME=VALUE or NAME lines, # comments (as docker's)")
    run.add_argument("--net", choices=("none", "host"), default="none",
                     help="network: none (default), the sandbox's own loopback only; host, also what the host "
                     "reaches (its loopback included, where no sandbox server takes the port)")
    run.add_argument("--publish", "-p", action="append", default=[], metavar="[HOST_IP:]HOST_PORT:GUEST_PORT[/udp]",
                     help="listen on the host (127.0.0.1 unless HOST_IP) and join each connection or datagram to "
                     "the sandbox's GUEST_PORT, as docker run -p (repeatable)")
    run.add_argument("--memory", metavar="BYTES", type=_bytes,
                     help="address space a process may map (like RLIMIT_AS; K, M, G suffixes): mmap and brk "
                     "fail with ENOMEM beyond it")
    run.add_argument("--cpu-time", metavar="SEC", type=_seconds,
                     help="CPU time limit: the program is killed (SIGKILL, exit 137) when it passes")
    run.add_argument("--timeout", metavar="SEC", type=_seconds,
                     help="wall-clock limit: the program is killed (SIGKILL, exit 137) when it passes")
    run.add_argument("--max-procs", metavar="N", type=int,
                     help="tasks (processes and threads) the sandbox may hold at once: fork and clone fail with EAGAIN "
                     "beyond it (default 4096 on ptrace, 1024 on unicorn)")
    run.add_argument("--tmpfs-size", metavar="BYTES", type=_bytes,
                     help="what the sandbox's memory files (/tmp, /dev/shm, memfds, --rootfs's upper layer) may hold "
                     "together: writes fail with ENOSPC beyond it (default 2G, and never more than --memory)")
    run.add_argument("--max-open-files", metavar="N", type=int,
                     help="file descriptors a process may hold (RLIMIT_NOFILE, soft and hard, which no process may "
                     "raise): open, dup, pipe ... fail with EMFILE beyond it")
    run.add_argument("--json", action="store_true",
                     help="capture the program's stdout and stderr and print, after the run, one JSON object on "
                     "stdout: the Result (exit code, signal, limit hit, times, peak memory, the output and its "
                     "sizes); sentry's own messages stay on stderr, the exit status is the program's")
    run.add_argument("--max-output", metavar="BYTES", type=_bytes,
                     help="with --json: stdout and stderr together may hold this much; past it writes fail with "
                     "EPIPE and SIGPIPE, as to a pipe whose reader is gone")
    run.add_argument("--deterministic", action="store_true", help=f"virtual clock, fixed scheduling ({NOT_YET})")
    run.add_argument("--seed", type=int, help="seed for the sandbox's random sources (getrandom, /dev/urandom, AT_RANDOM)")
    run.add_argument("--cpuid", choices=("auto", "virtual", "host"), default=None,
                     help="ptrace: cpuid answered by the sandbox's virtual CPU, or the host's; auto (the default): "
                          "virtual unless the host is a virtual machine, where trapping it costs ~5 us a syscall "
                          "(also SENTRY_CPUID)")
    run.add_argument("--grace", metavar="SEC", type=_seconds, default=3.0,
                     help="after a SIGTERM or SIGHUP passed on to the program, how long the sandbox may take to "
                     "end before everything in it is killed (default 3)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="print sentry's own diagnostics on stderr (unsupported syscalls, crash reports); "
                     "also SENTRY_LOG=stderr, or SENTRY_LOG=FILE to append them to FILE")
    run.add_argument("--strace", action="store_true", help="print every syscall with its arguments and result")
    run.add_argument("--strace-file", metavar="FILE", help="write the --strace output to FILE instead of stderr")
    run.add_argument("program", metavar="PROGRAM", help="looked up in the sandbox: a name in its PATH, a path from "
                     "its working directory (a host path it does not see has its directory lent)")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARG")

    test = sub.add_parser("test", help="run tests, each in its own sandbox; report pass/fail/skip",
                          description="Run each test in its own sandbox: a binary, every executable under a "
                          "directory, or each line of an LTP runtest file (TAG COMMAND ARGS..., run by the "
                          "sandbox's /bin/sh). Exits 0 when none failed, 1 otherwise.")
    test.add_argument("--platform", choices=PLATFORMS)
    test.add_argument("--jobs", type=int, default=1, metavar="N", help="tests run at once")
    test.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    test.add_argument("--timeout", type=_seconds, default=60.0, metavar="SEC", help="per test (default 60)")
    test.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                      help="a variable of every test's environment (as for sentry run)")
    test.add_argument("--mount", action="append", default=[], metavar="HOST:GUEST[:ro|rw]",
                      help="a host directory every test sees (as for sentry run)")
    test.add_argument("--workdir", metavar="DIR", help="the tests' working directory in the sandbox (default /)")
    test.add_argument("--convention", choices=("status", "ltp"), default="status",
                      help="how exit statuses read: status (0 passes) or ltp (a bitmask: 32, TCONF alone, is a "
                      "skip; 1 TFAIL, 2 TBROK, 4 TWARN fail)")
    test.add_argument("--tags", metavar="FILE", help="run only the tests FILE names (one tag or path per line)")
    test.add_argument("--json", action="store_true", help="print JSON lines instead of text: one object per test "
                      "(name, outcome, status, seconds, reason), then a summary object")
    test.add_argument("paths", nargs="+", metavar="TEST_OR_DIR_OR_RUNTEST")

    table = sub.add_parser("syscalls", help="print the compatibility table",
                           description="Every syscall number, its handler's status (full, partial, "
                           "unsupported, missing) and note.")
    table.add_argument("--arch", choices=("x86_64", "aarch64"), default="x86_64")
    table.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    return top


def _host_cwd():
    try:
        return os.getcwd()
    except OSError:  # removed, or out of reach: the sandbox starts at /
        return None


def _environment(items, files) -> list[bytes]:
    """What `sentry run` adds to the program's environment (over PATH, HOSTNAME and HOME):
    TERM when it has a terminal, the host's LANG and LC_ALL, then --env-file and --env
    (later ones win, as in docker run). Bytes, as the host's environment is."""
    env = []
    if any(os.isatty(fd) for fd in (0, 1, 2)):
        env.append(b"TERM=" + (os.environb.get(b"TERM") or b"xterm"))
    env += [name + b"=" + os.environb[name] for name in (b"LANG", b"LC_ALL") if name in os.environb]
    for path in files:
        env += _env_file(path)
    for item in items:
        env += _env_item(os.fsencode(item), f"--env {item!r}")
    return env


def _env_item(item: bytes, where: str) -> list[bytes]:
    """NAME=VALUE as it is; a bare NAME takes the host's value, or nothing if it has none."""
    name, eq, _ = item.partition(b"=")
    if not name:
        raise SentryError(f"{where}: no variable name")
    if eq:
        return [item]
    if any(c in name for c in b" \t"):
        raise SentryError(f"{where}: variable {name.decode(errors='replace')!r} contains whitespace")
    return [name + b"=" + os.environb[name]] if name in os.environb else []


def _env_file(path: str) -> list[bytes]:
    """docker's --env-file: NAME=VALUE lines taken literally (no quotes, no expansion),
    leading whitespace and a UTF-8 BOM dropped, `#` comments and blank lines skipped, a bare
    NAME passing the host's value."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SentryError(f"--env-file {path}: {e.strerror}") from None
    env = []
    for n, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        line = line.removesuffix(b"\r").lstrip(b" \t\v\f\r")
        if not line or line.startswith(b"#"):
            continue
        try:
            line.decode()
        except UnicodeDecodeError:
            raise SentryError(f"--env-file {path}: invalid UTF-8 on line {n}") from None
        env += _env_item(line, f"--env-file {path}, line {n}")
    return env


def cmd_run(o) -> int:
    if o.deterministic:
        raise SentryError(f"--deterministic {NOT_YET}")
    if o.cpuid is not None:
        os.environ["SENTRY_CPUID"] = o.cpuid  # read where the platform sets the sandbox up
    if o.max_output is not None and not o.json:
        raise SentryError("--max-output: only with --json (without it the output goes to the host's stdout and stderr)")
    if o.max_open_files is not None and o.max_open_files < 1:
        raise SentryError(f"--max-open-files {o.max_open_files}: at least 1")
    from sentry.net.publish import parse
    try:
        published = [parse(spec) for spec in o.publish]
    except ValueError as e:
        raise SentryError(f"--{e}") from None  # "--publish '...': what is wrong"
    env = _environment(o.env, o.env_file)
    from sentry.console import Console
    from sentry.runner import execute
    note = _note_sink(o.verbose)
    tracer = None
    if o.strace or o.strace_file:
        from syscalls.strace import Strace
        stream = sys.stderr
        if o.strace_file:
            try:
                stream = open(o.strace_file, "w", buffering=1)
            except OSError as e:
                raise SentryError(f"--strace-file {o.strace_file}: {e.strerror}") from None
        tracer = Strace(stream.write)
    console = Console(grace=o.grace)  # first: it blocks the signals it passes on, before any thread
    stdio, captured = console.stdio(), None
    if o.json:
        from sentry.api import Sandbox
        output, captured = Sandbox._stdio(b"", o.max_output)
        stdio[1:] = output[1:]  # the program's stdin is still the host's
    start = time.monotonic()
    try:
        outcome = execute(
            o.program, [os.fsencode(a) for a in o.args], env=env, arch=o.arch,
            platform=o.platform, seed=o.seed, strace=tracer, workdir=o.workdir, log=_log, note=note,
            host_cwd=None if o.no_cwd or o.workdir or o.rootfs else _host_cwd(),
            mounts=o.mount, rootfs=o.rootfs, timeout=o.timeout, memory=o.memory,
            cpu_time=o.cpu_time, max_procs=o.max_procs, tmpfs_size=o.tmpfs_size, max_open_files=o.max_open_files,
            stdio=stdio,
            console=console, net=o.net, publish=published)
    finally:
        console.close()
    code, signo, limit, ended_by = outcome.exit_code, outcome.signo, outcome.limit_hit, outcome.ended_by
    if captured is not None:
        from sentry.api import Result
        result = Result.from_outcome(outcome, time.monotonic() - start, bytes(captured.streams[0].data),
                                     bytes(captured.streams[1].data), captured.hit)
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()
        limit = result.limit_hit
    if ended_by:
        _log(ended_by)
    elif limit == "timeout":
        _log(f"timeout: the program was killed after {o.timeout:g} s")
    elif limit == "cpu_time":
        _log(f"cpu time: the program was killed after {o.cpu_time:g} s of CPU")
    elif limit == "memory":
        _log(f"memory: the program was refused memory beyond --memory {o.memory}")
    elif limit == "max_procs":
        from sentry.runner import default_max_procs
        _log(f"max procs: a fork or thread was refused beyond --max-procs {o.max_procs or default_max_procs(o.platform)}")
    elif limit == "output":
        _log(f"output: writes were refused beyond --max-output {o.max_output} (EPIPE, SIGPIPE)")
    elif limit == "tmpfs":
        _log("tmpfs: a write was refused beyond the sandbox's memory files' size (--tmpfs-size, --memory): ENOSPC")
    return 128 + signo if signo else code


def _note_sink(verbose: bool):
    """Where the sentry's diagnostics go (unsupported syscalls, crash reports): nowhere
    unless --verbose or SENTRY_LOG asks (stderr, or SENTRY_LOG=FILE appended to), so
    the program's stderr is its own."""
    target = os.environ.get("SENTRY_LOG", "")
    if verbose or target in ("1", "stderr"):
        return _log
    if not target:
        return lambda message: None
    try:
        stream = open(target, "a", buffering=1)
    except OSError as e:
        raise SentryError(f"SENTRY_LOG={target}: {e.strerror}") from None
    return lambda message: stream.write(f"sentry: {message}\n")


def cmd_syscalls(o) -> int:
    from syscalls.compat import render
    sys.stdout.write(render(o.arch, o.format))
    return 0


def main(argv=None):
    try:
        parser = _parser()
        o = parser.parse_args(argv)
        if o.command is None:
            parser.print_help()
            sys.exit(0)
        if o.command == "test":
            from sentry.testrunner import main as run_tests
            sys.exit(run_tests(o.paths, o.platform, o.jobs, o.junit, o.timeout, env=o.env, mounts=o.mount,
                               workdir=o.workdir, convention=o.convention, tags_file=o.tags, as_json=o.json))
        sys.exit(cmd_run(o) if o.command == "run" else cmd_syscalls(o))
    except SentryError as e:
        _log(str(e))
        sys.exit(e.exit_code)
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
