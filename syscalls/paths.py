"""What the file syscalls share in decoding their arguments: the file an fd
names, and the inode a (dirfd, path, flags) triple names."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import O_PATH
from syscalls.abi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, s32

CWD = AT_FDCWD & 0xFFFFFFFF  # AT_FDCWD as a raw argument


def file_of(t, fd):
    """The open file of fd for a call that does I/O or changes it: an O_PATH
    descriptor is EBADF there, as Linux's fdget()."""
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    return f


def inode_at(t, dirfd, path, flags, empty_ok=False):
    """The inode a *at() call names: a path, or with AT_EMPTY_PATH (or empty_ok)
    and an empty path the dirfd itself (O_PATH descriptors included)."""
    name = t.mm.read_cstring(path)
    if not name:
        if flags & AT_EMPTY_PATH or empty_ok:
            if s32(dirfd) == AT_FDCWD:
                return t.cwd[-1][1]
            return t.fds.get(s32(dirfd)).stat_inode()
        raise Errno(E.ENOENT)
    return t.vfs.lookup(t, s32(dirfd), name, follow=not flags & AT_SYMLINK_NOFOLLOW)
