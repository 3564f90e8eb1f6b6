"""An overlay: a read-only lower directory (the host's) under a memory upper.

What the program changes is copied up into memory first (copy-on-write);
what it deletes is hidden by a whiteout in the upper directory; a directory
deleted and made again is opaque (hides the lower one). The host is never
written. Used for --rootfs.

It is the sandbox's own root filesystem, as a container image is: the owners
stored below count as sandbox ids, under Linux's permission rules (the
lower's host ids are taken as they are, never mapped).
"""
import errno as E
import stat as S
import weakref

from sentry.errors import Errno
from sentry.vfs.inode import DirInode, FileSystem, Inode, RegularInode, SymlinkInode, xattr_space


def _copy_xattrs(low: Inode, up: Inode) -> None:
    """Copy-up takes the lower file's extended attributes (what the lower lets be read)."""
    try:
        names = low.listxattr()
    except Errno:
        return
    for name in names:
        try:
            value = low.getxattr(name)
        except Errno:
            continue
        if up.xattrs is None:
            up.xattrs = {}
        up.xattrs[name] = value
        if name.startswith(b"user."):
            up.fs.xattr_used += xattr_space(name, value)


class _Whiteout(Inode):
    """Marks a name deleted in the upper directory."""
    __slots__ = ()

    def __init__(self):
        super().__init__(S.S_IFCHR)


class OverlayFS(FileSystem):
    def __init__(self, lower_root: Inode):
        super().__init__("overlay", readonly=False, magic=0x794C7630)
        self.opaque = weakref.WeakSet()  # upper directories that hide their lower one
        self.root = OverlayInode(self, None, DirInode(lower_root.mode & 0o7777), lower_root, b"")


