"""Opening, closing and describing files: open(2), openat2(2), close(2),
close_range(2), memfd_create(2), stat(2), statx(2), getdents64(2), dup(2),
fcntl(2)."""
import errno as E

from sentry import caps, fasync
from sentry.errors import Errno
from sentry.vfs import RESOLVE_BENEATH, RESOLVE_CACHED, RESOLVE_IN_ROOT, notify, perm
from sentry.vfs.atime import file_accessed
from sentry.vfs.file import (O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_LARGEFILE, O_NOATIME,
                             O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC, RegularFile)
from sentry.vfs.inode import (F_SEAL_EXEC, F_SEAL_FUTURE_WRITE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK,
                              F_SEAL_WRITE, MEMFD, RegularInode, is_append_only)
from syscalls.abi import (AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_STATX_SYNC_TYPE,
                          AT_SYMLINK_NOFOLLOW, OPEN_HOW, open_flags_in, open_flags_out, pack_dirent64,
                          pack_stat, pack_statx, s32)
from syscalls.fown import OWN_CMDS, own
from syscalls.inotify import dnotify
from syscalls.locks import F_GETLEASE, F_SETLEASE, RECORD_LOCK_CMDS, lease, record_lock
from syscalls.mounts import STATX_ATTR_MOUNT_ROOT, statx_mount
from syscalls.paths import inode_at
from syscalls.registry import PARTIAL, syscall

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
F_SETPIPE_SZ, F_GETPIPE_SZ, F_ADD_SEALS, F_GET_SEALS = 1031, 1032, 1033, 1034
F_NOTIFY = 1026
O_ASYNC = 0o20000
FD_CLOEXEC = 1
SETFL_MASK = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000  # APPEND NONBLOCK ASYNC DIRECT NOATIME
# what Linux's open accepts (x86-64 values): access mode, CREAT EXCL NOCTTY TRUNC APPEND NONBLOCK
# DSYNC ASYNC DIRECT LARGEFILE DIRECTORY NOFOLLOW NOATIME CLOEXEC SYNC PATH TMPFILE
VALID_OPEN_FLAGS = (0o3 | 0o100 | 0o200 | 0o400 | 0o1000 | 0o2000 | 0o4000 | 0o10000 | 0o20000 | 0o40000
                    | 0o100000 | 0o200000 | 0o400000 | 0o1000000 | 0o2000000 | 0o4000000 | 0o10000000
                    | 0o20000000)
O_PATH_FLAGS = O_DIRECTORY | O_NOFOLLOW | O_PATH | O_CLOEXEC
__O_TMPFILE = O_TMPFILE & ~O_DIRECTORY
RESOLVE_ALL = 0x3F


def _open(t, dirfd, path, flags, mode, resolve=0):
    name = t.mm.read_cstring(path)
    file = t.vfs.open(t, s32(dirfd), name, flags, mode, resolve)
    return t.fds.install(file, cloexec=bool(flags & O_CLOEXEC))


@syscall("openat")
def openat(t, dirfd, path, flags, mode):
    flags = open_flags_in(t.kernel.arch, flags & 0xFFFFFFFF) & VALID_OPEN_FLAGS
    flags = flags & O_PATH_FLAGS if flags & O_PATH else flags | O_LARGEFILE
    return _open(t, dirfd, path, flags, mode & 0o7777)


@syscall("openat2", status=PARTIAL, note="every RESOLVE_* flag (RESOLVE_CACHED: everything is cached); "
         "RESOLVE_NO_XDEV counts any change of filesystem as a mount crossing")
