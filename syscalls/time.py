"""Clocks, sleeping and timers: clock_gettime(2), clock_getres(2),
gettimeofday(2), time(2), clock_settime(2), settimeofday(2), adjtimex(2),
clock_adjtime(2), nanosleep(2), clock_nanosleep(2), alarm(2), setitimer(2),
getitimer(2), timer_create(2), timer_settime(2), timer_gettime(2),
timer_getoverrun(2), timer_delete(2).

CLOCK_REALTIME and TAI are the host's; the monotonic and boottime clocks are the
sandbox's own (sentry/clock.py: the host's shifted to start near zero when the
sandbox starts, then a time namespace's offsets). They are read, never set (no task
of the sandbox has CAP_SYS_TIME over them). Every sleep and timer is the kernel loop's
(sentry/timers.py): no sleeping threads."""
import ctypes
import errno as E
import struct
import time as host_time

from sentry.errors import Errno
from sentry.signals import signal_ready
from sentry.sched import Wait
from syscalls.abi import read_timespec, s32, write_timespec, write_timeval
from syscalls.registry import PARTIAL, syscall

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 4, 5, 6, 7
CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 8, 9, 11
TIMER_ABSTIME = 1
ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 514, 516

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
        # the sandbox's shift and the time namespace's offsets (sentry/clock.py, sentry/namespaces.py)
        return host_time.clock_gettime_ns(host) + t.nsproxy.time.offset_ns(clock)
    if clock == CLOCK_THREAD_CPUTIME_ID:
        return t.cpu.cpu_time_ns()
    if clock == CLOCK_PROCESS_CPUTIME_ID:
        from sentry.timers import process_cpu_ns
        return process_cpu_ns(t.proc)
    if clock < 0 and clock & 3 != 3:  # another thread's or process's CPU clock (pthread_getcpuclockid)
        from sentry.timers import process_cpu_ns
        who = ~(clock >> 3)
        if clock & 4:  # a thread's: of the caller's own process only, as Linux
            task = t if who == 0 else t.kernel.tasks.get(who)
            if task is None or task.proc is not t.proc:
                raise Errno(E.EINVAL)
            return task.cpu.cpu_time_ns()
        proc = t.proc if who == 0 else t.kernel.procs.get(who)
        if proc is None or proc.zombie:
            raise Errno(E.EINVAL)
        return process_cpu_ns(proc)
    raise Errno(E.EINVAL)


@syscall("clock_gettime", status=PARTIAL, note="the host's realtime and TAI clocks, the sandbox's monotonic and "
         "boottime ones (started near zero with the sandbox); CPU clocks of the caller, its threads and the sandbox's processes")
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


# --- setting and disciplining the clock ------------------------------------------------------
TIME_SETTOD_SEC_MAX = (1 << 63) // 1_000_000_000 - 30 * 365 * 86400  # KTIME_SEC_MAX less 30 years


def _settable_time(sec: int, nsec: int) -> None:
    """timespec64_valid_settod: EINVAL for a time the realtime clock cannot be set to."""
    if sec < 0 or not 0 <= nsec < 1_000_000_000 or sec >= TIME_SETTOD_SEC_MAX:
        raise Errno(E.EINVAL)


def _cpu_clock(clock: int) -> bool:
    return clock < 0 and clock & 3 != 3


@syscall("clock_settime", note="the clocks are the host's and are never set: CLOCK_REALTIME checks the time "
         "then answers EPERM (no CAP_SYS_TIME), CPU clocks EPERM, the other clocks EINVAL, as Linux")
def clock_settime(t, clock, tp):
    clock = s32(clock)
    if clock != CLOCK_REALTIME and not _cpu_clock(clock):
        raise Errno(E.EINVAL)
    sec, nsec = struct.unpack("<qq", t.mm.read(tp, 16))
    if _cpu_clock(clock):
        now_ns(t, clock)  # EINVAL for a clock of no task the caller may see
        raise Errno(E.EPERM)
    _settable_time(sec, nsec)
    raise Errno(E.EPERM)


@syscall("settimeofday", note="the clock is the host's and is never set: the time and timezone are checked "
         "(EFAULT, EINVAL) and then EPERM (no CAP_SYS_TIME), as Linux")
