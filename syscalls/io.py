"""read(2), write(2) and their vector and positioned forms; lseek(2); ioctl(2);
sendfile(2), copy_file_range(2); ftruncate(2), fallocate(2); fsync(2) and the
other sync calls; posix_fadvise(2)."""
import errno as E
import stat as S
from signal import SIGPIPE, SIGXFSZ

from sentry.errors import Errno
from sentry.sched import Resumed, Wait
from sentry.signals import send
from sentry.task import RLIM_INFINITY
from sentry.vfs import notify
from sentry.vfs.atime import file_accessed
from sentry.vfs.file import O_APPEND, RegularFile
from sentry.vfs.inode import is_append_only
from syscalls.abi import MAX_RW_COUNT, read_iovec, s32, s64
from sentry.vfs.pipe import PipeFile
from syscalls.paths import file_of
from syscalls.pipes import pipe_write
from syscalls.registry import FULL, PARTIAL, syscall

FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC = 0x5451, 0x5450, 0x5421, 0x5452


def _file(t, fd):
    """fd's open file; for a read or write that waited, the one it started with (Task.hold_file)."""
    if t.held_files is not None:
        held = t.held(fd)
        if held is not None:
            return held
    return t.fds.get(fd)


def _readable(t, fd):
    fd = s32(fd)
    f = _file(t, fd)
    if not f.readable:
        raise Errno(E.EBADF)
    return f


def _writable(t, fd):
    fd = s32(fd)
    f = _file(t, fd)
    if not f.writable:
        raise Errno(E.EBADF)
    return f


def _positioned(t, fd, offset, writing: bool):
    """The file of a positioned call, in Linux's order: a negative offset EINVAL, then the
    fd, then a stream (no FMODE_PREAD/PWRITE) ESPIPE, then the access mode EBADF."""
    if s64(offset) < 0:
        raise Errno(E.EINVAL)
    f = _file(t, s32(fd))
    if not f.positional:
        raise Errno(E.ESPIPE)
    if not (f.writable if writing else f.readable):
        raise Errno(E.EBADF)
    return f


def _holding(t, fd, f, call, *args):
    """call(*args); should it wait, the task holds f meanwhile."""
    try:
        return call(*args)
    except Wait:
        t.hold_file(s32(fd), f)
        raise


def _deliver(t, f, data: bytes, iov) -> int:
    """Copy what was read into the program's buffers, as Linux's copy_to_user:
    up to the first bad page; what could not be copied goes back to the file."""
    done = 0
    for base, length in iov:
        if done >= len(data):
            break
        want = min(length, len(data) - done)
        if want == 0:
            continue  # an empty buffer is never touched, whatever its address
        ok = t.mm.writable_prefix(base, want)
        if ok:  # (checked: straight to the platform)
            t.mm.space.write(base, data if ok == len(data) else data[done:done + ok])
        done += ok
        if ok < want:
            break
    if done < len(data):
        f.unread(data[done:])
        if done == 0:
            raise Errno(E.EFAULT)
    return done


class _Nowhere:
    """Where a positioned read gives back what it could not deliver: nowhere."""
    @staticmethod
    def unread(rest):
        pass


def _deliver_at(t, data: bytes, iov) -> int:
    """As _deliver, for positioned reads: the file position does not move."""
    return _deliver(t, _Nowhere, data, iov)


# The most one transfer holds in the sentry at once: a program cannot make the
# sentry allocate gigabytes with one read(2). Regular files are moved piece by
# piece up to the full count, as Linux moves them; vectored calls and streams
# (pipes, devices, the sentry's stdio) do one piece, a short transfer.
PIECE = 16 << 20


def _read_pieces(t, f, buf, count, offset=None) -> int:
    """read/pread into one buffer: pieces until count, EOF or a fault (a fault after
    some bytes ends the call with what was done, as Linux's copy_to_user)."""
    if count >= DIRECT:
        n = _read_direct(t, f, buf, count, offset)
        if n is not None:
            return n
    count = min(count, MAX_RW_COUNT)
    if offset is None and not isinstance(f, RegularFile):  # a stream: one piece, a short read
        data = f.read(min(count, PIECE))
        return _deliver(t, f, data, ((buf, len(data)),))
    done = 0
    while True:
        want = min(count - done, PIECE)
        data = f.read(want) if offset is None else f.pread(want, offset + done)
        try:
            got = (_deliver(t, f, data, ((buf + done, len(data)),)) if offset is None
                   else _deliver_at(t, data, ((buf + done, len(data)),)))
        except Errno:
            if done:
                return done
            raise
        done += got
        if got < want or done >= count or not isinstance(f, RegularFile):
            return done