def openat2(t, dirfd, path, how, size):
    if size < OPEN_HOW.size:
        raise Errno(E.EINVAL)
    if size > 4096:
        raise Errno(E.E2BIG)
    raw = t.mm.read(how, size)
    if any(raw[OPEN_HOW.size:]):
        raise Errno(E.E2BIG)  # a newer struct open_how asking for what we do not know
    flags, mode, resolve = OPEN_HOW.unpack_from(raw)
    flags = open_flags_in(t.kernel.arch, flags)
    if not flags & O_PATH:
        flags |= O_LARGEFILE
    if flags & ~O_CLOEXEC & ~VALID_OPEN_FLAGS or resolve & ~RESOLVE_ALL:
        raise Errno(E.EINVAL)
    if resolve & RESOLVE_BENEATH and resolve & RESOLVE_IN_ROOT:
        raise Errno(E.EINVAL)
    if flags & (O_CREAT | __O_TMPFILE):
        if mode & ~0o7777:
            raise Errno(E.EINVAL)
    elif mode:
        raise Errno(E.EINVAL)
    if flags & O_DIRECTORY and flags & O_CREAT:
        raise Errno(E.EINVAL)
    if flags & __O_TMPFILE and (flags & (O_TMPFILE | O_CREAT) != O_TMPFILE
                                or flags & O_ACCMODE not in (1, O_RDWR)):
        raise Errno(E.EINVAL)
    if flags & O_PATH and flags & ~O_PATH_FLAGS:
        raise Errno(E.EINVAL)
    if resolve & RESOLVE_CACHED and flags & (O_TRUNC | O_CREAT | __O_TMPFILE):
        raise Errno(E.EAGAIN)
    return _open(t, dirfd, path, flags, mode, resolve)


@syscall("open")
def open_(t, path, flags, mode):
    return openat(t, AT_FDCWD & 0xFFFFFFFF, path, flags, mode)


@syscall("creat")
def creat(t, path, mode):
    return openat(t, AT_FDCWD & 0xFFFFFFFF, path, 0o1101, mode)  # O_CREAT|O_WRONLY|O_TRUNC


@syscall("close")
def close(t, fd):
    t.fds.close(s32(fd))
    return 0


CLOSE_RANGE_UNSHARE, CLOSE_RANGE_CLOEXEC = 0x2, 0x4


@syscall("close_range", note="CLOSE_RANGE_UNSHARE gives a caller sharing its table (CLONE_FILES) its own first")
def close_range(t, first, last, flags):
    first, last, flags = first & 0xFFFFFFFF, last & 0xFFFFFFFF, flags & 0xFFFFFFFF
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise Errno(E.EINVAL)
    if flags & CLOSE_RANGE_UNSHARE and t.fds.users > 1:
        shared, t.fds = t.fds, t.fds.copy()
        shared.release()
    t.fds.close_range(first, last, cloexec=bool(flags & CLOSE_RANGE_CLOEXEC))
    return 0


MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 0x1, 0x2, 0x4, 0x8, 0x10
MFD_NAME_MAX = 249  # NAME_MAX less "memfd:"


@syscall("memfd_create", status=PARTIAL, note="a memory file in no directory, with seals (F_ADD_SEALS/"
         "F_GET_SEALS); MFD_HUGETLB answers EINVAL")
def memfd_create(t, name, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC):
        raise Errno(E.EINVAL)
    if flags & MFD_NOEXEC_SEAL and flags & MFD_EXEC:
        raise Errno(E.EINVAL)
    try:
        text = t.mm.read_cstring(name, MFD_NAME_MAX + 1)
    except Errno as e:
        raise Errno(E.EINVAL if e.errno == E.ENAMETOOLONG else e.errno) from None
    inode = RegularInode(0o666 if flags & MFD_NOEXEC_SEAL else 0o777, fs=MEMFD, uid=t.fsuid, gid=t.fsgid)
    inode.nlink = 0
    if flags & MFD_NOEXEC_SEAL:
        inode.seals = F_SEAL_EXEC
    elif flags & MFD_ALLOW_SEALING:
        inode.seals = 0
    path = "/memfd:" + text.decode("utf-8", "surrogateescape") + " (deleted)"
    f = RegularFile(inode, O_RDWR | O_LARGEFILE, path)
    return t.fds.install(f, cloexec=bool(flags & MFD_CLOEXEC))


F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC


