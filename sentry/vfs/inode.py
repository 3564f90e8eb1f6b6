"""Inodes: the base every filesystem's inodes follow, and tmpfs's (memory) own.

An inode answers for one file object: its attributes (`stat()`), and, for a
directory, the names in it. Names are bytes, single components; the path
walk (sentry/vfs/__init__.py) is the only place that splits paths, follows
symlinks and crosses mounts, so no filesystem ever sees `..` or a `/`.
"""
import ctypes
import errno as E
import itertools
import os
import stat as S
import time

from sentry.errors import Errno
from sentry.vfs import budget as budgets, hostcalls
from sentry.vfs.budget import pages

_inos = itertools.count(2)

TMPFS_MAGIC = 0x01021994
ST_RDONLY, ST_VALID = 0x0001, 0x0020
# tmpfs's s_maxbytes (MAX_LFS_FILESIZE): what a memory file's size may reach; its bytes
# are bounded by the sandbox's budget (sentry/vfs/budget.py), a hole costs nothing.
MAX_MEMORY_FILE = (1 << 63) - 1
# A bytearray file that would grow by a hole of a page or more moves into a memfd first,
# where the host keeps the hole sparse (two ftruncates to 1 GiB cost nothing) and
# SEEK_HOLE finds it, as tmpfs's; so does one that has a whole page punched out.
SPARSE_GAP = 4096
SEEK_HOLE = 4
# memfd seals (fcntl F_ADD_SEALS); every tmpfs file starts sealed against sealing
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
F_SEAL_FUTURE_WRITE, F_SEAL_EXEC = 0x10, 0x20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x1, 0x2
XATTR_CREATE, XATTR_REPLACE = 1, 2
OVERLAY_MAGIC = 0x794C7630
XATTR_MAGICS = (TMPFS_MAGIC, OVERLAY_MAGIC)  # the filesystems that store extended attributes
BOGO_INODE_SIZE = 1024  # tmpfs's user.* xattr space: this much per inode it may hold


# FS_IOC_GETFLAGS/SETFLAGS attributes tmpfs keeps (SHMEM_FL_USER_MODIFIABLE)
FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL, FS_NOATIME_FL = 0x10, 0x20, 0x40, 0x80
TMPFS_FLAGS = FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL | FS_NOATIME_FL


def attr_flags(inode) -> int:
    """An inode's FS_*_FL attributes (none for inodes that keep none: host files)."""
    return getattr(inode, "iflags", 0)


def is_immutable(inode) -> bool:
    return bool(getattr(inode, "iflags", 0) & FS_IMMUTABLE_FL)


def is_append_only(inode) -> bool:
    return bool(getattr(inode, "iflags", 0) & FS_APPEND_FL)


def may_set_attributes(inode) -> None:
    """may_setattr: an immutable or append-only file's mode, owner and explicit times
    stay as they are (EPERM)."""
    if getattr(inode, "iflags", 0) & (FS_IMMUTABLE_FL | FS_APPEND_FL):
        raise Errno(E.EPERM)


def xattr_space(name: bytes, value) -> int:
    """simple_xattr_space: what one user.* attribute costs tmpfs."""
    return 48 + len(name) + 1 + (len(value) if value is not None else 0)


class StatFS:
    """What statfs(2) reports for a filesystem: the sandbox's own figures."""
    __slots__ = ("type", "bsize", "blocks", "bfree", "bavail", "files", "ffree", "namelen", "flags")

    def __init__(self, type, blocks, bfree, files, ffree, flags, bsize=4096, namelen=255):
        self.type, self.bsize, self.blocks, self.bfree, self.bavail = type, bsize, blocks, bfree, bfree
        self.files, self.ffree, self.namelen, self.flags = files, ffree, namelen, flags


