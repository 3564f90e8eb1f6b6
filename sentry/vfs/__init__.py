"""The sandbox's filesystem view: a mount table over filesystems, and the one
path walk every file syscall goes through.

A place in the tree is a `Loc`: the tuple of (name, inode) frames from the
root. `..` pops a frame, so it can never leave the root; a symlink's target is
walked again from the root or from the link's directory, inside the same
view; a mount is entered when the walk reaches its path. Filesystems only ever
see single names. Paths are bytes, as in Linux.
"""
import errno as E
import os

from sentry.errors import Errno
from sentry.vfs.file import (O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY,
                             O_TMPFILE, O_TRUNC, DirFile, File)
from sentry.vfs.inode import DeviceInode, DirInode, FileSystem, Inode, RegularInode, TaskLinkInode

MAX_SYMLINKS = 40
NAME_MAX = 255
PATH_MAX = 4096
AT_FDCWD = -100


class Found:
    """Where a walk ended: the directory holding the last name (`parent`, a
    Loc), the name, and the inode if it exists (`loc` is its own place)."""
    __slots__ = ("parent", "name", "inode", "loc")

    def __init__(self, parent, name, inode, loc):
        self.parent, self.name, self.inode, self.loc = parent, name, inode, loc

    @property
    def dir(self) -> Inode:
        return self.parent[-1][1]


def loc_path(loc) -> bytes:
    return b"/" + b"/".join(name for name, _ in loc[1:])


