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
import stat as S

from sentry.errors import Errno
from sentry.vfs import mounts, notify, perm, writeaccess
from sentry.vfs.file import (O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_NOATIME, O_NOFOLLOW, O_PATH,
                             O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC, O_WRONLY, DirFile, File)
from sentry.vfs.perm import MAY_READ, MAY_WRITE
from sentry.vfs.inode import DeviceInode, DirInode, FileSystem, Inode, RegularInode, TaskLinkInode, is_append_only
from sentry.vfs.locks import LockTable

MAX_SYMLINKS = 40
NAME_MAX = 255
PATH_MAX = 4096
AT_FDCWD = -100


# openat2's RESOLVE_* flags, which the walk honours
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_CACHED = 0x08, 0x10, 0x20
RESOLVE_SCOPED = RESOLVE_BENEATH | RESOLVE_IN_ROOT
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
DOTS = (b".", b"..", b"/")  # last components that name no entry (b"/": the path was all slashes)


class Found:
    """Where a walk ended: the directory holding the last name (`parent`, a
    Loc), the name, and the inode if it exists (`loc` is its own place);
    `slash` says the path ended with a slash."""
    __slots__ = ("parent", "name", "inode", "loc", "slash")

    def __init__(self, parent, name, inode, loc, slash=False):
        self.parent, self.name, self.inode, self.loc, self.slash = parent, name, inode, loc, slash

    @property
    def dir(self) -> Inode:
        return self.parent[-1][1]


def loc_path(loc) -> bytes:
    return b"/" + b"/".join(name for name, _ in loc[1:])