class FileSystem:
    """What the inodes of one mount share: a device number, read-only-ness."""
    _devs = itertools.count(0x30)

    def __init__(self, name: str, readonly: bool = False, magic: int = TMPFS_MAGIC):
        self.name = name
        self.readonly = readonly
        self.magic = magic  # statfs f_type (TMPFS_MAGIC by default)
        self.dev = next(self._devs)
        self.xattr_used = 0  # bytes of user.* extended attributes held (charge_xattr)

    def check_writable(self) -> None:
        if self.readonly:
            raise Errno(E.EROFS)

    def charge_xattr(self, delta: int) -> None:
        """tmpfs's free_ispace: user.* attributes share the inode count's worth of space."""
        used = self.xattr_used + delta
        if delta > 0 and used > self.statfs().files * BOGO_INODE_SIZE:
            raise Errno(E.ENOSPC)
        self.xattr_used = used

    def statfs(self) -> StatFS:
        """The sandbox's own figures, never the host's: its memory budget's size and
        what is left of it (sentry/vfs/budget.py; 2 GiB, all free, outside a run);
        f_type and the read-only flag are what vary."""
        b = budgets.current()
        size, free = (b.limit, b.free()) if b is not None else (budgets.DEFAULT_TMPFS_SIZE,) * 2
        return StatFS(self.magic, blocks=size // 4096, bfree=free // 4096, files=1 << 20, ffree=1 << 20,
                      flags=ST_VALID | (ST_RDONLY if self.readonly else 0))


class Inode:
    """Base inode. Directory operations fail with ENOTDIR and attribute
    changes with EPERM unless a subclass provides them."""
    __slots__ = ("fs", "ino", "mode", "uid", "gid", "nlink", "atime", "mtime", "ctime", "rdev",
                 "xattrs", "iflags", "__weakref__")
    magic_link = False  # a /proc link that jumps to an object (openat2 RESOLVE_NO_MAGICLINKS)

    def __init__(self, mode: int, fs: FileSystem = None, uid=0, gid=0, rdev=0):
        self.fs = fs or MEMORY
        self.ino = next(_inos)
        self.mode = mode
        self.uid, self.gid = uid, gid
        self.nlink = 1
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.rdev = rdev
        self.xattrs = None  # name -> value once one is set (memory filesystems)
        self.iflags = 0     # FS_*_FL (FS_IOC_SETFLAGS): immutable, append-only, ...

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

    @property
    def blksize(self) -> int:
        """st_blksize: the filesystem's block size (an ext image's, as mkfs -b made it)."""
        return getattr(self.fs, "bsize", 4096) or 4096

    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    def is_symlink(self) -> bool:
        return S.S_ISLNK(self.mode)

    def owner(self):
        """(uid, gid) as the sandbox's permission checks see them (sentry/vfs/perm.py):
        the stored ids here; None for an id that is nobody in the sandbox."""
        return self.uid, self.gid

    def init_owner(self, uid: int, gid: int) -> None:
        """A new file's owner and group, given once by the VFS that made it."""
        self.uid, self.gid = uid, gid

    def touch(self) -> None:
        self.mtime = self.ctime = time.time_ns()

    def chmod(self, mode: int) -> None:
        self.fs.check_writable()
        self.mode = S.S_IFMT(self.mode) | (mode & 0o7777)
        self.ctime = time.time_ns()

    def chown(self, uid: int, gid: int) -> None:
        """uid/gid -1 leave it. As Linux, even root's chown of a non-directory drops
        set-user-ID, and set-group-ID when group execution is allowed."""
        self.fs.check_writable()
        if uid != -1:
            self.uid = uid & 0xFFFFFFFF
        if gid != -1:
            self.gid = gid & 0xFFFFFFFF
        if not self.is_dir():
            self.mode &= ~(S.S_ISUID | (S.S_ISGID if self.mode & S.S_IXGRP else 0))
        self.ctime = time.time_ns()

    def set_times(self, atime, mtime) -> None:
        """Each a time in ns, or None to leave it."""
        self.fs.check_writable()
        if atime is not None:
            self.atime = atime
        if mtime is not None:
            self.mtime = mtime
        self.ctime = time.time_ns()

    # --- extended attributes ----------------------------------------------------------------
    # A memory filesystem's (tmpfs's simple_xattr): names are whole ("user.x"), already checked
    # by the VFS (syscalls/xattr.py) for namespace and rights; other filesystems have none.
    def has_xattrs(self) -> bool:
        return self.fs.magic in XATTR_MAGICS

    def getxattr(self, name: bytes) -> bytes:
        if not self.has_xattrs():
            raise Errno(E.EOPNOTSUPP)
        value = (self.xattrs or {}).get(name)
        if value is None:
            raise Errno(E.ENODATA)
        return value

    def listxattr(self) -> list:
        """The names, in tmpfs's order (sorted: an rbtree by name)."""
        return sorted(self.xattrs) if self.xattrs else []

    def setxattr(self, name: bytes, value, flags: int) -> None:
        """value None removes (ENODATA if absent); XATTR_CREATE: EEXIST if present,
        XATTR_REPLACE: ENODATA if absent; user.* values count against the filesystem's
        space (ENOSPC), as tmpfs's."""
        if not self.has_xattrs():
            raise Errno(E.EOPNOTSUPP)
        self.fs.check_writable()
        table = self.xattrs
        old = table.get(name) if table else None
        if old is not None and flags & XATTR_CREATE:
            raise Errno(E.EEXIST)
        if old is None and (flags & XATTR_REPLACE or value is None):
            raise Errno(E.ENODATA)
        if name.startswith(b"user."):
            self.fs.charge_xattr(xattr_space(name, value) - (xattr_space(name, old) if old is not None else 0))
        if value is None:
            del table[name]
        else:
            if table is None:
                table = self.xattrs = {}
            table[name] = bytes(value)
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

    def mknod(self, name: bytes, mode: int):
        """A regular file, FIFO or socket inode named name (mode carries the type)."""
        raise Errno(E.ENOTDIR if not self.is_dir() else E.EPERM)

    def rename(self, name: bytes, new_dir, new_name: bytes, flags: int = 0) -> None:
        """Move name to new_dir/new_name, replacing what is there (the VFS has
        checked the kinds, emptiness aside). flags: RENAME_NOREPLACE, already
        checked by the VFS, for filesystems that can make it atomic."""
        raise Errno(E.ENOTDIR)

    def exchange(self, name: bytes, new_dir, new_name: bytes) -> None:
        """RENAME_EXCHANGE: swap two existing names atomically."""
        raise Errno(E.ENOTDIR if not self.is_dir() else E.EINVAL)

    def tmpfile(self, mode: int, linkable: bool = True):
        """O_TMPFILE: a regular file of this directory's filesystem that has no name
        (linkat may give it one if linkable)."""
        raise Errno(E.ENOTDIR if not self.is_dir() else E.EOPNOTSUPP)

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
MEMFD = FileSystem("memfd")  # memfd_create's files: no directory holds them (link: EXDEV)


