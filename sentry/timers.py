"""Timers that send signals: the interval timers (setitimer/alarm) and POSIX
timers (timer_create), all on the kernel loop's timers (`kernel.call_at`):
no sleeping threads.

Wall-clock timers (ITIMER_REAL; POSIX timers on REALTIME, MONOTONIC,
BOOTTIME, TAI) fire at their deadline. CPU-time timers (ITIMER_VIRTUAL,
ITIMER_PROF; POSIX timers on the process or thread CPU clock) are sampled:
the loop looks at the CPU time (`cpu.cpu_time_ns()`) when at least the time
left could have been used (CPU time never runs faster than the wall clock
times the number of threads), and again until it has, at most every
millisecond: a CPU-time timer fires up to a millisecond late. VIRTUAL and PROF both
count the whole CPU time of the process (user and system are not told apart).

A POSIX timer's signal is queued once: while it is pending, further
expirations count as overruns (si_overrun, timer_getoverrun), as Linux.
"""
import time as _time

ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2
SIGALRM, SIGVTALRM, SIGPROF = 14, 26, 27
ITIMER_SIGNAL = {ITIMER_REAL: SIGALRM, ITIMER_VIRTUAL: SIGVTALRM, ITIMER_PROF: SIGPROF}
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI = 7, 8, 9, 11
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
DELAYTIMER_MAX = 0x7FFFFFFF
CPU_POLL_NS = 1_000_000  # the shortest wait before a CPU-time timer looks at the CPU time again

_WALL = {CLOCK_REALTIME: _time.CLOCK_REALTIME, CLOCK_MONOTONIC: _time.CLOCK_MONOTONIC,
         CLOCK_BOOTTIME: _time.CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM: _time.CLOCK_REALTIME,
         CLOCK_BOOTTIME_ALARM: _time.CLOCK_BOOTTIME, CLOCK_TAI: _time.CLOCK_TAI}
TIMER_CLOCKS = set(_WALL) | {CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID}


def process_cpu_ns(proc) -> int:
    """CPU time of a process: its ended threads' and its live ones' so far."""
    return proc.cpu_ns + sum(t.cpu.cpu_time_ns() for t in proc.tasks if t.exit_status is None)


