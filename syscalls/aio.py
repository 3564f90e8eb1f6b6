"""Linux AIO: io_setup(2), io_destroy(2), io_submit(2), io_cancel(2), io_getevents(2),
io_pgetevents(2), with the contexts and rings of sentry/aio.py."""
import errno as E
import struct
import time as host_time

from sentry import aio
from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC = 0, 1, 2, 3
IOCB_CMD_POLL, IOCB_CMD_NOOP, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV = 5, 6, 7, 8
IOCB_FLAG_RESFD, IOCB_FLAG_IOPRIO = 1, 2
RWF_SUPPORTED = 0x1F  # RWF_HIPRI DSYNC SYNC NOWAIT APPEND
_IOCB = struct.Struct("<QIIHhIQQqQII")  # data, key, rw_flags, opcode, reqprio, fildes, buf, nbytes, offset,
#                                         reserved2, flags, resfd
_IOVEC = struct.Struct("<QQ")
PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS = 1, 2, 0x02, 0x20
SSIZE_MAX = (1 << 63) - 1
PIECE = 1 << 24
NOTE = ("a context per address space with its completion ring mapped as Linux's (libaio reads it); "
        "PREAD, PWRITE, PREADV, PWRITEV, FSYNC, FDSYNC done when submitted through the sandbox's files "
        "(an operation that would wait completes with -EAGAIN), POLL pending until ready or cancelled; "
        "IOCB_FLAG_RESFD signals an eventfd; /proc/sys/fs/aio-nr and aio-max-nr")


def _context(t, ctx_id: int) -> aio.AioContext:
    ctx = aio.contexts(t.mm).get(ctx_id)
    if ctx is None or ctx.dead:
        raise Errno(E.EINVAL)
    return ctx


@syscall("io_setup", status=PARTIAL, note=NOTE)
def io_setup(t, nr_events, ctxp):
    nr = nr_events & 0xFFFFFFFF
    if t.mm.read_u64(ctxp) != 0 or nr == 0 or nr >= 1 << 31:
        raise Errno(E.EINVAL)
    size, ring_nr, max_reqs = aio.ring_size(nr)
    if max_reqs > aio.AIO_MAX_NR or aio.count(t.kernel) + max_reqs > aio.AIO_MAX_NR or max_reqs < nr:
        raise Errno(E.EAGAIN)
    addr = t.mm.mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    ctx = aio.AioContext(t.mm, addr, ring_nr, max_reqs)
    t.mm.write(addr, aio.RING_HEADER.pack(0, ring_nr, 0, 0, aio.AIO_RING_MAGIC, aio.AIO_RING_COMPAT_FEATURES, 0,
                                          aio.RING_HEADER.size))
    try:
        t.mm.write_u64(ctxp, addr)
    except Errno:
        t.mm.munmap(addr, size)
        raise
    aio.contexts(t.mm)[addr] = ctx
    t.kernel.aio_nr = aio.count(t.kernel) + max_reqs
    return 0


