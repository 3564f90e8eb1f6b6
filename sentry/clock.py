"""The sandbox's own monotonic clocks and TSC (issue 15: a guest must not learn the
host's uptime).

CLOCK_MONOTONIC (and _RAW, _COARSE) and CLOCK_BOOTTIME (and _ALARM) read the sandbox's
age plus an "uptime at boot" drawn per sandbox (BOOT_SECONDS: at least half a minute,
so that a program may still set a negative time-namespace offset of some seconds, as
on a machine that has been up a while; not the same in two sandboxes). The TSC counts
from zero at the sandbox's start, at the host TSC's rate (sentry/hostcpu.py), so a
program calibrating it against clock_gettime still finds the host's frequency.

One `SandboxClock` per sandbox, held by its first time namespace and shared by every
namespace made below it (sentry/namespaces.py): its shift lies under every time
namespace's offsets, so /proc/PID/timens_offsets of the first one still shows zeros, as
Linux's initial namespace does. Deadlines inside the sentry stay on the host's
time.monotonic(): only what a guest reads or gives goes through here.
"""
import time

from sentry import hostcpu

NS = 1_000_000_000
BOOT_SECONDS = (30, 300)  # the range the sandbox's uptime at its start is drawn from

CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE = 1, 4, 6
CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM = 7, 9
# each shifted clock, and the host clock its shift is measured on (COARSE is MONOTONIC's)
_HOST = {CLOCK_MONOTONIC: time.CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW: time.CLOCK_MONOTONIC_RAW,
         CLOCK_MONOTONIC_COARSE: time.CLOCK_MONOTONIC, CLOCK_BOOTTIME: time.CLOCK_BOOTTIME,
         CLOCK_BOOTTIME_ALARM: time.CLOCK_BOOTTIME}


class SandboxClock:
    """The shift from each host clock to the sandbox's, fixed when the sandbox starts."""

    def __init__(self, kernel=None):
        start = getattr(kernel, "boot_time", None)  # time.monotonic() when the kernel was made
        elapsed = time.monotonic_ns() - int(start * NS) if start is not None else 0
        low, high = BOOT_SECONDS
        draw = kernel.random_bytes(4) if kernel is not None else bytes(4)
        self.at_boot_ns = low * NS + (int.from_bytes(draw, "little") * (high - low) * NS >> 32)
        # the sandbox's clocks read at_boot_ns at the kernel's creation (elapsed ago)
        self.shift = {clock: self.at_boot_ns - (time.clock_gettime_ns(host) - elapsed)
                      for clock, host in _HOST.items()}
        self.tsc_base = hostcpu.rdtsc() if hostcpu.rdtsc is not None else 0

    def shift_ns(self, clock: int) -> int:
        """What to add to the host's reading of clock (0 for the clocks not shifted)."""
        return self.shift.get(clock, 0)

    def now_ns(self, clock: int) -> int:
        """The sandbox's clock (one of the shifted ones), before any namespace offset."""
        return time.clock_gettime_ns(_HOST[clock]) + self.shift[clock]

    def monotonic_to_sandbox(self, host_monotonic: float) -> int:
        """A host time.monotonic() instant (a process's start) on the sandbox's boottime
        clock, in ns (host suspends aside: the sandbox never saw one)."""
        return int(host_monotonic * NS) + self.shift[CLOCK_MONOTONIC]

    def tsc(self) -> int:
        """The sandbox's TSC: the host's since the sandbox started."""
        return (hostcpu.rdtsc() - self.tsc_base) & 0xFFFFFFFFFFFFFFFF if hostcpu.rdtsc is not None else 0


def of(kernel) -> SandboxClock:
    """The sandbox's clock (its first time namespace's)."""
    from sentry.namespaces import initial
    return initial(kernel)[0].time.clock


def uptime_ns(kernel, task=None) -> int:
    """CLOCK_BOOTTIME as task's time namespace has it (the sandbox's first one without a
    task): /proc/uptime, sysinfo."""
    clock = of(kernel)
    spaces = getattr(task, "nsproxy", None)
    offset = spaces.time.offset_ns(CLOCK_BOOTTIME) if spaces is not None else clock.shift_ns(CLOCK_BOOTTIME)
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) + offset
