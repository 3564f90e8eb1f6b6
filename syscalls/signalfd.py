"""signalfd(2), signalfd4(2): pending signals read from a file (sentry/signalfd.py)."""
import errno as E

from sentry.errors import Errno
from sentry.signalfd import SignalFile
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK
from syscalls.abi import s32
from syscalls.registry import syscall

SFD_CLOEXEC, SFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK


@syscall("signalfd4", note="SFD_NONBLOCK, SFD_CLOEXEC; a new signalfd (fd -1) or a new mask for one; reads "
         "dequeue the reading task's pending signals of the mask (struct signalfd_siginfo, 128 bytes each) "
         "and wait or EAGAIN; readable through poll, select and epoll while one is pending for the caller")
def signalfd4(t, fd, mask, sizemask, flags):
    if sizemask != 8:
        raise Errno(E.EINVAL)
    bits = t.mm.read_u64(mask)  # EFAULT
    flags = s32(flags)
    if flags & ~(SFD_CLOEXEC | SFD_NONBLOCK):
        raise Errno(E.EINVAL)
    fd = s32(fd)
    if fd == -1:
        return t.fds.install(SignalFile(t, bits, flags), cloexec=bool(flags & SFD_CLOEXEC))
    f = t.fds.get(fd)  # EBADF
    if not isinstance(f, SignalFile):
        raise Errno(E.EINVAL)
    f.set_mask(bits)  # the flags are not applied to an existing signalfd, as Linux
    return fd


@syscall("signalfd")
def signalfd(t, fd, mask, sizemask):
    return signalfd4(t, fd, mask, sizemask, 0)
