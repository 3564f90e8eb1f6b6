"""futex(2), for a process with one thread: waits compare and time out, wakes
find nobody. Threads (issue 6) bring real wait queues."""
import errno as E
import time as host_time

from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import read_timespec
from syscalls.registry import PARTIAL, syscall

FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256


@syscall("futex", status=PARTIAL, note="WAIT/WAKE(_BITSET) for one thread: a wait checks the value and sleeps until its timeout; no other waiters exist yet; REQUEUE, WAKE_OP and PI answer ENOSYS")
def futex(t, uaddr, op, val, timeout, uaddr2, val3):
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    if uaddr & 3:
        raise Errno(E.EINVAL)
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        if cmd == FUTEX_WAKE_BITSET and val3 & 0xFFFFFFFF == 0:
            raise Errno(E.EINVAL)
        t.mm.check(uaddr, 4, 1)
        return 0
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        if cmd == FUTEX_WAIT_BITSET and val3 & 0xFFFFFFFF == 0:
            raise Errno(E.EINVAL)
        current = int.from_bytes(t.mm.read(uaddr, 4), "little")
        if current != val & 0xFFFFFFFF:
            raise Errno(E.EAGAIN)
        if not timeout:
            t.kernel.log_once("futex wait with no timeout in a one-thread process: it never returns")
            raise Wait()
        ns = read_timespec(t.mm, timeout)
        now = host_time.monotonic_ns()
        if cmd == FUTEX_WAIT_BITSET:  # absolute, on CLOCK_REALTIME or CLOCK_MONOTONIC
            clock = host_time.CLOCK_REALTIME if op & FUTEX_CLOCK_REALTIME else host_time.CLOCK_MONOTONIC
            ns = max(0, ns - host_time.clock_gettime_ns(clock))
        raise Wait(deadline=(now + ns) / 1e9, timeout_result=-E.ETIMEDOUT)
    raise Errno(E.ENOSYS)


