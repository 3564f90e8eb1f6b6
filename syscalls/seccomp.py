"""seccomp(2) and prctl's PR_GET_SECCOMP / PR_SET_SECCOMP: strict mode and classic-BPF
filters, checked and installed as Linux does; the sentry runs them before dispatching each
syscall of a task that has them (sentry/seccomp.py). User notification (NEW_LISTENER) is
not offered: EINVAL."""
import errno as E
import struct

from sentry import seccomp as engine
from sentry.errors import Errno
from syscalls.registry import PARTIAL, syscall

SECCOMP_SET_MODE_STRICT, SECCOMP_SET_MODE_FILTER = 0, 1
SECCOMP_GET_ACTION_AVAIL, SECCOMP_GET_NOTIF_SIZES = 2, 3
SECCOMP_MODE_STRICT, SECCOMP_MODE_FILTER = 1, 2
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_NEW_LISTENER, FLAG_TSYNC_ESRCH, FLAG_WAIT_KILLABLE_RECV = (
    1, 2, 4, 8, 16, 32)
FLAG_MASK = 63
ACTIONS = engine.ACTIONS
NOTIF_SIZES = (80, 24, 64)  # struct seccomp_notif, seccomp_notif_resp, seccomp_data
CAP_SYS_ADMIN = 21


def seccomp_mode(t) -> int:
    """PR_GET_SECCOMP (in strict mode the call itself is fatal)."""
    return t.seccomp_mode


def _set_filter(t, flags: int, fprog: int) -> int:
    """Linux's seccomp_set_mode_filter."""
    if flags & ~FLAG_MASK:
        raise Errno(E.EINVAL)
    if flags & FLAG_TSYNC and flags & FLAG_NEW_LISTENER and not flags & FLAG_TSYNC_ESRCH:
        raise Errno(E.EINVAL)
    if flags & FLAG_WAIT_KILLABLE_RECV and not flags & FLAG_NEW_LISTENER:
        raise Errno(E.EINVAL)
    length, insns_addr = struct.unpack("<H6xQ", t.mm.read(fprog, 16))
    if length == 0 or length > engine.BPF_MAXINSNS:
        raise Errno(E.EINVAL)
    from sentry.namespaces import ns_capable
    if not t.no_new_privs and not ns_capable(t, t.user_ns, CAP_SYS_ADMIN):
        raise Errno(E.EACCES)
    insns = engine.check_program(t.mm.read(insns_addr, 8 * length))
    if insns is None:
        raise Errno(E.EINVAL)
    if flags & FLAG_NEW_LISTENER:
        raise Errno(E.EINVAL)  # no user-space notification here
    ret = engine.install(t, insns, bool(flags & FLAG_LOG), bool(flags & FLAG_TSYNC))
    if ret and flags & FLAG_TSYNC_ESRCH:
        raise Errno(E.ESRCH)
    return ret


def set_mode(t, mode: int, flags: int, args: int) -> int:
    """Linux's do_seccomp."""
    if mode == SECCOMP_SET_MODE_STRICT:
        if flags or args:
            raise Errno(E.EINVAL)
        if t.seccomp_mode not in (engine.MODE_DISABLED, engine.MODE_STRICT):
            raise Errno(E.EINVAL)
        t.seccomp_mode = engine.MODE_STRICT
        return 0
    if mode == SECCOMP_SET_MODE_FILTER:
        return _set_filter(t, flags, args)
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
         note="strict mode and classic-BPF filters (TSYNC, LOG, the actions KILL_PROCESS/KILL_THREAD/TRAP/"
              "ERRNO/LOG/ALLOW; TRACE and USER_NOTIF answer ENOSYS: no seccomp tracer, no listener), run by the "
              "sentry before each syscall (sentry/seccomp.py); NEW_LISTENER EINVAL; "
              "SECCOMP_GET_ACTION_AVAIL and SECCOMP_GET_NOTIF_SIZES answer as Linux")
def seccomp(t, op, flags, args):
    return set_mode(t, op & 0xFFFFFFFF, flags & 0xFFFFFFFF, args)
