"""Open files: what a file descriptor points at. Each kind answers the
operations it supports; the rest fail as Linux fails them."""
import errno as E
import os
import select
import stat as S
import time

from sentry.errors import Errno
from sentry.sched import Wait
from sentry.vfs.inode import Inode

O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK = 0o100, 0o200, 0o400, 0o1000, 0o2000, 0o4000
O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC, O_PATH, O_TMPFILE = 0o200000, 0o400000, 0o2000000, 0o10000000, 0o20000000
O_LARGEFILE, O_NOATIME = 0o100000, 0o1000000
SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4
DT_TYPES = {S.S_IFREG: 8, S.S_IFDIR: 4, S.S_IFLNK: 10, S.S_IFCHR: 2, S.S_IFBLK: 6, S.S_IFIFO: 1,
            S.S_IFSOCK: 12}


class File:
    """Base open file. `flags` are the open flags that stay with the description."""
    lock_table = None  # the sentry.vfs.locks.LockTable holding an OFD or flock lock of this file
    waits_for_room = False  # a stream whose full buffer parks a writer (pipes, host pipes)
    atime_on_read = True  # a read moves its inode's atime (file_accessed); a socket's never does
    notify_parent = None  # (dev, ino) of the directory it was opened in, for its watchers (vfs/notify.py)

    def __init__(self, inode: Inode, flags: int, path: str = ""):
        self.inode = inode
        self.flags = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)
        self.path = path
        self.loc = None  # for directories: their place in the tree (sentry.vfs.Loc)

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE in (O_RDONLY, O_RDWR) and not self.flags & O_PATH

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE in (O_WRONLY, O_RDWR) and not self.flags & O_PATH

    def read(self, size: int) -> bytes:
        raise Errno(E.EINVAL)

    def write(self, data: bytes) -> int:
        raise Errno(E.EINVAL)

    def unread(self, data: bytes) -> None:
        """Give back the tail of what read() returned (the program's buffer faulted)."""

    def pread(self, size: int, offset: int) -> bytes:
        raise Errno(E.ESPIPE)

    def pwrite(self, data: bytes, offset: int) -> int:
        raise Errno(E.ESPIPE)

    @property
    def positional(self) -> bool:
        """Linux's FMODE_PREAD|FMODE_PWRITE: not a stream (pipes, sockets, terminals and
        anonymous files are), so a positioned call reaches the file's own checks."""
        return type(self).pread is not File.pread

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(E.ESPIPE)

    def getdents(self, size: int, pack) -> bytes:
        raise Errno(E.ENOTDIR)

    def ioctl(self, task, request: int, arg: int) -> int:
        raise Errno(E.ENOTTY)

    def mmap_bytes(self, offset: int, length: int, prot: int, shared: bool) -> bytes:
        raise Errno(E.ENODEV)

    def backing(self):
        """The host descriptor holding the file's pages, for MAP_SHARED
        (sentry/vfs/backing.py); ENODEV for what cannot be mapped."""
        raise Errno(E.ENODEV)

    def read_backing(self):
        """(Backing, the file's size, or None where the host file knows it) when a
        read may go straight from a host descriptor into guest memory, else None."""
        return None

    def stat_inode(self) -> Inode:
        return self.inode

    def fsync(self, datasync: bool) -> None:
        raise Errno(E.EINVAL)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        raise Errno(E.ENODEV)

    def close(self) -> None:
        pass


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
CAP_LINUX_IMMUTABLE = 9


