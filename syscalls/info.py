"""What the system says about itself: uname(2), getrandom(2), sysinfo(2)."""
import errno as E
import struct
import time as host_time

from sentry.errors import Errno
from syscalls.abi import pack_utsname
from syscalls.registry import PARTIAL, syscall

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
KERNEL_RELEASE = b"6.1.0-sentry"


@syscall("uname", note="the sandbox's own identity: hostname 'sentry', release " + KERNEL_RELEASE.decode())
def uname(t, buf):
    t.mm.write(buf, pack_utsname(b"Linux", t.kernel.hostname, KERNEL_RELEASE, b"#1 SMP PREEMPT sentry",
                                 t.kernel.arch.encode(), b"(none)"))
    return 0


@syscall("getrandom", note="from the host's random source, or a seeded generator under --seed")
def getrandom(t, buf, count, flags):
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or flags & GRND_RANDOM and flags & GRND_INSECURE:
        raise Errno(E.EINVAL)
    count = min(count, 0x1FFFFFF)
    t.mm.write(buf, t.kernel.random_bytes(count))
    return count


_SYSINFO = struct.Struct("<q3Q6QHxxxxxxQQI4x")
VIRTUAL_RAM = 4 << 30


@syscall("sysinfo", status=PARTIAL, note="the sandbox's own figures: uptime since it started, 4 GiB of RAM less what its mappings use, no swap, load 0")
def sysinfo(t, info):
    used = sum(v.end - v.start for v in t.mm.vmas)
    uptime = int(host_time.monotonic() - t.kernel.boot_time) + 1
    t.mm.write(info, _SYSINFO.pack(uptime, 0, 0, 0, VIRTUAL_RAM, max(0, VIRTUAL_RAM - used), 0, 0, 0, 0,
                                   len(t.kernel.tasks), 0, 0, 1))
    return 0
