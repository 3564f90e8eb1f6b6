"""Names in the filesystem: getcwd(2), chdir(2), mkdir(2), unlink(2), rmdir(2),
readlink(2), access(2), umask(2)."""
import errno as E
import stat as S

from sentry.errors import Errno
from sentry.vfs import loc_path
from syscalls.abi import AT_EACCESS, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, s32
from syscalls.registry import syscall

F_OK, X_OK, W_OK, R_OK = 0, 1, 2, 4
CWD = AT_FDCWD & 0xFFFFFFFF


@syscall("getcwd")
def getcwd(t, buf, size):
    path = loc_path(t.cwd) + b"\0"
    if size < len(path):
        raise Errno(E.ERANGE)
    t.mm.write(buf, path)
    return len(path)


@syscall("chdir")
def chdir(t, path):
    t.cwd = t.vfs.lookup_loc(t, AT_FDCWD, t.mm.read_cstring(path))
    return 0


@syscall("fchdir")
def fchdir(t, fd):
    f = t.fds.get(s32(fd))
    if not f.inode.is_dir() or f.loc is None:
        raise Errno(E.ENOTDIR)
    t.cwd = f.loc
    return 0


@syscall("mkdirat")
def mkdirat(t, dirfd, path, mode):
    t.vfs.mkdir(t, s32(dirfd), t.mm.read_cstring(path), mode)
    return 0


@syscall("mkdir")
def mkdir(t, path, mode):
    return mkdirat(t, CWD, path, mode)


@syscall("unlinkat")
def unlinkat(t, dirfd, path, flags):
    if flags & ~AT_REMOVEDIR:
        raise Errno(E.EINVAL)
    t.vfs.unlink(t, s32(dirfd), t.mm.read_cstring(path), rmdir=bool(flags & AT_REMOVEDIR))
    return 0


@syscall("unlink")
def unlink(t, path):
    return unlinkat(t, CWD, path, 0)


@syscall("rmdir")
def rmdir(t, path):
    return unlinkat(t, CWD, path, AT_REMOVEDIR)


@syscall("readlinkat")
def readlinkat(t, dirfd, path, buf, size):
    if s32(size) <= 0:
        raise Errno(E.EINVAL)
    target = t.vfs.readlink(t, s32(dirfd), t.mm.read_cstring(path))[:s32(size)]
    t.mm.write(buf, target)
    return len(target)


@syscall("readlink")
def readlink(t, path, buf, size):
    return readlinkat(t, CWD, path, buf, size)


@syscall("faccessat2")
def faccessat2(t, dirfd, path, mode, flags):
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | 0x1000):
        raise Errno(E.EINVAL)
    from syscalls.files import _inode_at
    inode = _inode_at(t, dirfd, path, flags)
    # The sandbox's user is root: everything is readable and writable; executing
    # needs some execute bit, as for root on Linux.
    if mode & X_OK and not S.S_ISDIR(inode.mode) and not inode.mode & 0o111:
        raise Errno(E.EACCES)
    return 0


@syscall("faccessat")
def faccessat(t, dirfd, path, mode):
    return faccessat2(t, dirfd, path, mode, 0)


@syscall("access")
def access(t, path, mode):
    return faccessat2(t, CWD, path, mode, 0)


@syscall("umask")
def umask(t, mask):
    old, t.umask = t.umask, mask & 0o777
    return old
