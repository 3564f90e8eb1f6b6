"""Signal dispositions, masks and sending: rt_sigaction(2), rt_sigprocmask(2),
kill(2), tgkill(2), tkill(2), rt_sigpending(2).

Dispositions and masks are kept exactly as Linux keeps them; delivery to a
handler is not implemented yet (sentry/signals.py)."""
import errno as E

from sentry.errors import Errno
from sentry.signals import send, set_mask
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

SIGKILL, SIGSTOP = 9, 19
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SIGACTION_SIZE = {"x86_64": 32, "aarch64": 24}


@syscall("rt_sigaction", status=PARTIAL, note="dispositions recorded; delivery comes later")
def rt_sigaction(t, sig, act, oact, sigsetsize):
    sig = s32(sig)
    if sigsetsize != 8 or not 1 <= sig <= 64:
        raise Errno(E.EINVAL)
    size = SIGACTION_SIZE[t.kernel.arch]
    new = t.mm.read(act, size) if act else None
    if new is not None and sig in (SIGKILL, SIGSTOP):
        raise Errno(E.EINVAL)
    if oact:
        t.mm.write(oact, t.sigactions.get(sig, bytes(size)))
    if new is not None:
        t.sigactions[sig] = new
    return 0


@syscall("rt_sigprocmask", status=PARTIAL, note="the mask is kept; unblocking a pending signal applies its default action; handlers are not run yet")
def rt_sigprocmask(t, how, set_, oset, sigsetsize):
    if sigsetsize != 8:
        raise Errno(E.EINVAL)
    how = s32(how)
    new = t.mm.read_u64(set_) if set_ else None
    if new is not None and how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
        raise Errno(E.EINVAL)
    if oset:
        t.mm.write_u64(oset, t.sigmask)
    if new is not None:
        if how == SIG_BLOCK:
            set_mask(t, t.sigmask | new)
        elif how == SIG_UNBLOCK:
            set_mask(t, t.sigmask & ~new)
        else:
            set_mask(t, new)
    return 0


def _check_sig(sig: int) -> int:
    sig = s32(sig)
    if not 0 <= sig <= 64:
        raise Errno(E.EINVAL)
    return sig


@syscall("kill", status=PARTIAL, note="the sandbox has one process: pid, 0, -1 and its own group reach it; handlers are not run yet")
def kill(t, pid, sig):
    pid, sig = s32(pid), _check_sig(sig)
    if pid not in (t.tgid, 0, -1, -t.tgid):
        raise Errno(E.ESRCH)
    send(t, sig)
    return 0


@syscall("tgkill", status=PARTIAL, note="as kill")
def tgkill(t, tgid, tid, sig):
    tgid, tid, sig = s32(tgid), s32(tid), _check_sig(sig)
    if tgid <= 0 or tid <= 0:
        raise Errno(E.EINVAL)
    if (tgid, tid) != (t.tgid, t.tid):
        raise Errno(E.ESRCH)
    send(t, sig)
    return 0


@syscall("tkill", status=PARTIAL, note="as kill")
def tkill(t, tid, sig):
    tid, sig = s32(tid), _check_sig(sig)
    if tid <= 0:
        raise Errno(E.EINVAL)
    if tid != t.tid:
        raise Errno(E.ESRCH)
    send(t, sig)
    return 0


@syscall("rt_sigpending", status=PARTIAL, note="signals sent while blocked are kept pending, never delivered yet")
def rt_sigpending(t, set_, sigsetsize):
    if sigsetsize > 8:
        raise Errno(E.EINVAL)
    t.mm.write(set_, t.pending_signals.to_bytes(8, "little")[:sigsetsize])
    return 0