def settimeofday(t, tv, tz):
    if tv:
        sec, usec = struct.unpack("<qq", t.mm.read(tv, 16))
        if not 0 <= usec <= 1_000_000:
            raise Errno(E.EINVAL)
        _settable_time(sec, usec * 1000)
    if tz:
        t.mm.read(tz, 8)
    raise Errno(E.EPERM)


TIMEX_SIZE = 208  # struct __kernel_timex
ADJ_OFFSET_SINGLESHOT, ADJ_OFFSET_READONLY, ADJ_ADJTIME = 0x0001, 0x2000, 0x8000
ADJ_OFFSET_SS_READ = ADJ_OFFSET_SINGLESHOT | ADJ_ADJTIME | ADJ_OFFSET_READONLY
_libc = ctypes.CDLL(None, use_errno=True)


def _host_timex(modes: int) -> tuple[bytes, int]:
    """The host clock's discipline state (modes 0 or ADJ_OFFSET_SS_READ: read-only)."""
    buf = ctypes.create_string_buffer(struct.pack("<I", modes).ljust(TIMEX_SIZE, b"\0"), TIMEX_SIZE)
    state = _libc.clock_adjtime(CLOCK_REALTIME, buf)
    if state < 0:
        raise Errno(ctypes.get_errno())
    return buf.raw, state


def _adjtimex(t, buf) -> int:
    """Linux's do_adjtimex for a caller without CAP_SYS_TIME: a query answers the host clock's
    state (its TIME_* value), any change EPERM."""
    modes = t.mm.read_u32(buf)
    t.mm.read(buf, TIMEX_SIZE)
    if modes & ADJ_ADJTIME:  # adjtime(3)'s single-shot offset
        if not modes & ADJ_OFFSET_SINGLESHOT:
            raise Errno(E.EINVAL)
        if not modes & ADJ_OFFSET_READONLY:
            raise Errno(E.EPERM)
        modes = ADJ_OFFSET_SS_READ  # (Linux ignores the other bits here: the host never sees them)
    elif modes:
        raise Errno(E.EPERM)
    data, state = _host_timex(modes)
    t.mm.write(buf, data)
    return state


@syscall("adjtimex", note="a query reports the host clock's NTP state (the sandbox's clock is the host's); "
         "any change EPERM, as without CAP_SYS_TIME")
def adjtimex(t, buf):
    return _adjtimex(t, buf)


@syscall("clock_adjtime", note="as adjtimex for CLOCK_REALTIME; the other clocks EOPNOTSUPP (they cannot be "
         "adjusted), unknown ones EINVAL")
def clock_adjtime(t, clock, buf):
    clock = s32(clock)
    if clock == CLOCK_REALTIME:
        return _adjtimex(t, buf)
    if clock in _HOST_CLOCKS or clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID) or _cpu_clock(clock):
        if _cpu_clock(clock):
            now_ns(t, clock)
        raise Errno(E.EOPNOTSUPP)
    raise Errno(E.EINVAL)


# --- sleeping ----------------------------------------------------------------------------------
def _sleep(t, deadline_ns: int, rem: int):
    """Sleep in the loop until time.monotonic_ns() reaches deadline_ns. A signal ends
    it with -ERESTART_RESTARTBLOCK (the time left written to rem): a handler makes
    that EINTR, otherwise restart_syscall sleeps on to the same deadline."""
    def interrupted(task):
        if rem:
            try:
                write_timespec(task.mm, rem, max(0, deadline_ns - host_time.monotonic_ns()))
            except Errno as e:
                return -e.errno
        task.restart_block = lambda tt: _sleep(tt, deadline_ns, rem)
        return -ERESTART_RESTARTBLOCK
    if signal_ready(t):
        return interrupted(t)
    raise Wait(deadline=deadline_ns / 1e9, timeout_result=0, on_interrupt=interrupted)


