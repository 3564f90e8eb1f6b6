"""What the system says about itself: uname(2), getrandom(2), sysinfo(2)."""
import errno as E

from sentry.errors import Errno
from syscalls.abi import pack_utsname
from syscalls.registry import syscall

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
