"""Advisory file locks: fcntl record locks (POSIX and open-file-description)
and flock(2) locks, kept by the sentry for one sandbox, keyed by file object.

The host never sees them: a lock taken in the sandbox does not exclude a host
process, nor the reverse. Owners are Python objects: a process's FDTable for
POSIX locks (released when the process closes any descriptor of the file),
the open file itself for OFD and flock locks (released when its last
descriptor closes). POSIX and OFD locks conflict with each other as in Linux;
flock locks are a separate kind that meets only other flock locks.

Nothing here waits: a request that conflicts raises EAGAIN, and the caller
decides what a waiting request becomes (with one process per sandbox, a wait
could never end).
"""
import errno as E

from sentry.errors import Errno

F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
OFFSET_MAX = (1 << 63) - 1


class RecordLock:
    __slots__ = ("owner", "kind", "start", "end", "pid", "ofd")

    def __init__(self, owner, kind, start, end, pid, ofd):
        self.owner, self.kind, self.start, self.end, self.pid, self.ofd = owner, kind, start, end, pid, ofd


def key_of(inode) -> tuple:
    """One key per file object, whichever inode object stands for it (host inodes
    are made afresh at each lookup)."""
    return (inode.fs.dev, inode.ino)


class LockTable:
    def __init__(self):
        self.records: dict[tuple, list[RecordLock]] = {}
        self.flocks: dict[tuple, dict] = {}  # key -> {open file: F_RDLCK | F_WRLCK}

    # --- fcntl record locks ----------------------------------------------------------------
    def conflict(self, key, owner, kind, start, end):
        """The first lock of another owner that a lock of `kind` over [start, end] would meet."""
        for lock in sorted(self.records.get(key, ()), key=lambda l: l.start):
            if (lock.owner is not owner and lock.start <= end and start <= lock.end
                    and F_WRLCK in (kind, lock.kind)):
                return lock
        return None

    def set(self, key, owner, kind, start, end, pid, ofd) -> None:
        """Take, change or (F_UNLCK) drop owner's lock over [start, end]: EAGAIN on a conflict.
        The owner's locks are split and merged as Linux does, so F_GETLK reports the same ranges."""
        if kind != F_UNLCK and self.conflict(key, owner, kind, start, end) is not None:
            raise Errno(E.EAGAIN)
        locks = self.records.get(key, [])
        mine = []
        for lock in locks:
            if lock.owner is not owner:
                continue
            if lock.end < start or lock.start > end:
                mine.append(lock)
                continue
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

    def release(self, key, owner) -> None:
        """Drop every record lock owner holds on the file."""
        locks = self.records.get(key)
        if locks:
            rest = [lock for lock in locks if lock.owner is not owner]
            if rest:
                self.records[key] = rest
            else:
                del self.records[key]

    # --- flock -----------------------------------------------------------------------------
    def flock(self, key, file, kind) -> None:
        """flock(2) for one open file: a conversion drops the old lock first, as Linux does,
        so a conversion that fails leaves none. EAGAIN on a conflict."""
        held = self.flocks.setdefault(key, {})
        if held.get(file) == kind:
            return
        held.pop(file, None)
        if kind != F_UNLCK:
            if any(other is not file and F_WRLCK in (kind, k) for other, k in held.items()):
                if not held:
                    del self.flocks[key]
                raise Errno(E.EAGAIN)
            held[file] = kind
        if not held:
            del self.flocks[key]

    def release_file(self, file) -> None:
        """The last descriptor of an open file is gone: its OFD and flock locks go too."""
        key = key_of(file.inode)
        self.release(key, file)
        held = self.flocks.get(key)
        if held is not None:
            held.pop(file, None)
            if not held:
                del self.flocks[key]
