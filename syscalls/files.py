"""Opening, closing and describing files: open(2), close(2), stat(2), statx(2),
getdents64(2), dup(2), fcntl(2)."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import O_CLOEXEC, O_PATH
from syscalls.abi import (AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_STATX_SYNC_TYPE,
                          AT_SYMLINK_NOFOLLOW, pack_dirent64, pack_stat, pack_statx, s32)
from syscalls.registry import PARTIAL, syscall

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
FD_CLOEXEC = 1
SETFL_MASK = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000  # APPEND NONBLOCK ASYNC DIRECT NOATIME


@syscall("openat")
def openat(t, dirfd, path, flags, mode):
    name = t.mm.read_cstring(path)
    flags &= 0xFFFFFFFF
    file = t.vfs.open(t, s32(dirfd), name, flags, mode & 0o7777)
    return t.fds.install(file, cloexec=bool(flags & O_CLOEXEC))


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


def _inode_at(t, dirfd, path, flags):
    """The inode a *at() call names: a path, or the dirfd itself with AT_EMPTY_PATH."""
    name = t.mm.read_cstring(path)
    if not name:
        if flags & AT_EMPTY_PATH:
            if s32(dirfd) == AT_FDCWD:
                return t.cwd[-1][1]
            return t.fds.get(s32(dirfd)).stat_inode()
        raise Errno(E.ENOENT)
    return t.vfs.lookup(t, s32(dirfd), name, follow=not flags & AT_SYMLINK_NOFOLLOW)


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


@syscall("statx", status=PARTIAL, note="basic stats only; no btime, attributes or mount id")
def statx(t, dirfd, path, flags, mask, buf):
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE):
        raise Errno(E.EINVAL)
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & 0x80000000:
        raise Errno(E.EINVAL)
    t.mm.write(buf, pack_statx(_inode_at(t, dirfd, path, flags).stat()))
    return 0


@syscall("getdents64")
def getdents64(t, fd, dirp, count):
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    data = f.getdents(count & 0xFFFFFFFF, pack_dirent64)
    t.mm.write(dirp, data)
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


@syscall("fcntl", status=PARTIAL, note="F_DUPFD(_CLOEXEC), F_GETFD/SETFD, F_GETFL/SETFL; no locks, leases or signals yet (EINVAL)")
def fcntl(t, fd, cmd, arg):
    fd, cmd = s32(fd), s32(cmd)
    f = t.fds.get(fd)
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
        return f.flags
    if cmd == F_SETFL:
        f.flags = (f.flags & ~SETFL_MASK) | (arg & SETFL_MASK)
        return 0
    raise Errno(E.EINVAL)
