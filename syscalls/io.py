"""read(2), write(2) and their vector and positioned forms; lseek(2); ioctl(2)."""
import errno as E

from sentry.errors import Errno
from syscalls.abi import MAX_RW_COUNT, read_iovec, s32, s64
from syscalls.registry import PARTIAL, syscall

FIOCLEX, FIONCLEX, FIONBIO = 0x5451, 0x5450, 0x5421


def _readable(t, fd):
    f = t.fds.get(s32(fd))
    if not f.readable:
        raise Errno(E.EBADF)
    return f


def _writable(t, fd):
    f = t.fds.get(s32(fd))
    if not f.writable:
        raise Errno(E.EBADF)
    return f


def _deliver(t, f, data: bytes, iov) -> int:
    """Copy what was read into the program's buffers, as Linux's copy_to_user:
    up to the first bad page; what could not be copied goes back to the file."""
    done = 0
    for base, length in iov:
        want = min(length, len(data) - done)
        if want <= 0:
            break
        ok = t.mm.writable_prefix(base, want)
        t.mm.write(base, data[done:done + ok])
        done += ok
        if ok < want:
            break
    if done < len(data):
        f.unread(data[done:])
        if done == 0:
            raise Errno(E.EFAULT)
    return done


def _deliver_at(t, data: bytes, iov) -> int:
    """As _deliver, for positioned reads: nothing to give back."""
    class _Nowhere:
        @staticmethod
        def unread(rest):
            pass
    return _deliver(t, _Nowhere, data, iov)


@syscall("read")
def read(t, fd, buf, count):
    f = _readable(t, fd)
    data = f.read(min(count, MAX_RW_COUNT))
    return _deliver(t, f, data, ((buf, len(data)),))


@syscall("write")
def write(t, fd, buf, count):
    f = _writable(t, fd)
    return f.write(t.mm.read(buf, min(count, MAX_RW_COUNT)))


@syscall("pread64")
def pread64(t, fd, buf, count, offset):
    f = _readable(t, fd)
    if s64(offset) < 0:
        raise Errno(E.EINVAL)
    data = f.pread(min(count, MAX_RW_COUNT), offset)
    return _deliver_at(t, data, ((buf, len(data)),))


@syscall("pwrite64")
def pwrite64(t, fd, buf, count, offset):
    f = _writable(t, fd)
    if s64(offset) < 0:
        raise Errno(E.EINVAL)
    return f.pwrite(t.mm.read(buf, min(count, MAX_RW_COUNT)), offset)


def _gather(t, iov) -> bytes:
    return b"".join(t.mm.read(base, length) for base, length in iov if length)


@syscall("readv")
def readv(t, fd, iov_addr, iovcnt):
    f = _readable(t, fd)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    data = f.read(min(sum(n for _, n in iov), MAX_RW_COUNT))
    return _deliver(t, f, data, iov)


@syscall("writev")
def writev(t, fd, iov_addr, iovcnt):
    f = _writable(t, fd)
    data = _gather(t, read_iovec(t.mm, iov_addr, s32(iovcnt)))
    return f.write(data[:MAX_RW_COUNT]) if data else 0


@syscall("preadv")
def preadv(t, fd, iov_addr, iovcnt, offset):
    f = _readable(t, fd)
    iov = read_iovec(t.mm, iov_addr, s32(iovcnt))
    if s64(offset) < 0:
        raise Errno(E.EINVAL)
    data = f.pread(min(sum(n for _, n in iov), MAX_RW_COUNT), offset)
    return _deliver_at(t, data, iov)


@syscall("pwritev")
def pwritev(t, fd, iov_addr, iovcnt, offset):
    f = _writable(t, fd)
    if s64(offset) < 0:
        raise Errno(E.EINVAL)
    return f.pwrite(_gather(t, read_iovec(t.mm, iov_addr, s32(iovcnt))), offset)


@syscall("lseek")
def lseek(t, fd, offset, whence):
    return t.fds.get(s32(fd)).seek(s64(offset), s32(whence))


@syscall("ioctl", status=PARTIAL, note="FIOCLEX/FIONCLEX/FIONBIO; TCGETS and TIOCGWINSZ forwarded for a terminal on stdio, ENOTTY otherwise")
def ioctl(t, fd, request, arg):
    fd = s32(fd)
    f = t.fds.get(fd)
    request &= 0xFFFFFFFF
    if request == FIOCLEX:
        t.fds.cloexec.add(fd)
        return 0
    if request == FIONCLEX:
        t.fds.cloexec.discard(fd)
        return 0
    if request == FIONBIO:
        on = int.from_bytes(t.mm.read(arg, 4), "little")
        f.flags = f.flags | 0o4000 if on else f.flags & ~0o4000
        return 0
    return f.ioctl(t, request, arg)


@syscall("sendfile", status=PARTIAL, note="copies through the sentry (read then write); no zero-copy")
def sendfile(t, out_fd, in_fd, offset_ptr, count):
    out_file, in_file = _writable(t, out_fd), _readable(t, in_fd)
    count = min(count, MAX_RW_COUNT)
    if offset_ptr:
        offset = s64(t.mm.read_u64(offset_ptr))
        if offset < 0:
            raise Errno(E.EINVAL)
        data = bytes(in_file.pread(count, offset))  # a copy: in and out may be one file
    else:
        data = bytes(in_file.read(count))
    written = out_file.write(data) if data else 0
    if offset_ptr:
        t.mm.write_u64(offset_ptr, offset + written)
    elif written < len(data):
        in_file.seek(written - len(data), 1)
    return written
