"""splice(2), tee(2) and vmsplice(2): moving bytes to and from a pipe.

Linux moves page references; the sentry copies the bytes, through the same
sentry objects read() and write() use (a pipe's page slots, files, sockets),
with Linux's rules: one side must be a pipe (EINVAL), a pipe takes no offset
(ESPIPE), an output opened O_APPEND is EINVAL, what goes into a pipe is cut to
its free page slots, an empty input pipe waits (EAGAIN with SPLICE_F_NONBLOCK or
O_NONBLOCK, 0 once its writers are gone) and a full output pipe waits (EPIPE and
SIGPIPE once its readers are gone). Nothing taken from an input is lost when
the output cannot take it: it goes back."""
import errno as E
from signal import SIGPIPE

from sentry.errors import Errno
from sentry.sched import Wait
from sentry.signals import send
from sentry.vfs import notify
from sentry.vfs.file import O_APPEND, O_NONBLOCK
from sentry.vfs.pipe import PAGE, PipeFile
from syscalls.abi import MAX_RW_COUNT, read_iovec, s32, s64
from syscalls.io import _deliver, _gather, fsize_room
from syscalls.paths import file_of
from syscalls.registry import PARTIAL, syscall

SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT = 1, 2, 4, 8
SPLICE_F_ALL = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT


def _pipe_of(f):
    return f.pipe if isinstance(f, PipeFile) else None


