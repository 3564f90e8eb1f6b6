"""epoll instances: an interest list over open files, and which of them are ready.

Readiness is sentry/poll.py's, the same for every file kind; an epoll file is
itself pollable (readable while something in it is ready), so epoll nests.

A wait costs what is ready, not what is watched: an entry on a file whose
wait queues announce every change of its readiness (pipes, eventfds, pidfds,
epolls: `announces_changes`) watches those queues, and a notify puts it on
the instance's `pending` list and wakes the instance's own queue. A wait looks
only at pending entries, at level-triggered entries that were ready last time
(which stay ready until drained, as Linux's ready list keeps them), and at the
entries on other kinds of file (`polled`: host streams, timerfds, signalfds,
devices), which it asks every time."""
import errno as E
import weakref

from sentry.errors import Errno
from sentry.poll import ALWAYS, readiness, wakers
from sentry.sched import WaitQueue
from sentry.vfs.file import O_RDWR, File
from sentry.vfs.inode import Inode

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
EP_MAX_NESTS = 4  # epolls may watch epolls this deep
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
CONTROL_BITS = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET


class Interest:
    __slots__ = ("fd", "file", "events", "data", "seen", "seen_events", "disabled", "seq", "epoll",
                 "queues", "wakes")

    def __init__(self, fd: int, file, events: int, data: int):
        self.fd, self.file, self.events, self.data = fd, file, events, data
        self.seen = 0          # bits an edge-triggered entry has reported and that stayed true
        self.seen_events = -1  # the file's event count when it last reported
        self.disabled = False  # a one-shot entry after its event, until EPOLL_CTL_MOD
        self.seq = 0           # its place in the interest list (reports go in this order)
        self.epoll = None
        self.queues = ()       # the queues it watches (none: it is polled)
        self.wakes = 0         # notifies heard from them (an edge-triggered entry's "something new")

    def changed(self) -> bool:
        """A queue it watches was notified: look at it at the next wait. True when an
        EPOLLEXCLUSIVE entry woke a waiter (the queue then wakes no other exclusive one,
        as ep_poll_callback's ewake)."""
        ep = self.epoll
        if ep is None:
            return False
        self.wakes += 1
        ep.pending[self.seq] = self
        woke = bool(ep.wq.waiters or ep.wq.watchers)
        ep.wq.notify()
        return woke and bool(self.events & EPOLLEXCLUSIVE)


def _event_count(f) -> int:
    pipe = getattr(f, "pipe", None)
    if pipe is not None:
        return pipe.events
    return getattr(f, "events", 0)  # eventfd, timerfd, signalfd: each write, expiry or new signal


