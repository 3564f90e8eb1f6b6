"""eventfd(2), eventfd2(2): a counter behind a file (sentry/eventfd.py)."""
import errno as E

from sentry.errors import Errno
from sentry.eventfd import EFD_SEMAPHORE, EventFile
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK
from syscalls.abi import s32
from syscalls.registry import syscall

EFD_CLOEXEC, EFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK


@syscall("eventfd2", note="EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC; reads and writes of 8 bytes that wait "
         "(or EAGAIN) as Linux's; readable/writable through poll, select and epoll (edge-triggered "
         "epoll hears every write)")
def eventfd2(t, initval, flags):
    flags = s32(flags)
    if flags & ~(EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE):
        raise Errno(E.EINVAL)
    f = EventFile(initval & 0xFFFFFFFF, flags)
    return t.fds.install(f, cloexec=bool(flags & EFD_CLOEXEC))


@syscall("eventfd")
def eventfd(t, initval):
    return eventfd2(t, initval, 0)
