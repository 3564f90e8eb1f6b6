"""What runs a task: the interface every platform implements, and the way to pick one.

A platform knows registers and memory, nothing else. It creates address spaces
(`AddressSpace`: map/unmap/protect/read/write, no bookkeeping: the
MemoryManager keeps the record) and CPUs (`Cpu`: run until the next stop).
`Cpu.run()` returns one of the stops below; the kernel decides what it means.
"""
from typing import NamedTuple


class SyscallStop(NamedTuple):
    nr: int
    args: tuple


class FaultStop(NamedTuple):
    """The CPU faulted: signo is what Linux would deliver (SIGSEGV, SIGILL, ...);
    code its si_code when the platform knows it (ptrace: the host's), else None."""
    signo: int
    addr: int
    pc: int
    reason: str = ""
    code: int | None = None


class PreemptStop(NamedTuple):
    """The sentry stopped the task (its time slice ended, or a signal is for it)."""


class ExitStop(NamedTuple):
    """The host side of the task is gone (killed from outside the sentry)."""
    signo: int


PLATFORMS = ("ptrace", "unicorn")


def default_platform() -> str:
    import os  # not the platform module: it compiles regexes at import (~5 ms of every start)
    return "ptrace" if os.uname().machine == "x86_64" else "unicorn"


def create(name: str, arch: str):
    """The platform object for `name` running `arch` programs. Imports its
    library only now, so one platform's import cost never slows the other."""
    from sentry.errors import SentryError
    if name == "ptrace":
        from sentry.platform.ptrace import PtracePlatform
        if arch != "x86_64":
            raise SentryError(f"the ptrace platform runs x86_64 programs only, not {arch}: use --platform unicorn", 126)
        return PtracePlatform()
    if name == "unicorn":
        from sentry.platform.unicorn import UnicornPlatform
        return UnicornPlatform(arch)
    raise SentryError(f"unknown platform {name!r} (choose from {', '.join(PLATFORMS)})")
