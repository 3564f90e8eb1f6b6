"""seccomp(2) and prctl's PR_GET_SECCOMP / PR_SET_SECCOMP.

The sandbox is a kernel built with CONFIG_SECCOMP but without CONFIG_SECCOMP_FILTER:
every process runs in mode 0 (/proc/PID/status says "Seccomp: 0"), filters answer
EINVAL, and the queries that need no filter answer as Linux. Programs that sandbox
themselves with filters (man-db, OpenSSH, systemd services, Chromium) test for
exactly this and run on without one. Strict mode would need the dispatcher to kill
the process at its first other syscall; it answers EINVAL as well."""
import errno as E

from sentry.errors import Errno
from syscalls.registry import PARTIAL, syscall

SECCOMP_SET_MODE_STRICT, SECCOMP_SET_MODE_FILTER = 0, 1
SECCOMP_GET_ACTION_AVAIL, SECCOMP_GET_NOTIF_SIZES = 2, 3
SECCOMP_MODE_STRICT, SECCOMP_MODE_FILTER = 1, 2
# The actions a filter may return (SECCOMP_RET_*), which GET_ACTION_AVAIL reports as known.
ACTIONS = (0x80000000, 0x00000000, 0x00030000, 0x00050000, 0x7FC00000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000)
NOTIF_SIZES = (80, 24, 64)  # struct seccomp_notif, seccomp_notif_resp, seccomp_data


def seccomp_mode(t) -> int:
    """PR_GET_SECCOMP: no process of the sandbox is ever in a seccomp mode."""
    return 0


def set_mode(t, mode: int, flags: int, args: int) -> int:
    """Linux's do_seccomp: strict mode and filters are not offered (EINVAL)."""
    if mode == SECCOMP_SET_MODE_STRICT:
        raise Errno(E.EINVAL)
    if mode == SECCOMP_SET_MODE_FILTER:
        raise Errno(E.EINVAL)  # as a kernel without CONFIG_SECCOMP_FILTER
    if mode == SECCOMP_GET_ACTION_AVAIL:
        if flags:
            raise Errno(E.EINVAL)
        if t.mm.read_u32(args) not in ACTIONS:
            raise Errno(E.EOPNOTSUPP)
        return 0
    if mode == SECCOMP_GET_NOTIF_SIZES:
        if flags:
            raise Errno(E.EINVAL)
        t.mm.write(args, b"".join(n.to_bytes(2, "little") for n in NOTIF_SIZES))
        return 0
    raise Errno(E.EINVAL)


@syscall("seccomp", status=PARTIAL,
         note="a kernel without CONFIG_SECCOMP_FILTER: filters (and strict mode) EINVAL, which programs take "
              "as no seccomp; SECCOMP_GET_ACTION_AVAIL and SECCOMP_GET_NOTIF_SIZES answer as Linux")
def seccomp(t, op, flags, args):
    return set_mode(t, op & 0xFFFFFFFF, flags & 0xFFFFFFFF, args)