def attribute_ioctl(file, task, request: int, arg: int) -> int:
    """FS_IOC_GETFLAGS/SETFLAGS of a memory file or directory (tmpfs's fileattr): the
    attributes tmpfs keeps, set by the owner (or CAP_FOWNER), immutable and append-only
    only with CAP_LINUX_IMMUTABLE; other bits EOPNOTSUPP. ENOTTY for other requests."""
    from sentry.vfs.inode import FS_APPEND_FL, FS_IMMUTABLE_FL, TMPFS_FLAGS, DirInode, RegularInode, attr_flags
    inode = file.inode
    if request not in (FS_IOC_GETFLAGS, FS_IOC_SETFLAGS) or not isinstance(inode, (RegularInode, DirInode)):
        raise Errno(E.ENOTTY)
    if request == FS_IOC_GETFLAGS:
        task.mm.write(arg, attr_flags(inode).to_bytes(4, "little"))
        return 0
    from sentry import caps
    from sentry.vfs import perm
    flags = int.from_bytes(task.mm.read(arg, 4), "little")
    inode.fs.check_writable()  # mnt_want_write_file
    if not perm.owns(task, inode):
        raise Errno(E.EPERM)
    if flags & ~TMPFS_FLAGS:
        raise Errno(E.EOPNOTSUPP)
    old = attr_flags(inode)
    if (old ^ flags) & (FS_IMMUTABLE_FL | FS_APPEND_FL) and not caps.has(task, CAP_LINUX_IMMUTABLE):
        raise Errno(E.EPERM)
    inode.iflags = flags
    inode.ctime = time.time_ns()
    return 0


class RegularFile(File):
    """An open tmpfs file: bytes in memory, with an offset."""

    def ioctl(self, task, request: int, arg: int) -> int:
        return attribute_ioctl(self, task, request, arg)

    def __init__(self, inode, flags, path=""):
        super().__init__(inode, flags, path)
        self.offset = 0

    def read(self, size: int) -> bytes:
        data = self.pread(size, self.offset)
        self.offset += len(data)
        return data

    def unread(self, data: bytes) -> None:
        self.offset -= len(data)

    def pread(self, size: int, offset: int):
        """The file's bytes (a view without copying while they are in memory: valid
        until the file next changes)."""
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.inode.read(offset, size)

    def write(self, data: bytes) -> int:
        if self.flags & O_APPEND:
            self.offset = self.inode.size
        n = self.pwrite(data, self.offset)
        self.offset += n
        return n

    def pwrite(self, data: bytes, offset: int) -> int:
        if offset < 0:
            raise Errno(E.EINVAL)
        if not data:
            return 0
        return self.inode.write(offset, data)

    def write_with(self, pos: int, size: int, fill):
        """Store size bytes at pos that fill(view) copies straight into the file's own
        buffer (RegularInode.write_with); None where it cannot. The caller moves the
        file position."""
        write_with = getattr(self.inode, "write_with", None)
        if write_with is None:
            return None
        if pos < 0:
            raise Errno(E.EINVAL)
        return write_with(pos, size, fill)

    def seek(self, offset: int, whence: int) -> int:
        size = self.inode.size
        if whence == SEEK_SET:
            pos = offset
        elif whence == SEEK_CUR:
            pos = self.offset + offset
        elif whence == SEEK_END:
            pos = size + offset
        elif whence in (SEEK_DATA, SEEK_HOLE):
            if offset < 0 or offset >= size:
                raise Errno(E.ENXIO)
            holes = getattr(self.inode, "seek_hole", None)  # a sparse memory file knows its holes
            pos = holes(offset, whence) if holes is not None else offset if whence == SEEK_DATA else size
        else:
            raise Errno(E.EINVAL)
        if pos < 0:
            raise Errno(E.EINVAL)
        self.offset = pos
        return pos

    def mmap_bytes(self, offset, length, prot, shared):
        return bytes(self.pread(length, offset))

    def backing(self):
        return self.inode.memfd()  # from now on the file's bytes live there

    def read_backing(self):
        b = self.inode.backing
        return None if b is None else (b, self.inode.size)

    def truncate(self, length: int) -> None:
        self.inode.truncate(length)

    def fsync(self, datasync: bool) -> None:
        pass

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        self.inode.fallocate(mode, offset, length)


