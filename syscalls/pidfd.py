"""Process file descriptors: pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2)."""
import errno as E
import struct

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


# pidfd_send_signal's scope flags (Linux 6.9): at most one
PIDFD_SIGNAL_THREAD, PIDFD_SIGNAL_THREAD_GROUP, PIDFD_SIGNAL_PROCESS_GROUP = 1, 2, 4


def _signal_target(t, fd: int):
    """The process a pidfd or an open /proc/<pid> directory names (Linux's pidfd_to_pid)."""
    f = t.fds.get(s32(fd))
    if isinstance(f, PidFile):
        return f.proc
    from sentry.vfs.procfs import TaskDir
    inode = getattr(f, "inode", None)
    if isinstance(inode, TaskDir) and inode.with_threads:
        return inode.task.proc
    raise Errno(E.EBADF)


@syscall("pidfd_send_signal", note="pidfds and /proc/<pid> directories; a siginfo as rt_sigqueueinfo's; "
         "PIDFD_SIGNAL_THREAD/THREAD_GROUP/PROCESS_GROUP")
def pidfd_send_signal(t, pidfd, sig, info, flags):
    from sentry import signals
    from syscalls import signals as sig_calls
    scope = flags & (PIDFD_SIGNAL_THREAD | PIDFD_SIGNAL_THREAD_GROUP | PIDFD_SIGNAL_PROCESS_GROUP)
    if flags != scope or bin(scope).count("1") > 1:
        raise Errno(E.EINVAL)
    proc = _signal_target(t, pidfd)
    sig = s32(sig)
    if info:
        raw = t.mm.read(info, 128)
        signo, _, code = struct.unpack_from("<iii", raw)
        if signo != sig:
            raise Errno(E.EINVAL)
        if (proc is not t.proc or scope == PIDFD_SIGNAL_PROCESS_GROUP) \
                and (code >= 0 or code == signals.SI_TKILL):
            raise Errno(E.EPERM)  # only the kernel, kill and tkill make such codes
        kinfo = signals.SigInfo(sig, code, raw=raw)
    else:
        kinfo = signals.user_info(t, sig)
    if not 0 <= sig <= signals.NSIG:
        raise Errno(E.EINVAL)
    if proc.zombie:
        raise Errno(E.ESRCH)
    if scope == PIDFD_SIGNAL_PROCESS_GROUP:
        sig_calls.kill_group(t, proc.pgid, sig, kinfo)
        return 0
    sig_calls.permitted(t, proc, sig)
    if not sig:
        return 0
    if scope == PIDFD_SIGNAL_THREAD:
        leader = proc.leader
        if leader is None or leader.exit_status is not None:
            raise Errno(E.ESRCH)
        signals.send(leader, sig, kinfo)
    else:
        signals.send_process(proc, sig, kinfo)
    return 0
