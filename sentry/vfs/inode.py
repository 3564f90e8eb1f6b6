"""Inodes of the in-memory filesystem: regular files, directories, symlinks, devices."""
import itertools
import stat as S
import time

_inos = itertools.count(2)
TMPFS_DEV = 0x2A


class Inode:
    __slots__ = ("ino", "mode", "uid", "gid", "nlink", "atime", "mtime", "ctime", "dev", "rdev")

    def __init__(self, mode: int, uid=0, gid=0, rdev=0):
        self.ino = next(_inos)
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.nlink = 1
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.dev = TMPFS_DEV
        self.rdev = rdev

    @property
    def size(self) -> int:
        return 0

    def touch(self) -> None:
        self.mtime = self.ctime = time.time_ns()

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)


class RegularInode(Inode):
    __slots__ = ("data",)

    def __init__(self, mode=0o644, data=b"", **kw):
        super().__init__(S.S_IFREG | mode, **kw)
        self.data = bytearray(data)

    @property
    def size(self) -> int:
        return len(self.data)


class DirInode(Inode):
    __slots__ = ("children", "parent", "name")

    def __init__(self, mode=0o755, parent=None, name=b"", **kw):
        super().__init__(S.S_IFDIR | mode, **kw)
        self.nlink = 2
        self.children: dict[bytes, Inode] = {}
        self.parent = parent or self
        self.name = name

    @property
    def size(self) -> int:
        return 4096

    def add(self, name: bytes, inode: Inode) -> Inode:
        self.children[name] = inode
        if isinstance(inode, DirInode):
            inode.parent, inode.name = self, name
            self.nlink += 1
        self.touch()
        return inode

    def path(self) -> bytes:
        """Absolute path of this directory (directories have exactly one parent)."""
        parts = []
        d = self
        while d.parent is not d:
            parts.append(d.name)
            d = d.parent
        return b"/" + b"/".join(reversed(parts))


class SymlinkInode(Inode):
    __slots__ = ("target",)

    def __init__(self, target: bytes, **kw):
        super().__init__(S.S_IFLNK | 0o777, **kw)
        self.target = target

    def read_target(self, task) -> bytes:
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

    def read_target(self, task) -> bytes:
        return self.compute(task)


class DeviceInode(Inode):
    """A character device: `opener(flags)` makes its open file."""
    __slots__ = ("opener",)

    def __init__(self, major: int, minor: int, opener, mode=0o666):
        super().__init__(S.S_IFCHR | mode, rdev=(major << 8) | minor)
        self.opener = opener