class HostFile(RegularFile):
    """An open file of a host directory the user lent: reads and writes go to the host fd."""

    def __init__(self, inode, flags, path, host_fd: int):
        self.host_fd = host_fd
        super().__init__(inode, flags, path)
        self._backing = None

    # The file position lives in the host open file, which the traced process's copies
    # share: a read the ptrace platform lets run on the host moves it (pass_through).
    @property
    def offset(self) -> int:
        return os.lseek(self.host_fd, 0, os.SEEK_CUR) if self.host_fd is not None else 0

    @offset.setter
    def offset(self, value: int) -> None:
        if self.host_fd is not None:
            try:
                os.lseek(self.host_fd, value, os.SEEK_SET)
            except OSError as e:
                raise Errno(e.errno) from None

    def pread(self, size: int, offset: int) -> bytes:
        if offset < 0:
            raise Errno(E.EINVAL)
        try:
            return os.pread(self.host_fd, size, offset)
        except OSError as e:
            raise Errno(e.errno) from None

    def pwrite(self, data: bytes, offset: int) -> int:
        if offset < 0:
            raise Errno(E.EINVAL)
        try:
            return os.pwrite(self.host_fd, data, offset)
        except OSError as e:
            raise Errno(e.errno) from None

    def _host(self, fn, *args):
        try:
            return fn(self.host_fd, *args)
        except OSError as e:
            raise Errno(e.errno) from None

    def seek(self, offset: int, whence: int) -> int:
        if whence in (SEEK_DATA, SEEK_HOLE):  # the host file knows its holes
            self.offset = self._host(os.lseek, offset, whence)
            return self.offset
        return super().seek(offset, whence)

    def backing(self):
        """A dup of the host fd (the guest's access mode: O_RDONLY on a read-only
        mount), kept open while anything maps it, after this file is closed too."""
        if self._backing is None:
            if self.host_fd is None:
                raise Errno(E.EBADF)
            from sentry.vfs.backing import of_host_fd
            self._backing = of_host_fd(self.host_fd, self.writable)
        return self._backing

    def read_backing(self):
        return (self.backing(), None) if self.host_fd is not None else None

    def write_backing(self):
        """The Backing a large write may go to straight from guest memory."""
        return self.backing() if self.host_fd is not None and self.writable else None

    def truncate(self, length: int) -> None:
        self._host(os.ftruncate, length)
        from sentry.vfs.backing import host_file_shrunk
        host_file_shrunk(self.host_fd)

    def fsync(self, datasync: bool) -> None:
        self._host(os.fdatasync if datasync else os.fsync)

    def fallocate(self, mode: int, offset: int, length: int) -> None:
        from sentry.vfs.hostcalls import fallocate
        self._host(fallocate, mode, offset, length)
        if mode & 0x08:  # FALLOC_FL_COLLAPSE_RANGE: the file got shorter
            from sentry.vfs.backing import host_file_shrunk
            host_file_shrunk(self.host_fd)

    def close(self) -> None:
        self._backing = None  # closed once nothing maps it either
        if self.host_fd is not None:
            os.close(self.host_fd)
            self.host_fd = None


class DirFile(File):
    """An open directory: getdents64 walks a snapshot of its entries taken at
    the first read (and again after a rewind)."""

    def __init__(self, inode, flags, path="", parent_ino: int = 0):
        super().__init__(inode, flags, path)
        self.offset = 0
        self.parent_ino = parent_ino or inode.ino
        self.snapshot = None

    def read(self, size):
        raise Errno(E.EISDIR)

    def ioctl(self, task, request: int, arg: int) -> int:
        return attribute_ioctl(self, task, request, arg)

    def pread(self, size, offset):
        raise Errno(E.EISDIR)

    def write(self, data):
        raise Errno(E.EBADF)

    def fsync(self, datasync):
        pass

    def seek(self, offset, whence):
        if whence != SEEK_SET or offset < 0:
            raise Errno(E.EINVAL)
        self.offset = offset
        if offset == 0:
            self.snapshot = None
        return offset

    def getdents(self, size: int, pack) -> bytes:
        """Entries from self.offset that fit in size bytes; pack(ino, off, type, name) -> bytes."""
        if self.inode.nlink == 0:
            raise Errno(E.ENOENT)  # removed while open: Linux's IS_DEADDIR
        if self.snapshot is None:
            self.snapshot = ([(b".", self.inode.ino, S.S_IFDIR), (b"..", self.parent_ino, S.S_IFDIR)]
                             + sorted(self.inode.entries()))
        entries = self.snapshot
        out = bytearray()
        while self.offset < len(entries):
            name, ino, kind = entries[self.offset]
            rec = pack(ino, self.offset + 1, DT_TYPES.get(kind, 0), name)
            if len(out) + len(rec) > size:
                if not out:
                    raise Errno(E.EINVAL)
                break
            out += rec
            self.offset += 1
        return bytes(out)


