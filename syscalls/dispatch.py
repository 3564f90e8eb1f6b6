"""The dispatcher: syscall number -> handler, and the one place Errno becomes -errno."""
import errno as E
import os
import time

from sentry.errors import Errno
from syscalls.registry import table_for
from syscalls.tables import BY_ARCH

MASK64 = (1 << 64) - 1


class Dispatcher:
    """Called by the kernel loop for every syscall stop; returns the raw value for
    the result register. Wait and exit requests (sentry.sched) pass through."""

    def __init__(self, arch: str, log, strace=None):
        self.table = table_for(arch)
        self.names = BY_ARCH[arch]
        self.log = log            # log(message): the sentry's diagnostics, one line
        self.strace = strace      # syscalls.strace.Strace or None
        self.reported = set()
        self.debug = bool(os.environ.get("SENTRY_DEBUG"))
        # (task, nr, entry, args) -> result, or None to go on: a call someone waits for,
        # seen before its handler (the warm-start marker, sentry/warmserver.py)
        self.watch = None

    def __call__(self, task, nr: int, args: tuple) -> int:
        task.syscall_args = args  # aarch64's syscall restart puts the first one back in x0
        if task.seccomp_mode:  # strict mode or filters decide first (sentry/seccomp.py)
            from sentry import seccomp
            skipped = seccomp.enter(task, nr, args)
            if skipped is not None:
                return skipped & MASK64
        table = self.table
        entry = table[nr] if nr < len(table) else None
        # the task's system time: the sentry's time answering it (sentry/sched.py); the
        # monotonic clock is read in the vDSO, a thread CPU clock would be two more host syscalls
        # per call, and the sentry's one thread is busy for the whole answer
        started = time.perf_counter_ns()
        try:
            if self.watch is not None:
                ret = self.watch(task, nr, entry, args)
                if ret is not None:
                    return ret
            if self.strace is not None:
                return self.strace.call(self, task, nr, entry, args)
            return self.invoke(task, nr, entry, args)
        finally:
            task.sys_ns += time.perf_counter_ns() - started

    def invoke(self, task, nr: int, entry, args: tuple) -> int:
        if entry is None:
            return self.missing(nr)
        try:
            return entry.fn(task, *args[:entry.nargs]) & MASK64
        except Errno as e:
            return -e.errno & MASK64
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError,
                AssertionError, OSError) as e:
            return self.internal_error(entry.name, e)

    def missing(self, nr: int) -> int:
        name = self.names[nr] if nr < len(self.names) and self.names[nr] else f"syscall {nr}"
        if nr not in self.reported:
            self.reported.add(nr)
            self.log(f"unsupported syscall {name} (answered ENOSYS)")
        return -E.ENOSYS & MASK64

    def internal_error(self, name: str, exc: Exception) -> int:
        """A bug in a handler: the program gets an error, the user one line, never a traceback."""
        if self.debug:
            raise exc
        if name not in self.reported:
            self.reported.add(name)
            self.log(f"internal error in {name}: {type(exc).__name__}: {exc} (answered EIO; SENTRY_DEBUG=1 shows more)")
        return -E.EIO & MASK64