# --- large transfers straight between a host descriptor and guest memory ------------------
# A host file, or (reads) a memory file whose bytes are in a memfd (sentry/vfs/backing.py),
# is read and written by the platform itself (ptrace: pread64/pwrite64 injected into the
# traced process, which holds the fd; unicorn: preadv/pwritev on the host pages behind
# guest memory): one host copy, as a native call, and nothing held in the sentry. The
# file offset stays the sentry's.
DIRECT = 256 << 10


def _read_direct(t, f, buf, count, offset):
    """read/pread of count bytes at buf done by the platform, or None where it cannot be."""
    read_backing = getattr(f, "read_backing", None)
    read_file = getattr(t.mm.space, "read_file", None)
    src = read_backing() if read_backing is not None and read_file is not None else None
    if src is None:
        return None
    backing, size = src
    cpu = t.cpu
    if cpu.live and size is None and _pass_through(t, f, backing, buf, count):
        raise Resumed
    pos = f.offset if offset is None else offset
    want = min(count, MAX_RW_COUNT) if size is None else min(count, MAX_RW_COUNT, max(0, size - pos))
    if want <= 0:
        return 0
    ok = t.mm.writable_prefix(buf, want)  # as copy_to_user: up to the first bad page
    if ok == 0:
        raise Errno(E.EFAULT)
    n = _moved(f, offset, pos, read_file(backing, pos, buf, ok))
    if n is not None and size is None and t.kernel.dispatch.strace is None:
        cpu.arm_pass_through()  # a read loop's next read may then run on the host
    return n


def _moved(f, offset, pos: int, n):
    """What a direct transfer at pos did: None (the platform could not; the caller goes
    the usual way), -errno raised, or n bytes, the file position moved past them when
    the call was not positioned."""
    if n is None:
        return None
    if n < 0:
        raise Errno(-n)
    if offset is None:
        f.offset = pos + n
    return n


def _pass_through(t, f, backing, buf, count) -> bool:
    """At a live entry stop (ptrace): may this read of a host file run on the host as the
    guest made it? Its fd must be mirrored in the traced process (the same open file, so
    the same position), its buffer all writable, no signal pending, no --strace."""
    if t.kernel.dispatch.strace is not None or t.sigpending() or notify.marks and notify.watched(f):
        return False
    if t.mm.writable_prefix(buf, count) != count:
        return False
    fd = s32(t.syscall_args[0])
    if t.fds.get(fd) is not f or not t.mm.space.mirror(backing, fd):
        return False
    if not t.cpu.live:
        return False  # placing the mirror took an injection, which ended this call's entry stop
    t.cpu.pass_through()
    return True


def _write_direct(t, f, buf, count, offset):
    """write/pwrite of count bytes from buf done by the platform (a host file), or copied
    straight into a memory file's buffer; None where neither can be."""
    write_backing = getattr(f, "write_backing", None)
    write_file = getattr(t.mm.space, "write_file", None)
    backing = write_backing() if write_backing is not None and write_file is not None else None
    write_with = None if backing is not None else getattr(f, "write_with", None)
    if backing is None and write_with is None:
        return None
    ok = t.mm.readable_prefix(buf, min(count, MAX_RW_COUNT))  # as copy_from_user
    if ok == 0:
        raise Errno(E.EFAULT)
    pos = _write_pos(f, offset)
    if write_with is not None:
        return _moved(f, offset, pos, write_with(pos, ok, lambda view: t.mm.read_into(buf, view)))
    return _moved(f, offset, pos, write_file(backing, pos, buf, ok))


# --- RLIMIT_FSIZE --------------------------------------------------------------------------------
RLIMIT_FSIZE = 1


def _write_pos(f, offset, flags: int = 0) -> int:
    """Where a write to a regular file lands: its end under O_APPEND (or RWF_APPEND, and
    not RWF_NOAPPEND) whatever the offset, as Linux; else offset (None or -1: the file
    position)."""
    if flags & RWF_APPEND or f.flags & O_APPEND and not flags & RWF_NOAPPEND:
        return f.inode.size
    return f.offset if offset is None or offset == -1 else offset


