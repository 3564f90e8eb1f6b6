"""Pipes: a buffer between processes with Linux's rules (pipe(7)).

The buffer is Linux's ring of page slots: 16 by default (64 KiB; F_SETPIPE_SZ
changes the count). A write first tops up the last page when the part of it
that is not a whole number of pages fits there (so small writes share a page),
then takes free slots a page at a time; a read frees a slot only once its page
is read to the end. So a write of at most PIPE_BUF bytes goes whole or waits
(atomic), a full pipe stays full after a partial read of its first page, and
poll's POLLOUT means a free slot, as on Linux. A read of an empty pipe waits
while a writer exists and returns 0 after the last writer is gone; a write
with no reader left is EPIPE (the caller sends SIGPIPE first). Waiting parks
the task on the pipe's queues; other tasks run meanwhile."""
import errno as E
import stat as S
from collections import deque

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_ACCMODE, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY, File
from sentry.vfs.inode import Inode

O_DIRECT = 0o40000  # a pipe's writer in packet mode (pipe2, F_SETFL)
PAGE = 4096
PACKET = PAGE + 1  # a page's end written in packet mode: never merged into, read as one packet
PIPE_BUF = 4096
DEFAULT_SIZE = 65536
MAX_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size
FIONREAD = 0x541B


class Pipe(Inode):
    """The pipe itself (what both ends' fstat shows): page slots, size, open ends, waiters."""
    __slots__ = ("pages", "count", "capacity", "readers", "writers", "can_read", "can_write",
                 "read_opens", "write_opens", "partner", "events")

    def __init__(self):
        super().__init__(S.S_IFIFO | 0o600)
        self.pages = deque()  # [unread bytes of the page, where its data ends in the page]
        self.count = 0        # bytes buffered (FIONREAD)
        self.capacity = DEFAULT_SIZE
        self.readers = self.writers = 0
        self.can_read = WaitQueue()   # readers wait for data or for the last writer to go
        self.can_write = WaitQueue()  # writers wait for room or for the last reader to go
        self.read_opens = self.write_opens = 0  # FIFO opens so far, by end (Linux's r/w_counter)
        self.partner = WaitQueue()    # FIFO openers wait for the other end
        self.events = 0               # data in, room made, an end closed: edge-triggered epoll counts these

    @property
    def size(self) -> int:
        return 0  # fstat of a pipe: Linux reports no size (FIONREAD tells what is buffered)

    def full(self) -> bool:
        """No free slot (what POLLOUT and a page-sized write look at)."""
        return len(self.pages) >= self.capacity // PAGE

    def read(self, size: int, nonblock: bool) -> bytes:
        """A read that meets a packet (PIPE_BUF_FLAG_PACKET) ends with it, the part of
        it that does not fit in size discarded."""
        if not self.count:
            if not self.writers or size == 0:
                return b""
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_read,))
        pages = self.pages
        out = bytearray()
        while pages and len(out) < size:
            data = pages[0][0]
            want = size - len(out)
            if pages[0][1] == PACKET:
                taken = data[:want]
                out += taken
                pages.popleft()
                self.count -= len(data) - len(taken)  # the rest of the packet is dropped
                break
            if want >= len(data):
                out += data
                pages.popleft()  # read to the end: the slot is free
            else:
                out += data[:want]
                del data[:want]
        self.count -= len(out)
        self.events += 1
        self.can_write.notify()
        return bytes(out)

    def unread(self, data: bytes) -> None:
        if data:
            self.pages.appendleft([bytearray(data), PAGE])  # never merged into
            self.count += len(data)

    def write(self, data, nonblock: bool, merge: bool = True, packet: bool = False) -> int:
        """Put what fits now, as Linux's pipe_write: the tail that is not a whole page
        into the last page if it fits there (merge: only at the start of a write()),
        then whole pages into free slots. A write of at most PIPE_BUF bytes goes whole
        or not at all. EAGAIN or a Wait when nothing fits. packet (the writer is in
        packet mode, O_DIRECT): no merging, each page a packet never merged into."""
        if not self.readers:
            raise Errno(E.EPIPE)
        n = len(data)
        if n == 0:
            return 0
        pages = self.pages
        done = 0
        chars = n & (PAGE - 1)
        if merge and chars and pages and not packet:
            last = pages[-1]
            if last[1] + chars <= PAGE:
                last[0] += data[:chars]
                last[1] += chars
                done = chars
        slots = self.capacity // PAGE
        while done < n and len(pages) < slots:
            piece = data[done:done + PAGE]
            pages.append([bytearray(piece), PACKET if packet else len(piece)])
            done += len(piece)
        if not done:
            if nonblock:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_write,))
        self.count += done
        self.events += 1
        self.can_read.notify()
        return done

    def set_size(self, size: int, max_size: int = MAX_SIZE) -> int:
        """F_SETPIPE_SZ; max_size is fs/pipe-max-size for the caller (unbounded with
        CAP_SYS_RESOURCE)."""
        if size > 1 << 31:
            raise Errno(E.EINVAL)
        if size > max_size:
            raise Errno(E.EPERM)
        size = max(PAGE, 1 << (max(size, 1) - 1).bit_length())
        if size // PAGE < len(self.pages):
            raise Errno(E.EBUSY)  # fewer slots than are in use
        self.capacity = size
        self.events += 1
        self.can_write.notify()
        return size

    def end_closed(self, reader: bool, writer: bool) -> None:
        self.readers -= reader
        self.writers -= writer
        if reader and not self.readers:
            self.events += 1
            self.can_write.notify()  # writers now get EPIPE
        if writer and not self.writers:
            self.events += 1
            self.can_read.notify()   # readers now get end of file


