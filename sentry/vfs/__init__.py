"""The sandbox's filesystem: one in-memory tree (tmpfs), the path walk, and the
operations the file syscalls need. Mounts and host-backed filesystems build on
this walk later (see README of the project).

Paths are bytes, as in Linux. Every walk starts at a directory inode the task
owns (root, cwd, or a dirfd's), so nothing here can name a host path.
"""
import errno as E
import stat as S

from sentry.errors import Errno
from sentry.vfs.file import (O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH,
                             O_RDONLY, O_TMPFILE, O_TRUNC, DirFile, File, RegularFile)
from sentry.vfs.inode import (DeviceInode, DirInode, Inode, RegularInode, SymlinkInode,
                              TaskLinkInode)

MAX_SYMLINKS = 40
NAME_MAX = 255


class Lookup:
    """Where a walk ended: the directory holding the last component, its name, and
    the inode if it exists."""
    __slots__ = ("parent", "name", "inode")

    def __init__(self, parent, name, inode):
        self.parent, self.name, self.inode = parent, name, inode


class VFS:
    def __init__(self, random_bytes):
        from sentry.vfs.devices import make_devices
        self.root = DirInode()
        self.root.add(b"tmp", DirInode(0o1777))
        make_devices(self.root.add(b"dev", DirInode()), random_bytes)
        proc = self.root.add(b"proc", DirInode(0o555))
        self_dir = proc.add(b"self", DirInode(0o555))
        self_dir.add(b"exe", TaskLinkInode(lambda task: task.exe_path.encode()))

    def add_file(self, path: str, data: bytes, mode=0o755) -> RegularInode:
        """Place a file (e.g. the program) at an absolute path, creating directories."""
        d = self.root
        *dirs, name = [p for p in path.encode().split(b"/") if p]
        for part in dirs:
            nxt = d.children.get(part)
            if not isinstance(nxt, DirInode):
                nxt = d.add(part, DirInode())
            d = nxt
        return d.add(name, RegularInode(mode, data))

    # --- the walk ---------------------------------------------------------------------
    def walk(self, task, start: DirInode, path: bytes, follow: bool = True, _depth=None) -> Lookup:
        if not path:
            raise Errno(E.ENOENT)
        if len(path) >= 4096:
            raise Errno(E.ENAMETOOLONG)
        depth = _depth if _depth is not None else [0]
        d = self.root if path.startswith(b"/") else start
        must_be_dir = path.endswith(b"/")
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            return Lookup(d, b".", d)
        for i, name in enumerate(parts):
            if len(name) > NAME_MAX:
                raise Errno(E.ENAMETOOLONG)
            if not isinstance(d, DirInode):
                raise Errno(E.ENOTDIR)
            last = i == len(parts) - 1
            if name == b".":
                child = d
            elif name == b"..":
                child = d.parent
            else:
                child = d.children.get(name)
            if child is None:
                if last:
                    return Lookup(d, name, None)
                raise Errno(E.ENOENT)
            if isinstance(child, SymlinkInode) and (not last or follow or must_be_dir):
                depth[0] += 1
                if depth[0] > MAX_SYMLINKS:
                    raise Errno(E.ELOOP)
                target = self.walk(task, d, child.read_target(task), True, depth)
                if target.inode is None:
                    if last:
                        return target
                    raise Errno(E.ENOENT)
                child = target.inode
            if last:
                if must_be_dir and not isinstance(child, DirInode):
                    raise Errno(E.ENOTDIR)
                return Lookup(d, name, child)
            d = child
        raise AssertionError("unreachable")

    def start_dir(self, task, dirfd: int, path: bytes) -> DirInode:
        """The directory a relative path starts from: cwd for AT_FDCWD, else dirfd's."""
        if path.startswith(b"/"):
            return self.root
        if dirfd == -100:
            return task.cwd
        inode = task.fds.get(dirfd).inode
        if not isinstance(inode, DirInode):
            raise Errno(E.ENOTDIR)
        return inode

    def lookup(self, task, dirfd: int, path: bytes, follow=True) -> Inode:
        found = self.walk(task, self.start_dir(task, dirfd, path), path, follow)
        if found.inode is None:
            raise Errno(E.ENOENT)
        return found.inode

    # --- operations -------------------------------------------------------------------
    def open(self, task, dirfd: int, path: bytes, flags: int, mode: int) -> File:
        if flags & O_TMPFILE == O_TMPFILE:
            raise Errno(E.EOPNOTSUPP)
        found = self.walk(task, self.start_dir(task, dirfd, path), path,
                          follow=not flags & (O_NOFOLLOW | O_EXCL) or flags & O_PATH and not flags & O_NOFOLLOW)
        inode = found.inode
        if inode is None:
            if not flags & O_CREAT:
                raise Errno(E.ENOENT)
            if flags & O_DIRECTORY:
                raise Errno(E.EINVAL)
            if found.name in (b".", b".."):
                raise Errno(E.EISDIR)
            inode = found.parent.add(found.name, RegularInode(mode & 0o7777 & ~task.umask))
        elif flags & O_CREAT and flags & O_EXCL:
            raise Errno(E.EEXIST)
        if isinstance(inode, SymlinkInode):
            if flags & O_PATH:
                return File(inode, flags, self.path_of(found))
            raise Errno(E.ELOOP)
        if flags & O_DIRECTORY and not isinstance(inode, DirInode):
            raise Errno(E.ENOTDIR)
        path_str = self.path_of(found)
        if flags & O_PATH:
            return File(inode, flags, path_str)
        if isinstance(inode, DirInode):
            if flags & O_ACCMODE != O_RDONLY or flags & O_CREAT:
                raise Errno(E.EISDIR)
            return DirFile(inode, flags, path_str)
        if isinstance(inode, DeviceInode):
            return inode.opener(flags)
        f = RegularFile(inode, flags, path_str)
        if flags & O_TRUNC and flags & O_ACCMODE != O_RDONLY:
            f.truncate(0)
        return f

    def path_of(self, found: Lookup) -> str:
        base = found.parent.path()
        name = found.name if found.name not in (b".",) else b""
        return (base.rstrip(b"/") + b"/" + name).decode(errors="surrogateescape").rstrip("/") or "/"

    def mkdir(self, task, dirfd: int, path: bytes, mode: int) -> None:
        found = self.walk(task, self.start_dir(task, dirfd, path), path, follow=False)
        if found.inode is not None:
            raise Errno(E.EEXIST)
        found.parent.add(found.name, DirInode(mode & 0o7777 & ~task.umask))

    def unlink(self, task, dirfd: int, path: bytes, rmdir: bool) -> None:
        found = self.walk(task, self.start_dir(task, dirfd, path), path, follow=False)
        inode = found.inode
        if inode is None:
            raise Errno(E.ENOENT)
        if rmdir:
            if found.name == b".":
                raise Errno(E.EINVAL)
            if found.name == b"..":
                raise Errno(E.ENOTEMPTY)
            if not isinstance(inode, DirInode):
                raise Errno(E.ENOTDIR)
            if inode.children:
                raise Errno(E.ENOTEMPTY)
            if inode is self.root:
                raise Errno(E.EBUSY)
            found.parent.nlink -= 1
        elif isinstance(inode, DirInode):
            raise Errno(E.EISDIR)
        del found.parent.children[found.name]
        found.parent.touch()
        inode.nlink = 0 if rmdir else inode.nlink - 1

    def readlink(self, task, dirfd: int, path: bytes) -> bytes:
        inode = self.lookup(task, dirfd, path, follow=False)
        if not isinstance(inode, SymlinkInode):
            raise Errno(E.EINVAL)
        return inode.read_target(task)

    @staticmethod
    def is_dir(inode: Inode) -> bool:
        return S.S_ISDIR(inode.mode)
