"""Process file descriptors: pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2)."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

PIDFD_NONBLOCK = O_NONBLOCK


class PidFile(File):
    """A pidfd: refers to one process for as long as it is open."""
    announces_changes = True  # its process's exit_event is notified when it ends (sentry/epoll.py)

    def __init__(self, proc, flags: int):
        super().__init__(Inode(0o600), O_RDWR | flags, "anon_inode:[pidfd]")
        self.proc = proc


def pidfd_of(t, proc, flags: int = 0) -> int:
    return t.fds.install(PidFile(proc, flags), cloexec=True)


def process_of_fd(t, fd: int):
    f = t.fds.get(s32(fd))
    if not isinstance(f, PidFile):
        raise Errno(E.EBADF)  # any other file, as Linux's pidfd_get_pid
    return f.proc


@syscall("pidfd_open")
def pidfd_open(t, pid, flags):
    pid = s32(pid)
    if flags & ~PIDFD_NONBLOCK or pid <= 0:
        raise Errno(E.EINVAL)
    from sentry.namespaces import find_proc
    proc = find_proc(t, pid)  # as the caller's pid namespace numbers it
    if proc is None or proc.zombie and proc.parent is None:
        raise Errno(E.ESRCH)
    return pidfd_of(t, proc, flags)


@syscall("pidfd_send_signal", status=PARTIAL, note="siginfo argument must be NULL")
def pidfd_send_signal(t, pidfd, sig, info, flags):
    from sentry import signals
    proc = process_of_fd(t, pidfd)
    sig = s32(sig)
    if flags or info or not 0 <= sig <= 64:
        raise Errno(E.EINVAL)
    if proc.zombie:
        raise Errno(E.ESRCH)
    if sig:
        signals.send_process(proc, sig)
    return 0