class VFS:
    def __init__(self, random_bytes, kernel=None, root=None):
        """root: the tree to start from (an overlay for --rootfs); a fresh memory one by default."""
        from sentry.vfs.devices import make_devfs
        from sentry.vfs.procfs import ProcFS
        self.root_loc = ((b"", root or DirInode()),)
        self.random_bytes, self.kernel = random_bytes, kernel  # what a view's steps fill files from
        self.mounts: dict[bytes, Inode] = {}
        self.locks = LockTable()  # fcntl and flock locks, and leases, of this sandbox
        self.notify = notify.Limits()  # /proc/sys/fs/inotify and what each user holds
        if root is None:
            self.root.add(b"tmp", DirInode(0o1777))
        else:
            self.mount(b"/tmp", DirInode(0o1777))  # a fresh memory /tmp over the root's own
        from sentry.vfs.tty import make_devpts
        dev, shm = make_devfs(random_bytes, kernel)
        self.devices = dev.fs.devices  # the sandbox's devices by number (mknod's nodes open them)
        self.devices.vfs = self
        self.mount(b"/dev", dev)
        self.mount(b"/dev/shm", shm)
        self.mount(b"/dev/pts", make_devpts())
        self.mount(b"/proc", ProcFS(self, kernel).root)  # kernel: the tasks /proc shows

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
                nxt = d.mkdir(part, 0o755)
            if not nxt.is_dir():
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
    def start(self, task, dirfd: int, path: bytes, resolve: int = 0):
        """The Loc a path is walked from: root, cwd (AT_FDCWD) or a directory fd's place
        (for RESOLVE_IN_ROOT, also an absolute path's)."""
        if path.startswith(b"/") and not resolve & RESOLVE_IN_ROOT:
            return self.root_of(task)
        if dirfd == AT_FDCWD:
            return task.cwd
        f = task.fds.get(dirfd)
        if not f.inode.is_dir():
            raise Errno(E.ENOTDIR)
        return f.loc

    def root_of(self, task):
        """Where task's absolute paths start: its root after chroot(2), else the sandbox's."""
        fs = getattr(task, "fs", None)
        root = getattr(fs, "root", None)
        return self.root_loc if root is None else root

    def walk(self, task, start, path: bytes, follow: bool = True, *, resolve: int = 0, exact: bool = False,
             _scope=None, _depth=None) -> Found:
        """Walk path from start (a Loc).

        follow: a symlink in the last component is followed (a trailing slash follows it too).
        exact: the last component is looked up and given as it is, never followed, a trailing
            slash only noted in Found.slash: for the calls that act on a name itself (mkdir,
            mknod, link, symlink, unlink, rmdir, rename).
        resolve: openat2's RESOLVE_* flags. BENEATH and IN_ROOT make start the root of the
            walk (`..` stops there, or is EXDEV for BENEATH, as are absolute paths and links);
            NO_XDEV refuses to cross from one filesystem to another; NO_SYMLINKS and
            NO_MAGICLINKS refuse to follow links (ELOOP).
        """
        if not path:
            raise Errno(E.ENOENT)
        if len(path) >= PATH_MAX:
            raise Errno(E.ENAMETOOLONG)
        depth = _depth if _depth is not None else [0]
        scope = _scope if _scope is not None else (tuple(start) if resolve & RESOLVE_SCOPED else None)
        if path.startswith(b"/"):
            if resolve & RESOLVE_BENEATH:
                raise Errno(E.EXDEV)
            if scope is not None:
                stack = list(scope)
            else:
                # NO_XDEV: an absolute path argument may start anywhere; an absolute link may not jump
                if resolve & RESOLVE_NO_XDEV and _depth is not None and start[-1][1].fs is not self.root.fs:
                    raise Errno(E.EXDEV)
                stack = list(self.root_of(task))
        else:
            stack = list(start)
        floor = len(scope) if scope is not None else 1  # `..` never pops below this
        fs = getattr(task, "fs", None)
        chroot = getattr(fs, "root", None)  # a chroot's root: `..` stays there (from inside it)
        must_be_dir = path.endswith(b"/")
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            here = tuple(stack)
            return Found(here[:-1] or here, b"/", here[-1][1], here, True)
        last_i = len(parts) - 1
        for i, name in enumerate(parts):
            d = stack[-1][1]
            if not d.is_dir():
                raise Errno(E.ENOTDIR)
            perm.may_search(task, d)
            if len(name) > NAME_MAX:
                raise Errno(E.ENAMETOOLONG)
            if name == b"." or name == b"..":
                if name == b"..":
                    if chroot is not None and len(stack) == len(chroot) and _same(stack[-1][1], chroot[-1][1]):
                        pass
                    elif len(stack) > floor:
                        gone = stack.pop()
                        if resolve & RESOLVE_NO_XDEV and gone[1].fs is not stack[-1][1].fs:
                            raise Errno(E.EXDEV)
                    elif resolve & RESOLVE_BENEATH:
                        raise Errno(E.EXDEV)
                if i == last_i:
                    here = tuple(stack)
                    return Found(here[:-1] or here, name, here[-1][1], here, must_be_dir)
                continue
            child = d.lookup(name)
            if self.mounts and (child is None or not child.is_symlink()):
                # a mount point need not exist in the filesystem it is mounted on (nested mounts)
                place = loc_path(stack).rstrip(b"/") + b"/" + name
                mounted = self.mounts.get(place)
                if mounted is not None:
                    child = mounted
                    mounts.entered(self, place)
            if child is None:
                if i == last_i:
                    return Found(tuple(stack), name, None, None, must_be_dir)
                raise Errno(E.ENOENT)
            if resolve & RESOLVE_NO_XDEV and child.fs is not d.fs:
                raise Errno(E.EXDEV)
            if child.is_symlink() and (i < last_i or not exact and (follow or must_be_dir)):
                depth[0] += 1
                if depth[0] > MAX_SYMLINKS:
                    raise Errno(E.ELOOP)
                if resolve & RESOLVE_NO_SYMLINKS:
                    raise Errno(E.ELOOP)
                if mounts.no_symfollow(self, loc_path(stack)):  # a link on a nosymfollow mount
                    raise Errno(E.ELOOP)
                jump = getattr(child, "jump", None)  # a magic link (/proc/self/fd/N): straight to its object
                if resolve and self._is_magic(task, child):
                    if resolve & RESOLVE_NO_MAGICLINKS:
                        raise Errno(E.ELOOP)
                    if scope is not None:
                        raise Errno(E.EXDEV)
                loc = jump(task, tuple(stack)) if jump is not None else None
                if loc is not None and resolve & RESOLVE_NO_XDEV and loc[-1][1].fs is not d.fs:
                    raise Errno(E.EXDEV)
                target = (Found(loc[:-1] or loc, loc[-1][0], loc[-1][1], loc) if loc is not None
                          else self.walk(task, tuple(stack), child.readlink(task), True, resolve=resolve,
                                         _scope=scope, _depth=depth))
                if i == last_i:
                    if must_be_dir and target.inode is not None and not target.inode.is_dir():
                        raise Errno(E.ENOTDIR)
                    target.slash = target.slash or must_be_dir
                    return target
                if target.inode is None:
                    raise Errno(E.ENOENT)
                stack = list(target.loc)
                continue
            stack.append((name, child))
            if i == last_i:
                if must_be_dir and not exact and not child.is_dir():
                    raise Errno(E.ENOTDIR)
                here = tuple(stack)
                return Found(here[:-1], name, child, here, must_be_dir)
        raise AssertionError("unreachable")

    @staticmethod
    def _is_magic(task, link) -> bool:
        """A magic link jumps to an object rather than naming a path: /proc/PID/fd/N,
        exe, cwd, root. /proc/self and /proc/thread-self name relative paths: plain links."""
        if link.magic_link:
            return True
        if getattr(link, "jump", None) is None:
            return False
        text = link.readlink(task)
        return text.startswith(b"/") or b":" in text

    def find(self, task, dirfd: int, path: bytes, follow=True, *, resolve: int = 0, exact: bool = False) -> Found:
        return self.walk(task, self.start(task, dirfd, path, resolve), path, follow, resolve=resolve, exact=exact)

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
    def open(self, task, dirfd: int, path: bytes, flags: int, mode: int, resolve: int = 0) -> File:
        if flags & O_CREAT and flags & O_DIRECTORY:
            raise Errno(E.EINVAL)  # never a regular file made by O_DIRECTORY (Linux 6.4)
        if flags & O_TMPFILE == O_TMPFILE:
            return self._open_tmpfile(task, dirfd, path, flags, mode, resolve)
        nofollow = flags & O_NOFOLLOW or flags & O_CREAT and flags & O_EXCL
        found = self.find(task, dirfd, path, follow=not nofollow, resolve=resolve)
        inode = found.inode
        created = inode is None
        if created:
            if not flags & O_CREAT:
                raise Errno(E.ENOENT)
            if found.slash:
                raise Errno(E.EISDIR)
            perm.may_create(task, found.dir)
            inode = self._make(task, found.dir, S.S_IFREG | (mode & 0o7777),
                               lambda m: found.dir.create(found.name, m), self._umask(task))
            if notify.marks:
                notify.created(found.dir, found.name, inode)
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
            if flags & O_ACCMODE != O_RDONLY or flags & (O_CREAT | O_TRUNC):  # O_TRUNC asks to write
                raise Errno(E.EISDIR)
            self._may_open(task, inode, flags, MAY_READ)
            parent = found.loc[-2][1] if len(found.loc) > 1 else inode
            f = self._opened(DirFile(inode, flags, path_str, parent.ino), found)
            f.loc = found.loc
            if notify.marks:
                notify.opened(f)
            return f
        truncate = flags & O_TRUNC and S.S_ISREG(inode.mode)  # even O_RDONLY|O_TRUNC truncates, as Linux
        if not created:  # a file this call made opens as asked, whatever its mode
            self._may_open(task, inode, flags, _ACC_MODE[flags & O_ACCMODE] | (MAY_WRITE if flags & O_TRUNC else 0))
            if self.locks.leases and task is not None:
                self.locks.break_lease(task, inode, flags)  # may wait for the holder (fcntl F_SETLEASE)
        held = writeaccess.open_for_write(task, inode) if flags & O_ACCMODE in (1, 2) else None  # ETXTBSY
        try:
            f = inode.open(flags, path_str, task) if S.S_ISFIFO(inode.mode) and inode.fs is not None \
                and hasattr(inode, "pipe") else inode.open(flags, path_str)
        except BaseException:
            writeaccess.abandoned(held)
            raise
        writeaccess.opened(f, held)
        if truncate:
            inode.truncate(0)
        f = self._opened(f, found)
        if notify.marks:
            notify.opened(f)
            if truncate and not created:  # after IN_OPEN, as Linux 6.x (a file this call made is not truncated)
                notify.file_changed(f, notify.MODIFY)
        return f

    @staticmethod
    def _opened(f, found):
        """A file just opened keeps the directory it was found in, whose watches hear of it
        (none for a filesystem's root: Linux reports no parent across a mount)."""
        d = found.dir
        if len(found.loc) > 1 and d.fs is found.inode.fs:
            f.notify_parent = (d.fs.dev, d.ino)
        return f

    @staticmethod
    def _may_open(task, inode, flags: int, want: int) -> None:
        """may_open's permission part: the access the flags ask for (O_TRUNC writes);
        O_NOATIME is the owner's."""
        perm.permission(task, inode, want)
        if is_append_only(inode) and (flags & O_ACCMODE and not flags & 0o2000 or flags & O_TRUNC):  # O_APPEND
            raise Errno(E.EPERM)  # an append-only file is written at its end only
        if flags & O_NOATIME and not perm.owns(task, inode):
            raise Errno(E.EPERM)

    @staticmethod
    def _umask(task) -> int:
        return task.umask if task is not None else 0o022

    @staticmethod
    def _make(task, directory, mode: int, make, umask: int = 0):
        """A new file made by make(mode without its type) in directory: owned as Linux's
        inode_init_owner says and its mode less the umask (perm.new_owner)."""
        uid, gid, mode = perm.new_owner(task, directory, mode, umask)
        inode = make(mode & 0o7777)
        inode.init_owner(uid, gid)
        return inode

    def _open_tmpfile(self, task, dirfd, path, flags, mode, resolve) -> File:
        """O_TMPFILE: a file with no name in the directory path names (linkat can
        give it one later, unless O_EXCL)."""
        if flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
            raise Errno(E.EINVAL)
        found = self.find(task, dirfd, path, resolve=resolve)
        if found.inode is None:
            raise Errno(E.ENOENT)
        if not found.inode.is_dir():
            raise Errno(E.ENOTDIR)
        perm.may_create(task, found.inode)
        inode = self._make(task, found.inode, S.S_IFREG | (mode & 0o7777),
                           lambda m: found.inode.tmpfile(m, not flags & O_EXCL), self._umask(task))
        name = b"%s/#%d (deleted)" % (loc_path(found.loc).rstrip(b"/"), inode.ino)
        return inode.open(flags & ~O_TMPFILE, os.fsdecode(name))

    def create_at(self, task, dirfd: int, path: bytes, want_dir: bool = False) -> Found:
        """Where a new name goes (Linux's filename_create): EEXIST if it exists, ENOENT for
        a trailing slash unless a directory is made, EROFS on a read-only mount."""
        found = self.find(task, dirfd, path, exact=True)
        if found.name in DOTS or found.inode is not None:
            raise Errno(E.EEXIST)
        if found.slash and not want_dir:
            raise Errno(E.ENOENT)
        found.dir.fs.check_writable()
        return found

    def mkdir(self, task, dirfd: int, path: bytes, mode: int) -> None:
        found = self.create_at(task, dirfd, path, want_dir=True)
        perm.may_create(task, found.dir)
        inode = self._make(task, found.dir, S.S_IFDIR | (mode & 0o1777),
                           lambda m: found.dir.mkdir(found.name, m), self._umask(task))
        if notify.marks:
            notify.created(found.dir, found.name, inode)

    def mknod(self, task, dirfd: int, path: bytes, mode: int, dev: int = 0) -> None:
        """A regular file, FIFO, socket, or a device node (sentry/vfs/devices.py: it opens
        the sandbox's own device of those numbers)."""
        kind = S.S_IFMT(mode) or S.S_IFREG
        if kind == S.S_IFDIR:
            raise Errno(E.EPERM)
        if kind not in (S.S_IFREG, S.S_IFCHR, S.S_IFBLK, S.S_IFIFO, S.S_IFSOCK):
            raise Errno(E.EINVAL)
        found = self.create_at(task, dirfd, path)
        perm.may_create(task, found.dir)
        if kind in (S.S_IFCHR, S.S_IFBLK):
            from sentry.vfs.devices import make_node
            make = lambda m: make_node(task, self.devices, found.dir, found.name, kind | m, dev)  # noqa: E731
        else:
            make = lambda m: found.dir.mknod(found.name, kind | m)  # noqa: E731
        inode = self._make(task, found.dir, kind | (mode & 0o7777), make, self._umask(task))
        if notify.marks:
            notify.created(found.dir, found.name, inode)

    def symlink(self, task, target: bytes, dirfd: int, path: bytes) -> None:
        found = self.create_at(task, dirfd, path)
        perm.may_create(task, found.dir)
        inode = self._make(task, found.dir, S.S_IFLNK | 0o777, lambda m: found.dir.symlink(found.name, target))
        if notify.marks:
            notify.created(found.dir, found.name, inode)

    def link(self, task, inode: Inode, dirfd: int, path: bytes) -> None:
        """A new name for inode (found by the caller: linkat's source)."""
        found = self.create_at(task, dirfd, path)
        if inode.fs is not found.dir.fs:
            raise Errno(E.EXDEV)
        perm.may_link(task, inode)
        perm.may_create(task, found.dir)
        if inode.is_dir():
            raise Errno(E.EPERM)
        if inode.stat().nlink == 0 and not getattr(inode, "linkable", True):
            raise Errno(E.ENOENT)
        found.dir.link(found.name, inode)
        if notify.marks:
            notify.linked(found.dir, found.name, inode)

    def unlink(self, task, dirfd: int, path: bytes, rmdir: bool) -> None:
        found = self.find(task, dirfd, path, exact=True)
        name = found.name
        if rmdir and name in DOTS:
            raise Errno({b".": E.EINVAL, b"..": E.ENOTEMPTY, b"/": E.EBUSY}[name])
        if not rmdir and name in DOTS:
            raise Errno(E.EISDIR)
        found.dir.fs.check_writable()  # EROFS comes before the name is looked at
        inode = found.inode
        if inode is None:
            raise Errno(E.ENOENT)
        if not rmdir and found.slash:
            raise Errno(E.EISDIR if inode.is_dir() else E.ENOTDIR)
        perm.may_delete(task, found.dir, inode, rmdir)
        if rmdir:
            if loc_path(found.loc) in self.mounts:
                raise Errno(E.EBUSY)
            found.dir.rmdir(name)
        else:
            found.dir.unlink(name)
        if notify.marks:
            notify.removed(task, found.dir, name, inode, rmdir)

    def rename(self, task, olddirfd: int, oldpath: bytes, newdirfd: int, newpath: bytes, flags: int = 0) -> None:
        """rename(2)/renameat2(2) with RENAME_NOREPLACE and RENAME_EXCHANGE, in Linux's
        order of checks."""
        old = self.find(task, olddirfd, oldpath, exact=True)
        new = self.find(task, newdirfd, newpath, exact=True)
        old_dir = old.inode if old.name in DOTS else old.dir
        new_dir = new.inode if new.name in DOTS else new.dir
        if old_dir.fs is not new_dir.fs:
            raise Errno(E.EXDEV)
        if old.name in DOTS:
            raise Errno(E.EBUSY)
        if new.name in DOTS:
            raise Errno(E.EEXIST if flags & RENAME_NOREPLACE else E.EBUSY)
        old_dir.fs.check_writable()
        src, dst = old.inode, new.inode
        if src is None:
            raise Errno(E.ENOENT)
        if flags & RENAME_NOREPLACE and dst is not None:
            raise Errno(E.EEXIST)
        exchange = flags & RENAME_EXCHANGE
        if exchange:
            if dst is None:
                raise Errno(E.ENOENT)
            if new.slash and not dst.is_dir():
                raise Errno(E.ENOTDIR)
        if not src.is_dir() and (old.slash or new.slash and not exchange):
            raise Errno(E.ENOTDIR)
        if not _same(old_dir, new_dir):
            if src.is_dir() and any(_same(src, inode) for _, inode in new.parent):
                raise Errno(E.EINVAL)  # a directory into itself
            if dst is not None and any(_same(dst, inode) for _, inode in old.parent):
                raise Errno(E.EINVAL if exchange else E.ENOTEMPTY)  # over one of its own parents
        if dst is not None and _same(src, dst):
            return  # two names of one file: nothing to do
        perm.may_delete(task, old_dir, src, src.is_dir())
        if dst is None:
            perm.may_create(task, new_dir)
        else:  # the kinds: EISDIR or ENOTDIR when one replaces the other
            perm.may_delete(task, new_dir, dst, dst.is_dir() if exchange else src.is_dir())
        if not _same(old_dir, new_dir):  # a directory that moves has its `..` rewritten
            if src.is_dir():
                perm.permission(task, src, MAY_WRITE)
            if exchange and dst.is_dir():
                perm.permission(task, dst, MAY_WRITE)
        for found in (old, new):
            if found.inode is not None and self._holds_mount(found.loc):
                raise Errno(E.EBUSY)
        if exchange:
            old_dir.exchange(old.name, new_dir, new.name)
        else:
            old_dir.rename(old.name, new_dir, new.name, *((RENAME_NOREPLACE,) if flags & RENAME_NOREPLACE else ()))
        if notify.marks:
            notify.moved(task, old_dir, old.name, new_dir, new.name, src, None if exchange else dst)
            if exchange:
                notify.moved(task, new_dir, new.name, old_dir, old.name, dst, None)

    def _holds_mount(self, loc) -> bool:
        """Is loc a mount point, or a directory with one below it? (Mounts are kept by
        path, so such a directory may not move.)"""
        if len(loc) == 1:
            return True
        path = loc_path(loc)
        return any(m == path or m.startswith(path + b"/") for m in self.mounts)

    def readlink(self, task, dirfd: int, path: bytes) -> bytes:
        inode = self.lookup(task, dirfd, path, follow=False)
        if not inode.is_symlink():
            raise Errno(E.EINVAL)
        return inode.readlink(task)


_ACC_MODE = (MAY_READ, MAY_WRITE, MAY_READ | MAY_WRITE, MAY_READ | MAY_WRITE)  # by O_ACCMODE


def _same(a: Inode, b: Inode) -> bool:
    """One file object? (Host inodes are made afresh at each lookup.)"""
    return a is b or (a.fs is b.fs and a.ino == b.ino)


__all__ = ["VFS", "Found", "FileSystem", "loc_path"]
