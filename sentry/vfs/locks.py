"""Advisory file locks and leases, kept by the sentry for one sandbox, keyed by
file object ((device, inode) as notify's marks are): fcntl record locks (POSIX
and open-file-description), flock(2) locks and fcntl leases.

The host never sees them: a lock taken in the sandbox does not exclude a host
process, nor the reverse. Owners are Python objects: a process's FDTable for
POSIX locks (released when the process closes any descriptor of the file),
the open file itself for OFD and flock locks (released when its last
descriptor closes). POSIX and OFD locks conflict with each other as in Linux;
flock locks are a separate kind that meets only other flock locks.

A request that conflicts answers EAGAIN, or, given the task that asks
(F_SETLKW, F_OFD_SETLKW, flock without LOCK_NB), parks it on the file's queue
until a lock of that file changes, then it asks again. As Linux's
posix_locks_deadlock, a POSIX request whose wait would close a cycle of POSIX
owners each waiting for the next answers EDEADLK instead; OFD and flock
requests always wait.

Leases (F_SETLEASE) are Linux's generic_setlease: an open that conflicts (or
a truncate) sends the holder its lease-break signal and waits, O_NONBLOCK
opens answering EWOULDBLOCK, until the holder gives the lease up or
downgrades it, or /proc/sys/fs/lease-break-time seconds pass and the lease is
broken for it.
"""
import errno as E
import time

from sentry.errors import Errno
from sentry.sched import ERESTARTSYS, Wait, WaitQueue

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1
MAX_DEADLK_ITERATIONS = 10
O_ACCMODE, O_RDONLY, O_NONBLOCK, O_PATH = 3, 0, 0o4000, 0o10000000
CAP_LEASE = 28


class RecordLock:
    __slots__ = ("owner", "kind", "start", "end", "pid", "ofd")

    def __init__(self, owner, kind, start, end, pid, ofd):
        self.owner, self.kind, self.start, self.end, self.pid, self.ofd = owner, kind, start, end, pid, ofd


class Lease:
    __slots__ = ("file", "kind", "pending", "deadline", "fd")

    def __init__(self, file, kind: int, fd: int):
        self.file, self.kind, self.fd = file, kind, fd
        self.pending = None   # F_RDLCK (a downgrade) or F_UNLCK (an unlock) a breaker waits for
        self.deadline = 0.0   # when the pending change is forced


def key_of(inode) -> tuple:
    """One key per file object, whichever inode object stands for it (host inodes
    are made afresh at each lookup)."""
    return (inode.fs.dev, inode.ino)


