"""epoll instances: an interest list over open files, and which of them are ready.

Readiness is sentry/poll.py's, the same for every file kind; an epoll file is
itself pollable (readable while something in it is ready), so epoll nests."""
from sentry.poll import ALWAYS, readiness, wakers
from sentry.vfs.file import O_RDWR, File
from sentry.vfs.inode import Inode

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
CONTROL_BITS = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET


class Interest:
    __slots__ = ("fd", "file", "events", "data", "seen", "seen_events", "disabled")

    def __init__(self, fd: int, file, events: int, data: int):
        self.fd, self.file, self.events, self.data = fd, file, events, data
        self.seen = 0          # bits an edge-triggered entry has reported and that stayed true
        self.seen_events = -1  # the file's event count when it last reported
        self.disabled = False  # a one-shot entry after its event, until EPOLL_CTL_MOD


def _event_count(f) -> int:
    pipe = getattr(f, "pipe", None)
    if pipe is not None:
        return pipe.events
    return getattr(f, "events", 0)  # eventfd, timerfd, signalfd: each write, expiry or new signal


class EpollFile(File):
    def __init__(self, flags: int = 0):
        super().__init__(Inode(0o600), O_RDWR | flags, "anon_inode:[eventpoll]")
        self.interest: dict[tuple, Interest] = {}  # (fd, id(file)) -> Interest

    def _live(self):
        for key, item in list(self.interest.items()):
            if getattr(item.file, "fd_refs", 1) <= 0:  # its open file is gone: so is the entry
                del self.interest[key]
            else:
                yield item

    def ready(self, limit: int) -> list[tuple[int, int]]:
        """(events, data) of up to limit ready entries, updating edge and one-shot state."""
        out = []
        for item in self._live():
            if item.disabled:
                continue
            now = readiness(item.file) & (item.events | ALWAYS) & ~CONTROL_BITS
            if item.events & EPOLLET:
                # an edge: a bit that became true, or anything new on the file (more data)
                count = _event_count(item.file)
                if not now & ~item.seen and count == item.seen_events:
                    item.seen = now
                    continue
                item.seen, item.seen_events = now, count
            if not now:
                continue
            if len(out) >= limit:
                break
            out.append((now, item.data))
            if item.events & EPOLLONESHOT:
                item.disabled = True
        return out

    def any_ready(self) -> bool:
        for item in self._live():
            if not item.disabled and readiness(item.file) & (item.events | ALWAYS) & ~CONTROL_BITS:
                return True
        return False

    def wakers(self):
        queues, fds = [], []
        for item in self._live():
            q, h = wakers(item.file, item.events)
            queues.extend(q)
            fds.extend(h)
        return queues, fds

    def close(self) -> None:
        self.interest.clear()
