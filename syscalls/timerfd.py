"""timerfd_create(2), timerfd_settime(2), timerfd_gettime(2): timers read from
a file (sentry/timerfd.py)."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.timerfd import HOST_CLOCK, TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET, TimerFile
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

TFD_CLOEXEC, TFD_NONBLOCK = O_CLOEXEC, O_NONBLOCK
_ITIMERSPEC = struct.Struct("<qqqq")  # it_interval, it_value (struct timespec each)
NS = 1_000_000_000


@syscall("timerfd_create", "timerfd", status=PARTIAL,
         note="CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME; the _ALARM clocks are accepted (no EPERM) "
         "and act as their plain clocks: the sandbox cannot wake a suspended host; TFD_NONBLOCK, TFD_CLOEXEC")
def timerfd_create(t, clock, flags):
    clock = s32(clock)
    flags = s32(flags)
    if flags & ~(TFD_CLOEXEC | TFD_NONBLOCK) or clock not in HOST_CLOCK:
        raise Errno(E.EINVAL)
    f = TimerFile(t.kernel, clock, flags)
    f.offset = t.nsproxy.time.offset_ns(clock)  # its clock as the creator's time namespace has it
    return t.fds.install(f, cloexec=bool(flags & TFD_CLOEXEC))


def _timer(t, fd) -> TimerFile:
    f = t.fds.get(s32(fd))  # EBADF
    if not isinstance(f, TimerFile):
        raise Errno(E.EINVAL)
    return f


def _pack(interval: int, value: int) -> bytes:
    return _ITIMERSPEC.pack(*divmod(interval, NS), *divmod(value, NS))


@syscall("timerfd_settime", status=PARTIAL,
         note="relative and TFD_TIMER_ABSTIME, one-shot and periodic (expirations counted however late the "
         "loop runs); TFD_TIMER_CANCEL_ON_SET is accepted but never reports ECANCELED (the sandbox's "
         "programs cannot set the clock); the TFD_IOC_SET_TICKS ioctl answers ENOTTY")
def timerfd_settime(t, fd, flags, new, old):
    isec, insec, vsec, vnsec = _ITIMERSPEC.unpack(t.mm.read(new, _ITIMERSPEC.size))  # EFAULT first
    flags = s32(flags)
    if flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) or isec < 0 or vsec < 0 \
            or not 0 <= insec < NS or not 0 <= vnsec < NS:
        raise Errno(E.EINVAL)
    f = _timer(t, fd)
    if old:
        t.mm.check(old, _ITIMERSPEC.size, 2)
    interval, left = f.set(flags, isec * NS + insec, vsec * NS + vnsec)
    if old:
        t.mm.write(old, _pack(interval, left))
    return 0


@syscall("timerfd_gettime")
def timerfd_gettime(t, fd, cur):
    f = _timer(t, fd)
    t.mm.write(cur, _pack(*f.get()))
    return 0