class VFS:
    def __init__(self, random_bytes):
        from sentry.vfs.devices import make_devices
        root = DirInode()
        self.root_loc = ((b"", root),)
        self.mounts: dict[bytes, Inode] = {}
        root.add(b"tmp", DirInode(0o1777))
        make_devices(root.add(b"dev", DirInode()), random_bytes)
        proc = root.add(b"proc", DirInode(0o555))
        self_dir = proc.add(b"self", DirInode(0o555))
        self_dir.add(b"exe", TaskLinkInode(lambda task: task.exe_path.encode()))

    @property
    def root(self) -> Inode:
        return self.root_loc[0][1]

    # --- building the view --------------------------------------------------------------
    def makedirs(self, path: bytes) -> DirInode:
        """The memory directory at path, created with its parents (setting up only)."""
        d = self.root
        for part in [p for p in path.split(b"/") if p]:
            nxt = d.lookup(part)
            if nxt is None:
                nxt = d.add(part, DirInode())
            if not isinstance(nxt, DirInode):
                raise Errno(E.ENOTDIR)
            d = nxt
        return d

    def add_file(self, path: str, data: bytes, mode=0o755) -> RegularInode:
        """Place a memory file at an absolute path, creating directories."""
        parent, _, name = path.encode().rpartition(b"/")
        return self.makedirs(parent).add(name, RegularInode(mode, data))

    def add_symlink(self, path: bytes, target: bytes) -> None:
        from sentry.vfs.inode import SymlinkInode
        parent, _, name = path.rpartition(b"/")
        self.makedirs(parent).add(name, SymlinkInode(target))

    def mount(self, path: bytes, root: Inode) -> None:
        """Make `root` appear at path (an absolute guest path; its directory is created)."""
        path = b"/" + b"/".join(p for p in path.split(b"/") if p)
        if path != b"/":
            self.makedirs(path)
            self.mounts[path] = root
        else:
            self.root_loc = ((b"", root),)

    # --- the walk -----------------------------------------------------------------------
    def start(self, task, dirfd: int, path: bytes):
        """The Loc a path is walked from: root, cwd (AT_FDCWD) or a directory fd's place."""
        if path.startswith(b"/"):
            return self.root_loc
        if dirfd == AT_FDCWD:
            return task.cwd
        f = task.fds.get(dirfd)
        if not f.inode.is_dir():
            raise Errno(E.ENOTDIR)
        return f.loc

    def walk(self, task, start, path: bytes, follow: bool = True, _depth=None) -> Found:
        if not path:
            raise Errno(E.ENOENT)
        if len(path) >= PATH_MAX:
            raise Errno(E.ENAMETOOLONG)
        depth = _depth if _depth is not None else [0]
        stack = [self.root_loc[0]] if path.startswith(b"/") else list(start)
        must_be_dir = path.endswith(b"/")
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            return Found(tuple(stack[:-1]) or tuple(stack), b".", stack[-1][1], tuple(stack))
        last_i = len(parts) - 1
        for i, name in enumerate(parts):
            d = stack[-1][1]
            if not d.is_dir():
                raise Errno(E.ENOTDIR)
            if len(name) > NAME_MAX:
                raise Errno(E.ENAMETOOLONG)
            if name == b"." or name == b"..":
                if name == b".." and len(stack) > 1:
                    stack.pop()
                if i == last_i:
                    here = tuple(stack)
                    return Found(here[:-1] or here, name, here[-1][1], here)
                continue
            child = d.lookup(name)
            if child is None:
                if i == last_i:
                    return Found(tuple(stack), name, None, None)
                raise Errno(E.ENOENT)
            if self.mounts and child.is_dir():
                child = self.mounts.get(loc_path(stack).rstrip(b"/") + b"/" + name, child)
            if child.is_symlink() and (i < last_i or follow or must_be_dir):
                depth[0] += 1
                if depth[0] > MAX_SYMLINKS:
                    raise Errno(E.ELOOP)
                target = self.walk(task, tuple(stack), child.readlink(task), True, depth)
                if i == last_i:
                    if must_be_dir and target.inode is not None and not target.inode.is_dir():
                        raise Errno(E.ENOTDIR)
                    return target
                if target.inode is None:
                    raise Errno(E.ENOENT)
                stack = list(target.loc)
                continue
            stack.append((name, child))
            if i == last_i:
                if must_be_dir and not child.is_dir():
                    raise Errno(E.ENOTDIR)
                here = tuple(stack)
                return Found(here[:-1], name, child, here)
        raise AssertionError("unreachable")

    def find(self, task, dirfd: int, path: bytes, follow=True) -> Found:
        return self.walk(task, self.start(task, dirfd, path), path, follow)

    def lookup(self, task, dirfd: int, path: bytes, follow=True) -> Inode:
        found = self.find(task, dirfd, path, follow)
        if found.inode is None:
            raise Errno(E.ENOENT)
        return found.inode

    def lookup_loc(self, task, dirfd: int, path: bytes):
        """The place of an existing directory (chdir, --workdir)."""
        found = self.find(task, dirfd, path)
        if found.inode is None:
            raise Errno(E.ENOENT)
        if not found.inode.is_dir():
            raise Errno(E.ENOTDIR)
        return found.loc

    # --- operations -----------------------------------------------------------------------
    def open(self, task, dirfd: int, path: bytes, flags: int, mode: int) -> File:
        if flags & O_TMPFILE == O_TMPFILE:
            raise Errno(E.EOPNOTSUPP)
        nofollow = flags & O_NOFOLLOW or flags & O_CREAT and flags & O_EXCL
        found = self.find(task, dirfd, path, follow=not nofollow)
        inode = found.inode
        if inode is None:
            if not flags & O_CREAT:
                raise Errno(E.ENOENT)
            if flags & O_DIRECTORY:
                raise Errno(E.EINVAL)
            inode = found.dir.create(found.name, mode & 0o7777 & ~task.umask)
            found = Found(found.parent, found.name, inode, found.parent + ((found.name, inode),))
        elif flags & O_CREAT and flags & O_EXCL:
            raise Errno(E.EEXIST)
        path_str = os.fsdecode(loc_path(found.loc))
        if inode.is_symlink():
            if flags & O_PATH:
                return File(inode, flags, path_str)
            raise Errno(E.ELOOP)
        if flags & O_DIRECTORY and not inode.is_dir():
            raise Errno(E.ENOTDIR)
        if flags & O_PATH:
            f = File(inode, flags, path_str)
            f.loc = found.loc
            return f
        if inode.is_dir():
            if flags & O_ACCMODE != O_RDONLY or flags & O_CREAT:
                raise Errno(E.EISDIR)
            parent = found.loc[-2][1] if len(found.loc) > 1 else inode
            f = DirFile(inode, flags, path_str, parent.ino)
            f.loc = found.loc
            return f
        if flags & O_ACCMODE != O_RDONLY and not isinstance(inode, DeviceInode):
            inode.fs.check_writable()
        f = inode.open(flags, path_str)
        if flags & O_TRUNC and flags & O_ACCMODE != O_RDONLY and not isinstance(inode, DeviceInode):
            inode.truncate(0)
        return f

    def mkdir(self, task, dirfd: int, path: bytes, mode: int) -> None:
        found = self.find(task, dirfd, path, follow=False)
        if found.inode is not None:
            raise Errno(E.EEXIST)
        found.dir.mkdir(found.name, mode & 0o7777 & ~task.umask)

    def unlink(self, task, dirfd: int, path: bytes, rmdir: bool) -> None:
        found = self.find(task, dirfd, path, follow=False)
        if found.inode is None:
            raise Errno(E.ENOENT)
        if rmdir:
            if found.name == b".":
                raise Errno(E.EINVAL)
            if found.name == b"..":
                raise Errno(E.ENOTEMPTY)
            if not found.inode.is_dir():
                raise Errno(E.ENOTDIR)
            if len(found.loc) == 1 or loc_path(found.loc) in self.mounts:
                raise Errno(E.EBUSY)
            found.dir.rmdir(found.name)
        else:
            if found.inode.is_dir():
                raise Errno(E.EISDIR)
            found.dir.unlink(found.name)

    def readlink(self, task, dirfd: int, path: bytes) -> bytes:
        inode = self.lookup(task, dirfd, path, follow=False)
        if not inode.is_symlink():
            raise Errno(E.EINVAL)
        return inode.readlink(task)


__all__ = ["VFS", "Found", "FileSystem", "loc_path"]