class EpollFile(File):
    announces_changes = True  # its queue wq is notified whenever an entry may have become ready

    def __init__(self, flags: int = 0):
        super().__init__(Inode(0o600), O_RDWR | flags, "anon_inode:[eventpoll]")
        self.interest: dict[tuple, Interest] = {}  # (fd, id(file)) -> Interest
        self.pending: dict[int, Interest] = {}     # seq -> entry to look at (changed, or ready)
        self.polled: dict[int, Interest] = {}      # seq -> entry asked at every wait
        self.wq = WaitQueue()                      # epoll_wait sleepers, outer epolls, pollers
        self._seq = 0
        self.parents = weakref.WeakSet()           # the epolls watching this one

    def check_nesting(self, inner: "EpollFile") -> None:
        """ELOOP when watching inner would close a loop of epolls or nest them deeper than
        EP_MAX_NESTS (Linux's ep_loop_check: the depth below inner, plus one, plus the depth
        above this one)."""
        def below(ep, seen):
            if ep is self:
                raise Errno(E.ELOOP)
            if ep in seen:
                return 0
            seen.add(ep)
            inner_eps = [i.file for i in ep.interest.values() if isinstance(i.file, EpollFile)]
            return max((below(e, seen) + 1 for e in inner_eps), default=0)

        def above(ep, seen):
            if ep in seen:
                return 0
            seen.add(ep)
            return max((above(p, seen) + 1 for p in list(ep.parents)), default=0)
        if below(inner, set()) + 1 + above(self, set()) > EP_MAX_NESTS:
            raise Errno(E.ELOOP)

    # --- the interest list ---------------------------------------------------------------
    def add(self, key, item: Interest) -> None:
        self._seq += 1
        item.seq, item.epoll = self._seq, self
        self.interest[key] = item
        f = item.file
        if isinstance(f, EpollFile):
            f.parents.add(self)
        queues, fds = wakers(f, item.events)
        if getattr(f, "announces_changes", False) and queues and not fds:
            item.queues = tuple(queues)
            for q in item.queues:
                q.watch(item, exclusive=bool(item.events & EPOLLEXCLUSIVE))
            self.pending[item.seq] = item
        else:
            self.polled[item.seq] = item
        self.wq.notify()  # it may be ready now

    def remove(self, key) -> Interest | None:
        item = self.interest.pop(key, None)
        if item is not None:
            if isinstance(item.file, EpollFile) and not any(i.file is item.file for i in self.interest.values()):
                item.file.parents.discard(self)
            for q in item.queues:
                q.unwatch(item)
            item.queues, item.epoll = (), None
            self.pending.pop(item.seq, None)
            self.polled.pop(item.seq, None)
        return item

    def modify(self, key, events: int, data: int) -> None:
        item = self.remove(key)
        self.add(key, Interest(item.fd, item.file, events, data))

    def _candidates(self):
        seqs = sorted({*self.pending, *self.polled}) if self.polled else sorted(self.pending)
        pending, polled = self.pending, self.polled
        for seq in seqs:
            item = pending.get(seq) or polled.get(seq)
            if item is None:
                continue
            if getattr(item.file, "fd_refs", 1) <= 0:  # its open file is gone: so is the entry
                self.remove((item.fd, id(item.file)))
                continue
            yield item

    # --- readiness -------------------------------------------------------------------------
    def ready(self, limit: int) -> list[tuple[int, int]]:
        """(events, data) of up to limit ready entries, updating edge and one-shot state."""
        out = []
        pending = self.pending
        for item in self._candidates():
            if len(out) >= limit:
                break
            pending.pop(item.seq, None)  # back on it below while it stays ready (level)
            if item.disabled:
                continue
            now = readiness(item.file) & (item.events | ALWAYS) & ~CONTROL_BITS
            if item.events & EPOLLET:
                # an edge: a bit that became true, or anything new on the file (more data)
                count = item.wakes if item.queues else _event_count(item.file)
                if not now & ~item.seen and count == item.seen_events:
                    item.seen = now
                    continue
                item.seen, item.seen_events = now, count
            if not now:
                continue
            out.append((now, item.data))
            if item.events & EPOLLONESHOT:
                item.disabled = True
            elif not item.events & EPOLLET:
                self._requeue(item)  # level-triggered: looked at again next time, after the rest
        return out

    def _requeue(self, item: Interest) -> None:
        """A reported level-triggered entry goes to the end of the ready list, as Linux's
        ep_send_events puts it back at the tail: with more ready than a wait takes, every
        entry gets its turn."""
        table = self.pending if item.queues else self.polled
        table.pop(item.seq, None)
        self._seq += 1
        item.seq = self._seq
        table[item.seq] = item

    def any_ready(self) -> bool:
        for item in self._candidates():
            if not item.disabled and readiness(item.file) & (item.events | ALWAYS) & ~CONTROL_BITS:
                return True
        return False

    def wakers(self):
        """What a wait on this instance parks on: its own queue, and the polled entries'."""
        queues, fds = [self.wq], []
        for item in list(self.polled.values()):
            q, h = wakers(item.file, item.events)
            queues.extend(q)
            fds.extend(h)
        return queues, fds

    def close(self) -> None:
        for key in list(self.interest):
            self.remove(key)