def fsize_room(t, f, count: int, offset=None, flags: int = 0) -> int:
    """count cut at the process's RLIMIT_FSIZE for a write to a regular file (at
    _write_pos(f, offset, flags)); at or past the limit SIGXFSZ and EFBIG (Linux's
    generic_write_check_limits)."""
    limit = t.rlimits[RLIMIT_FSIZE][0]
    if limit == RLIM_INFINITY or not count or not isinstance(f, RegularFile):
        return count
    pos = _write_pos(f, offset, flags)
    if pos >= limit:
        send(t, SIGXFSZ)
        raise Errno(E.EFBIG)
    return min(count, limit - pos)


def fsize_grow(t, old_size: int, new_size: int) -> None:
    """A truncate or fallocate that grows a file past RLIMIT_FSIZE: SIGXFSZ and EFBIG
    (Linux's inode_newsize_ok)."""
    limit = t.rlimits[RLIMIT_FSIZE][0]
    if new_size > old_size and limit != RLIM_INFINITY and new_size > limit:
        send(t, SIGXFSZ)
        raise Errno(E.EFBIG)


def _write_pieces(t, f, buf, count, offset=None) -> int:
    """write/pwrite from one buffer, piece by piece while each piece goes whole."""
    if isinstance(f, RegularFile):
        count = fsize_room(t, f, min(count, MAX_RW_COUNT), offset)
    if count >= DIRECT:
        n = _write_direct(t, f, buf, count, offset)
        if n is not None:
            return n
    count = min(count, MAX_RW_COUNT)
    done = 0
    while True:
        want = min(count - done, PIECE)
        try:
            data = _user_bytes(t, buf + done, want)
        except Errno:
            if done:
                return done
            raise
        n = _stream_write(t, f, data) if offset is None else _write_at(t, f, data, offset + done)
        done += n
        if n < want or done >= count:
            return done


def _user_bytes(t, addr: int, size: int) -> bytes:
    """The program's bytes at [addr, addr+size) up to the first page it cannot read, as
    Linux's copy_from_user stops there (a write then writes what it got); EFAULT when
    the first byte cannot be read."""
    ok = t.mm.readable_prefix(addr, size)
    if ok == 0:
        if size:
            raise Errno(E.EFAULT)
        return b""
    return t.mm.space.read(addr, ok)  # (checked: straight to the platform)


@syscall("read")
def read(t, fd, buf, count):
    f = _readable(t, fd)
    try:  # (_holding, inline: every read passes here)
        n = _read_pieces(t, f, buf, count)
    except Wait:
        t.hold_file(s32(fd), f)
        raise
    return _accessed(t, f, n)


def _accessed(t, f, n: int) -> int:
    """n bytes were read from f: its access time (file_accessed), and IN_ACCESS for whoever
    watches it (fsnotify_access)."""
    if f.atime_on_read:
        file_accessed(t.vfs, f)
    if n and notify.marks:
        notify.accessed(f)
    return n


def _modified(f, n: int) -> int:
    """n bytes were written to f: IN_MODIFY (fsnotify_modify)."""
    if n and notify.marks:
        notify.modified(f)
    return n


def _stream_write(t, f, data) -> int:
    """f.write, with Linux's rule for a reader-less pipe: SIGPIPE to the writer, then EPIPE
    (a socket's `sigpipe` says whether its kind signals: streams do, datagrams do not)."""
    try:
        return f.write(data)
    except Errno as e:
        if e.errno == E.EPIPE and getattr(f, "sigpipe", True):
            send(t, SIGPIPE)  # ends the program unless it blocks, ignores or handles SIGPIPE
        raise


@syscall("write")
def write(t, fd, buf, count):
    f = _writable(t, fd)
    try:  # (_holding, inline: every write passes here)
        if f.__class__ is PipeFile or f.waits_for_room:
            n = pipe_write(t, f, _user_bytes(t, buf, min(count, PIECE, MAX_RW_COUNT)))
        else:
            n = _write_pieces(t, f, buf, count)
    except Wait:
        t.hold_file(s32(fd), f)
        raise
    return _modified(f, n)


@syscall("pread64")
def pread64(t, fd, buf, count, offset):
    f = _positioned(t, fd, offset, False)
    return _accessed(t, f, _read_pieces(t, f, buf, count, offset))