class PipeFile(File):
    """One open end of a pipe, or of a FIFO (then `inode` is the FIFO's own inode,
    which fstat shows, and `counted` says the open already counted this end)."""
    announces_changes = True  # can_read/can_write are notified at every change (sentry/epoll.py)

    def __init__(self, pipe: Pipe, flags: int, inode=None, path=None, counted=False):
        super().__init__(inode or pipe, flags, path or f"pipe:[{pipe.ino}]")
        self.pipe = pipe
        mode = flags & O_ACCMODE
        self.reads = mode in (O_RDONLY, O_RDWR)
        self.writes = mode in (O_WRONLY, O_RDWR)
        if not counted:
            pipe.readers += self.reads
            pipe.writers += self.writes

    def read(self, size: int) -> bytes:
        return self.pipe.read(size, bool(self.flags & O_NONBLOCK))

    def unread(self, data: bytes) -> None:
        self.pipe.unread(data)

    def write(self, data, merge: bool = True) -> int:
        return self.pipe.write(data, bool(self.flags & O_NONBLOCK), merge, bool(self.flags & O_DIRECT))

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            task.mm.write_u32(arg, self.pipe.count)
            return 0
        return super().ioctl(task, request, arg)

    def readiness(self) -> tuple[bool, bool, bool]:
        """(readable, writable, hung up) as poll sees them."""
        p = self.pipe
        return (bool(p.count) or not p.writers, not p.full() or not p.readers,
                not p.writers if self.reads else not p.readers)

    def close(self) -> None:
        if self.reads or self.writes:
            self.pipe.end_closed(self.reads, self.writes)
            self.reads = self.writes = False


def make_pipe(flags: int, owner=(0, 0)) -> tuple[PipeFile, PipeFile]:
    """pipe(2)'s two ends; owner: the creator's fs ids (reopening an end through
    /proc/PID/fd checks the pipe's 0600 against them)."""
    pipe = Pipe()
    pipe.uid, pipe.gid = owner
    nb = flags & O_NONBLOCK
    return PipeFile(pipe, O_RDONLY | nb), PipeFile(pipe, O_WRONLY | nb | flags & O_DIRECT)


def open_fifo(task, inode, flags: int, path: str) -> PipeFile:
    """open(2) of a FIFO, as Linux's fifo_open: each end counts itself at once; a
    reader (or writer) without O_NONBLOCK then waits until a writer (or reader)
    has opened; a non-blocking writer with no reader fails with ENXIO; O_RDWR
    never waits. Without a task (no one to park) a wait is EDEADLK."""
    pipe = inode.pipe
    mode = flags & O_ACCMODE
    nonblock = flags & O_NONBLOCK
    state = task.restart_state if task is not None else None
    if state is not None and state[0] is pipe:  # woken: did the partner come?
        _, reading, partner_opens = state
        task.restart_state = None
        if (pipe.write_opens if reading else pipe.read_opens) == partner_opens:
            task.restart_state = state
            raise Wait(queues=(pipe.partner,), on_interrupt=_forget_waiting_end)
        return PipeFile(pipe, flags, inode, path, counted=True)
    if mode == O_WRONLY and not pipe.readers and nonblock:
        raise Errno(E.ENXIO)
    f = PipeFile(pipe, flags, inode, path)
    pipe.read_opens += f.reads
    pipe.write_opens += f.writes
    pipe.partner.notify()
    waits = (mode == O_RDONLY and not pipe.writers and not nonblock
             or mode == O_WRONLY and not pipe.readers)
    if not waits:
        return f
    if task is None:
        f.close()
        raise Errno(E.EDEADLK)
    reading = mode == O_RDONLY
    task.restart_state = (pipe, reading, pipe.write_opens if reading else pipe.read_opens)
    f.reads = f.writes = False  # the end stays counted in the pipe while its opener waits
    raise Wait(queues=(pipe.partner,), on_interrupt=_forget_waiting_end)


def _forget_waiting_end(task) -> int:
    """A signal ended a FIFO open's wait: the end it counted goes (then EINTR or a restart)."""
    state = task.restart_state
    if state is not None:
        pipe, reading, _ = state
        pipe.end_closed(reading, not reading)
    return -512  # ERESTARTSYS
