"""Advisory locks and leases: fcntl(2)'s F_GETLK/F_SETLK/F_SETLKW and their
open-file-description forms F_OFD_*, F_SETLEASE/F_GETLEASE, and flock(2),
over the sandbox's LockTable (sentry/vfs/locks.py).

F_SETLKW, F_OFD_SETLKW and a flock without LOCK_NB wait in the loop until the
lock can be taken (a signal ends the wait: EINTR or a restart); F_SETLKW
answers EDEADLK only for a real cycle of POSIX lock owners, as Linux."""
import errno as E

from sentry import caps
from sentry.errors import Errno
from sentry.sched import Wait
from sentry.vfs.file import SEEK_CUR, SEEK_END, SEEK_SET
from sentry.vfs.locks import CAP_LEASE, F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, key_of
from syscalls.abi import FLOCK, s32
from syscalls.paths import file_of
from syscalls.registry import PARTIAL, syscall

F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
RECORD_LOCK_CMDS = (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
F_SETLEASE, F_GETLEASE = 1024, 1025
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN, LOCK_MAND = 1, 2, 4, 8, 32


def _range(f, whence: int, start: int, length: int) -> tuple[int, int]:
    """[first, last] byte of a struct flock, as Linux's flock_to_posix_lock."""
    if whence == SEEK_SET:
        base = 0
    elif whence == SEEK_CUR:
        base = getattr(f, "offset", 0)
    elif whence == SEEK_END:
        base = f.inode.stat().size
    else:
        raise Errno(E.EINVAL)
    if start > OFFSET_MAX - base:
        raise Errno(E.EOVERFLOW)
    first = base + start
    if first < 0:
        raise Errno(E.EINVAL)
    if length > 0:
        if length - 1 > OFFSET_MAX - first:
            raise Errno(E.EOVERFLOW)
        return first, first + length - 1
    if length < 0:
        if first + length < 0:
            raise Errno(E.EINVAL)
        return first + length, first - 1
    return first, OFFSET_MAX


def record_lock(t, f, cmd: int, arg: int) -> int:
    """fcntl's record-lock commands on open file f."""
    kind, whence, start, length, pid = FLOCK.unpack(t.mm.read(arg, FLOCK.size))
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    table = t.vfs.locks
    owner = f if ofd else t.fds
    if cmd in (F_GETLK, F_OFD_GETLK):
        if kind not in (F_RDLCK, F_WRLCK):
            raise Errno(E.EINVAL)
        first, last = _range(f, whence, start, length)
        if ofd and pid != 0:
            raise Errno(E.EINVAL)
        lock = table.conflict(key_of(f.inode), owner, kind, first, last)
        if lock is None:
            t.mm.write(arg, FLOCK.pack(F_UNLCK, whence, start, length, pid))
        else:
            t.mm.write(arg, FLOCK.pack(lock.kind, SEEK_SET, lock.start,
                                       0 if lock.end == OFFSET_MAX else lock.end - lock.start + 1,
                                       -1 if lock.ofd else lock.pid))
        return 0
    first, last = _range(f, whence, start, length)
    if kind not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise Errno(E.EINVAL)
    if kind == F_RDLCK and not f.readable or kind == F_WRLCK and not f.writable:
        raise Errno(E.EBADF)
    if ofd and pid != 0:
        raise Errno(E.EINVAL)
    table.set(key_of(f.inode), owner, kind, first, last, t.tgid, ofd,
              task=t if cmd in (F_SETLKW, F_OFD_SETLKW) else None)  # may wait, or EDEADLK
    if ofd:
        f.lock_table = table      # dropped when the open file's last descriptor closes
    else:
        t.fds.lock_table = table  # dropped when the process closes any descriptor of the file
    return 0


def lease(t, f, fd: int, cmd: int, arg: int) -> int:
    """F_GETLEASE, F_SETLEASE (fcntl_setlease, generic_setlease's order of checks)."""
    table = t.vfs.locks
    if cmd == F_GETLEASE:
        return table.get_lease(f)
    kind = s32(arg)
    if kind not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise Errno(E.EINVAL)
    uid = f.inode.owner()[0]
    if (uid is None or uid != t.fsuid) and not caps.has(t, CAP_LEASE):
        raise Errno(E.EACCES)
    if not f.inode.mode & 0o170000 == 0o100000:  # regular files only
        raise Errno(E.EINVAL)
    table.set_lease(t, f, fd, kind)
    return 0


@syscall("flock", status=PARTIAL, note="locks of the sandbox's own (the host's processes do not see them); "
         "a lock that conflicts waits in the loop (EWOULDBLOCK with LOCK_NB)")
def flock(t, fd, operation):
    op = s32(operation)
    if op & LOCK_MAND:
        return 0  # ignored by Linux since 5.18
    kind = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}.get(op & ~LOCK_NB)
    if kind is None:
        raise Errno(E.EINVAL)
    f = file_of(t, fd)
    try:
        t.vfs.locks.flock(key_of(f.inode), f, kind, task=None if op & LOCK_NB else t)
    except Wait:
        t.hold_file(s32(fd), f)  # the lock is the open file's, whatever becomes of fd meanwhile
        raise
    f.lock_table = t.vfs.locks
    f.flock_pid = t.tgid  # /proc/locks's pid of the lock (flock_make_lock: its latest taker's)
    return 0