@syscall("pwrite64")
def pwrite64(t, fd, buf, count, offset):
    f = _positioned(t, fd, offset, True)
    return _modified(f, _write_pieces(t, f, buf, count, offset))


def _gather(t, iov) -> bytes:
    """The bytes of a write's buffers, at most PIECE of them (a short transfer beyond),
    up to the first page that cannot be read (EFAULT if that is the first byte)."""
    parts, left = [], PIECE
    for base, length in iov:
        n = min(length, left)
        if n:
            ok = t.mm.readable_prefix(base, n)
            if ok == 0 and not parts:
                raise Errno(E.EFAULT)
            parts.append(t.mm.read(base, ok))
            left -= ok
            if ok < n:
                break
        if left <= 0:
            break
    return b"".join(parts)


@syscall("readv")
def readv(t, fd, iov_addr, iovcnt):
    f = _readable(t, fd)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    data = _holding(t, fd, f, f.read, min(sum(n for _, n in iov), PIECE))
    return _accessed(t, f, _deliver(t, f, data, iov))


@syscall("writev")
def writev(t, fd, iov_addr, iovcnt):
    f = _writable(t, fd)
    data = _gather(t, read_iovec(t.mm, iov_addr, s32(iovcnt)))
    if not data:
        return 0
    if f.__class__ is PipeFile or f.waits_for_room:
        return _modified(f, _holding(t, fd, f, pipe_write, t, f, data))
    if isinstance(f, RegularFile):
        data = data[:fsize_room(t, f, len(data))]
    return _modified(f, _holding(t, fd, f, _stream_write, t, f, data))


@syscall("preadv")
def preadv(t, fd, iov_addr, iovcnt, offset):
    f = _positioned(t, fd, offset, False)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    data = f.pread(min(sum(n for _, n in iov), PIECE), offset)
    return _accessed(t, f, _deliver_at(t, data, iov))


@syscall("pwritev")
def pwritev(t, fd, iov_addr, iovcnt, offset):
    f = _positioned(t, fd, offset, True)
    return _modified(f, _write_at(t, f, _gather(t, read_iovec(t.mm, iov_addr, s32(iovcnt))), offset))


@syscall("lseek")
def lseek(t, fd, offset, whence):
    return t.fds.get(s32(fd)).seek(s64(offset), s32(whence))


FICLONE, FICLONERANGE, FIDEDUPERANGE, FS_IOC_FIEMAP = 0x40049409, 0x4020940D, 0xC0189436, 0xC020660B


def _no_reflink(t, f, request: int, arg: int) -> None:
    """FICLONE/FICLONERANGE/FIDEDUPERANGE: vfs_clone_file_range's and vfs_dedupe_file_range's
    checks, then EOPNOTSUPP: no filesystem of the sandbox shares extents between files."""
    if request == FIDEDUPERANGE:
        if not S.S_ISREG(f.inode.mode):
            raise Errno(E.EISDIR if S.S_ISDIR(f.inode.mode) else E.EINVAL)
        if not f.readable:
            raise Errno(E.EBADF)
        raise Errno(E.EOPNOTSUPP)
    src_fd = s32(arg) if request == FICLONE else s32(t.mm.read_u64(arg))
    src = t.fds.get(src_fd)
    if src.inode.fs is not f.inode.fs:
        raise Errno(E.EXDEV)
    for x in (src, f):
        if not S.S_ISREG(x.inode.mode):
            raise Errno(E.EISDIR if S.S_ISDIR(x.inode.mode) else E.EINVAL)
    if not src.readable or not f.writable or f.flags & O_APPEND:
        raise Errno(E.EBADF)
    raise Errno(E.EOPNOTSUPP)


@syscall("ioctl", status=PARTIAL, note="FIOCLEX/FIONCLEX/FIONBIO/FIOASYNC on any file; the terminal's (syscalls/tty.py), "
         "sockets' and pipes' own; FICLONE/FICLONERANGE/FIDEDUPERANGE and FS_IOC_FIEMAP checked and "
         "EOPNOTSUPP (no reflinks; no extent maps, as tmpfs); ENOTTY for the rest")