class OverlayInode(Inode):
    __slots__ = ("parent", "upper", "lower", "name")

    def __init__(self, fs: OverlayFS, parent, upper, lower, name: bytes):
        top = upper or lower
        Inode.__init__(self, top.mode, fs, top.uid, top.gid)
        self.ino = (lower or upper).ino
        self.parent, self.upper, self.lower, self.name = parent, upper, lower, name

    # --- attributes: the upper's once copied up, else the lower's -----------------------------
    def stat(self):
        return (self.upper or self.lower).stat()

    def owner(self):
        top = self.upper or self.lower
        return top.uid, top.gid  # stored ids, never a host mapping: the image's own

    def init_owner(self, uid, gid):
        self.upper.init_owner(uid, gid)
        self.uid, self.gid = uid, gid

    @property
    def size(self) -> int:
        return (self.upper or self.lower).size

    def readlink(self, task) -> bytes:
        return (self.upper or self.lower).readlink(task)

    # --- extended attributes: the upper's once copied up, else the lower's --------------------
    def has_xattrs(self) -> bool:
        return True

    def getxattr(self, name):
        return (self.upper or self.lower).getxattr(name)

    def listxattr(self):
        return (self.upper or self.lower).listxattr()

    def setxattr(self, name, value, flags):
        self.copy_up().setxattr(name, value, flags)

    # --- copy-up ----------------------------------------------------------------------------
    def copy_up(self) -> Inode:
        """The upper inode, made from the lower one (and the parents' upper dirs) if needed."""
        if self.upper is not None:
            return self.upper
        parent_upper = self.parent.copy_up()
        low = self.lower
        if low.is_dir():
            up = DirInode(low.mode & 0o7777)
        elif low.is_symlink():
            up = SymlinkInode(low.readlink(None))
        elif S.S_ISREG(low.mode):
            f = low.open(0, "")
            try:
                chunks, offset = [], 0
                while chunk := f.pread(1 << 24, offset):
                    chunks.append(bytes(chunk))
                    offset += len(chunk)
            finally:
                f.close()
            up = RegularInode(low.mode & 0o7777, b"".join(chunks))
        else:
            raise Errno(E.EPERM)
        st = low.stat()
        up.uid, up.gid, up.atime, up.mtime = st.uid, st.gid, st.atime, st.mtime
        _copy_xattrs(low, up)
        parent_upper.children.pop(self.name, None)
        parent_upper.add(self.name, up)
        self.upper = up
        return up

    def chmod(self, mode):
        self.copy_up().chmod(mode)
        self.mode = self.upper.mode

    def chown(self, uid, gid):
        up = self.copy_up()
        up.chown(uid, gid)
        self.mode, self.uid, self.gid = up.mode, up.uid, up.gid

    def set_times(self, atime, mtime):
        self.copy_up().set_times(atime, mtime)

    def truncate(self, length):
        self.copy_up().truncate(length)

    def open(self, flags, path):
        from sentry.vfs.file import O_ACCMODE, O_RDONLY
        if flags & O_ACCMODE != O_RDONLY:
            return self.copy_up().open(flags, path)
        return (self.upper or self.lower).open(flags, path)

    # --- directories ------------------------------------------------------------------------
    def _lower_visible(self) -> bool:
        return (self.lower is not None and self.lower.is_dir()
                and (self.upper is None or self.upper not in self.fs.opaque))

    def lookup(self, name):
        if not self.is_dir():
            raise Errno(E.ENOTDIR)
        up = self.upper.lookup(name) if self.upper is not None else None
        if isinstance(up, _Whiteout):
            return None
        low = self.lower.lookup(name) if self._lower_visible() else None
        if up is None and low is None:
            return None
        if up is not None and low is not None and (up.is_dir() != low.is_dir()):
            low = None
        return OverlayInode(self.fs, self, up, low, name)

    def entries(self):
        if not self.is_dir():
            raise Errno(E.ENOTDIR)
        out = {}
        if self._lower_visible():
            for name, ino, kind in self.lower.entries():
                out[name] = (name, ino, kind)
        if self.upper is not None:
            for name, child in self.upper.children.items():
                if isinstance(child, _Whiteout):
                    out.pop(name, None)
                else:
                    out[name] = (name, out[name][1] if name in out else child.ino, S.S_IFMT(child.mode))
        return list(out.values())

    def _make(self, name, make):
        if self.lookup(name) is not None:
            raise Errno(E.EEXIST)
        up = self.copy_up()
        was_whiteout = isinstance(up.children.pop(name, None), _Whiteout)
        child = make(up)
        if was_whiteout and child.is_dir():
            self.fs.opaque.add(child)  # a directory made where one was deleted hides the old one
        return OverlayInode(self.fs, self, child, None, name)

    def create(self, name, mode):
        return self._make(name, lambda up: up.create(name, mode))

    def mkdir(self, name, mode):
        return self._make(name, lambda up: up.mkdir(name, mode))

    def symlink(self, name, target):
        return self._make(name, lambda up: up.symlink(name, target))

    def link(self, name, inode):
        if not isinstance(inode, OverlayInode) or inode.fs is not self.fs:
            raise Errno(E.EXDEV)
        source = inode.copy_up()
        self._make(name, lambda up: (up.link(name, source), source)[1])

    def _remove(self, name, want_dir: bool):
        child = self.lookup(name)
        if child is None:
            raise Errno(E.ENOENT)
        if want_dir and not child.is_dir():
            raise Errno(E.ENOTDIR)
        if not want_dir and child.is_dir():
            raise Errno(E.EISDIR)
        if want_dir and child.entries():
            raise Errno(E.ENOTEMPTY)
        up = self.copy_up()
        if child.upper is not None:
            up.children.pop(name)
            if child.upper.is_dir():
                up.nlink -= 1
        if child.lower is not None:
            up.children[name] = _Whiteout()
        up.touch()

    def unlink(self, name):
        self._remove(name, False)

    def rmdir(self, name):
        self._remove(name, True)

    def mknod(self, name, mode):
        return self._make(name, lambda up: up.mknod(name, mode))

    def rename(self, name, new_dir, new_name, flags=0):  # RENAME_NOREPLACE: the VFS checked
        if not isinstance(new_dir, OverlayInode) or new_dir.fs is not self.fs:
            raise Errno(E.EXDEV)
        child = self.lookup(name)
        if child is None:
            raise Errno(E.ENOENT)
        if child.is_dir() and child.lower is not None:
            raise Errno(E.EXDEV)  # as overlayfs without redirect_dir: callers copy instead
        source = child.copy_up()
        target = new_dir.lookup(new_name)
        if target is not None:
            if target.is_dir() != source.is_dir():
                raise Errno(E.EISDIR if target.is_dir() else E.ENOTDIR)
            new_dir._remove(new_name, target.is_dir())
        new_up = new_dir.copy_up()
        if isinstance(new_up.children.get(new_name), _Whiteout):
            del new_up.children[new_name]
        self.upper.children.pop(name)
        if child.lower is not None:
            self.upper.children[name] = _Whiteout()
        new_up.add(new_name, source)