def _seals(t, f, cmd, arg) -> int:
    """F_ADD_SEALS / F_GET_SEALS: memory files only (as Linux: shmem files)."""
    inode = f.inode
    if not isinstance(inode, RegularInode) or not isinstance(f, RegularFile):
        raise Errno(E.EINVAL)
    if cmd == F_GET_SEALS:
        return inode.seals
    seals = arg & 0xFFFFFFFF
    if not f.writable:
        raise Errno(E.EPERM)
    if seals & ~F_ALL_SEALS:
        raise Errno(E.EINVAL)
    if inode.seals & F_SEAL_SEAL:
        raise Errno(E.EPERM)
    if seals & F_SEAL_EXEC and inode.mode & 0o111:
        seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE  # W^X from the start
    if seals & F_SEAL_WRITE and not inode.seals & F_SEAL_WRITE and inode.backing is not None:
        # EBUSY while a shared mapping could still write (one of a file open for writing)
        for task in list(t.kernel.tasks.values()):
            mm = getattr(task, "mm", None)
            if mm is not None and any(v.backing is inode.backing and v.maywrite for v in mm.vmas):
                raise Errno(E.EBUSY)
    inode.seals |= seals
    return 0


CAP_SYS_RESOURCE = 24


def _pipe_size(t, f, cmd, arg) -> int:
    from sentry.vfs.pipe import PipeFile
    if not isinstance(f, PipeFile):
        raise Errno(E.EBADF)
    if cmd == F_GETPIPE_SZ:
        return f.pipe.capacity
    max_size = 1 << 31 if caps.has(t, CAP_SYS_RESOURCE) else t.kernel.sysctl.pipe_max_size
    return f.pipe.set_size(arg & 0xFFFFFFFF, max_size)


_inode_at = inode_at


@syscall("fstat")
def fstat(t, fd, buf):
    t.mm.write(buf, pack_stat(t.kernel.arch, t.fds.get(s32(fd)).stat_inode().stat()))
    return 0


@syscall("stat")
def stat(t, path, buf):
    t.mm.write(buf, pack_stat(t.kernel.arch, _inode_at(t, AT_FDCWD, path, 0).stat()))
    return 0


@syscall("lstat")
def lstat(t, path, buf):
    t.mm.write(buf, pack_stat(t.kernel.arch, _inode_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW).stat()))
    return 0


@syscall("newfstatat")
def newfstatat(t, dirfd, path, buf, flags):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT):
        raise Errno(E.EINVAL)
    t.mm.write(buf, pack_stat(t.kernel.arch, _inode_at(t, dirfd, path, flags).stat()))
    return 0


@syscall("statx", status=PARTIAL, note="basic stats and the mount id (STATX_MNT_ID, STATX_MNT_ID_UNIQUE), "
         "STATX_ATTR_MOUNT_ROOT; no btime or other attributes")
def statx(t, dirfd, path, flags, mask, buf):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE):
        raise Errno(E.EINVAL)
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & 0x80000000:
        raise Errno(E.EINVAL)
    st = _inode_at(t, dirfd, path, flags).stat()
    mnt_mask, mnt_id, root_attr = statx_mount(t, dirfd, path, flags, mask)
    t.mm.write(buf, pack_statx(st, mnt_mask, mnt_id, root_attr, STATX_ATTR_MOUNT_ROOT))
    return 0


@syscall("getdents64")
def getdents64(t, fd, dirp, count):
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    data = f.getdents(count & 0xFFFFFFFF, pack_dirent64)
    t.mm.write(dirp, data)
    file_accessed(t.vfs, f)  # iterate_dir's
    if notify.marks:
        notify.accessed(f)  # iterate_dir's fsnotify_access
    return len(data)


@syscall("dup")
def dup(t, fd):
    return t.fds.install(t.fds.get(s32(fd)))


@syscall("dup2")
def dup2(t, oldfd, newfd):
    oldfd, newfd = s32(oldfd), s32(newfd)
    f = t.fds.get(oldfd)
    if oldfd != newfd:
        t.fds.install_at(newfd, f)
    return newfd