def ioctl(t, fd, request, arg):
    fd = s32(fd)
    f = file_of(t, fd)  # an O_PATH descriptor is EBADF, FIOCLEX included
    request &= 0xFFFFFFFF
    if request == FIOCLEX:
        t.fds.cloexec.add(fd)
        return 0
    if request == FIONCLEX:
        t.fds.cloexec.discard(fd)
        return 0
    if request in (FIONBIO, FIOASYNC):
        bit = 0o4000 if request == FIONBIO else 0o20000  # O_NONBLOCK, O_ASYNC
        on = int.from_bytes(t.mm.read(arg, 4), "little")
        if request == FIOASYNC and bool(on) != bool(f.flags & bit):
            from sentry import fasync
            fasync.set_async(t, f, fd, bool(on))  # SIGIO to the owner (F_SETOWN) when ready
        f.flags = f.flags | bit if on else f.flags & ~bit
        return 0
    if request in (FICLONE, FICLONERANGE, FIDEDUPERANGE):
        _no_reflink(t, f, request, arg)
    if request == FS_IOC_FIEMAP and (S.S_ISREG(f.inode.mode) or S.S_ISDIR(f.inode.mode)):
        raise Errno(E.EOPNOTSUPP)  # no filesystem here has an i_op->fiemap
    return f.ioctl(t, request, arg)


@syscall("sendfile", status=PARTIAL, note="copies through the sentry (read then write); no zero-copy")
def sendfile(t, out_fd, in_fd, offset_ptr, count):
    out_file, in_file = _writable(t, out_fd), _readable(t, in_fd)
    count = min(count, PIECE)
    if offset_ptr:
        offset = s64(t.mm.read_u64(offset_ptr))
        if offset < 0:
            raise Errno(E.EINVAL)
        data = bytes(in_file.pread(count, offset))  # a copy: in and out may be one file
    else:
        data = bytes(in_file.read(count))
    if data and isinstance(out_file, RegularFile):
        room = fsize_room(t, out_file, len(data))
        if room < len(data):
            _give_back(in_file, data[room:], offset_ptr)
            data = data[:room]
    try:
        written = _stream_write(t, out_file, data) if data else 0
    except Wait:
        # The output is full (a pipe): the call waits and runs again, so what it
        # took from the input goes back first.
        if not offset_ptr:
            try:
                in_file.seek(-len(data), 1)
            except Errno:
                in_file.unread(data)
        raise
    if offset_ptr:
        t.mm.write_u64(offset_ptr, offset + written)
    elif written < len(data):
        _give_back(in_file, data[written:], offset_ptr)
    return _modified(out_file, _accessed(t, in_file, written))


def _give_back(in_file, rest: bytes, offset_ptr) -> None:
    """What sendfile took from its input and did not write goes back to it."""
    if offset_ptr:
        return  # a positioned read moved nothing
    try:
        in_file.seek(-len(rest), 1)
    except Errno:
        in_file.unread(rest)  # a pipe or stream input: it cannot seek


# --- preadv2/pwritev2 ---------------------------------------------------------------------------
RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND = 0x1, 0x2, 0x4, 0x8, 0x10
RWF_NOAPPEND, RWF_ATOMIC, RWF_DONTCACHE, RWF_NOSIGNAL = 0x20, 0x40, 0x80, 0x100
RWF_KNOWN = 0x1FF


def _rwf(f, flags: int, writing: bool) -> None:
    """Which RWF_* flags a call may carry: unknown ones, and what memory and host
    files cannot promise (atomic or uncached writes, non-blocking buffered writes),
    are EOPNOTSUPP as on Linux's tmpfs."""
    if flags & ~RWF_KNOWN:
        raise Errno(E.EOPNOTSUPP)
    regular = isinstance(f, RegularFile)
    if writing and regular and flags & (RWF_NOWAIT | RWF_ATOMIC | RWF_DONTCACHE):
        raise Errno(E.EOPNOTSUPP)
    if not writing and flags & RWF_ATOMIC or regular and flags & RWF_DONTCACHE:
        raise Errno(E.EOPNOTSUPP)


def _write_at(t, f, data, offset: int, flags: int = 0) -> int:
    """A positioned write (offset -1: at the file position), at the end of a regular
    file written in append mode (_write_pos), cut at RLIMIT_FSIZE."""
    if not isinstance(f, RegularFile):
        return f.write(data) if offset == -1 else f.pwrite(data, offset)
    pos = _write_pos(f, offset, flags)
    data = data[:fsize_room(t, f, len(data), offset, flags)]
    n = f.pwrite(data, pos)
    if offset == -1:
        f.offset = pos + n
    return n


