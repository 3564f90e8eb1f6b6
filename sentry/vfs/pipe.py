"""Pipes: a buffer between processes with Linux's rules (pipe(7)).

64 KiB by default (F_SETPIPE_SZ changes it), writes of at most PIPE_BUF bytes
are atomic, a read of an empty pipe waits while a writer exists and returns
0 after the last writer is gone, a write with no reader left is EPIPE (the
caller sends SIGPIPE first). Waiting parks the task on the pipe's queues;
other tasks run meanwhile."""
import errno as E
import stat as S

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, File
from sentry.vfs.inode import Inode

PAGE = 4096
PIPE_BUF = 4096
DEFAULT_SIZE = 65536
MAX_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size
FIONREAD = 0x541B


class Pipe(Inode):
    """The pipe itself (what both ends' fstat shows): buffer, size, open ends, waiters."""
    __slots__ = ("buf", "capacity", "readers", "writers", "can_read", "can_write")

    def __init__(self):
        super().__init__(S.S_IFIFO | 0o600)
        self.buf = bytearray()
        self.capacity = DEFAULT_SIZE
        self.readers = self.writers = 0
        self.can_read = WaitQueue()   # readers wait for data or for the last writer to go
        self.can_write = WaitQueue()  # writers wait for room or for the last reader to go

    @property
    def size(self) -> int:
        return len(self.buf)

    def read(self, size: int, nonblock: bool) -> bytes:
        buf = self.buf
        if not buf:
            if not self.writers or size == 0:
                return b""
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_read,))
        out = bytes(buf[:size])
        del buf[:size]
        self.can_write.notify()
        return out

    def unread(self, data: bytes) -> None:
        self.buf[:0] = data

    def write(self, data, nonblock: bool) -> int:
        """Put what fits now (all of a write of at most PIPE_BUF bytes, or none of
        it); EAGAIN or a Wait when nothing fits."""
        if not self.readers:
            raise Errno(E.EPIPE)
        n = len(data)
        if n == 0:
            return 0
        room = self.capacity - len(self.buf)
        if n <= PIPE_BUF and room < n:
            room = 0  # a small write goes whole or not at all
        if room <= 0:
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_write,))
        take = min(room, n)
        self.buf += data[:take]
        self.can_read.notify()
        return take

    def set_size(self, size: int) -> int:
        if size > MAX_SIZE:
            raise Errno(E.EPERM)
        size = max(PAGE, 1 << (max(size, 1) - 1).bit_length())
        if size < len(self.buf):
            raise Errno(E.EBUSY)
        self.capacity = size
        self.can_write.notify()
        return size

    def end_closed(self, reader: bool, writer: bool) -> None:
        self.readers -= reader
        self.writers -= writer
        if reader and not self.readers:
            self.can_write.notify()  # writers now get EPIPE
        if writer and not self.writers:
            self.can_read.notify()   # readers now get end of file


class PipeFile(File):
    """One open end of a pipe."""

    def __init__(self, pipe: Pipe, flags: int):
        super().__init__(pipe, flags, f"pipe:[{pipe.ino}]")
        mode = flags & O_ACCMODE
        self.reads = mode in (O_RDONLY, O_RDWR)
        self.writes = mode in (O_WRONLY, O_RDWR)
        pipe.readers += self.reads
        pipe.writers += self.writes

    def read(self, size: int) -> bytes:
        return self.inode.read(size, bool(self.flags & O_NONBLOCK))

    def unread(self, data: bytes) -> None:
        self.inode.unread(data)

    def write(self, data) -> int:
        return self.inode.write(data, bool(self.flags & O_NONBLOCK))

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            task.mm.write_u32(arg, len(self.inode.buf))
            return 0
        return super().ioctl(task, request, arg)

    def readiness(self) -> tuple[bool, bool, bool]:
        """(readable, writable, hung up) as poll sees them."""
        p = self.inode
        return (bool(p.buf) or not p.writers, p.capacity - len(p.buf) >= PIPE_BUF or not p.readers,
                not p.writers if self.reads else not p.readers)

    def close(self) -> None:
        if self.reads or self.writes:
            self.inode.end_closed(self.reads, self.writes)
            self.reads = self.writes = False


def make_pipe(flags: int) -> tuple[PipeFile, PipeFile]:
    pipe = Pipe()
    nb = flags & O_NONBLOCK
    return PipeFile(pipe, O_RDONLY | nb), PipeFile(pipe, O_WRONLY | nb)
