"""futex(2): waits and wakes on real queues (sentry/futex.py), private and shared.

A wait checks the word and parks the task until a wake (the call returns 0),
its timeout (ETIMEDOUT) or a signal; wakes count what they woke. Shared
futexes in shared mappings meet across processes."""
import errno as E
import time as host_time

from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import read_timespec
from syscalls.registry import PARTIAL, syscall

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 6, 7, 8, 9, 10
FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI, FUTEX_LOCK_PI2 = 11, 12, 13
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
INT_MAX = 0x7FFFFFFF
PI_OPS = (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI,
          FUTEX_LOCK_PI2)


def _table(t):
    table = getattr(t.kernel, "futexes", None)
    if table is None:
        from sentry.futex import Futexes
        table = t.kernel.futexes = Futexes()
    return table


def _word(t, addr: int) -> int:
    if addr & 3:
        raise Errno(E.EINVAL)
    return int.from_bytes(t.mm.read(addr, 4), "little")


def _wait(t, uaddr, op, val, timeout, bitset, absolute: bool):
    if bitset == 0:
        raise Errno(E.EINVAL)
    deadline = None
    if timeout:
        ns = read_timespec(t.mm, timeout)
        if absolute:  # FUTEX_WAIT_BITSET: an absolute time on CLOCK_REALTIME or the sandbox's CLOCK_MONOTONIC
            from syscalls.time import CLOCK_MONOTONIC, CLOCK_REALTIME, now_ns
            ns = max(0, ns - now_ns(t, CLOCK_REALTIME if op & FUTEX_CLOCK_REALTIME else CLOCK_MONOTONIC))
        deadline = (host_time.monotonic_ns() + ns) / 1e9
    if _word(t, uaddr) != val & 0xFFFFFFFF:
        raise Errno(E.EAGAIN)
    table = _table(t)
    q = table.queue(table.key(t, uaddr, bool(op & FUTEX_PRIVATE_FLAG)))
    q.bitsets[t] = bitset
    raise Wait(queues=(q,), deadline=deadline, timeout_result=-E.ETIMEDOUT, wake_result=0)


def _wake_op(t, uaddr, op, count, count2, uaddr2, encoded):
    """FUTEX_WAKE_OP: *uaddr2 = oldval OP oparg; wake count on uaddr, and count2 on
    uaddr2 if oldval CMP cmparg."""
    private = bool(op & FUTEX_PRIVATE_FLAG)
    kind, cmp = (encoded >> 28) & 0xF, (encoded >> 24) & 0xF
    oparg, cmparg = (encoded >> 12) & 0xFFF, encoded & 0xFFF
    if kind & 8:  # FUTEX_OP_OPARG_SHIFT
        oparg = 1 << (oparg & 31)
        kind &= 7
    if kind > 4 or cmp > 5:
        raise Errno(E.ENOSYS)
    old = _word(t, uaddr2)
    new = (oparg, old + oparg, old | oparg, old & ~oparg, old ^ oparg)[kind] & 0xFFFFFFFF
    t.mm.write_u32(uaddr2, new)
    signed = old - (1 << 32) if old & 0x80000000 else old
    sarg = cmparg - (1 << 12) if cmparg & 0x800 else cmparg
    hit = (signed == sarg, signed != sarg, signed < sarg, signed <= sarg, signed > sarg, signed >= sarg)[cmp]
    table = _table(t)
    n = table.wake(table.key(t, uaddr, private), count)
    if hit:
        n += table.wake(table.key(t, uaddr2, private), count2)
    return n


@syscall("futex", status=PARTIAL, note="WAIT, WAKE, their _BITSET forms, REQUEUE, CMP_REQUEUE, WAKE_OP; private and shared (across processes in shared mappings); the priority-inheritance ops answer ENOSYS")
def futex(t, uaddr, op, val, timeout, uaddr2, val3):
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    if op & FUTEX_CLOCK_REALTIME and cmd not in (FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI,
                                                  FUTEX_LOCK_PI2):
        raise Errno(E.ENOSYS)
    private = bool(op & FUTEX_PRIVATE_FLAG)
    if cmd == FUTEX_WAIT:
        return _wait(t, uaddr, op, val, timeout, FUTEX_BITSET_MATCH_ANY, absolute=False)
    if cmd == FUTEX_WAIT_BITSET:
        return _wait(t, uaddr, op, val, timeout, val3 & 0xFFFFFFFF, absolute=True)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = FUTEX_BITSET_MATCH_ANY if cmd == FUTEX_WAKE else val3 & 0xFFFFFFFF
        if bitset == 0:
            raise Errno(E.EINVAL)
        if uaddr & 3:
            raise Errno(E.EINVAL)
        t.mm.check(uaddr, 4, 1)
        table = _table(t)
        return table.wake(table.key(t, uaddr, private), min(val & 0xFFFFFFFF, INT_MAX), bitset)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        count, move = val & 0xFFFFFFFF, timeout & 0xFFFFFFFF  # the timeout argument carries val2
        if count > INT_MAX or move > INT_MAX:
            raise Errno(E.EINVAL)
        if cmd == FUTEX_CMP_REQUEUE and _word(t, uaddr) != val3 & 0xFFFFFFFF:
            raise Errno(E.EAGAIN)
        _word(t, uaddr2)
        table = _table(t)
        return table.requeue(table.key(t, uaddr, private), table.key(t, uaddr2, private), count, move)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, uaddr, op, min(val & 0xFFFFFFFF, INT_MAX), min(timeout & 0xFFFFFFFF, INT_MAX),
                        uaddr2, val3 & 0xFFFFFFFF)
    if cmd in PI_OPS:
        raise Errno(E.ENOSYS)
    raise Errno(E.ENOSYS)