@syscall("preadv2", status=PARTIAL, note="RWF_HIPRI/NOWAIT/APPEND/NOAPPEND/SYNC/DSYNC accepted (reads never wait "
         "on memory); offset -1 reads at the file position")
def preadv2(t, fd, iov_addr, iovcnt, offset, offset_high, flags):
    offset = s64(offset)
    f = _readable(t, fd) if offset == -1 else _positioned(t, fd, offset, False)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    _rwf(f, flags & 0xFFFFFFFF, False)
    size = min(sum(n for _, n in iov), PIECE)
    if offset == -1:
        return _accessed(t, f, _deliver(t, f, f.read(size), iov))
    return _accessed(t, f, _deliver_at(t, f.pread(size, offset), iov))


@syscall("pwritev2", status=PARTIAL, note="RWF_APPEND/NOAPPEND, SYNC/DSYNC/HIPRI/NOSIGNAL accepted; NOWAIT, ATOMIC "
         "and DONTCACHE on regular files EOPNOTSUPP (as Linux's tmpfs); offset -1 writes at the file position")
def pwritev2(t, fd, iov_addr, iovcnt, offset, offset_high, flags):
    offset = s64(offset)
    f = _writable(t, fd) if offset == -1 else _positioned(t, fd, offset, True)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    _rwf(f, flags & 0xFFFFFFFF, True)
    data = _gather(t, iov)
    return _modified(f, _write_at(t, f, data, offset, flags & 0xFFFFFFFF)) if data else 0


# --- copying ------------------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
COPY_CHUNK = 1 << 24  # a call copies at most this much (callers loop, as for any short copy)


@syscall("copy_file_range", status=PARTIAL, note="copies through the sentry in up to 16 MiB per call; "
         "across filesystems EXDEV, as Linux for filesystems without their own copy")
def copy_file_range(t, fd_in, off_in, fd_out, off_out, length, flags):
    f_in, f_out = file_of(t, fd_in), file_of(t, fd_out)
    pos_in = s64(t.mm.read_u64(off_in)) if off_in else None
    pos_out = s64(t.mm.read_u64(off_out)) if off_out else None
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    a, b = f_in.inode, f_out.inode
    if a.is_dir() or b.is_dir():
        raise Errno(E.EISDIR)
    if not S.S_ISREG(a.mode) or not S.S_ISREG(b.mode):
        raise Errno(E.EINVAL)
    if not f_in.readable or not f_out.writable or f_out.flags & O_APPEND:
        raise Errno(E.EBADF)
    if a.fs is not b.fs or not hasattr(f_in, "offset") or not hasattr(f_out, "offset"):
        raise Errno(E.EXDEV)  # (the sentry's own stdio on a host file is another filesystem)
    start_in = f_in.offset if pos_in is None else pos_in
    start_out = f_out.offset if pos_out is None else pos_out
    if (start_in & MASK64) + length > MASK64 or (start_out & MASK64) + length > MASK64:
        raise Errno(E.EOVERFLOW)  # offsets may not wrap (compared unsigned, as Linux does)
    if start_in < 0 or start_out < 0:
        raise Errno(E.EINVAL)
    size = a.stat().size
    count = 0 if start_in >= size else min(length, size - start_in, MAX_RW_COUNT, COPY_CHUNK)
    if (a is b or (a.fs is b.fs and a.ino == b.ino)) and start_out + count > start_in and start_out < start_in + count:
        raise Errno(E.EINVAL)  # overlapping ranges of one file
    if count == 0:
        return 0
    count = fsize_room(t, f_out, count, start_out)  # (O_APPEND outputs were refused)
    data = bytes(f_in.pread(count, start_in))  # a copy: the write may move the source's bytes
    n = f_out.pwrite(data, start_out) if data else 0
    if pos_in is None:
        f_in.offset = start_in + n
    else:
        t.mm.write_u64(off_in, start_in + n)
    if pos_out is None:
        f_out.offset = start_out + n
    else:
        t.mm.write_u64(off_out, start_out + n)
    return _modified(f_out, _accessed(t, f_in, n))


# --- size and space -----------------------------------------------------------------------------
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE = 0x01, 0x02, 0x08
FALLOC_FL_ZERO_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE = 0x10, 0x20, 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
OFFSET_MAX = (1 << 63) - 1


