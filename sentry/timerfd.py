"""timerfd objects: a timer on a clock whose expirations are read from a file
(timerfd_create(2)).

The timer is kept lazily, as a deadline and an interval on its clock: every
look at it (read, poll, gettime, settime) first counts the expirations that
have passed, so a read returns exactly how many periods went by however late
the loop ran. A `Kernel.call_at` timer exists only while someone waits for the
next expiry (a blocking read, or poll/select/epoll through sentry/poll.py's
wakers): it notifies the file's queue when the expiry comes, and is not kept
ticking for a timer nobody waits on. As on Linux (whose hrtimer stops at each
expiry until a read or a gettime restarts it), an expired timer wakes its
waiters once until it is read, gettime'd or set again: `events`, which
edge-triggered epoll looks at, counts those wake-ups."""
import errno as E
import time as _time

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode

CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM = 0, 1, 7, 8, 9
# the ALARM clocks are their plain clocks here: the sandbox cannot wake a suspended host
HOST_CLOCK = {CLOCK_REALTIME: _time.CLOCK_REALTIME, CLOCK_MONOTONIC: _time.CLOCK_MONOTONIC,
              CLOCK_BOOTTIME: _time.CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM: _time.CLOCK_REALTIME,
              CLOCK_BOOTTIME_ALARM: _time.CLOCK_BOOTTIME}
TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET = 1, 2
POLLIN, POLLRDNORM = 0x1, 0x40


class TimerFile(File):
    def __init__(self, kernel, clock: int, flags: int):
        super().__init__(Inode(0o600), O_RDWR | (flags & O_NONBLOCK), "anon_inode:[timerfd]")
        self.kernel = kernel
        self.clock = clock
        self.host_clock = HOST_CLOCK[clock]
        self.expiry = 0      # ns on the clock of the next expiry; 0: disarmed
        self.interval = 0    # ns; 0: one-shot
        self.ticks = 0       # expirations not yet read
        self.expired = False  # expired since the last read, gettime or settime: no more wake-ups until then
        self.handle = None   # the loop timer that wakes waiters at the next expiry
        self.queue = WaitQueue()
        self.events = 0
        self.closed = False

    def seek(self, offset: int, whence: int) -> int:
        if not 0 <= whence <= 4:
            raise Errno(E.EINVAL)
        return 0  # Linux's noop_llseek: the position stays 0

    offset = 0  # ns its clock is ahead in the creator's time namespace (sentry/namespaces.py)

    def now(self) -> int:
        return _time.clock_gettime_ns(self.host_clock) + self.offset

    def _advance(self, now: int) -> None:
        """Count the expirations up to now."""
        expiry = self.expiry
        if not expiry or now < expiry:
            return
        if self.interval:
            n = (now - expiry) // self.interval + 1
            self.expiry = expiry + n * self.interval
        else:
            n = 1
            self.expiry = 0
        self.ticks += n
        if not self.expired:  # Linux's hrtimer stops at an expiry: one wake-up until a read or gettime
            self.expired = True
            self.events += 1

    def _arm(self) -> None:
        """Have the loop wake the queue at the next expiry (someone is about to wait)."""
        if self.handle is None and self.expiry and not self.expired and not self.closed:
            left = max(0, self.expiry - self.now())
            self.handle = self.kernel.call_at(_time.monotonic() + left / 1e9, self._due)

    def _cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _due(self) -> None:
        self.handle = None
        if self.closed:
            return
        self._advance(self.now())
        if self.expired:
            self.queue.notify()
        elif self.queue.waiters:
            self._arm()  # the clocks disagreed by a hair: look again

    def get(self) -> tuple[int, int]:
        """(interval, time to the next expiry) in ns, as timerfd_gettime tells them."""
        now = self.now()
        self._advance(now)
        if self.interval:
            self.expired = False  # as Linux's gettime, which restarts a periodic timer
        return self.interval, (self.expiry - now if self.expiry else 0)

    def set(self, flags: int, interval: int, value: int) -> tuple[int, int]:
        """Arm (value > 0: relative, or absolute with TFD_TIMER_ABSTIME) or disarm; the old setting."""
        old = self.get()
        self._cancel()
        self.ticks = 0
        self.expired = False
        self.interval = interval  # kept even when disarmed: gettime shows it, as Linux's
        if not value:
            self.expiry = 0
        elif flags & TFD_TIMER_ABSTIME:
            self.expiry = value
        else:
            self.expiry = self.now() + value
        if self.queue.waiters:
            self._arm()
        return old

    def read(self, size: int) -> bytes:
        if size < 8:
            raise Errno(E.EINVAL)
        self._advance(self.now())
        if not self.ticks:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            self._arm()
            raise Wait(queues=(self.queue,))
        n, self.ticks, self.expired = self.ticks, 0, False
        return n.to_bytes(8, "little")

    def poll_readiness(self) -> int:
        self._advance(self.now())
        return POLLIN | POLLRDNORM if self.ticks else 0

    def poll_wakers(self, events: int):
        self._arm()
        return (self.queue,)

    def close(self) -> None:
        self.closed = True
        self._cancel()
