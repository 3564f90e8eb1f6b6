"""Names in the filesystem: getcwd(2), chdir(2), mkdir(2), mknod(2), unlink(2),
rmdir(2), rename(2), link(2), symlink(2), readlink(2), access(2), umask(2),
truncate(2), statfs(2)."""
import errno as E
import os
import stat as S

from sentry.errors import Errno
from sentry.vfs import RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, loc_path, notify, perm, writeaccess
from sentry.vfs.inode import is_append_only
from sentry.vfs.perm import MAY_EXEC, MAY_WRITE
from syscalls.abi import (AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW,
                          AT_SYMLINK_NOFOLLOW, pack_statfs, s32, s64)
from syscalls.inotify import changed_at
from syscalls.io import fsize_grow
from syscalls.paths import inode_at
from syscalls.registry import FULL, PARTIAL, syscall

CWD = AT_FDCWD & 0xFFFFFFFF


@syscall("getcwd")
def getcwd(t, buf, size):
    path = loc_path(t.cwd) + b"\0"
    root = t.fs.root
    if root is not None:  # after chroot(2): from its root, or "(unreachable)" outside it, as Linux
        top = loc_path(root)
        if len(t.cwd) >= len(root) and path.startswith(top):
            path = (path[len(top):] if top != b"/" else path) or b"/\0"
            if not path.startswith(b"/"):
                path = b"/" + path
        else:
            path = b"(unreachable)" + path
    if size < len(path):
        raise Errno(E.ERANGE)
    t.mm.write(buf, path)
    return len(path)


@syscall("chdir")
def chdir(t, path):
    loc = t.vfs.lookup_loc(t, AT_FDCWD, t.mm.read_cstring(path))
    perm.permission(t, loc[-1][1], MAY_EXEC)
    t.cwd = loc
    return 0


@syscall("fchdir")
def fchdir(t, fd):
    f = t.fds.get(s32(fd))
    if not f.inode.is_dir() or f.loc is None:
        raise Errno(E.ENOTDIR)
    perm.permission(t, f.inode, MAY_EXEC)
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
    name = t.mm.read_cstring(path)
    inode = inode_at(t, dirfd, path, AT_SYMLINK_NOFOLLOW, empty_ok=True)  # "": the dirfd itself, if a link
    if not inode.is_symlink():
        raise Errno(E.EINVAL if name else E.ENOENT)
    target = inode.readlink(t)[:s32(size)]
    t.mm.write(buf, target)
    return len(target)


@syscall("readlink")
def readlink(t, path, buf, size):
    return readlinkat(t, CWD, path, buf, size)


@syscall("faccessat2")
def faccessat2(t, dirfd, path, mode, flags):
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    if flags & AT_EACCESS:
        return _access(t, dirfd, path, mode, flags)
    with perm.real_ids(t):  # the walk too is checked with the real ids
        return _access(t, dirfd, path, mode, flags)


def _access(t, dirfd, path, mode, flags) -> int:
    """The mode bits asked for (R_OK, W_OK, X_OK are MAY_READ, MAY_WRITE, MAY_EXEC):
    EROFS for writing a file on a read-only filesystem, EACCES from the bits (the
    sandbox's root needs some execute bit on a file, as Linux's)."""
    perm.permission(t, inode_at(t, dirfd, path, flags), mode)
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


@syscall("mknodat", status=PARTIAL, note="regular files, FIFOs (one process: a FIFO whose other end "
         "is not open answers EDEADLK where Linux would wait forever; host FIFOs cannot be opened), "
         "sockets, and character/block device nodes by CAP_MKNOD in memory directories (they open the "
         "sandbox's own device of those numbers, ENXIO for none; never the host's); in a host directory only "
         "regular files (EPERM)")
def mknodat(t, dirfd, path, mode, dev):
    t.vfs.mknod(t, s32(dirfd), t.mm.read_cstring(path), mode & 0xFFFF, dev & 0xFFFFFFFF)
    return 0


@syscall("mknod", status=PARTIAL, note="as mknodat")
def mknod(t, path, mode, dev):
    return mknodat(t, CWD, path, mode, dev)