class LockTable:
    def __init__(self):
        self.records: dict[tuple, list[RecordLock]] = {}
        self.flocks: dict[tuple, dict] = {}  # key -> {open file: F_RDLCK | F_WRLCK}
        self.leases: dict[tuple, list[Lease]] = {}
        self.queues: dict[tuple, WaitQueue] = {}  # key -> who waits for a lock or lease of it to change
        self.blocked: dict = {}  # a task waiting for a POSIX lock -> (its owner, the lock it waits for, key)
        self.lease_break_time = 45  # /proc/sys/fs/lease-break-time, seconds
        self.hints: dict[tuple, int] = {}  # key -> fcntl F_SET_RW_HINT's write-life hint

    # --- waiting -------------------------------------------------------------------------------
    def _changed(self, key) -> None:
        """A lock or lease of key went or shrank: its waiters ask again (and are no longer
        anyone's blockers meanwhile, as Linux's locks_wake_up_blocks)."""
        if self.blocked:
            for task in [t for t, b in self.blocked.items() if b[2] == key]:
                del self.blocked[task]
        q = self.queues.pop(key, None)  # every waiter wakes; one that must wait again makes a new one
        if q is not None:
            q.notify()

    def _wait(self, key):
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = WaitQueue()
        return Wait(queues=(q,), on_interrupt=self._interrupted)

    def _interrupted(self, task) -> int:
        self.blocked.pop(task, None)
        return -ERESTARTSYS

    def _deadlock(self, owner, lock: RecordLock) -> bool:
        """posix_locks_deadlock: would owner, waiting for lock, close a cycle of POSIX owners
        each waiting for a lock the next one holds?"""
        for _ in range(MAX_DEADLK_ITERATIONS + 1):
            nxt = None
            for task, (o, waited, _) in self.blocked.items():
                if o is lock.owner and task.exit_status is None:
                    nxt = waited
                    break
            if nxt is None:
                return False
            if nxt.owner is owner:
                return True
            lock = nxt
        return False

    # --- fcntl record locks ----------------------------------------------------------------
    def conflict(self, key, owner, kind, start, end):
        """The first lock of another owner that a lock of `kind` over [start, end] would meet."""
        for lock in sorted(self.records.get(key, ()), key=lambda l: l.start):
            if (lock.owner is not owner and lock.start <= end and start <= lock.end
                    and F_WRLCK in (kind, lock.kind)):
                return lock
        return None

    def set(self, key, owner, kind, start, end, pid, ofd, task=None) -> None:
        """Take, change or (F_UNLCK) drop owner's lock over [start, end]: EAGAIN on a conflict,
        or with a task, a wait (EDEADLK for a POSIX cycle). The owner's locks are split and
        merged as Linux does, so F_GETLK reports the same ranges."""
        if task is not None:
            self.blocked.pop(task, None)
        if kind != F_UNLCK:
            lock = self.conflict(key, owner, kind, start, end)
            if lock is not None:
                if task is None:
                    raise Errno(E.EAGAIN)
                if not ofd:
                    if self._deadlock(owner, lock):
                        raise Errno(E.EDEADLK)
                    self.blocked[task] = (owner, lock, key)
                raise self._wait(key)
        locks = self.records.get(key, [])
        mine, freed = [], False
        for lock in locks:
            if lock.owner is not owner:
                continue
            if lock.end < start or lock.start > end:
                mine.append(lock)
                continue
            freed = freed or kind == F_UNLCK or lock.kind == F_WRLCK and kind == F_RDLCK
            if lock.start < start:
                mine.append(RecordLock(owner, lock.kind, lock.start, start - 1, lock.pid, lock.ofd))
            if lock.end > end:
                mine.append(RecordLock(owner, lock.kind, end + 1, lock.end, lock.pid, lock.ofd))
        if kind != F_UNLCK:
            mine.append(RecordLock(owner, kind, start, end, pid, ofd))
        merged = []
        for lock in sorted(mine, key=lambda l: l.start):
            last = merged[-1] if merged else None
            if last is not None and last.kind == lock.kind and last.end != OFFSET_MAX and last.end + 1 >= lock.start:
                last.end = max(last.end, lock.end)
            else:
                merged.append(lock)
        rest = [lock for lock in locks if lock.owner is not owner] + merged
        if rest:
            self.records[key] = rest
        else:
            self.records.pop(key, None)
        if freed:
            self._changed(key)

    def release(self, key, owner) -> None:
        """Drop every record lock owner holds on the file."""
        locks = self.records.get(key)
        if locks:
            rest = [lock for lock in locks if lock.owner is not owner]
            if len(rest) != len(locks):
                if rest:
                    self.records[key] = rest
                else:
                    del self.records[key]
                self._changed(key)

    # --- flock -----------------------------------------------------------------------------
    def flock(self, key, file, kind, task=None) -> None:
        """flock(2) for one open file: a conversion drops the old lock first, as Linux does,
        so a conversion that fails leaves none. EAGAIN on a conflict, or with a task, a wait."""
        held = self.flocks.setdefault(key, {})
        if held.get(file) == kind:
            return
        if held.pop(file, None) is not None:
            self._changed(key)
        if kind != F_UNLCK:
            if any(other is not file and F_WRLCK in (kind, k) for other, k in held.items()):
                if not held:
                    del self.flocks[key]
                if task is None:
                    raise Errno(E.EAGAIN)
                raise self._wait(key)
            held[file] = kind
        if not held:
            del self.flocks[key]

    def release_file(self, file) -> None:
        """The last descriptor of an open file is gone: its OFD and flock locks, and its
        lease, go too."""
        key = key_of(file.inode)
        self.release(key, file)
        held = self.flocks.get(key)
        if held is not None and held.pop(file, None) is not None:
            if not held:
                del self.flocks[key]
            self._changed(key)
        leases = self.leases.get(key)
        if leases:
            self._drop_lease(key, [l for l in leases if l.file is file])

    # --- leases ------------------------------------------------------------------------------
    def _drop_lease(self, key, gone) -> None:
        if gone:
            rest = [l for l in self.leases.get(key, ()) if l not in gone]
            if rest:
                self.leases[key] = rest
            else:
                self.leases.pop(key, None)
            self._changed(key)

    def _time_out(self, key) -> None:
        """time_out_leases: a pending change whose break time has passed is made."""
        now = time.monotonic()
        gone = []
        for lease in self.leases.get(key, ()):
            if lease.pending is not None and now >= lease.deadline:
                if lease.pending == F_UNLCK:
                    gone.append(lease)
                else:
                    lease.kind, lease.pending = F_RDLCK, None
                    self._changed(key)
        self._drop_lease(key, gone)

    def get_lease(self, file) -> int:
        """F_GETLEASE: the lease file holds, as it will be once a break under way is done."""
        key = key_of(file.inode)
        self._time_out(key)
        for lease in self.leases.get(key, ()):
            if lease.file is file:
                return lease.pending if lease.pending is not None else lease.kind
        return F_UNLCK

    def set_lease(self, task, file, fd: int, kind: int) -> None:
        """F_SETLEASE (generic_setlease): the caller's checks (type, EACCES, a regular file)
        are done. EAGAIN when the file is open in a way the lease excludes, or another's
        lease stands in the way."""
        key = key_of(file.inode)
        self._time_out(key)
        leases = self.leases.get(key, [])
        mine = next((l for l in leases if l.file is file), None)
        if kind == F_UNLCK:
            if mine is None:
                raise Errno(E.EAGAIN)
            self._drop_lease(key, [mine])
            return
        if self._open_elsewhere(task, file, key, kind):
            raise Errno(E.EAGAIN)
        for lease in leases:
            if lease is not mine and (kind == F_WRLCK or lease.pending == F_UNLCK):
                raise Errno(E.EAGAIN)
        if mine is not None:  # lease_modify: a pending unlock stays pending through a downgrade
            mine.kind = kind
            if kind == F_RDLCK and mine.pending == F_RDLCK:
                mine.pending = None
            self._changed(key)
        else:
            self.leases.setdefault(key, []).append(Lease(file, kind, fd))
        file.lock_table = self
        from sentry import fasync
        fasync.set_owner(task, file, fasync.PIDTYPE_TGID, task.proc, force=False)

    @staticmethod
    def _open_elsewhere(task, file, key, kind: int) -> bool:
        """check_conflicting_open: a read lease needs no writer of the file (the holder's own
        descriptor included), a write lease no other open file at all."""
        seen = set()
        for t in list(task.kernel.tasks.values()):
            fds = getattr(t, "fds", None)
            if fds is None or id(fds) in seen:
                continue
            seen.add(id(fds))
            for f in fds.files.values():
                if f.flags & O_PATH or getattr(f, "inode", None) is None or key_of(f.inode) != key:
                    continue
                if kind == F_RDLCK and f.writable or kind == F_WRLCK and f is not file:
                    return True
        return False

    def break_lease(self, task, inode, flags: int) -> None:
        """An open with flags (or a truncate: O_WRONLY) of inode: leases it conflicts with
        are broken (their holders signalled once) and the caller waits for them to go
        (EWOULDBLOCK under O_NONBLOCK). Returns when nothing conflicts any more."""
        key = key_of(inode)
        if key not in self.leases:
            return
        self._time_out(key)
        want_write = flags & O_ACCMODE != O_RDONLY
        conflicting = [l for l in self.leases.get(key, ()) if want_write or l.kind == F_WRLCK]
        if not conflicting:
            return
        now = time.monotonic()
        deadline = now + max(self.lease_break_time, 0.001)
        from sentry import fasync
        for lease in conflicting:
            if want_write:
                if lease.pending == F_UNLCK:
                    continue
                lease.pending = F_UNLCK
            else:
                if lease.pending is not None:
                    continue
                lease.pending = F_RDLCK
            lease.deadline = deadline
            task.kernel.call_at(deadline, lambda: self._time_out(key))
            fasync.send_sigio(task.kernel, lease.file, lease.fd, fasync.POLL_MSG)
        if flags & O_NONBLOCK:
            raise Errno(E.EWOULDBLOCK)
        raise self._wait(key)
