"""Futex wait queues: who waits on which futex word, and waking them.

A futex is named as Linux names it: a private one by (address space, address);
a shared one in a shared mapping by (the backing's pages, offset), so processes
mapping the same file or shared memory meet on the same queue; a shared one in
private memory falls back to the private name."""
import errno as E
import os

from sentry.errors import Errno
from sentry.sched import WaitQueue


class FutexQueue(WaitQueue):
    """Waiters of one futex word, in arrival order, each with its wake bitset."""

    __slots__ = ("key", "bitsets")

    def __init__(self, key):
        super().__init__()
        self.key = key
        self.bitsets = {}


def _file_size(backing) -> int:
    """The size of the file a shared mapping shows: a memory file's own (its memfd keeps
    a larger host size), else the host file's."""
    if backing.file_size is not None:
        return backing.file_size
    try:
        return os.fstat(backing.fd).st_size
    except OSError:
        return 0


def _page_up(n: int) -> int:
    return (n + 4095) & ~4095


class Futexes:
    """Every futex queue of a sandbox."""

    def __init__(self):
        self.queues: dict = {}

    def key(self, task, addr: int, private: bool):
        if not private:
            mm = task.mm
            i = mm._find(addr)
            if i >= 0:
                v = mm.vmas[i]
                backing = getattr(v, "backing", None)
                if v.shared and backing is not None:
                    offset = v.offset + (addr - v.start)
                    if offset >= _page_up(_file_size(backing)):
                        raise Errno(E.EFAULT)  # past the file's end: the fault get_futex_key meets
                    return ("shared", id(backing), offset)
        return ("private", id(task.mm), addr)

    def queue(self, key) -> FutexQueue:
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = FutexQueue(key)
        return q

    def _tidy(self, q: FutexQueue) -> None:
        live = set(q.waiters)
        for task in [t for t in q.bitsets if t not in live]:
            del q.bitsets[task]
        if not q.waiters:
            self.queues.pop(q.key, None)

    def wake(self, key, count: int, bitset: int = 0xFFFFFFFF) -> int:
        """Wake up to count waiters whose bitset meets bitset; how many were woken."""
        q = self.queues.get(key)
        if q is None:
            return 0
        woken = 0
        for task in list(q.waiters):
            if woken >= count:
                break
            if q.bitsets.get(task, 0xFFFFFFFF) & bitset and task.blocked is not None:
                task.futex_woken = key  # which of its futexes woke it (futex_waitv)
                task.kernel.wake(task)  # its Wait finishes the call with 0
                woken += 1
        self._tidy(q)
        return woken

    def requeue(self, key, key2, wake: int, move: int) -> int:
        """Wake up to `wake` waiters of key, move up to `move` others to key2; both counted."""
        done = self.wake(key, wake)
        q = self.queues.get(key)
        if q is None or move <= 0 or key == key2:
            return done
        target = self.queue(key2)
        moved = 0
        for task in list(q.waiters):
            if moved >= move:
                break
            q.waiters.remove(task)
            target.waiters.append(task)
            target.bitsets[task] = q.bitsets.pop(task, 0xFFFFFFFF)
            w = task.blocked
            if w is not None:
                w.queues = tuple(target if x is q else x for x in w.queues)
            moved += 1
        self._tidy(q)
        return done + moved