@syscall("renameat2", status=PARTIAL, note="RENAME_NOREPLACE and RENAME_EXCHANGE (not on --rootfs "
         "overlays: EINVAL); RENAME_WHITEOUT answers EINVAL; a directory holding a mount point "
         "cannot move (EBUSY); open directories and the cwd keep the path they were opened by")
def renameat2(t, olddirfd, oldpath, newdirfd, newpath, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
        raise Errno(E.EINVAL)
    if flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) or flags & RENAME_WHITEOUT:
        raise Errno(E.EINVAL)
    old, new = t.mm.read_cstring(oldpath), t.mm.read_cstring(newpath)
    t.vfs.rename(t, s32(olddirfd), old, s32(newdirfd), new, flags)
    return 0


@syscall("renameat", status=PARTIAL, note="as renameat2")
def renameat(t, olddirfd, oldpath, newdirfd, newpath):
    return renameat2(t, olddirfd, oldpath, newdirfd, newpath, 0)


@syscall("rename", status=PARTIAL, note="as renameat2")
def rename(t, oldpath, newpath):
    return renameat2(t, CWD, oldpath, CWD, newpath, 0)


@syscall("linkat")
def linkat(t, olddirfd, oldpath, newdirfd, newpath, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    source = inode_at(t, olddirfd, oldpath, (flags & AT_EMPTY_PATH)
                      | (0 if flags & AT_SYMLINK_FOLLOW else AT_SYMLINK_NOFOLLOW))
    t.vfs.link(t, source, s32(newdirfd), t.mm.read_cstring(newpath))
    return 0


@syscall("link")
def link(t, oldpath, newpath):
    return linkat(t, CWD, oldpath, CWD, newpath, 0)


@syscall("symlinkat")
def symlinkat(t, target, newdirfd, linkpath):
    text = t.mm.read_cstring(target)
    if not text:
        raise Errno(E.ENOENT)
    t.vfs.symlink(t, text, s32(newdirfd), t.mm.read_cstring(linkpath))
    return 0


@syscall("symlink")
def symlink(t, target, linkpath):
    return symlinkat(t, target, CWD, linkpath)


@syscall("truncate", status=FULL, note="a memory file grows by a hole (sparse: its written bytes count toward --tmpfs-size)")
def truncate(t, path, length):
    length = s64(length)
    if length < 0:
        raise Errno(E.EINVAL)
    inode = t.vfs.lookup(t, AT_FDCWD, t.mm.read_cstring(path))
    if inode.is_dir():
        raise Errno(E.EISDIR)
    if not S.S_ISREG(inode.mode):
        raise Errno(E.EINVAL)
    inode.fs.check_writable()
    perm.permission(t, inode, MAY_WRITE)
    if is_append_only(inode):
        raise Errno(E.EPERM)
    writeaccess.of(t.kernel).check(inode)  # ETXTBSY: a running program's file (get_write_access)
    if t.vfs.locks.leases:
        t.vfs.locks.break_lease(t, inode, 1)  # a truncate breaks leases as a write open does
    fsize_grow(t, inode.size, length)
    inode.truncate(length)
    if notify.marks:
        changed_at(t, CWD, path, 0, inode, notify.MODIFY)
    return 0


@syscall("statfs", status=PARTIAL, note="the sandbox's own figures (2 GiB, free space not tracked; a tmpfs or "
         "ext filesystem mount(2) made counts its blocks and inodes), f_type of the filesystem (a host mount's is "
         "the host's), f_flags of the mount's flags (ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC, ...)")
def statfs(t, path, buf):
    from sentry.vfs import mounts
    found = t.vfs.find(t, AT_FDCWD, t.mm.read_cstring(path))
    if found.inode is None:
        raise Errno(E.ENOENT)
    sf = mounts.statfs_flags(t.vfs, loc_path(found.loc), found.inode.fs.statfs())  # the mount's flags too
    t.mm.write(buf, pack_statfs(sf))
    return 0


@syscall("fstatfs", status=PARTIAL, note="as statfs")
def fstatfs(t, fd, buf):
    from sentry.vfs import mounts
    f = t.fds.get(s32(fd))
    sf = f.stat_inode().fs.statfs()
    if f.path:
        sf = mounts.statfs_flags(t.vfs, os.fsencode(f.path), sf)
    t.mm.write(buf, pack_statfs(sf))
    return 0