@syscall("dup3")
def dup3(t, oldfd, newfd, flags):
    oldfd, newfd = s32(oldfd), s32(newfd)
    if flags & ~O_CLOEXEC or oldfd == newfd:
        raise Errno(E.EINVAL)
    t.fds.install_at(newfd, t.fds.get(oldfd), cloexec=bool(flags & O_CLOEXEC))
    return newfd


@syscall("fcntl", status=PARTIAL, note="F_DUPFD(_CLOEXEC), F_GETFD/SETFD, F_GETFL/SETFL; record locks "
         "F_GETLK/SETLK/SETLKW and F_OFD_* (the sandbox's own; waits in the loop, EDEADLK for a cycle of "
         "POSIX owners); leases F_SETLEASE/F_GETLEASE (broken by the sandbox's opens and truncates); "
         "F_SETOWN(_EX)/F_GETOWN(_EX), F_SETSIG/F_GETSIG and O_ASYNC (SIGIO from pipes, sockets, eventfds, "
         "inotify; not the terminal); F_NOTIFY (dnotify); F_ADD_SEALS/F_GET_SEALS on memory files; "
         "F_GETPIPE_SZ/F_SETPIPE_SZ; F_GET_RW_HINT/F_SET_RW_HINT kept, unused")
def fcntl(t, fd, cmd, arg):
    fd, cmd = s32(fd), s32(cmd)
    f = t.fds.get(fd)
    if f.flags & O_PATH and cmd not in (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL):
        raise Errno(E.EBADF)
    if cmd in RECORD_LOCK_CMDS:
        return record_lock(t, f, cmd, arg)
    if cmd in OWN_CMDS:
        return own(t, f, fd, cmd, arg)
    if cmd in (F_SETLEASE, F_GETLEASE):
        return lease(t, f, fd, cmd, arg)
    if cmd == F_NOTIFY:
        return dnotify(t, f, fd, arg & 0xFFFFFFFF)
    if cmd in (F_GET_RW_HINT, F_SET_RW_HINT):
        return _rw_hint(t, f, cmd, arg)
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        return _seals(t, f, cmd, arg)
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
        return _pipe_size(t, f, cmd, arg)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if s32(arg) < 0 or s32(arg) >= t.fds.limit:
            raise Errno(E.EINVAL)
        return t.fds.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, lowest=s32(arg))
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in t.fds.cloexec else 0
    if cmd == F_SETFD:
        (t.fds.cloexec.add if arg & FD_CLOEXEC else t.fds.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        return open_flags_out(t.kernel.arch, f.flags)
    if cmd == F_SETFL:
        flags = open_flags_in(t.kernel.arch, arg & 0xFFFFFFFF)
        if (flags ^ f.flags) & O_APPEND and is_append_only(f.inode):
            raise Errno(E.EPERM)  # an append-only file's writers keep O_APPEND
        if flags & O_NOATIME and not f.flags & O_NOATIME and not perm.owns(t, f.inode):
            raise Errno(E.EPERM)  # O_NOATIME is the owner's
        if (flags ^ f.flags) & O_ASYNC:
            fasync.set_async(t, f, fd, bool(flags & O_ASYNC))  # ->fasync: SIGIO when ready
        f.flags = (f.flags & ~SETFL_MASK) | (flags & SETFL_MASK)
        return 0
    raise Errno(E.EINVAL)


F_GET_RW_HINT, F_SET_RW_HINT = 1035, 1036
RWH_WRITE_LIFE_EXTREME = 5


def _rw_hint(t, f, cmd, arg) -> int:
    """The inode's write-life hint: kept (the sandbox's storage has no use for it)."""
    hints = t.vfs.locks.hints
    key = (f.inode.fs.dev, f.inode.ino)
    if cmd == F_GET_RW_HINT:
        t.mm.write_u64(arg, hints.get(key, 0))
        return 0
    hint = t.mm.read_u64(arg)
    if hint > RWH_WRITE_LIFE_EXTREME:
        raise Errno(E.EINVAL)
    hints[key] = hint
    return 0
