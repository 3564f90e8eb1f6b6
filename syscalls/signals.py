"""Signals: rt_sigaction(2), rt_sigprocmask(2), rt_sigpending(2),
rt_sigsuspend(2), pause(2), rt_sigtimedwait(2), rt_sigqueueinfo(2),
rt_tgsigqueueinfo(2), kill(2), tkill(2), tgkill(2), sigaltstack(2),
rt_sigreturn(2), restart_syscall(2).

The work (queues, delivery, frames, default actions) is sentry/signals.py's."""
import errno as E
import struct

from sentry import signals as S
from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.abi import read_timespec, s32
from syscalls.registry import PARTIAL, syscall

MASK64 = (1 << 64) - 1
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SIGACTION_SIZE = 32  # handler, flags, restorer, mask: x86-64 and aarch64 alike (both have SA_RESTORER)


def _check_sig(sig: int) -> int:
    sig = s32(sig)
    if not 0 <= sig <= S.NSIG:
        raise Errno(E.EINVAL)
    return sig


@syscall("rt_sigaction", note="flags Linux does not know are cleared; x86-64 handlers need "
         "SA_RESTORER (libc sets it) as on Linux; aarch64 handlers without it return through a "
         "sentry page holding rt_sigreturn (Linux's vDSO trampoline)")
def rt_sigaction(t, sig, act, oact, sigsetsize):
    sig = s32(sig)
    if sigsetsize != 8 or not 1 <= sig <= S.NSIG:
        raise Errno(E.EINVAL)
    new = t.mm.read(act, SIGACTION_SIZE) if act else None
    if new is not None and sig in (S.SIGKILL, S.SIGSTOP):
        raise Errno(E.EINVAL)
    old = t.sigactions.get(sig) or bytes(SIGACTION_SIZE)
    if new is not None:
        S.set_action(t, sig, S.normalise_action(new))
    if oact:
        t.mm.write(oact, old)
    return 0


@syscall("rt_sigprocmask")
def rt_sigprocmask(t, how, set_, oset, sigsetsize):
    if sigsetsize != 8:
        raise Errno(E.EINVAL)
    how = s32(how)
    new = t.mm.read_u64(set_) if set_ else None
    if new is not None and how not in (SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK):
        raise Errno(E.EINVAL)
    old = t.sigmask
    if new is not None:
        if how == SIG_BLOCK:
            S.set_mask(t, t.sigmask | new)
        elif how == SIG_UNBLOCK:
            S.set_mask(t, t.sigmask & ~new)
        else:
            S.set_mask(t, new)
    if oset:
        t.mm.write_u64(oset, old)
    return 0


@syscall("rt_sigpending")
def rt_sigpending(t, set_, sigsetsize):
    if sigsetsize > 8:
        raise Errno(E.EINVAL)
    pending = S.pending_set(t) & t.sigmask  # Linux reports the blocked ones
    t.mm.write(set_, pending.to_bytes(8, "little")[:sigsetsize])
    return 0


def _suspend(t):
    """Sleep until a signal is taken: -ERESTARTNOHAND (EINTR once a handler ran)."""
    if S.signal_ready(t):
        return -S.ERESTARTNOHAND
    raise Wait(interrupt_result=-S.ERESTARTNOHAND)


@syscall("rt_sigsuspend")
def rt_sigsuspend(t, mask, sigsetsize):
    if sigsetsize != 8:
        raise Errno(E.EINVAL)
    S.set_wait_mask(t, t.mm.read_u64(mask))
    return _suspend(t)


@syscall("pause")
def pause(t):
    return _suspend(t)


def _write_info(t, addr: int, info) -> None:
    if addr:
        t.mm.write(addr, info.pack())


@syscall("rt_sigtimedwait", note="a signal of the set that arrives while waiting ends the wait "
         "even when it is not blocked, as Linux")