def _bytearray_resize(buf: bytearray, size: int) -> None:
    """Grow buf to size without writing the new bytes (CPython's PyByteArray_Resize, with
    its amortised growth), where extend would first fill them with zeros."""
    if _resize(buf, size) != 0:
        raise Errno(E.ENOMEM)


_resize = ctypes.pythonapi.PyByteArray_Resize
_resize.argtypes, _resize.restype = (ctypes.py_object, ctypes.c_ssize_t), ctypes.c_int


class RegularInode(Inode):
    """A memory file. Its bytes are one bytearray until it is first mapped shared;
    then they move into a memfd (a `Backing`) that every mapping maps, and every
    read, write and truncate goes there, so all of them stay coherent (large reads
    go straight from it into the program's memory). The memfd's host size may run
    past the file's size (it covers what is mapped); bytes past the file's end are
    kept zero. (Big files that are not mapped stay bytearrays: a shmem read is
    slower than the sentry's copy out of its own memory, measured on hosts whose
    tmpfs has no huge pages.) A file that would grow by a hole of more than
    SPARSE_GAP moves into a memfd too: the host keeps its holes sparse.

    What the file holds is charged to the budget of the sandbox that made it
    (sentry/vfs/budget.py): its bytes in whole pages while a bytearray, the memfd's
    allocated blocks once there; given back when the inode goes."""
    __slots__ = ("data", "seals", "linkable", "backing", "_host_sized", "budget", "_charged")

    def __init__(self, mode=0o644, data=b"", fs=None, **kw):
        super().__init__(S.S_IFREG | mode, fs, **kw)
        self.budget = budgets.current()
        self._charged = 0     # bytes this file has charged to its budget
        if data and self.budget is not None:
            self.budget.reserve(pages(len(data)))
        self.data = bytearray(data)
        self.backing = None   # the memfd once the bytes live there (then data is None)
        self._size = 0        # the file's size once in a memfd
        self.seals = F_SEAL_SEAL
        self.linkable = False  # an O_TMPFILE file without O_EXCL may be given a name
        self._recharge()

    def __del__(self):
        b = getattr(self, "budget", None)
        if b is not None:
            b.used -= getattr(self, "_charged", 0)

    # --- what it costs ------------------------------------------------------------------
    def _recharge(self) -> None:
        """Charge the budget what the file holds now."""
        b = self.budget
        if b is None:
            return
        if self.data is not None:
            cost = pages(len(self.data))
        else:
            try:
                cost = os.fstat(self.backing.fd).st_blocks * 512
            except OSError:
                return
        b.used += cost - self._charged
        self._charged = cost

    def _reserve(self, offset: int, end: int) -> None:
        """ENOSPC unless storing [offset, end) fits the budget: a bytearray pays for its
        growth; a memfd for the pages spanned, unless none of them is a hole."""
        b = self.budget
        if b is None or end <= offset:
            return
        if self.data is not None:
            b.reserve(pages(end) - self._charged)
            return
        more = pages(end) - offset // budgets.PAGE * budgets.PAGE
        if b.used + more > b.limit and offset < self._size:
            try:
                if os.lseek(self.backing.fd, offset, SEEK_HOLE) >= end:
                    return  # every page is there already: an overwrite costs nothing
            except OSError:
                pass
        b.reserve(more)

    def _sparse_gap(self, end: int) -> None:
        """A bytearray file about to grow to end by a large hole moves into a memfd."""
        if self.data is not None and end - (len(self.data) + 4095) // 4096 * 4096 >= SPARSE_GAP:
            self.memfd()

    # --- where the bytes are ------------------------------------------------------------
    @property
    def _size(self) -> int:
        """The file's size once its bytes are in a memfd, whose host size may be larger."""
        return self._host_sized

    @_size.setter
    def _size(self, n: int) -> None:
        self._host_sized = n
        if self.backing is not None:
            self.backing.file_size = n  # what a shared mapping of it may reach (sentry/futex.py)

    def memfd(self):
        """The file's memfd Backing, the bytes moved there first if they are not yet."""
        if self.backing is None:
            from sentry.vfs.backing import new_memory
            b = new_memory("sentry-tmpfs", len(self.data))
            done, view = 0, memoryview(self.data)
            try:
                while done < len(view):
                    done += os.pwrite(b.fd, view[done:done + (16 << 20)], done)
            except OSError as e:
                raise Errno(e.errno) from None
            finally:
                view.release()
            self.backing = b
            self._size = len(self.data)
            self.data = None
            self._recharge()
        return self.backing

    def _zero_from(self, start: int) -> None:
        """Zero the memfd past `start` (bytes past the file's end a mapping may have stored)."""
        b = self.backing
        if start < b.host_size:
            try:
                hostcalls.fallocate(b.fd, 0x01 | 0x02, start, b.host_size - start)  # KEEP_SIZE|PUNCH_HOLE
            except OSError as e:
                raise Errno(e.errno) from None

    def _grow(self, end: int) -> None:
        """The memfd file grows to end bytes (zero from the old end)."""
        if end > self._size:
            self._zero_from(self._size)
            self.backing.cover(end)
            self._size = end

    def seek_hole(self, offset: int, whence: int) -> int:
        """lseek SEEK_DATA (3) or SEEK_HOLE (4) from offset, which is inside the file: a
        bytearray is data throughout; a memfd's holes are the host's (past the file's end,
        the host size a mapping may have grown to is the end's hole)."""
        if self.data is not None:
            return offset if whence == 3 else len(self.data)
        try:
            pos = os.lseek(self.backing.fd, offset, whence)
        except OSError as e:
            if e.errno == E.ENXIO and whence == 3:
                raise Errno(E.ENXIO) from None
            return self._size if whence == SEEK_HOLE else offset
        if pos >= self._size:
            if whence == 3:
                raise Errno(E.ENXIO)
            return self._size
        return pos

    def read(self, offset: int, size: int):
        """Up to size bytes from offset (a view, without copying, while in memory)."""
        if self.data is not None:
            return memoryview(self.data)[offset:offset + size]
        size = min(size, self._size - offset)
        if size <= 0:
            return b""
        try:
            return os.pread(self.backing.fd, size, offset)
        except OSError as e:
            raise Errno(e.errno) from None

    def write(self, offset: int, data) -> int:
        """Store data at offset, growing the file (zeros fill a gap)."""
        self.check_write(offset, len(data))
        end = offset + len(data)
        self._sparse_gap(offset)
        self._reserve(offset, end)
        if self.data is None:
            if offset > self._size:
                self._grow(offset)
            done, view = 0, memoryview(data)
            try:
                while done < len(view):
                    done += os.pwrite(self.backing.fd, view[done:], offset + done)
            except OSError as e:
                raise Errno(e.errno) from None
            if end > self._size:
                self._size = end
                self.backing.host_size = max(self.backing.host_size, end)
        else:
            buf = self.data
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))
            if offset == len(buf):
                buf += data  # appending: amortised growth, where a slice assignment reallocates
            else:
                buf[offset:offset + len(data)] = data
        self._recharge()
        self.touch()
        return len(data)

    def write_with(self, offset: int, size: int, fill):
        """Store size bytes at offset that fill(view) copies straight into the file's own
        buffer (a large write(2): the program's bytes land in place, no bytes object in
        between); None while the bytes live in a memfd (the caller writes the usual way)."""
        if self.data is None:
            return None
        self.check_write(offset, size)
        self._sparse_gap(offset)
        if self.data is None:
            return None
        self._reserve(offset, offset + size)
        buf = self.data
        old, end = len(buf), offset + size
        if offset > old:
            buf.extend(bytes(offset - old))  # the gap reads as zeros
        if end > len(buf):
            _bytearray_resize(buf, end)  # uninitialised: fill writes every new byte
        view = memoryview(buf)[offset:end]
        try:
            fill(view)
        except BaseException:
            view.release()
            if end > old:
                del buf[old:]
            raise
        view.release()
        self._recharge()
        self.touch()
        return size

    def check_write(self, offset: int, length: int) -> None:
        """May length bytes be written at offset (seals, the memory file limit)?"""
        if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
            raise Errno(E.EPERM)
        end = offset + length
        if end > self.size:
            if self.seals & F_SEAL_GROW:
                raise Errno(E.EPERM)
            if end > MAX_MEMORY_FILE:
                raise Errno(E.EFBIG)

    def chmod(self, mode: int) -> None:
        if self.seals & F_SEAL_EXEC and (self.mode ^ mode) & 0o111:
            raise Errno(E.EPERM)
        super().chmod(mode)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        """Mode 0 or KEEP_SIZE (memory is always allocated), PUNCH_HOLE|KEEP_SIZE
        (zeroes; no holes in memory); the VFS rejected other modes."""
        if mode not in (0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE):
            raise Errno(E.EOPNOTSUPP)  # as Linux's tmpfs
        self.fs.check_writable()
        end = offset + length
        size = self.size
        if mode & FALLOC_FL_PUNCH_HOLE:
            if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
                raise Errno(E.EPERM)
            stop = min(end, size)
            if self.data is not None and (stop & -4096) - ((offset + 4095) & -4096) >= 4096:
                self.memfd()  # a whole page goes: a hole, as tmpfs's
            if offset < stop:
                if self.data is not None:
                    self.data[offset:stop] = bytes(stop - offset)
                else:
                    try:
                        hostcalls.fallocate(self.backing.fd, 0x01 | 0x02, offset, stop - offset)
                    except OSError as e:
                        raise Errno(e.errno) from None
                    self._recharge()
                self.touch()
            return
        if mode & FALLOC_FL_KEEP_SIZE or end <= size:
            return
        if self.seals & F_SEAL_GROW:
            raise Errno(E.EPERM)
        if end > MAX_MEMORY_FILE:
            raise Errno(E.ENOSPC)
        self._resize(end, allocate=True)
        self.touch()

    def _write_zeros(self, start: int, end: int) -> None:
        zeros = bytes(min(end - start, 1 << 20))
        try:
            while start < end:
                start += os.pwrite(self.backing.fd, zeros[:end - start], start)
        except OSError as e:
            raise Errno(e.errno) from None

    def _resize(self, length: int, allocate: bool = False) -> None:
        """The file's size becomes length; growth is a hole (truncate), or pages that are
        there (fallocate: allocate, charged)."""
        self._sparse_gap(length)
        if self.data is not None:
            if length < len(self.data):
                del self.data[length:]
            else:
                self._reserve(len(self.data), length)
                self.data.extend(bytes(length - len(self.data)))
        elif length > self._size:
            old = self._size
            if allocate:
                self._reserve(old, length)
            self._grow(length)
            if allocate:  # zeros written, not the host's fallocate: its pages would read as holes to
                self._write_zeros(old, length)  # SEEK_HOLE, and a write there seem to cost more
        else:
            self._size = length
            self._zero_from(length)  # the memfd keeps its host size: mappings past the end stay valid
        self._recharge()

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self._size

    @property
    def blocks(self) -> int:
        """512-byte blocks held: whole pages, as tmpfs counts; a memfd's holes hold none."""
        if self.data is not None:
            return pages(len(self.data)) // 512
        try:
            return os.fstat(self.backing.fd).st_blocks
        except OSError:
            return 0

    def open(self, flags, path):
        from sentry.vfs.file import RegularFile
        return RegularFile(self, flags, path)

    def truncate(self, length: int) -> None:
        self.fs.check_writable()
        size = self.size
        if length < size:
            if self.seals & F_SEAL_SHRINK:
                raise Errno(E.EPERM)
        elif length > size:
            if self.seals & F_SEAL_GROW:
                raise Errno(E.EPERM)
            if length > MAX_MEMORY_FILE:
                raise Errno(E.EFBIG)
        if length != size:
            self._resize(length)
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

    def mknod(self, name, mode):
        kind = S.S_IFMT(mode)
        if kind == S.S_IFREG:
            return self.create(name, mode & 0o7777)
        if kind == S.S_IFIFO:
            return self._new(name, FifoInode(mode & 0o7777, fs=self.fs))
        if kind == S.S_IFSOCK:
            return self._new(name, Inode(mode, fs=self.fs))
        raise Errno(E.EPERM)

    def tmpfile(self, mode, linkable=True):
        self.fs.check_writable()
        inode = RegularInode(mode & 0o7777, fs=self.fs)
        inode.nlink = 0
        inode.linkable = linkable
        return inode

    def exchange(self, name, new_dir, new_name):
        self.fs.check_writable()
        if not isinstance(new_dir, DirInode) or new_dir.fs is not self.fs:
            raise Errno(E.EXDEV)
        a, b = self.children.get(name), new_dir.children.get(new_name)
        if a is None or b is None:
            raise Errno(E.ENOENT)
        self.children[name], new_dir.children[new_name] = b, a
        if new_dir is not self and a.is_dir() != b.is_dir():
            moved = 1 if a.is_dir() else -1  # a directory went from self to new_dir
            self.nlink -= moved
            new_dir.nlink += moved
        now = time.time_ns()
        for inode in (a, b):
            inode.ctime = now
        self.touch()
        new_dir.touch()

    def rename(self, name, new_dir, new_name, flags=0):
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
            if flags & 1:  # RENAME_NOREPLACE
                raise Errno(E.EEXIST)
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


class FifoInode(Inode):
    """A named pipe made by mknod: its pipe (sentry/vfs/pipe.py) lives here, shared
    by every open of it."""
    __slots__ = ("pipe",)

    def __init__(self, mode=0o644, fs=None, **kw):
        super().__init__(S.S_IFIFO | mode, fs, **kw)
        from sentry.vfs.pipe import Pipe
        self.pipe = Pipe()

    def open(self, flags, path, task=None):
        from sentry.vfs.pipe import open_fifo
        return open_fifo(task, self, flags, path)


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
    magic_link = True

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
