"""The futex2 calls: futex_waitv(2) (Linux 5.16: wait on up to 128 futexes at once) and
futex_wake(2), futex_wait(2), futex_requeue(2) (Linux 6.7), on the same queues as
futex(2) (sentry/futex.py). Only 32-bit futexes exist, as in Linux."""
import errno as E
import struct
import time as host_time

from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import s32
from syscalls.futex import _table
from syscalls.registry import syscall

FUTEX_WAITV_MAX = 128
FUTEX2_SIZE_U32, FUTEX2_SIZE_MASK, FUTEX2_NUMA, FUTEX2_PRIVATE = 0x02, 0x03, 0x04, 0x80
FUTEX2_VALID_MASK = FUTEX2_SIZE_MASK | FUTEX2_NUMA | FUTEX2_PRIVATE
CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
INT_MAX = 0x7FFFFFFF
_WAITV = struct.Struct("<QQII")  # val, uaddr, flags, __reserved
_TIMESPEC = struct.Struct("<qq")


def _check_flags(flags: int) -> None:
    """futex2_to_flags + futex_flags_valid: 32-bit futexes only, no NUMA."""
    if flags & ~FUTEX2_VALID_MASK or flags & FUTEX2_SIZE_MASK != FUTEX2_SIZE_U32 or flags & FUTEX2_NUMA:
        raise Errno(E.EINVAL)


def _deadline(t, timeout: int, clockid: int):
    """An absolute timeout on CLOCK_REALTIME or CLOCK_MONOTONIC as a loop deadline, or None."""
    if not timeout:
        return None
    if clockid not in (CLOCK_REALTIME, CLOCK_MONOTONIC):
        raise Errno(E.EINVAL)
    sec, nsec = _TIMESPEC.unpack(t.mm.read(timeout, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise Errno(E.EINVAL)
    from syscalls.time import now_ns
    left = sec * 1_000_000_000 + nsec - now_ns(t, clockid)
    return (host_time.monotonic_ns() + max(0, left)) / 1e9


def _key(t, uaddr: int, flags: int):
    if uaddr & 3:
        raise Errno(E.EINVAL)
    table = _table(t)
    return table.key(t, uaddr, bool(flags & FUTEX2_PRIVATE))


def _word(t, uaddr: int) -> int:
    return int.from_bytes(t.mm.read(uaddr, 4), "little")


@syscall("futex_waitv", note="up to 128 32-bit futexes, private or shared; returns the index of the one woken; "
         "an absolute timeout on CLOCK_REALTIME or CLOCK_MONOTONIC")
def futex_waitv(t, waiters, nr_futexes, flags, timeout, clockid):
    nr = nr_futexes & 0xFFFFFFFF
    if flags & 0xFFFFFFFF or not nr or nr > FUTEX_WAITV_MAX or not waiters:
        raise Errno(E.EINVAL)
    deadline = _deadline(t, timeout, s32(clockid))
    raw = t.mm.read(waiters, _WAITV.size * nr)
    entries = []
    for i in range(nr):
        val, uaddr, wflags, reserved = _WAITV.unpack_from(raw, _WAITV.size * i)
        if wflags & ~FUTEX2_VALID_MASK or reserved or wflags & FUTEX2_SIZE_MASK != FUTEX2_SIZE_U32:
            raise Errno(E.EINVAL)
        entries.append((val, uaddr, wflags))
    keys = [_key(t, uaddr, wflags) for _, uaddr, wflags in entries]
    if t.restart_state == "futex_waitv":  # woken: by which of them
        woken = getattr(t, "futex_woken", None)
        t.futex_woken = None
        if woken in keys:
            return keys.index(woken)
    for val, uaddr, _ in entries:
        if _word(t, uaddr) != val & 0xFFFFFFFF:  # values wider than 32 bits never match
            raise Errno(E.EAGAIN)
    table = _table(t)
    queues = []
    for key in keys:
        q = table.queue(key)
        q.bitsets[t] = 0xFFFFFFFF
        if q not in queues:
            queues.append(q)
    t.futex_woken = None
    t.restart_state = "futex_waitv"
    raise Wait(queues=tuple(queues), deadline=deadline, timeout_result=-E.ETIMEDOUT)


@syscall("futex_wake", note="wakes up to nr waiters whose bitset meets mask (0 wakes none), as FUTEX_WAKE_BITSET")
def futex_wake(t, uaddr, mask, nr, flags):
    _check_flags(flags)
    if mask > 0xFFFFFFFF or not mask:
        raise Errno(E.EINVAL)
    key = _key(t, uaddr, flags)
    t.mm.check(uaddr, 4, 1)
    nr = min(nr, INT_MAX) if nr < 1 << 63 else 0
    if not nr:
        return 0
    return _table(t).wake(key, nr, mask)


@syscall("futex_wait", note="as FUTEX_WAIT_BITSET: an absolute timeout on CLOCK_REALTIME or CLOCK_MONOTONIC")
def futex_wait(t, uaddr, val, mask, flags, timeout, clockid):
    _check_flags(flags)
    if mask > 0xFFFFFFFF or not mask or val > 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    key = _key(t, uaddr, flags)
    deadline = _deadline(t, timeout, s32(clockid))
    if _word(t, uaddr) != val:
        raise Errno(E.EAGAIN)
    q = _table(t).queue(key)
    q.bitsets[t] = mask
    raise Wait(queues=(q,), deadline=deadline, timeout_result=-E.ETIMEDOUT, wake_result=0)


@syscall("futex_requeue", note="as FUTEX_CMP_REQUEUE, the first futex's value compared")
def futex_requeue(t, waiters, flags, nr_wake, nr_requeue):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    raw = t.mm.read(waiters, 2 * _WAITV.size)
    (val, uaddr, f1, r1), (_, uaddr2, f2, r2) = _WAITV.unpack_from(raw, 0), _WAITV.unpack_from(raw, _WAITV.size)
    for f, r in ((f1, r1), (f2, r2)):
        if r:
            raise Errno(E.EINVAL)
        _check_flags(f)
    nr_wake, nr_requeue = s32(nr_wake), s32(nr_requeue)
    if nr_wake < 0 or nr_requeue < 0:
        raise Errno(E.EINVAL)
    key, key2 = _key(t, uaddr, f1), _key(t, uaddr2, f2)
    if _word(t, uaddr) != val & 0xFFFFFFFF or val > 0xFFFFFFFF:
        raise Errno(E.EAGAIN)
    _word(t, uaddr2)
    return _table(t).requeue(key, key2, nr_wake, nr_requeue)
