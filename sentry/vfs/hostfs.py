"""A host directory lent to the sandbox, read-only or read-write.

Every inode holds an O_PATH descriptor of its host object; a name is looked
up with openat(dir, name, O_PATH|O_NOFOLLOW), one component at a time, so the
host kernel never follows a symlink or a `..` for us: a host symlink becomes a
symlink inode that the sandbox's own walk follows inside the sandbox's view.
Nothing outside the directory the user granted can be named.

Host files keep their modes; their inode numbers and owners show as the
sandbox's (sentry/vfs/hostids.py: a per-sandbox numbering, owners as a user
namespace maps them). Whose rights the sandbox has on them (sentry/vfs/perm.py),
and so which owners it shows, depends on how the directory came:
- lent by the user (`lent=True`: a --mount, the program's own directory):
  files of the host user who runs the sentry are the sandbox root's own (and
  its group's, for that user's group), as in a rootless container where
  that user is uid 0 inside; files of other host owners are nobody's in the
  sandbox (shown as the overflow id 65534): only their "other" bits apply,
  for every sandbox process, root included;
- the system's (the default view's /usr, /etc, ...: the default, `lent=False`):
  every file is a stranger's (owned by 65534), so /etc/shadow stays as closed
  to the sandbox's root as it is to an ordinary host user.
Through a read-write directory the sandbox never makes a set-user-ID or
set-group-ID file, a device, FIFO or socket node, nor changes an owner.

Files and directories are opened with O_NOATIME where the host allows it (the
sentry's user owns them, or has CAP_FOWNER): a guest's reads leave the host's
atime alone, so neither the host nor another sandbox learns of them.
"""
import errno as E
import os
import stat as S

from sentry.errors import Errno
from sentry.vfs import hostcalls
from sentry.vfs.hostids import InodeNumbers, shown_id
from sentry.vfs.inode import FileSystem, Inode

O_PATH = getattr(os, "O_PATH", 0o10000000)
_LOOKUP = O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _host(fn, *args, **kw):
    """Call a host os function; its OSError becomes the program's Errno."""
    try:
        return fn(*args, **kw)
    except OSError as e:
        raise Errno(e.errno or E.EIO) from None