def _free_bytes(pipe) -> int:
    """Room in a pipe for spliced data: its free page slots."""
    return max(0, pipe.capacity // PAGE - len(pipe.pages)) * PAGE


def _wait_for_space(t, pipe, nonblock: bool) -> None:
    """Linux's wait_for_space: EPIPE (and SIGPIPE) without readers, EAGAIN or a wait when full."""
    if not pipe.readers:
        send(t, SIGPIPE)
        raise Errno(E.EPIPE)
    if not _free_bytes(pipe):
        if nonblock:
            raise Errno(E.EAGAIN)
        raise Wait(queues=(pipe.can_write,))


def _wait_for_data(pipe, nonblock: bool) -> bool:
    """Whether the pipe has data to give; False once its writers are gone; EAGAIN or a wait."""
    if pipe.count:
        return True
    if not pipe.writers:
        return False
    if nonblock:
        raise Errno(E.EAGAIN)
    raise Wait(queues=(pipe.can_read,))


def _into_pipe(pipe, data) -> int:
    """Put data into a pipe's free slots, a page per slot (never merged into a partly
    filled page, as spliced buffers are not)."""
    done = 0
    while done < len(data) and _free_bytes(pipe):
        done += pipe.write(data[done:done + PAGE], True, merge=False)
    return done


def _offset(t, ptr):
    return s64(t.mm.read_u64(ptr)) if ptr else None


def _seekable(f) -> bool:
    return hasattr(f, "offset")


@syscall("splice", status=PARTIAL,
         note="copies (Linux moves pages): pipe to pipe, file or socket to pipe, pipe to file or socket, with "
              "Linux's checks and waits; SPLICE_F_MOVE, MORE and GIFT are hints and ignored")
def splice(t, fd_in, off_in, fd_out, off_out, length, flags):
    if not length:
        return 0
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise Errno(E.EINVAL)
    f_in, f_out = file_of(t, fd_in), file_of(t, fd_out)
    ipipe, opipe = _pipe_of(f_in), _pipe_of(f_out)
    if ipipe is not None and off_in or opipe is not None and off_out:
        raise Errno(E.ESPIPE)
    pos_out, pos_in = _offset(t, off_out), _offset(t, off_in)
    if not f_in.readable or not f_out.writable:
        raise Errno(E.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK)
    length = min(length, MAX_RW_COUNT)
    try:
        if ipipe is not None and opipe is not None:
            if ipipe is opipe:
                raise Errno(E.EINVAL)
            return _pipe_to_pipe(t, ipipe, opipe, length, nonblock or bool((f_in.flags | f_out.flags) & O_NONBLOCK))
        if ipipe is not None:
            if pos_out is not None and not _seekable(f_out) or f_out.flags & O_APPEND:
                raise Errno(E.EINVAL)
            if pos_out is not None and pos_out < 0:
                raise Errno(E.EINVAL)
            n = _pipe_to_file(t, ipipe, f_out, pos_out, length, nonblock or bool(f_in.flags & O_NONBLOCK))
            if pos_out is not None:
                t.mm.write_u64(off_out, pos_out + n)
            return n
        if opipe is not None:
            if pos_in is not None and (not _seekable(f_in) or pos_in < 0):
                raise Errno(E.EINVAL)
            n = _file_to_pipe(t, f_in, pos_in, opipe, length, nonblock or bool(f_out.flags & O_NONBLOCK))
            if pos_in is not None:
                t.mm.write_u64(off_in, pos_in + n)
            return n
        raise Errno(E.EINVAL)
    except Wait:
        t.hold_file(s32(fd_in), f_in)
        t.hold_file(s32(fd_out), f_out)
        raise


def _pipe_to_pipe(t, ipipe, opipe, length: int, nonblock: bool) -> int:
    if not _wait_for_data(ipipe, nonblock):
        return 0
    _wait_for_space(t, opipe, nonblock)
    data = ipipe.read(min(length, _free_bytes(opipe)), True)
    done = _into_pipe(opipe, data)
    if done < len(data):
        ipipe.unread(data[done:])
    return done


def _pipe_to_file(t, ipipe, f_out, pos, length: int, nonblock: bool) -> int:
    if not _wait_for_data(ipipe, nonblock):
        return 0
    data = ipipe.read(min(length, fsize_room(t, f_out, length, pos)), True)
    try:
        done = f_out.pwrite(data, pos) if pos is not None else f_out.write(data)
    except (Wait, Errno) as e:
        ipipe.unread(data)
        if isinstance(e, Errno) and e.errno == E.EPIPE and getattr(f_out, "sigpipe", True):
            send(t, SIGPIPE)
        raise
    if done < len(data):
        ipipe.unread(data[done:])
    if done and notify.marks:
        notify.modified(f_out)
    return done


def _file_to_pipe(t, f_in, pos, opipe, length: int, nonblock: bool) -> int:
    _wait_for_space(t, opipe, nonblock)
    want = min(length, _free_bytes(opipe))
    data = bytes(f_in.pread(want, pos) if pos is not None else f_in.read(want))
    done = _into_pipe(opipe, data)
    if done < len(data):  # (cannot happen: the room was counted first)
        if pos is None:
            f_in.unread(data[done:])
    if done and notify.marks:
        notify.accessed(f_in)
    return done


@syscall("tee", status=PARTIAL, note="copies what the input pipe holds (up to len, a page slot at a time) into "
         "the output pipe without consuming it; checks and waits as Linux")
def tee(t, fd_in, fd_out, length, flags):
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise Errno(E.EINVAL)
    if not length:
        return 0
    f_in, f_out = file_of(t, fd_in), file_of(t, fd_out)
    if not f_in.readable or not f_out.writable:
        raise Errno(E.EBADF)
    ipipe, opipe = _pipe_of(f_in), _pipe_of(f_out)
    if ipipe is None or opipe is None or ipipe is opipe:
        raise Errno(E.EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK or (f_in.flags | f_out.flags) & O_NONBLOCK)
    try:
        if not _wait_for_data(ipipe, nonblock):
            return 0
        _wait_for_space(t, opipe, nonblock)
    except Wait:
        t.hold_file(s32(fd_in), f_in)
        t.hold_file(s32(fd_out), f_out)
        raise
    done = 0
    # The input's page slots as they are (Pipe.pages: [unread bytes, end]), each copied into
    # one slot of the output, the last one cut to what is left of len.
    for page, _ in list(ipipe.pages):
        if done >= length or not _free_bytes(opipe):
            break
        done += opipe.write(bytes(page[:length - done]), True, merge=False)
    return done


@syscall("vmsplice", status=PARTIAL, note="into a pipe's write end: the iovecs' bytes into its free page slots "
         "(as much as fits, waiting for one); from a read end: as readv; checks as Linux")
def vmsplice(t, fd, iov_addr, nr_segs, flags):
    flags &= 0xFFFFFFFF
    if flags & ~SPLICE_F_ALL:
        raise Errno(E.EINVAL)
    f = t.fds.get(s32(fd))
    if not f.writable and not f.readable:
        raise Errno(E.EBADF)
    iov = read_iovec(t.mm, iov_addr, nr_segs)
    total = sum(n for _, n in iov)
    if not total:
        return 0
    pipe = _pipe_of(f)
    if pipe is None:
        raise Errno(E.EBADF)
    nonblock = bool(flags & SPLICE_F_NONBLOCK or f.flags & O_NONBLOCK)
    try:
        if f.writable:
            _wait_for_space(t, pipe, nonblock)
            room, fits = _free_bytes(pipe), []
            for base, n in iov:  # only what fits is read from the program
                if room <= 0:
                    break
                fits.append((base, min(n, room)))
                room -= n
            return _into_pipe(pipe, _gather(t, fits))
        if not _wait_for_data(pipe, nonblock):
            return 0
    except Wait:
        t.hold_file(s32(fd), f)
        raise
    return _deliver(t, f, pipe.read(total, True), iov)
