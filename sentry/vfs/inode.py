"""Inodes: the base every filesystem's inodes follow, and tmpfs's (memory) own.

An inode answers for one file object: its attributes (`stat()`), and, for a
directory, the names in it. Names are bytes, single components; the path
walk (sentry/vfs/__init__.py) is the only place that splits paths, follows
symlinks and crosses mounts, so no filesystem ever sees `..` or a `/`.
"""
import errno as E
import itertools
import stat as S
import time

from sentry.errors import Errno

_inos = itertools.count(2)


class FileSystem:
    """What the inodes of one mount share: a device number, read-only-ness."""
    _devs = itertools.count(0x30)

    def __init__(self, name: str, readonly: bool = False, magic: int = 0x01021994):
        self.name = name
        self.readonly = readonly
        self.magic = magic  # statfs f_type (TMPFS_MAGIC by default)
        self.dev = next(self._devs)

    def check_writable(self) -> None:
        if self.readonly:
            raise Errno(E.EROFS)


class Inode:
    """Base inode. Directory operations fail with ENOTDIR and attribute
    changes with EPERM unless a subclass provides them."""
    __slots__ = ("fs", "ino", "mode", "uid", "gid", "nlink", "atime", "mtime", "ctime", "rdev",
                 "__weakref__")

    def __init__(self, mode: int, fs: FileSystem = None, uid=0, gid=0, rdev=0):
        self.fs = fs or MEMORY
        self.ino = next(_inos)
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.nlink = 1
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.rdev = rdev

    # --- attributes ---------------------------------------------------------------------
    def stat(self):
        """An object with the stat fields (ino, mode, nlink, uid, gid, size, blocks,
        atime, mtime, ctime in ns, dev, rdev); tmpfs inodes are their own."""
        return self

    @property
    def dev(self) -> int:
        return self.fs.dev

    @property
    def size(self) -> int:
        return 0

    @property
    def blocks(self) -> int:
        return 0

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    def is_symlink(self) -> bool:
        return S.S_ISLNK(self.mode)

    def touch(self) -> None:
        self.mtime = self.ctime = time.time_ns()

    def chmod(self, mode: int) -> None:
        self.fs.check_writable()
        self.mode = S.S_IFMT(self.mode) | (mode & 0o7777)
        self.ctime = time.time_ns()

    def chown(self, uid: int, gid: int) -> None:
        self.fs.check_writable()
        if uid != -1:
            self.uid = uid
        if gid != -1:
            self.gid = gid
        self.ctime = time.time_ns()

    def set_times(self, atime, mtime) -> None:
        """Each a time in ns, or None to leave it."""
        self.fs.check_writable()
        if atime is not None:
            self.atime = atime
        if mtime is not None:
            self.mtime = mtime
        self.ctime = time.time_ns()

    # --- directories (ENOTDIR here) --------------------------------------------------------
    def lookup(self, name: bytes):
        raise Errno(E.ENOTDIR)

    def create(self, name: bytes, mode: int):
        raise Errno(E.ENOTDIR)

    def mkdir(self, name: bytes, mode: int):
        raise Errno(E.ENOTDIR)

    def symlink(self, name: bytes, target: bytes):
        raise Errno(E.ENOTDIR)

    def link(self, name: bytes, inode) -> None:
        raise Errno(E.ENOTDIR)

    def unlink(self, name: bytes) -> None:
        raise Errno(E.ENOTDIR)

    def rmdir(self, name: bytes) -> None:
        raise Errno(E.ENOTDIR)

    def rename(self, name: bytes, new_dir, new_name: bytes) -> None:
        raise Errno(E.ENOTDIR)

    def entries(self):
        """(name, ino, S_IFMT type) of each entry, `.` and `..` excluded."""
        raise Errno(E.ENOTDIR)

    # --- other kinds -----------------------------------------------------------------------
    def readlink(self, task) -> bytes:
        raise Errno(E.EINVAL)

    def open(self, flags: int, path: str):
        """The open file for this inode (regular files, devices; directories
        are opened by the VFS, which knows their place in the tree)."""
        raise Errno(E.ENXIO)

    def truncate(self, length: int) -> None:
        raise Errno(E.EINVAL if not self.is_dir() else E.EISDIR)


MEMORY = FileSystem("tmpfs")