def _kind(entry: os.DirEntry) -> int:
    """The S_IFMT type of a directory entry: from the host's d_type when it gives
    one (no syscall), else from an lstat."""
    if entry.is_symlink():
        return S.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return S.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return S.S_IFREG
    try:
        return S.S_IFMT(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return 0


_SETID = S.S_ISUID | S.S_ISGID


def _open_noatime(path: str, flags: int) -> int:
    """open with O_NOATIME, or without where the host refuses it (EPERM: a file the
    sentry's user neither owns nor has CAP_FOWNER over)."""
    try:
        return os.open(path, flags | os.O_NOATIME)
    except PermissionError:
        return _host(os.open, path, flags)
    except OSError as e:
        raise Errno(e.errno or E.EIO) from None


class HostFS(FileSystem):
    def __init__(self, host_path: str, readonly: bool, lent: bool = False, numbers: InodeNumbers = None):
        """lent: the user lent this directory (its user's files are the sandbox root's);
        else every file in it is a stranger's (see the module's doc). numbers: the
        sandbox's numbering of host files (its view's), shared by all its host mounts."""
        super().__init__(f"host:{host_path}", readonly, magic=0xEF53)
        self.host_path = host_path
        self.lent = lent
        self.numbers = numbers if numbers is not None else InodeNumbers()
        # names in the top directory that are the sandbox's own, not the host's: an inode
        # (a memory file of this filesystem), or None for no such file (a read-only one's)
        self.replaced: dict[bytes, Inode | None] = {}
        self.host_ids = (os.geteuid(), os.getegid())  # who the sandbox's root is here, when lent
        fd = _host(os.open, host_path, O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
        try:
            self.magic = hostcalls.fs_type(fd)  # statfs f_type: the host filesystem's kind
        except OSError:
            pass
        self.root = HostInode(self, fd, os.fstat(fd))


def _sandbox_ids(fs: HostFS, uid: int, gid: int):
    """A host owner's ids in the sandbox, None for one it has not (see the module's doc)."""
    if not fs.lent:
        return None, None
    host_uid, host_gid = fs.host_ids
    return (0 if uid == host_uid else None), (0 if gid == host_gid else None)


class HostStat:
    """A host stat as the sandbox shows it: the mount's device, the sandbox's inode
    number and owner ids (sentry/vfs/hostids.py), the rest as is."""
    __slots__ = ("ino", "mode", "nlink", "uid", "gid", "size", "blocks", "atime", "mtime", "ctime",
                 "dev", "rdev")

    def __init__(self, st: os.stat_result, fs: HostFS):
        uid, gid = _sandbox_ids(fs, st.st_uid, st.st_gid)
        self.ino, self.mode, self.nlink = fs.numbers.number(st.st_dev, st.st_ino), st.st_mode, st.st_nlink
        self.uid, self.gid, self.size, self.blocks = shown_id(uid), shown_id(gid), st.st_size, st.st_blocks
        self.atime, self.mtime, self.ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        self.dev, self.rdev = fs.dev, st.st_rdev


class HostInode(Inode):
    __slots__ = ("fd",)

    def __init__(self, fs: HostFS, fd: int, st: os.stat_result):
        Inode.__init__(self, st.st_mode, fs, st.st_uid, st.st_gid)  # the host's ids: owner() maps them
        self.fd = fd
        self.ino = fs.numbers.number(st.st_dev, st.st_ino)

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, TypeError, AttributeError):
            pass

    def stat(self):
        return HostStat(_host(os.fstat, self.fd), self.fs)

    @property
    def size(self) -> int:
        return self.stat().size

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    def owner(self):
        return _sandbox_ids(self.fs, self.uid, self.gid)

    def init_owner(self, uid, gid):
        pass  # the host user who runs the sentry owns what it makes

    # --- names -------------------------------------------------------------------------
    def _check_name(self):
        if not self.is_dir():
            raise Errno(E.ENOTDIR)

    def lookup(self, name):
        self._check_name()
        if self is self.fs.root and name in self.fs.replaced:
            return self.fs.replaced[name]
        try:
            fd = os.open(name, _LOOKUP, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise Errno(e.errno or E.EIO) from None
        return HostInode(self.fs, fd, os.fstat(fd))

    def create(self, name, mode):
        self._check_name()
        self.fs.check_writable()
        fd = _host(os.open, name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   mode & 0o7777 & ~_SETID, dir_fd=self.fd)
        os.close(fd)
        return self.lookup(name)

    def mkdir(self, name, mode):
        self._check_name()
        self.fs.check_writable()
        _host(os.mkdir, name, mode & 0o7777 & ~_SETID, dir_fd=self.fd)
        return self.lookup(name)

    def symlink(self, name, target):
        self._check_name()
        self.fs.check_writable()
        _host(os.symlink, target, name, dir_fd=self.fd)
        return self.lookup(name)

    def link(self, name, inode):
        self._check_name()
        self.fs.check_writable()
        if not isinstance(inode, HostInode) or inode.fs is not self.fs:
            raise Errno(E.EXDEV)
        # linkat(AT_EMPTY_PATH) on the O_PATH fd: the very file we hold, wherever it is now
        _host(os.link, f"/proc/self/fd/{inode.fd}", name, dst_dir_fd=self.fd, follow_symlinks=True)

    def unlink(self, name):
        self._check_name()
        self.fs.check_writable()
        _host(os.unlink, name, dir_fd=self.fd)

    def rmdir(self, name):
        self._check_name()
        self.fs.check_writable()
        _host(os.rmdir, name, dir_fd=self.fd)

    def mknod(self, name, mode):
        self._check_name()
        self.fs.check_writable()
        if S.S_IFMT(mode) != S.S_IFREG:
            raise Errno(E.EPERM)  # no device, FIFO or socket node on the host
        return self.create(name, mode)

    def tmpfile(self, mode, linkable=True):
        self._check_name()
        self.fs.check_writable()
        fd = _host(os.open, ".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC | (0 if linkable else os.O_EXCL),
                   mode & 0o7777 & ~_SETID, dir_fd=self.fd)
        try:
            path_fd = _host(os.open, f"/proc/self/fd/{fd}", O_PATH | os.O_CLOEXEC)  # the file, not the link
        finally:
            os.close(fd)
        return HostInode(self.fs, path_fd, os.fstat(path_fd))

    def rename(self, name, new_dir, new_name, flags=0):
        self._check_name()
        self.fs.check_writable()
        if not isinstance(new_dir, HostInode) or new_dir.fs is not self.fs:
            raise Errno(E.EXDEV)
        _host(hostcalls.renameat2, self.fd, name, new_dir.fd, new_name, flags)

    def exchange(self, name, new_dir, new_name):
        self.rename(name, new_dir, new_name, 2)  # RENAME_EXCHANGE

    def entries(self):
        self._check_name()
        fd = _open_noatime(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        out = []
        try:
            number, dev = self.fs.numbers.number, os.fstat(fd).st_dev
            with os.scandir(fd) as it:
                for entry in it:
                    out.append((os.fsencode(entry.name), number(dev, entry.inode()), _kind(entry)))
        finally:
            os.close(fd)
        if self is self.fs.root and self.fs.replaced:
            replaced = self.fs.replaced
            out = [e for e in out if e[0] not in replaced]
            out += [(name, i.ino, S.S_IFMT(i.mode)) for name, i in replaced.items() if i is not None]
        return out

    # --- other kinds -------------------------------------------------------------------
    def readlink(self, task) -> bytes:
        if not S.S_ISLNK(self.mode):
            raise Errno(E.EINVAL)
        return os.fsencode(_host(os.readlink, "", dir_fd=self.fd))  # readlinkat(fd, ""): this very link

    def open(self, flags, path):
        from sentry.vfs.file import O_ACCMODE, O_RDONLY, O_TRUNC, HostFile
        kind = S.S_IFMT(self.mode)
        if kind not in (S.S_IFREG,):
            raise Errno(E.ENXIO if kind != S.S_IFIFO else E.EOPNOTSUPP)
        writing = flags & O_ACCMODE != O_RDONLY
        if writing:
            self.fs.check_writable()
        host_flags = {0: os.O_RDONLY, 1: os.O_WRONLY, 2: os.O_RDWR}.get(flags & O_ACCMODE, os.O_RDONLY)
        if writing and flags & O_TRUNC:
            host_flags |= os.O_TRUNC
        fd = _open_noatime(f"/proc/self/fd/{self.fd}", host_flags | os.O_CLOEXEC)
        if host_flags & os.O_TRUNC:
            from sentry.vfs.backing import host_file_shrunk
            host_file_shrunk(fd)
        return HostFile(self, flags, path, fd)

    def truncate(self, length):
        self.fs.check_writable()
        if self.is_dir():
            raise Errno(E.EISDIR)
        fd = _host(os.open, f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            _host(os.ftruncate, fd, length)
            from sentry.vfs.backing import host_file_shrunk
            host_file_shrunk(fd)
        finally:
            os.close(fd)

    def chmod(self, mode):
        self.fs.check_writable()
        if S.S_ISLNK(self.mode):
            raise Errno(E.EOPNOTSUPP)  # never through /proc/self/fd: that would follow the link
        if mode & _SETID:
            raise Errno(E.EPERM)  # no set-user-ID or set-group-ID file on the host
        _host(os.chmod, f"/proc/self/fd/{self.fd}", mode & 0o7777)
        self.mode = S.S_IFMT(self.mode) | (mode & 0o7777)

    def chown(self, uid, gid):
        # The sandbox's root is not the host's: host ownership stays as it is
        # (a chown that changes nothing succeeds, as it does for root).
        self.fs.check_writable()
        st = self.stat()
        if uid not in (-1, st.uid) or gid not in (-1, st.gid):
            raise Errno(E.EPERM)

    def set_times(self, atime, mtime):
        self.fs.check_writable()
        _host(hostcalls.set_times, self.fd, atime, mtime)

    # --- extended attributes: the host file's user.* ones, through its O_PATH descriptor ---
    # (only for regular files and directories, which /proc/self/fd/N names without following
    # anything further: the VFS refuses user.* on other kinds first)
    def has_xattrs(self) -> bool:
        return True

    def _xattr_path(self, name) -> str:
        kind = S.S_IFMT(self.mode)
        if (name is not None and not name.startswith(b"user.")) or kind not in (S.S_IFREG, S.S_IFDIR):
            raise Errno(E.EOPNOTSUPP)
        return f"/proc/self/fd/{self.fd}"

    def getxattr(self, name):
        return _host(os.getxattr, self._xattr_path(name), name)

    def listxattr(self):
        try:
            names = os.listxattr(self._xattr_path(None))
        except (OSError, Errno):
            return []
        return sorted(os.fsencode(n) for n in names if n.startswith("user."))

    def setxattr(self, name, value, flags):
        self.fs.check_writable()
        path = self._xattr_path(name)
        if value is None:
            _host(os.removexattr, path, name)
        else:
            _host(os.setxattr, path, name, bytes(value), flags)