class _Timer:
    """What the itimers and POSIX timers share: an expiry on a clock, an interval,
    and the loop timer that fires it."""
    __slots__ = ("kernel", "proc", "clock", "thread", "expiry", "interval", "handle", "offset")

    def __init__(self, kernel, proc, clock: int, thread=None, offset: int = 0):
        self.kernel, self.proc, self.clock, self.thread = kernel, proc, clock, thread
        self.offset = offset  # ns its clock is ahead of the host's (sentry/clock.py, a time namespace)
        self.expiry = 0      # ns on `clock`; 0: disarmed
        self.interval = 0
        self.handle = None

    def now(self) -> int:
        host = _WALL.get(self.clock)
        if host is not None:
            return _time.clock_gettime_ns(host) + self.offset
        if self.clock == CLOCK_THREAD_CPUTIME_ID and self.thread is not None:
            return self.thread.cpu.cpu_time_ns()
        return process_cpu_ns(self.proc)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def arm(self, expiry: int, interval: int) -> None:
        self.cancel()
        self.expiry, self.interval = expiry, interval
        if expiry:
            self._schedule()

    def _schedule(self) -> None:
        left = max(0, self.expiry - self.now())
        if self.clock not in _WALL:
            # CPU time advances only while the task runs: look again no sooner than
            # CPU_POLL_NS, or a nearly used-up timer would keep the loop from running it
            left = max(CPU_POLL_NS, left // max(1, sum(1 for t in self.proc.tasks if t.exit_status is None)))
        self.handle = self.kernel.call_at(_time.monotonic() + left / 1e9, self._due)

    def remaining(self) -> int:
        """ns until the next expiry (0: disarmed); an interval timer past its expiry
        that the loop has not handled yet shows its next period."""
        if not self.expiry:
            return 0
        now = self.now()
        if now < self.expiry:
            return self.expiry - now
        if self.interval:
            return self.interval - (now - self.expiry) % self.interval or self.interval
        return 1  # due: about to fire

    def _due(self) -> None:
        self.handle = None
        if getattr(self.proc, "zombie", False) or not self.expiry:
            return
        now = self.now()
        if now < self.expiry:
            self._schedule()  # CPU time: not used up yet
            return
        missed = 0
        if self.interval:
            missed = (now - self.expiry) // self.interval
            self.expiry += (missed + 1) * self.interval
        else:
            self.expiry = 0
        self.fire(missed)
        if self.expiry and not getattr(self.proc, "zombie", False):
            self._schedule()

    def fire(self, missed: int) -> None:
        raise NotImplementedError


class ITimer(_Timer):
    __slots__ = ("which",)

    def fire(self, missed: int) -> None:
        from sentry import signals
        signals.send_process(self.proc, ITIMER_SIGNAL[self.which], signals.SigInfo(ITIMER_SIGNAL[self.which]))


RLIMIT_CPU, RLIM_INFINITY = 0, (1 << 64) - 1
SIGXCPU, SIGKILL = 24, 9


class CpuLimit(_Timer):
    """RLIMIT_CPU, as Linux's check_process_timers: at the hard limit SIGKILL; at the soft
    limit SIGXCPU, then again each further second (the soft limit rises by one each time)."""
    __slots__ = ("rlimits",)

    def fire(self, missed: int) -> None:
        from sentry import signals
        soft, hard = self.rlimits.get(RLIMIT_CPU, (RLIM_INFINITY, RLIM_INFINITY))
        if soft == RLIM_INFINITY:
            return
        now = self.now()
        if hard != RLIM_INFINITY and now >= hard * 1_000_000_000:
            ceiling = getattr(self.kernel, "cpu_time", None)
            if ceiling is not None and hard >= ceiling:
                # the run's own --cpu-time (runner.show_limits): its watchdog ends the whole
                # sandbox and reports the limit; look again until it has
                self.expiry = now + 10 * CPU_POLL_NS
                return
            signals.send_process(self.proc, SIGKILL, signals.SigInfo(SIGKILL))
            return
        signals.send_process(self.proc, SIGXCPU, signals.SigInfo(SIGXCPU))
        self.rlimits[RLIMIT_CPU] = (soft + 1, hard)
        self.expiry = _cpu_limit_expiry(soft + 1, hard)


def _cpu_limit_expiry(soft: int, hard: int) -> int:
    return max(1, min(soft, hard) * 1_000_000_000)


def cpu_limit_changed(task) -> None:
    """task's process has a new RLIMIT_CPU (setrlimit, prlimit, a fork's copy, the run's
    --cpu-time): watch its CPU time against it."""
    soft, hard = task.rlimits.get(RLIMIT_CPU, (RLIM_INFINITY, RLIM_INFINITY))
    proc = task.proc
    t = getattr(proc, "cpu_limit", None)
    if soft == RLIM_INFINITY:
        if t is not None:
            t.arm(0, 0)
        return
    if t is None:
        t = proc.cpu_limit = CpuLimit(task.kernel, proc, CLOCK_PROCESS_CPUTIME_ID)
    t.rlimits = task.rlimits
    t.arm(_cpu_limit_expiry(soft, hard), 0)


def itimer(task, which: int) -> ITimer:
    shared = task.sigshared
    t = shared.itimers.get(which)
    if t is None:
        clock = CLOCK_MONOTONIC if which == ITIMER_REAL else CLOCK_PROCESS_CPUTIME_ID
        t = shared.itimers[which] = ITimer(task.kernel, task.proc, clock)
        t.which = which
    t.proc = task.proc
    return t


class PosixTimer(_Timer):
    __slots__ = ("id", "notify", "signo", "value", "overrun", "overrun_last", "pending", "info", "shared")

    def fire(self, missed: int) -> None:
        from sentry import signals
        if self.notify == SIGEV_NONE:
            return
        if self.pending:
            self.overrun = min(DELAYTIMER_MAX, self.overrun + missed + 1)
            return
        self.overrun = min(DELAYTIMER_MAX, self.overrun + missed)
        info = signals.SigInfo(self.signo, signals.SI_TIMER, value=self.value, timer=self)
        self.info = info
        self.pending = True
        if self.notify & SIGEV_THREAD_ID and self.thread is not None and self.thread.exit_status is None:
            queued = signals.send(self.thread, self.signo, info)
        else:
            queued = signals.send_process(self.proc, self.signo, info)
        if not queued:
            self.pending = False
            self.info = None

    def remove_pending(self) -> None:
        """Take back its queued signal (the timer was deleted or set anew)."""
        if not self.pending or self.info is None:
            return
        info = self.info
        self.pending, self.info = False, None
        for t in self.proc.tasks:
            for holder in (t, t.sigshared):
                queue = holder.sigqueue if holder is t else holder.queue
                if info in queue:
                    queue.remove(info)
                    bit = 1 << (info.signo - 1)
                    if not any(i.signo == info.signo for i in queue):
                        if holder is t:
                            t.pending_signals &= ~bit
                        else:
                            holder.pending &= ~bit
                    return


def create(task, clock: int, notify: int, signo: int, value: int, thread) -> PosixTimer:
    shared = task.sigshared
    tid = shared.next_timer
    while tid in shared.timers:
        tid = (tid + 1) & 0x7FFFFFFF
    shared.next_timer = (tid + 1) & 0x7FFFFFFF
    t = PosixTimer(task.kernel, task.proc, clock, thread, task.nsproxy.time.offset_ns(clock))
    t.id, t.notify, t.signo, t.value = tid, notify, signo, value
    t.overrun = t.overrun_last = 0
    t.pending, t.info, t.shared = False, None, shared
    shared.timers[tid] = t
    return t


def delete(shared, t: PosixTimer) -> None:
    t.cancel()
    t.expiry = 0
    t.remove_pending()
    shared.timers.pop(t.id, None)


def delete_all(shared) -> None:
    """execve and exit: the POSIX timers go (the interval timers stay across execve)."""
    for t in list(shared.timers.values()):
        delete(shared, t)


def taken(info) -> None:
    """A signal was dequeued for delivery: a timer's overrun count is what it carries."""
    t = info.timer if info is not None else None
    if t is not None and t.info is info:
        info.overrun = t.overrun
        t.overrun_last, t.overrun = t.overrun, 0
        t.pending, t.info = False, None


def dropped(shared, mask: int) -> None:
    """Pending signals of mask were discarded (the signal became ignored)."""
    for t in shared.timers.values():
        if t.pending and t.info is not None and (1 << (t.info.signo - 1)) & mask:
            t.pending, t.info = False, None