def rt_sigtimedwait(t, set_, uinfo, uts, sigsetsize):
    if sigsetsize != 8:
        raise Errno(E.EINVAL)
    want = t.mm.read_u64(set_) & ~S.UNBLOCKABLE
    timeout = read_timespec(t.mm, uts) if uts else None
    t.sigwait = None
    sig, info = S.dequeue(t, ~want & MASK64)
    if sig:
        _write_info(t, uinfo, info)
        return sig
    if timeout == 0:
        raise Errno(E.EAGAIN)
    import time

    def interrupted(task):
        task.sigwait = None
        sig, info = S.dequeue(task, ~want & MASK64)
        if not sig:
            return -E.EINTR
        try:
            _write_info(task, uinfo, info)
        except Errno as e:
            return -e.errno
        return sig

    w = Wait(deadline=None if timeout is None else time.monotonic() + timeout / 1e9,
             timeout_result=-E.EAGAIN, on_interrupt=interrupted)
    t.sigwait = (want, w)
    raise w


def _sigqueue_info(t, uinfo: int, sig: int, to_self: bool):
    raw = t.mm.read(uinfo, 128)
    code = struct.unpack_from("<i", raw, 8)[0]
    if (code >= 0 or code == S.SI_TKILL) and not to_self:
        raise Errno(E.EPERM)  # only the kernel, kill and tkill make such codes
    return S.SigInfo(sig, code, raw=raw)


@syscall("rt_sigqueueinfo")
def rt_sigqueueinfo(t, tgid, sig, uinfo):
    tgid, sig = s32(tgid), _check_sig(sig)
    info = _sigqueue_info(t, uinfo, sig, tgid == t.tid)
    proc = _process(t, tgid)
    permitted(t, proc, sig)
    S.send_process(proc, sig, info)
    return 0


@syscall("rt_tgsigqueueinfo")
def rt_tgsigqueueinfo(t, tgid, tid, sig, uinfo):
    tgid, tid, sig = s32(tgid), s32(tid), _check_sig(sig)
    if tgid <= 0 or tid <= 0:
        raise Errno(E.EINVAL)
    info = _sigqueue_info(t, uinfo, sig, tid == t.tid)
    target = _thread(t, tid, tgid)
    permitted(t, target.proc, sig)
    S.send(target, sig, info)
    return 0


# --- kill ----------------------------------------------------------------------------------------
def _nested(t) -> bool:
    ns = getattr(t.proc, "pid_ns", None)  # a pid namespace below the sandbox's (sentry/namespaces.py)
    return ns is not None and ns.level > 0


def _process(t, pid: int):
    """The process of pid, or of the thread whose id it is (Linux's find_vpid finds both)."""
    if pid > 0 and _nested(t):
        from sentry.namespaces import find_proc, find_task
        proc = find_proc(t, pid)
        task = find_task(t, pid) if proc is None else None
    else:
        proc = t.kernel.procs.get(pid) if pid > 0 else None
        task = t.kernel.tasks.get(pid) if proc is None and pid > 0 else None
    if proc is None and task is not None and task.exit_status is None:
        proc = task.proc
    if proc is None:
        raise Errno(E.ESRCH)
    return proc


def _thread(t, tid: int, tgid: int = -1):
    if _nested(t):
        from sentry.namespaces import find_task, global_pid
        task = find_task(t, tid)
        tgid = (global_pid(t, tgid) or 0) if tgid > 0 else tgid
    else:
        task = t.kernel.tasks.get(tid)
    if task is None or task.exit_status is not None or (tgid > 0 and task.tgid != tgid) or tgid == 0:
        raise Errno(E.ESRCH)
    return task


def permitted(t, proc, sig: int) -> None:
    """Linux's check_kill_permission: root, a process of the same user, or SIGCONT in the session."""
    if proc is t.proc or t.euid == 0:
        return
    leader = proc.leader
    if leader is None:
        return
    target_ids = (leader.uid, getattr(leader, "suid", leader.uid))
    if t.euid in target_ids or t.uid in target_ids:
        return
    if sig == S.SIGCONT and proc.sid == t.sid:
        return
    raise Errno(E.EPERM)


def _kill_one(t, proc, sig: int, info=None) -> None:
    permitted(t, proc, sig)
    if sig:
        S.send_process(proc, sig, info or S.user_info(t, sig))