@syscall("ftruncate", status=FULL, note="a memory file grows by a hole (sparse: its written bytes count toward --tmpfs-size)")
def ftruncate(t, fd, length):
    length = s64(length)
    if length < 0:
        raise Errno(E.EINVAL)
    f = file_of(t, fd)
    if not S.S_ISREG(f.inode.mode) or not f.writable or not hasattr(f, "truncate"):
        raise Errno(E.EINVAL)
    if is_append_only(f.inode):
        raise Errno(E.EPERM)
    fsize_grow(t, f.inode.size, length)
    f.truncate(length)
    if notify.marks:
        notify.file_changed(f, notify.MODIFY)  # ATTR_SIZE|ATTR_MTIME
    return 0


@syscall("fallocate", status=PARTIAL, note="memory files: mode 0, KEEP_SIZE and PUNCH_HOLE|KEEP_SIZE (as "
         "tmpfs; ENOSPC past --tmpfs-size); host files: the host's fallocate")
def fallocate(t, fd, mode, offset, length):
    f = file_of(t, fd)
    mode, offset, length = s32(mode), s64(offset), s64(length)
    if offset < 0 or length <= 0:
        raise Errno(E.EINVAL)
    kind = mode & ~FALLOC_FL_KEEP_SIZE
    if mode & ~0xFF or kind not in (0, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_ZERO_RANGE,
                                    FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_WRITE_ZEROES):
        raise Errno(E.EOPNOTSUPP)
    if kind == FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise Errno(E.EOPNOTSUPP)
    if kind in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES) and mode & FALLOC_FL_KEEP_SIZE:
        raise Errno(E.EOPNOTSUPP)
    if not f.writable:
        raise Errno(E.EBADF)
    ftype = S.S_IFMT(f.inode.mode)
    if ftype == S.S_IFIFO:
        raise Errno(E.ESPIPE)
    if ftype == S.S_IFDIR:
        raise Errno(E.EISDIR)
    if ftype != S.S_IFREG:
        raise Errno(E.ENODEV)
    if offset + length > OFFSET_MAX:
        raise Errno(E.EFBIG)
    if not mode & FALLOC_FL_KEEP_SIZE and kind in (0, FALLOC_FL_ZERO_RANGE, FALLOC_FL_WRITE_ZEROES):
        fsize_grow(t, f.inode.size, offset + length)
    f.fallocate(mode, offset, length)
    if notify.marks:
        notify.modified(f)
    return 0


# --- syncing and advice -------------------------------------------------------------------------
@syscall("fsync", note="a no-op for memory files; host files are fsync'ed on the host")
def fsync(t, fd):
    file_of(t, fd).fsync(False)
    return 0


@syscall("fdatasync", note="as fsync")
def fdatasync(t, fd):
    file_of(t, fd).fsync(True)
    return 0


@syscall("sync", note="a no-op: the sandbox's memory needs none, and host writes are the host's to flush")
def sync(t):
    return 0


@syscall("syncfs", note="as sync, once the fd is checked")
def syncfs(t, fd):
    file_of(t, fd)
    return 0


SYNC_FILE_RANGE_VALID = 0x7


@syscall("sync_file_range", note="a no-op once the fd, range and flags are checked")
def sync_file_range(t, fd, offset, nbytes, flags):
    f = file_of(t, fd)
    offset, nbytes = s64(offset), s64(nbytes)
    if flags & 0xFFFFFFFF & ~SYNC_FILE_RANGE_VALID:
        raise Errno(E.EINVAL)
    end = offset + nbytes
    if offset < 0 or end < 0 or end > OFFSET_MAX or end < offset:
        raise Errno(E.EINVAL)
    if S.S_IFMT(f.inode.mode) not in (S.S_IFREG, S.S_IFDIR, S.S_IFLNK, S.S_IFBLK):
        raise Errno(E.ESPIPE)
    return 0


POSIX_FADV_MAX = 5  # NORMAL RANDOM SEQUENTIAL WILLNEED DONTNEED NOREUSE: 0..5


@syscall("fadvise64", note="advice is checked and ignored (the sentry keeps no page cache)")
def fadvise64(t, fd, offset, length, advice):
    f = file_of(t, fd)
    if S.S_ISFIFO(f.inode.mode):
        raise Errno(E.ESPIPE)
    if not 0 <= s32(advice) <= POSIX_FADV_MAX:
        raise Errno(E.EINVAL)
    return 0
