"""Clocks and sleeping: clock_gettime(2), clock_getres(2), gettimeofday(2),
time(2), nanosleep(2), clock_nanosleep(2)."""
import errno as E
import time as host_time

from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import read_timespec, s32, write_timespec, write_timeval
from syscalls.registry import PARTIAL, syscall

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
TIMER_ABSTIME = 1

_HOST_CLOCKS = {
    CLOCK_REALTIME: host_time.CLOCK_REALTIME, CLOCK_MONOTONIC: host_time.CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_RAW: host_time.CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE: 5,
    CLOCK_MONOTONIC_COARSE: 6, CLOCK_BOOTTIME: host_time.CLOCK_BOOTTIME,
    CLOCK_REALTIME_ALARM: host_time.CLOCK_REALTIME, CLOCK_BOOTTIME_ALARM: host_time.CLOCK_BOOTTIME,
    CLOCK_TAI: host_time.CLOCK_TAI,
}


def now_ns(t, clock: int) -> int:
    host = _HOST_CLOCKS.get(clock)
    if host is not None:
        return host_time.clock_gettime_ns(host)
    if clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID):
        return t.cpu.cpu_time_ns()
    raise Errno(E.EINVAL)


@syscall("clock_gettime", status=PARTIAL, note="the host's clocks; per-process CPU clocks of other pids answer EINVAL")
def clock_gettime(t, clock, tp):
    write_timespec(t.mm, tp, now_ns(t, s32(clock)))
    return 0


@syscall("clock_getres")
def clock_getres(t, clock, res):
    clock = s32(clock)
    now_ns(t, clock)
    if res:
        write_timespec(t.mm, res, 4_000_000 if clock in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE) else 1)
    return 0


@syscall("gettimeofday", status=PARTIAL, note="the timezone argument is zeroed")
def gettimeofday(t, tv, tz):
    if tv:
        write_timeval(t.mm, tv, host_time.time_ns())
    if tz:
        t.mm.write(tz, bytes(8))
    return 0


@syscall("time")
def time_(t, tloc):
    now = host_time.time_ns() // 1_000_000_000
    if tloc:
        t.mm.write_u64(tloc, now)
    return now


def _sleep_until(deadline_ns_monotonic: int):
    raise Wait(deadline=deadline_ns_monotonic / 1e9, timeout_result=0)


@syscall("nanosleep", status=PARTIAL, note="sleeps in the event loop; not interrupted by signals yet")
def nanosleep(t, req, rem):
    duration = read_timespec(t.mm, req)
    if rem:
        t.mm.check(rem, 16, 2)
    _sleep_until(host_time.monotonic_ns() + duration)


@syscall("clock_nanosleep", status=PARTIAL, note="as nanosleep; CPU-time clocks answer EINVAL")
def clock_nanosleep(t, clock, flags, req, rem):
    clock = s32(clock)
    if clock not in _HOST_CLOCKS:
        raise Errno(E.EINVAL if clock not in (CLOCK_PROCESS_CPUTIME_ID,) else E.ENOTSUP)
    duration = read_timespec(t.mm, req)
    if flags & TIMER_ABSTIME:
        duration = max(0, duration - now_ns(t, clock))
    _sleep_until(host_time.monotonic_ns() + duration)