class RegularInode(Inode):
    __slots__ = ("data",)

    def __init__(self, mode=0o644, data=b"", fs=None, **kw):
        super().__init__(S.S_IFREG | mode, fs, **kw)
        self.data = bytearray(data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def blocks(self) -> int:
        return (len(self.data) + 511) // 512

    def open(self, flags, path):
        from sentry.vfs.file import RegularFile
        return RegularFile(self, flags, path)

    def truncate(self, length: int) -> None:
        self.fs.check_writable()
        if length < len(self.data):
            del self.data[length:]
        else:
            self.data.extend(bytes(length - len(self.data)))
        self.touch()


class DirInode(Inode):
    __slots__ = ("children",)

    def __init__(self, mode=0o755, fs=None, **kw):
        super().__init__(S.S_IFDIR | mode, fs, **kw)
        self.nlink = 2
        self.children: dict[bytes, Inode] = {}

    @property
    def size(self) -> int:
        return 4096

    def add(self, name: bytes, inode: Inode) -> Inode:
        self.children[name] = inode
        if inode.is_dir():
            self.nlink += 1
        self.touch()
        return inode

    def _new(self, name: bytes, inode: Inode) -> Inode:
        self.fs.check_writable()
        if name in self.children:
            raise Errno(E.EEXIST)
        return self.add(name, inode)

    def lookup(self, name):
        return self.children.get(name)

    def create(self, name, mode):
        return self._new(name, RegularInode(mode & 0o7777, fs=self.fs))

    def mkdir(self, name, mode):
        return self._new(name, DirInode(mode & 0o7777, fs=self.fs))

    def symlink(self, name, target):
        return self._new(name, SymlinkInode(target, fs=self.fs))

    def link(self, name, inode):
        if inode.fs is not self.fs:
            raise Errno(E.EXDEV)
        if inode.is_dir():
            raise Errno(E.EPERM)
        self._new(name, inode)
        inode.nlink += 1
        inode.ctime = time.time_ns()

    def unlink(self, name):
        self.fs.check_writable()
        inode = self.children.get(name)
        if inode is None:
            raise Errno(E.ENOENT)
        if inode.is_dir():
            raise Errno(E.EISDIR)
        del self.children[name]
        inode.nlink -= 1
        inode.ctime = time.time_ns()
        self.touch()

    def rmdir(self, name):
        self.fs.check_writable()
        inode = self.children.get(name)
        if inode is None:
            raise Errno(E.ENOENT)
        if not inode.is_dir():
            raise Errno(E.ENOTDIR)
        if inode.children:
            raise Errno(E.ENOTEMPTY)
        del self.children[name]
        inode.nlink = 0
        self.nlink -= 1
        self.touch()

    def rename(self, name, new_dir, new_name):
        self.fs.check_writable()
        if not isinstance(new_dir, DirInode) or new_dir.fs is not self.fs:
            raise Errno(E.EXDEV)
        inode = self.children.get(name)
        if inode is None:
            raise Errno(E.ENOENT)
        old = new_dir.children.get(new_name)
        if old is inode:
            return
        if old is not None:
            if old.is_dir() and not inode.is_dir():
                raise Errno(E.EISDIR)
            if inode.is_dir() and not old.is_dir():
                raise Errno(E.ENOTDIR)
            if old.is_dir() and old.children:
                raise Errno(E.ENOTEMPTY)
            (new_dir.rmdir if old.is_dir() else new_dir.unlink)(new_name)
        del self.children[name]
        if inode.is_dir():
            self.nlink -= 1
        new_dir.add(new_name, inode)
        self.touch()
        inode.ctime = time.time_ns()

    def entries(self):
        return [(name, i.ino, S.S_IFMT(i.mode)) for name, i in self.children.items()]


class SymlinkInode(Inode):
    __slots__ = ("target",)

    def __init__(self, target: bytes, fs=None, **kw):
        super().__init__(S.S_IFLNK | 0o777, fs, **kw)
        self.target = target

    def readlink(self, task) -> bytes:
        return self.target

    @property
    def size(self) -> int:
        return len(self.target)


class TaskLinkInode(SymlinkInode):
    """A symlink whose target is computed from the task reading it (/proc/self/exe)."""
    __slots__ = ("compute",)

    def __init__(self, compute):
        super().__init__(b"")
        self.compute = compute

    def readlink(self, task) -> bytes:
        return self.compute(task)


class DeviceInode(Inode):
    """A character device: `opener(flags)` makes its open file."""
    __slots__ = ("opener",)

    def __init__(self, major: int, minor: int, opener, mode=0o666):
        super().__init__(S.S_IFCHR | mode, rdev=(major << 8) | minor)
        self.opener = opener

    def open(self, flags, path):
        return self.opener(flags)