@syscall("io_destroy", status=PARTIAL, note=NOTE)
def io_destroy(t, ctx_id):
    ctx = _context(t, ctx_id)
    ctx.dead = True
    del aio.contexts(t.mm)[ctx_id]
    t.kernel.aio_nr = aio.count(t.kernel) - ctx.max_reqs
    ctx.queue.notify()  # io_getevents waiters find it gone (EINVAL)
    size = aio.ring_size(ctx.max_reqs // 2)[0]
    try:
        t.mm.munmap(ctx.addr, size)
    except Errno:
        pass
    return 0


def _data(t, opcode: int, buf: int, nbytes: int) -> list:
    """The (address, length) pieces an operation reads into or writes from."""
    if opcode in (IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):
        if nbytes > 1024:
            raise Errno(E.EINVAL)
        raw = t.mm.read(buf, 16 * nbytes) if nbytes else b""
        iovs = [_IOVEC.unpack_from(raw, 16 * i) for i in range(nbytes)]
        if sum(n for _, n in iovs) > SSIZE_MAX:
            raise Errno(E.EINVAL)
        return iovs
    return [(buf, nbytes)]


def _run(t, f, opcode: int, pieces: list, offset: int) -> int:
    """Carry out a read or write now: bytes moved, or -errno. A stream (a pipe, a socket)
    has no position: Linux's read_iter ignores aio_offset there."""
    done = 0
    positioned = offset >= 0
    try:
        for addr, length in pieces:
            pos = 0
            while pos < length:
                n = min(length - pos, PIECE)
                if opcode in (IOCB_CMD_PREAD, IOCB_CMD_PREADV):
                    try:
                        data = f.pread(n, offset + done) if positioned else f.read(n)
                    except Errno as e:
                        if e.errno != E.ESPIPE or not positioned:
                            raise
                        positioned = False
                        continue
                    t.mm.write(addr + pos, data)
                    moved = len(data)
                else:
                    data = t.mm.read(addr + pos, n)
                    try:
                        moved = f.pwrite(data, offset + done) if positioned else f.write(data)
                    except Errno as e:
                        if e.errno != E.ESPIPE or not positioned:
                            raise
                        positioned = False
                        continue
                pos += moved
                done += moved
                if moved < n:
                    return done
        return done
    except Errno as e:
        return done or -e.errno
    except Wait:
        return done or -E.EAGAIN


def _submit_one(t, ctx, iocb_addr: int) -> None:
    raw = t.mm.read(iocb_addr, _IOCB.size)
    data, _, rw_flags, opcode, _, fildes, buf, nbytes, offset, reserved2, flags, resfd = _IOCB.unpack(raw)
    if reserved2 or nbytes > SSIZE_MAX:
        raise Errno(E.EINVAL)
    if ctx.in_flight >= ctx.ring_nr - 1:
        raise Errno(E.EAGAIN)
    eventfd = None
    if flags & IOCB_FLAG_RESFD:
        from sentry.eventfd import EventFile
        eventfd = t.fds.get(s32(resfd))  # EBADF
        if not isinstance(eventfd, EventFile):
            raise Errno(E.EINVAL)
    f = t.fds.get(s32(fildes))  # EBADF
    if opcode in (IOCB_CMD_PREAD, IOCB_CMD_PREADV, IOCB_CMD_PWRITE, IOCB_CMD_PWRITEV):
        if rw_flags & ~RWF_SUPPORTED:
            raise Errno(E.EOPNOTSUPP)
        reading = opcode in (IOCB_CMD_PREAD, IOCB_CMD_PREADV)
        if not (f.readable if reading else f.writable):
            raise Errno(E.EBADF)
        pieces = _data(t, opcode, buf, nbytes)
        res = _run(t, f, opcode, pieces, offset)
    elif opcode in (IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC):
        if buf or nbytes or offset or rw_flags:
            raise Errno(E.EINVAL)
        try:
            f.fsync(opcode == IOCB_CMD_FDSYNC)
            res = 0
        except Errno as e:
            if e.errno == E.EINVAL:
                raise  # a file that cannot be synced: refused at submission, as Linux
            res = -e.errno
    elif opcode == IOCB_CMD_POLL:
        if buf & 0xFFFF0000 or offset or nbytes or rw_flags:
            raise Errno(E.EINVAL)
        ctx.in_flight += 1
        ctx.polls.append((iocb_addr, data, f, buf & 0xFFFF, eventfd))
        _check_polls(ctx)
        return
    else:
        raise Errno(E.EINVAL)
    ctx.in_flight += 1
    ctx.complete(iocb_addr, data, res)
    _signal(eventfd)


def _signal(eventfd) -> None:
    if eventfd is not None:
        eventfd.signal(1)


def _check_polls(ctx) -> None:
    """Complete the pending polls whose files are ready."""
    from sentry.poll import readiness
    POLLERR, POLLHUP = 0x8, 0x10
    for entry in list(ctx.polls):
        iocb_addr, data, f, events, eventfd = entry
        mask = readiness(f) & (events | POLLERR | POLLHUP)
        if mask:
            ctx.polls.remove(entry)
            ctx.complete(iocb_addr, data, mask)
            _signal(eventfd)


@syscall("io_submit", status=PARTIAL, note=NOTE)
def io_submit(t, ctx_id, nr, iocbpp):
    nr = s32(nr) if nr < 1 << 63 else -1
    if nr < 0:
        raise Errno(E.EINVAL)
    ctx = _context(t, ctx_id)
    nr = min(nr, ctx.ring_nr)
    done = 0
    for i in range(nr):
        try:
            _submit_one(t, ctx, t.mm.read_u64(iocbpp + 8 * i))
        except Errno:
            if done:
                return done
            raise
        done += 1
    return done


@syscall("io_cancel", status=PARTIAL, note=NOTE + "; only a pending POLL can be cancelled (EINPROGRESS, no "
         "event), anything else EINVAL as Linux's finished requests")
def io_cancel(t, ctx_id, iocb, result):
    # Linux's order: the iocb's aio_key (EFAULT, EINVAL unless 0), then the context
    if struct.unpack("<I", t.mm.read(iocb + 8, 4))[0] != 0:
        raise Errno(E.EINVAL)
    ctx = _context(t, ctx_id)
    for entry in ctx.polls:
        if entry[0] == iocb:
            ctx.polls.remove(entry)
            ctx.in_flight -= 1
            raise Errno(E.EINPROGRESS)  # cancelled, as Linux answers: no event comes for it
    raise Errno(E.EINVAL)


def _getevents(t, ctx_id, min_nr, nr, events, timeout):
    min_nr, nr = s32(min_nr) if min_nr < 1 << 63 else -1, s32(nr) if nr < 1 << 63 else -1
    ctx = _context(t, ctx_id)
    if min_nr > nr or min_nr < 0 or nr < 0:
        raise Errno(E.EINVAL)
    deadline = None
    if timeout:
        sec, nsec = struct.unpack("<qq", t.mm.read(timeout, 16))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
        state = t.restart_state
        if state is None or state[0] != "io_getevents":
            deadline = host_time.monotonic() + sec + nsec / 1e9
            # at the deadline the call runs again and returns what there is (fewer than min_nr)
            t.kernel.call_at(deadline, ctx.queue.notify)
            state = t.restart_state = ("io_getevents", deadline)
        deadline = state[1]
    _check_polls(ctx)
    ready = ctx.available()
    if ready >= max(min_nr, 1) or (deadline is not None and host_time.monotonic() >= deadline) or nr == 0:
        out = ctx.take(nr)
        if out:
            t.mm.write(events, out)
        return len(out) // aio.IO_EVENT.size
    from sentry.poll import wakers
    queues = [ctx.queue]
    for _, _, f, events_wanted, _ in ctx.polls:
        queues.extend(wakers(f, events_wanted)[0])
    raise Wait(queues=tuple(queues), interrupt_result=-E.EINTR)


@syscall("io_getevents", status=PARTIAL, note=NOTE)
def io_getevents(t, ctx_id, min_nr, nr, events, timeout):
    return _getevents(t, ctx_id, min_nr, nr, events, timeout)


@syscall("io_pgetevents", status=PARTIAL, note=NOTE + "; the signal mask holds while it waits")
def io_pgetevents(t, ctx_id, min_nr, nr, events, timeout, usig):
    if usig:
        mask_addr, size = struct.unpack("<QQ", t.mm.read(usig, 16))
        if mask_addr:
            if size != 8:
                raise Errno(E.EINVAL)
            from sentry.signals import set_wait_mask
            mask = t.mm.read_u64(mask_addr) & ~((1 << 8) | (1 << 18))  # never SIGKILL, SIGSTOP
            set_wait_mask(t, mask)
    return _getevents(t, ctx_id, min_nr, nr, events, timeout)
