"""Signal dispositions and masks: rt_sigaction(2), rt_sigprocmask(2).

Recorded exactly as Linux keeps them; delivery is not implemented yet, so a
handler that is installed is never called (faults end the program)."""
import errno as E

from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

SIGKILL, SIGSTOP = 9, 19
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
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


@syscall("rt_sigprocmask", status=PARTIAL, note="the mask is kept; nothing is delivered yet")
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
            t.sigmask |= new
        elif how == SIG_UNBLOCK:
            t.sigmask &= ~new
        else:
            t.sigmask = new
        t.sigmask &= ~UNBLOCKABLE
    return 0