def kill_group(t, pgid: int, sig: int, info=None) -> None:
    procs = [p for p in list(t.kernel.procs.values()) if p.pgid == pgid and not p.zombie]
    if not procs:
        raise Errno(E.ESRCH)
    err, ok = None, False
    for p in procs:
        try:
            _kill_one(t, p, sig, info)
            ok = True
        except Errno as e:
            err = e
    if not ok and err is not None:
        raise err


@syscall("kill", status=PARTIAL, note="pids, process groups, 0 and -1 (every process but the "
         "sandbox's pid 1 and the caller) in the sandbox's pid namespace; pid 1 is not protected "
         "from signals as a namespace's init is; a running target takes the signal at its next stop "
         "(ptrace: interrupted at once; unicorn: before it runs on); core-dumping defaults "
         "write no core file (WCOREFLAG only when RLIMIT_CORE is above 0)")
def kill(t, pid, sig):
    pid, sig = s32(pid), _check_sig(sig)
    if pid > 0:
        _kill_one(t, _process(t, pid), sig)
    elif pid == 0:
        kill_group(t, t.pgid, sig)
    elif _nested(t) and pid != -(1 << 31):
        from sentry.namespaces import global_pid
        kill_group(t, global_pid(t, -pid) or -1, sig)
    elif pid == -1:
        count, err = 0, None
        from sentry.namespaces import pid_ns_of, visible
        own = pid_ns_of(t.proc)
        for p in list(t.kernel.procs.values()):
            # every process of the caller's pid namespace and below but its 1 and the caller
            if p.pid > 1 and p is not t.proc and not p.zombie and p is not own.reaper \
                    and (own.level == 0 or visible(t, p)):
                try:
                    _kill_one(t, p, sig)
                    count += 1
                except Errno as e:
                    err = e
        if not count:
            raise err or Errno(E.ESRCH)
    else:
        if pid == -(1 << 31):
            raise Errno(E.ESRCH)
        kill_group(t, -pid, sig)
    return 0


@syscall("tgkill")
def tgkill(t, tgid, tid, sig):
    tgid, tid, sig = s32(tgid), s32(tid), _check_sig(sig)
    if tgid <= 0 or tid <= 0:
        raise Errno(E.EINVAL)
    target = _thread(t, tid, tgid)
    permitted(t, target.proc, sig)
    if sig:
        S.send(target, sig, S.user_info(t, sig, S.SI_TKILL))
    return 0


@syscall("tkill")
def tkill(t, tid, sig):
    tid, sig = s32(tid), _check_sig(sig)
    if tid <= 0:
        raise Errno(E.EINVAL)
    target = _thread(t, tid)
    permitted(t, target.proc, sig)
    if sig:
        S.send(target, sig, S.user_info(t, sig, S.SI_TKILL))
    return 0


# --- frames ------------------------------------------------------------------------------------
_STACK_T = struct.Struct("<QiiQ")


@syscall("sigaltstack", note="SS_AUTODISARM; on x86-64 a frame that would leave the alternate stack is "
         "SIGSEGV, as Linux checks; on aarch64, as there, only an unwritable frame is")
def sigaltstack(t, uss, uoss):
    from sentry.sigframe import SS_AUTODISARM, AltStack
    new = _STACK_T.unpack(t.mm.read(uss, 24)) if uss else None
    sp = S.user_sp(t)
    alt = t.altstack or AltStack()
    old = _STACK_T.pack(alt.sp, s32(alt.ss_flags(sp) | (alt.flags & SS_AUTODISARM)), 0, alt.size)
    if new is not None:
        ss_sp, ss_flags, _, ss_size = new
        S.set_altstack(t, ss_sp, ss_flags & 0xFFFFFFFF, ss_size, sp)
    if uoss:
        t.mm.write(uoss, old)
    return 0


@syscall("rt_sigreturn", note="restores every register the frame saved (x86-64: GPRs, flags and "
         "the FXSAVE/XSAVE state; aarch64: x0-x30, sp, pc, NZCV, v0-v31, fpsr, fpcr), the mask and "
         "the alternate stack; a bad frame is SIGSEGV")
def rt_sigreturn(t):
    return S.sigreturn(t)


@syscall("restart_syscall")
def restart_syscall(t):
    block = t.restart_block
    t.restart_block = None
    if block is None:
        raise Errno(E.EINTR)
    return block(t)
