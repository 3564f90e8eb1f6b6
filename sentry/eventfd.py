"""eventfd objects: a 64-bit counter behind a file (eventfd(2)).

A read takes the whole counter (or 1 in semaphore mode) and waits while it is
0; a write adds to it and waits while the sum would pass 0xfffffffffffffffe.
A read needs at least 8 bytes and moves 8; a write must be of exactly 8 bytes
(Linux 6.7 on; before, a longer one moved 8): anything else is EINVAL.
Readiness (sentry/poll.py): POLLIN while the counter is above 0, POLLOUT while
one more can be added. `events` counts every change, for edge-triggered epoll:
a write wakes it again even when the counter was already above 0, as on Linux
(a waker that never reads, mio's, relies on this)."""
import errno as E

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode

EFD_SEMAPHORE = 1
ULLONG_MAX = (1 << 64) - 1
POLLIN, POLLOUT, POLLERR, POLLRDNORM, POLLWRNORM = 0x1, 0x4, 0x8, 0x40, 0x100


class EventFile(File):
    announces_changes = True  # can_read/can_write are notified at every change (sentry/epoll.py)

    def __init__(self, count: int, flags: int):
        super().__init__(Inode(0o600), O_RDWR | (flags & O_NONBLOCK), "anon_inode:[eventfd]")
        self.count = count
        self.semaphore = bool(flags & EFD_SEMAPHORE)
        self.can_read = WaitQueue()   # readers wait for the counter to leave 0
        self.can_write = WaitQueue()  # writers wait for room under the maximum
        self.events = 0

    def seek(self, offset: int, whence: int) -> int:
        if not 0 <= whence <= 4:
            raise Errno(E.EINVAL)
        return 0  # Linux's noop_llseek: the position stays 0

    def read(self, size: int) -> bytes:
        if size < 8:
            raise Errno(E.EINVAL)
        if not self.count:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_read,))
        value = 1 if self.semaphore else self.count
        self.count -= value
        self.events += 1
        self.can_write.notify()
        return value.to_bytes(8, "little")

    def write(self, data) -> int:
        if len(data) != 8:  # exactly 8 since Linux 6.7 (a longer write was 8 before)
            raise Errno(E.EINVAL)
        value = int.from_bytes(bytes(data[:8]), "little")
        if value == ULLONG_MAX:
            raise Errno(E.EINVAL)
        if ULLONG_MAX - self.count <= value:  # the counter may hold at most ULLONG_MAX - 1
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_write,))
        self.count += value
        self.events += 1  # even a write of 0 wakes, as Linux's eventfd_write
        self.can_read.notify()
        return 8

    def signal(self, n: int = 1) -> None:
        """A kernel-side add (an AIO completion: eventfd_signal): it cannot wait, so the
        counter saturates at ULLONG_MAX, which readers then see with POLLERR."""
        self.count += min(n, ULLONG_MAX - self.count)
        self.events += 1
        self.can_read.notify()

    def poll_readiness(self) -> int:
        mask = 0
        if self.count:
            mask |= POLLIN | POLLRDNORM
        if self.count == ULLONG_MAX:
            mask |= POLLERR
        if ULLONG_MAX - 1 > self.count:
            mask |= POLLOUT | POLLWRNORM
        return mask

    def poll_wakers(self, events: int):
        if events & (POLLOUT | POLLWRNORM):
            return (self.can_read, self.can_write) if events & (POLLIN | POLLRDNORM) else (self.can_write,)
        return (self.can_read,)
