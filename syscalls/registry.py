"""The one registry of syscalls: each handler with its name, support status and note.

Dispatch, --strace and `sentry syscalls` (the compatibility table) all read it.
Handlers are plain functions `handler(task, *raw_args) -> int`; they take only
as many raw arguments as they declare, counted once here, never per call.
"""
import errno as E
from typing import Callable, NamedTuple

from sentry.errors import Errno

FULL, PARTIAL, UNSUPPORTED = "full", "partial", "unsupported"


class Entry(NamedTuple):
    name: str
    fn: Callable
    status: str
    note: str
    nargs: int


REGISTRY: dict[str, Entry] = {}


def syscall(*names: str, status: str = FULL, note: str = ""):
    """Register the decorated function as the handler of `names` (aliases share it)."""
    def register(fn):
        nargs = fn.__code__.co_argcount - 1
        for name in names:
            if name in REGISTRY:
                raise RuntimeError(f"syscall {name} registered twice")
            REGISTRY[name] = Entry(name, fn, status, note, nargs)
        return fn
    return register


def refuse(name: str, code: int, note: str) -> None:
    """A syscall we answer deliberately with a fixed errno (no warning in the log)."""
    if name in REGISTRY:  # a refusal never hides a handler, whichever module registers first
        raise RuntimeError(f"syscall {name} registered twice")
    def refused(t):
        raise Errno(code)
    REGISTRY[name] = Entry(name, refused, UNSUPPORTED, f"{E.errorcode[code]}: {note}", 0)


def table_for(arch: str) -> list:
    """Entries indexed by syscall number for `arch` (None where unhandled)."""
    import syscalls.handlers  # noqa: F401  (registers every handler module)
    from syscalls.tables import BY_ARCH
    return [REGISTRY.get(name) if name else None for name in BY_ARCH[arch]]
