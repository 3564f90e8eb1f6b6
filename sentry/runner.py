"""Running one program in a fresh sandbox: what `sentry run` and the
embedding API (sentry/api.py) share. Kept free of heavy imports: it is on
the start path of every `sentry run`."""
import os
import stat as S
from typing import NamedTuple

from sentry.errors import SentryError


class Outcome(NamedTuple):
    exit_code: int          # the program's status (0-255)
    signo: int              # the signal that ended it, or 0
    limit_hit: str | None   # "timeout", "cpu_time", "memory" or "max_procs" when a limit was reached
    peak_memory: int        # the largest address space it mapped, in bytes

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_program(program: str) -> str:
    """The host file the user named, as an absolute path (PATH searched for a bare name)."""
    if "/" not in program:
        for d in os.environ.get("PATH", DEFAULT_PATH).split(":"):
            candidate = os.path.join(d or ".", program)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return os.path.abspath(candidate)
        raise SentryError(f"{program}: command not found", 127)
    return os.path.abspath(program)


def read_program(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not S.S_ISREG(st.st_mode):
                raise SentryError(f"{path}: not a regular file", 126)
            if not st.st_mode & 0o111:
                raise SentryError(f"{path}: Permission denied", 126)
            return f.read()
    except FileNotFoundError:
        raise SentryError(f"{path}: No such file or directory", 127) from None
    except IsADirectoryError:
        raise SentryError(f"{path}: Is a directory", 126) from None
    except NotADirectoryError:
        raise SentryError(f"{path}: Not a directory", 127) from None
    except PermissionError:
        raise SentryError(f"{path}: Permission denied", 126) from None
    except OSError as e:
        raise SentryError(f"{path}: {e.strerror}", 126) from None


def execute(program: str, args, *, env=(), platform=None, stdio, log, seed=None, strace=None,
            workdir=None, mounts=(), rootfs=None, timeout=None, memory=None, cpu_time=None,
            max_procs=None) -> Outcome:
    """Run one program in a fresh sandbox."""
    from sentry import platform as platforms
    from sentry.kernel import Kernel
    from sentry.view import add_mounts, build_default_view, rootfs_program, rootfs_root
    if rootfs:
        root = rootfs_root(rootfs)
        path, data = rootfs_program(root, program, DEFAULT_PATH)
    else:
        root = None
        path = resolve_program(program)
        data = read_program(path)
    arch = _elf_machine(data)
    plat = platforms.create(platform or platforms.default_platform(), arch)
    if max_procs is not None and max_procs < 1:
        raise SentryError(f"--max-procs {max_procs}: at least 1 (the program itself)")
    kernel = Kernel(plat, log=log, seed=seed, strace=strace, root=root, timeout=timeout, memory=memory,
                    cpu_time=cpu_time, max_procs=max_procs)
    if rootfs:
        add_mounts(kernel.vfs, mounts)
    else:
        build_default_view(kernel.vfs, path, data, mounts)
    envp = [b"PATH=" + DEFAULT_PATH.encode()]
    for item in env:
        key = item.split(b"=", 1)[0]
        envp = [e for e in envp if e.split(b"=", 1)[0] != key] + [item]
    argv = [path.encode() if program == path else program.encode()] + [a for a in args]
    kernel.spawn(path, argv, envp, [f(kernel) for f in stdio], cwd=workdir)
    code, signo = kernel.run()
    return Outcome(code, signo, kernel.limit_hit or kernel.limit_reached, kernel.peak_memory)


def _elf_machine(data: bytes) -> str:
    """The architecture an ELF asks for, from its header alone (the loader checks the rest)."""
    if data[:4] == b"\x7fELF" and len(data) >= 20:
        machine = int.from_bytes(data[18:20], "little")
        return {62: "x86_64", 183: "aarch64"}.get(machine, "x86_64")
    return "x86_64"