def _sleep_abs(t, deadline_ns: int):
    """An absolute sleep: a signal ends it with -ERESTARTNOHAND (restarted as it was)."""
    if signal_ready(t):
        return -ERESTARTNOHAND
    raise Wait(deadline=deadline_ns / 1e9, timeout_result=0, interrupt_result=-ERESTARTNOHAND)


@syscall("nanosleep", note="a wait in the event loop; a signal ends it as Linux (the time left in rem, "
         "then EINTR after a handler or a transparent restart_syscall)")
def nanosleep(t, req, rem):
    duration = read_timespec(t.mm, req)
    return _sleep(t, host_time.monotonic_ns() + duration, rem)


@syscall("clock_nanosleep", status=PARTIAL, note="REALTIME, MONOTONIC, BOOTTIME, TAI (and the ALARM "
         "forms), relative or TIMER_ABSTIME, interrupted as nanosleep; a clock Linux cannot sleep on "
         "(the thread's CPU time, MONOTONIC_RAW, the COARSE ones) EOPNOTSUPP, and so is the process's "
         "CPU time (Linux sleeps until it has run that long)")
def clock_nanosleep(t, clock, flags, req, rem):
    clock = s32(clock)
    if clock not in _HOST_CLOCKS or clock in (CLOCK_MONOTONIC_RAW, CLOCK_REALTIME_COARSE,
                                              CLOCK_MONOTONIC_COARSE):
        # Linux: an unknown clock is EINVAL, a known one without nsleep EOPNOTSUPP
        known = clock in _HOST_CLOCKS or clock in (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID)
        raise Errno(E.EOPNOTSUPP if known else E.EINVAL)
    value = read_timespec(t.mm, req)
    if flags & TIMER_ABSTIME:
        left = value - now_ns(t, clock)
        return _sleep_abs(t, host_time.monotonic_ns() + max(0, left))
    return _sleep(t, host_time.monotonic_ns() + value, rem)


# --- interval timers -------------------------------------------------------------------------------
_TIMEVAL = struct.Struct("<qq")


def _read_itimerval(t, addr: int):
    raw = t.mm.read(addr, 32)
    out = []
    for off in (0, 16):
        sec, usec = _TIMEVAL.unpack_from(raw, off)
        if sec < 0 or not 0 <= usec < 1_000_000:
            raise Errno(E.EINVAL)
        out.append(sec * 1_000_000_000 + usec * 1000)
    return out  # interval, value


