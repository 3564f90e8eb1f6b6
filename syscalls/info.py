"""What the system says about itself: uname(2), sethostname(2), setdomainname(2),
personality(2), syslog(2), getrandom(2), sysinfo(2)."""
import errno as E
import re
import struct

from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import pack_utsname, s32
from syscalls.registry import PARTIAL, syscall

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
# The Linux the sandbox presents: every call up to 6.8's (futex2, fchmodat2, statmount, listmount,
# the lsm_* calls) is answered, so LTP runs the tests of features that exist; mseal (6.10) is not.
KERNEL_RELEASE = b"6.8.0-sentry"
NEW_UTS_LEN = 64
PER_MASK, PER_LINUX32, UNAME26 = 0xFF, 0x0008, 0x0020000
COMPAT_MACHINE = {"x86_64": b"i686", "aarch64": b"armv8l"}  # uname -m under PER_LINUX32 (linux32)


def _release(personality: int) -> bytes:
    """The release uname reports: under UNAME26 as a 2.6 kernel (2.6.60 + the minor number,
    the rest of the release kept), as Linux's override_release."""
    if not personality & UNAME26:
        return KERNEL_RELEASE
    numbers = re.match(rb"\d+\.(\d+)(?:\.\d+)?", KERNEL_RELEASE)
    return b"2.6.%d%s" % (int(numbers.group(1)) + 60, KERNEL_RELEASE[numbers.end():])


@syscall("uname", note="the sandbox's own identity: hostname 'sentry' (sethostname), release "
         + KERNEL_RELEASE.decode() + "; PER_LINUX32 and UNAME26 personalities change machine and release as Linux")
def uname(t, buf):
    persona = getattr(t, "personality", 0)
    machine = t.kernel.arch.encode()
    if persona & PER_MASK == PER_LINUX32:
        machine = COMPAT_MACHINE.get(t.kernel.arch, machine)
    uts = t.nsproxy.uts  # the caller's UTS namespace (sentry/namespaces.py)
    t.mm.write(buf, pack_utsname(b"Linux", uts.hostname, _release(persona), b"#1 SMP PREEMPT sentry",
                                 machine, uts.domainname))
    return 0


def _uts_name(t, name: int, length: int) -> bytes:
    """sethostname/setdomainname's argument: CAP_SYS_ADMIN in the user namespace owning the
    caller's UTS namespace (the sandbox's root for its own), at most 64 bytes taken as they are."""
    from sentry.namespaces import CAP_SYS_ADMIN, ns_capable
    if not ns_capable(t, t.nsproxy.uts.owner, CAP_SYS_ADMIN):
        raise Errno(E.EPERM)
    length = s32(length)
    if not 0 <= length <= NEW_UTS_LEN:
        raise Errno(E.EINVAL)
    return t.mm.read(name, length)


@syscall("sethostname", note="the caller's UTS namespace's hostname (uname; /proc/sys/kernel/hostname shows the "
         "sandbox's own); the host's is never touched; EPERM without CAP_SYS_ADMIN over the namespace")
def sethostname(t, name, length):
    t.nsproxy.uts.hostname = _uts_name(t, name, length)
    return 0


@syscall("setdomainname", note="the caller's UTS namespace's NIS domain name (uname); EPERM without CAP_SYS_ADMIN "
         "over the namespace")
def setdomainname(t, name, length):
    t.nsproxy.uts.domainname = _uts_name(t, name, length)
    return 0


@syscall("personality", note="kept per task and inherited: PER_LINUX32 makes uname's machine i686 (armv8l on "
         "aarch64), UNAME26 its release 2.6.x; the other flags are kept and reported, nothing else follows "
         "from them (execve keeps them all)")
def personality(t, persona):
    old = getattr(t, "personality", 0)
    persona &= 0xFFFFFFFF
    if persona != 0xFFFFFFFF:
        t.personality = persona
    return old


# --- the kernel's log ----------------------------------------------------------------------------
SYSLOG_ACTION_CLOSE, SYSLOG_ACTION_OPEN, SYSLOG_ACTION_READ, SYSLOG_ACTION_READ_ALL = 0, 1, 2, 3
SYSLOG_ACTION_READ_CLEAR, SYSLOG_ACTION_CLEAR, SYSLOG_ACTION_CONSOLE_OFF = 4, 5, 6
SYSLOG_ACTION_CONSOLE_ON, SYSLOG_ACTION_CONSOLE_LEVEL, SYSLOG_ACTION_SIZE_UNREAD = 7, 8, 9
SYSLOG_ACTION_SIZE_BUFFER = 10
LOG_BUF_LEN = 1 << 17  # CONFIG_LOG_BUF_SHIFT=17


@syscall("syslog", note="the sandbox's kernel log, which is empty: reads give 0 bytes (SYSLOG_ACTION_READ waits, "
         "as for an empty log), the buffer is 128 KiB; reading all and the size are open to everyone "
         "(kernel.dmesg_restrict 0), the rest to root (CAP_SYSLOG), as Linux")
def syslog(t, action, buf, length):
    action, length = s32(action), s32(length)
    if action not in (SYSLOG_ACTION_READ_ALL, SYSLOG_ACTION_SIZE_BUFFER) and t.euid != 0:
        raise Errno(E.EPERM)
    if action in (SYSLOG_ACTION_READ, SYSLOG_ACTION_READ_ALL, SYSLOG_ACTION_READ_CLEAR):
        if not buf or length < 0:
            raise Errno(E.EINVAL)
        if not length:
            return 0
        if buf + length > 1 << 47:
            raise Errno(E.EFAULT)
        if action == SYSLOG_ACTION_READ:
            raise Wait()  # until something is logged, which never happens: a signal ends it
        return 0
    if action == SYSLOG_ACTION_CONSOLE_LEVEL:
        if not 1 <= length <= 8:
            raise Errno(E.EINVAL)
        return 0
    if action in (SYSLOG_ACTION_CLOSE, SYSLOG_ACTION_OPEN, SYSLOG_ACTION_CLEAR, SYSLOG_ACTION_CONSOLE_OFF,
                  SYSLOG_ACTION_CONSOLE_ON, SYSLOG_ACTION_SIZE_UNREAD):
        return 0
    if action == SYSLOG_ACTION_SIZE_BUFFER:
        return LOG_BUF_LEN
    raise Errno(E.EINVAL)


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
    # the sandbox's boottime (sentry/clock.py) in seconds, rounded up as Linux's, with a time
    # namespace's offset
    from sentry import clock
    up_ns = clock.uptime_ns(t.kernel, t)
    uptime = -(-up_ns // 1_000_000_000)
    t.mm.write(info, _SYSINFO.pack(uptime, 0, 0, 0, VIRTUAL_RAM, max(0, VIRTUAL_RAM - used), 0, 0, 0, 0,
                                   len(t.kernel.tasks), 0, 0, 1))
    return 0