class HostStream(File):
    """One of the sentry's own stdio descriptors, lent to the guest as a stream.
    Only read/write go through; fstat reports its type (pipe, file). A host
    terminal is lent as the sandbox's terminal instead (sentry/vfs/tty.py)."""

    waits_for_room = True  # a full host pipe parks the writer (syscalls/pipes.py pipe_write)

    def __init__(self, inode, host_fd: int, flags: int):
        super().__init__(inode, flags, f"pipe:[{inode.ino}]")
        self.host_fd = host_fd
        self.out_fd = host_fd  # what writes go to
        self.pushback = b""
        try:
            kind = S.S_IFMT(os.fstat(host_fd).st_mode)
            self.inode.mode = kind | 0o620
        except OSError:
            kind = 0
        if self.writable and kind in (S.S_IFIFO, S.S_IFCHR):
            # A write to a full host pipe must not stop the whole sandbox. The fd's own
            # description is shared with whoever started the sentry, so it stays as it is:
            # a second description of the same pipe or terminal, non-blocking, takes the writes.
            try:
                self.out_fd = os.open(f"/proc/self/fd/{host_fd}",
                                      os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            except OSError:
                pass

    def unread(self, data: bytes) -> None:
        self.pushback = data + self.pushback

    def read(self, size: int) -> bytes:
        if self.pushback:
            out, self.pushback = self.pushback[:size], self.pushback[size:]
            return out
        if not select.select([self.host_fd], [], [], 0)[0]:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise Wait(fd=self.host_fd, events=1)
        try:
            return os.read(self.host_fd, size)
        except OSError as e:
            raise Errno(e.errno) from None

    def write(self, data: bytes) -> int:
        try:
            return os.write(self.out_fd, data)
        except BlockingIOError:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN) from None
            raise Wait(fd=self.out_fd, events=2) from None
        except BrokenPipeError:
            raise Errno(E.EPIPE) from None
        except OSError as e:
            raise Errno(e.errno) from None

    def close(self) -> None:
        if self.out_fd != self.host_fd:
            os.close(self.out_fd)
            self.out_fd = self.host_fd



class OutputCap:
    """What the output streams of one run may capture together (Limits.max_output; None:
    no cap), and whether a write reached it."""
    __slots__ = ("limit", "used", "hit", "streams")

    def __init__(self, limit: int | None):
        self.limit = limit
        self.used = 0
        self.hit = False
        self.streams = []  # the BufferStreams that share it, in the order made (stdout, stderr)

    def room(self, n: int) -> int:
        """How much of n bytes may still be kept: n, fewer (the cap reached), or EPIPE
        when none is left: past the cap the streams act as a pipe whose reader is gone."""
        if self.limit is None:
            return n
        left = self.limit - self.used
        if left < n:
            self.hit = True
            if left <= 0:
                raise Errno(E.EPIPE)  # the caller raises SIGPIPE with it (syscalls/io.py)
        return min(n, left)


class BufferStream(File):
    """Guest stdio held in memory (the embedding API): stdin from bytes, output captured up
    to its OutputCap."""

    def __init__(self, inode, flags: int, data: bytes = b"", cap: OutputCap | None = None):
        super().__init__(inode, flags, f"pipe:[{inode.ino}]")
        self.inode.mode = S.S_IFIFO | 0o600
        self.data = bytearray(data)
        self.pos = 0
        self.cap = cap

    def read(self, size: int) -> bytes:
        out = bytes(self.data[self.pos:self.pos + size])
        self.pos += len(out)
        return out

    def unread(self, data: bytes) -> None:
        self.pos -= len(data)

    def write(self, data: bytes) -> int:
        cap = self.cap
        if cap is not None:
            n = cap.room(len(data))  # a short write at the cap, EPIPE past it
            cap.used += n
            data = data[:n]
        self.data += data
        return len(data)