def _itimerval(interval: int, value: int) -> bytes:
    def tv(ns):
        return _TIMEVAL.pack(ns // 1_000_000_000, (ns % 1_000_000_000) // 1000)
    return tv(interval) + tv(value)


def _timers():
    from sentry import timers  # the first timer a program sets imports it: not on the start path
    return timers


def _set_itimer(t, which: int, interval: int, value: int):
    """Arm (or with value 0 disarm) an interval timer; (old interval, old value)."""
    timers = _timers()
    it = timers.itimer(t, which)
    old = (it.interval, it.remaining())
    if value:
        it.arm(it.now() + value, interval)
    else:
        it.arm(0, 0)
    return old


@syscall("setitimer", status=PARTIAL, note="REAL is the loop's timer; VIRTUAL and PROF count the "
         "process's whole CPU time (user and system not told apart), sampled by the loop")
def setitimer(t, which, new, old):
    timers = _timers()
    which = s32(which)
    if which not in timers.ITIMER_SIGNAL:
        raise Errno(E.EINVAL)
    interval, value = _read_itimerval(t, new) if new else (0, 0)
    if old:
        t.mm.check(old, 32, 2)
    o_interval, o_value = _set_itimer(t, which, interval, value)
    if old:
        t.mm.write(old, _itimerval(o_interval, o_value))
    return 0


@syscall("getitimer", status=PARTIAL, note="as setitimer")
def getitimer(t, which, cur):
    timers = _timers()
    which = s32(which)
    if which not in timers.ITIMER_SIGNAL:
        raise Errno(E.EINVAL)
    it = timers.itimer(t, which)
    t.mm.write(cur, _itimerval(it.interval, it.remaining()))
    return 0


@syscall("alarm")
def alarm(t, seconds):
    timers = _timers()
    seconds &= 0xFFFFFFFF
    _, old = _set_itimer(t, timers.ITIMER_REAL, 0, seconds * 1_000_000_000)
    sec, usec = old // 1_000_000_000, (old % 1_000_000_000) // 1000
    if (not sec and usec) or usec >= 500_000:
        sec += 1
    return sec


# --- POSIX timers ----------------------------------------------------------------------------------
_SIGEVENT = struct.Struct("<Qiii")  # sigev_value, sigev_signo, sigev_notify, sigev_notify_thread_id


def _timer(t, timerid):
    timer = t.sigshared.timers.get(s32(timerid))
    if timer is None:
        raise Errno(E.EINVAL)
    return timer


def _read_itimerspec(t, addr: int):
    raw = t.mm.read(addr, 32)
    out = []
    for off in (0, 16):
        sec, nsec = _TIMEVAL.unpack_from(raw, off)
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
        out.append(sec * 1_000_000_000 + nsec)
    return out  # interval, value


def _itimerspec(interval: int, value: int) -> bytes:
    return _TIMEVAL.pack(*divmod(interval, 1_000_000_000)) + _TIMEVAL.pack(*divmod(value, 1_000_000_000))


@syscall("timer_create", status=PARTIAL, note="REALTIME, MONOTONIC, BOOTTIME, TAI, the ALARM forms and "
         "the calling process's and thread's CPU clocks (sampled by the loop); SIGEV_SIGNAL, SIGEV_NONE, "
         "SIGEV_THREAD_ID (glibc's SIGEV_THREAD needs threads: issue 6); other processes' CPU clocks EINVAL")
def timer_create(t, clock, sevp, timerid):
    timers = _timers()
    clock = s32(clock)
    if clock not in timers.TIMER_CLOCKS:
        raise Errno(E.EINVAL)
    thread = t if clock == CLOCK_THREAD_CPUTIME_ID else None
    if sevp:
        value, signo, notify, tid = _SIGEVENT.unpack(t.mm.read(sevp, _SIGEVENT.size))
        if notify not in (timers.SIGEV_SIGNAL, timers.SIGEV_NONE, timers.SIGEV_THREAD,
                          timers.SIGEV_SIGNAL | timers.SIGEV_THREAD_ID):
            raise Errno(E.EINVAL)
        if notify & timers.SIGEV_THREAD_ID:
            target = t.kernel.tasks.get(tid)
            if target is None or target.proc is not t.proc or target.exit_status is not None:
                raise Errno(E.EINVAL)
            thread = target
        if notify != timers.SIGEV_NONE and not 1 <= signo <= 64:
            raise Errno(E.EINVAL)
    else:
        value, signo, notify = None, 14, timers.SIGEV_SIGNAL  # SIGALRM, with the timer's id as value
    t.mm.check(timerid, 4, 2)
    timer = timers.create(t, clock, notify, signo, 0, thread)
    timer.value = timer.id if value is None else value
    t.mm.write_u32(timerid, timer.id)
    return 0


@syscall("timer_settime")
def timer_settime(t, timerid, flags, new, old):
    if not new:
        raise Errno(E.EINVAL)  # before the timer is looked up, as Linux
    timer = _timer(t, timerid)
    interval, value = _read_itimerspec(t, new)
    if old:
        t.mm.check(old, 32, 2)
        t.mm.write(old, _itimerspec(timer.interval, timer.remaining()))
    timer.remove_pending()
    timer.overrun = timer.overrun_last = 0
    if not value:
        timer.arm(0, 0)
    elif flags & TIMER_ABSTIME:
        timer.arm(max(1, value), interval)
    else:
        timer.arm(timer.now() + value, interval)
    return 0


@syscall("timer_gettime")
def timer_gettime(t, timerid, cur):
    timer = _timer(t, timerid)
    t.mm.write(cur, _itimerspec(timer.interval, timer.remaining()))
    return 0


@syscall("timer_getoverrun")
def timer_getoverrun(t, timerid):
    return _timer(t, timerid).overrun_last


@syscall("timer_delete")
def timer_delete(t, timerid):
    timers = _timers()
    timers.delete(t.sigshared, _timer(t, timerid))
    return 0
