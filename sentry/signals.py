"""Signals as Linux keeps them: dispositions, masks, pending sets, sending,
delivery to handlers through real signal frames, default actions, job control
and the syscall-restart rules.

State: each task has its blocked mask (`sigmask`), its private pending set
(`pending_signals`, with `sigqueue` holding the SigInfo of each), its
alternate stack (`altstack`, an immutable AltStack or None) and the
dispositions (`sigactions`: signal -> the raw 32-byte struct sigaction as
rt_sigaction stored it, normalised); the process has one ProcSignals
(`task.sigshared`, the same object for every thread): the shared pending
set, job-control state, its timers.

Sending (send/send_process) only queues and wakes (kernel.interrupt); the
kernel calls `deliver(task, nr, result)` before the task returns to user
code, and that is where handlers get their frames, default actions kill or
stop, and interrupted syscalls are restarted or fail with EINTR.
"""
import struct

from sentry import ptrace_guest
from sentry.sched import TaskExit, Wait, WaitQueue

# sentry/sigframe.py (the frames) is imported when a frame is first needed: not on the start path
SA_SIGINFO, SA_RESTORER, SS_AUTODISARM = 0x4, 0x04000000, 1 << 31

MASK64 = (1 << 64) - 1
NSIG = 64
SIGRTMIN = 32
(SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2,
 SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG,
 SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS) = range(1, 32)
NAMES = {v: k for k, v in globals().items() if k.startswith("SIG") and k not in ("SIGRTMIN",)
         and isinstance(v, int)}

SIG_DFL, SIG_IGN = 0, 1
SA_NOCLDSTOP, SA_NOCLDWAIT = 0x1, 0x2
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000
SA_EXPOSE_TAGBITS = 0x800
UAPI_SA_FLAGS = (SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER
                 | SA_RESETHAND | SA_EXPOSE_TAGBITS | SA_RESTORER)

# si_code values
SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_MESGQ, SI_ASYNCIO, SI_SIGIO, SI_TKILL = 0, 0x80, -1, -2, -3, -4, -5, -6
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRALN, BUS_ADRERR = 1, 2
ILL_ILLOPC, ILL_ILLOPN = 1, 2
FPE_INTDIV, FPE_FLTINV = 1, 7
TRAP_BRKPT, TRAP_TRACE = 1, 2

# syscall restart (include/linux/errno.h)
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
_RESTARTS = {(-e) & MASK64: e for e in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK)}
_INTERRUPTED = set(_RESTARTS) | {(-EINTR) & MASK64}
NR_RT_SIGRETURN = {"x86_64": 15, "aarch64": 139}
NR_RESTART_SYSCALL = {"x86_64": 219, "aarch64": 128}
SYSCALL_INSN = {"x86_64": 2, "aarch64": 4}

# default actions
TERM, CORE, STOP, CONT, IGN = "term", "core", "stop", "cont", "ign"
_DEFAULT = {s: TERM for s in range(1, NSIG + 1)}
_DEFAULT.update({s: CORE for s in (SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU,
                                   SIGXFSZ, SIGSYS)})
_DEFAULT.update({s: STOP for s in (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)})
_DEFAULT.update({SIGCONT: CONT, SIGCHLD: IGN, SIGURG: IGN, SIGWINCH: IGN})
IGNORED_BY_DEFAULT = {SIGCHLD, SIGCONT, SIGURG, SIGWINCH}
STOP_BY_DEFAULT = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}


def _bit(sig: int) -> int:
    return 1 << (sig - 1)


STOP_MASK = sum(_bit(s) for s in STOP_BY_DEFAULT)
UNBLOCKABLE = _bit(SIGKILL) | _bit(SIGSTOP)
SYNCHRONOUS = _bit(SIGSEGV) | _bit(SIGBUS) | _bit(SIGILL) | _bit(SIGTRAP) | _bit(SIGFPE) | _bit(SIGSYS)
JOBCTL = 1 << 64   # in a task's pending_signals: a group stop wants this thread to stop too
FAULT_SIGNALS = (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE)


# --- siginfo ---------------------------------------------------------------------------------
class SigInfo:
    """One pending signal's siginfo. `raw`: the 128 bytes a sender gave
    (rt_sigqueueinfo), used as they are (with si_signo set)."""
    __slots__ = ("signo", "code", "errno", "pid", "uid", "value", "addr", "status", "utime", "stime",
                 "timer", "overrun", "raw", "trapno", "err", "esr", "reason", "pc")

    def __init__(self, signo: int, code: int = SI_KERNEL, *, pid=0, uid=0, value=0, addr=0, status=0,
                 utime=0, stime=0, timer=None, overrun=0, raw=None, errno=0):
        self.signo, self.code, self.errno = signo, code, errno
        self.pid, self.uid, self.value, self.addr, self.status = pid, uid, value, addr, status
        self.utime, self.stime, self.timer, self.overrun, self.raw = utime, stime, timer, overrun, raw
        self.trapno = self.err = self.esr = self.pc = 0
        self.reason = ""

    def pack(self) -> bytes:
        if self.raw is not None:
            b = bytearray(self.raw)
            struct.pack_into("<i", b, 0, self.signo)
            return bytes(b)
        b = bytearray(128)
        struct.pack_into("<iii", b, 0, self.signo, self.errno, self.code)
        code, sig = self.code, self.signo
        if 0 < code < SI_KERNEL and sig in FAULT_SIGNALS:
            struct.pack_into("<Q", b, 16, self.addr & MASK64)
        elif 0 < code < SI_KERNEL and sig == SIGCHLD:
            struct.pack_into("<iIiiqq", b, 16, self.pid, self.uid, self.status, 0, self.utime, self.stime)
        elif code == SI_TIMER:
            struct.pack_into("<iiQ", b, 16, self.timer.id if self.timer is not None else 0, self.overrun,
                             self.value & MASK64)
        else:  # SI_USER, SI_KERNEL, and the rt codes (< 0): pid, uid, and the value for the rt ones
            struct.pack_into("<iIQ", b, 16, self.pid, self.uid, self.value & MASK64 if code < 0 else 0)
        return bytes(b)

    def __repr__(self):
        return f"SigInfo({self.signo}, code={self.code}, pid={self.pid})"


def user_info(task, sig: int, code: int = SI_USER) -> SigInfo:
    """The siginfo of a signal task sends (kill: SI_USER; tkill/tgkill: SI_TKILL)."""
    return SigInfo(sig, code, pid=task.tgid, uid=task.uid)


def child_info(proc, code: int, status: int) -> SigInfo:
    """The siginfo of a SIGCHLD about proc (CLD_* code; exit code or signal)."""
    uid = 0
    utime = 0
    for t in getattr(proc, "tasks", ()):
        uid = t.uid
        try:
            utime += t.cpu.cpu_time_ns() // 10_000_000
        except Exception:
            pass
    return SigInfo(SIGCHLD, code, pid=proc.pid, uid=uid, status=status, utime=utime)


# --- per-process state -------------------------------------------------------------------------
class ProcSignals:
    """What the threads of one process share: the shared pending set, job control,
    the interval timers and POSIX timers (sentry/timers.py)."""
    __slots__ = ("pending", "queue", "group_exit", "stopped", "stop_sig", "stop_queue", "itimers",
                 "timers", "next_timer", "signalfd_wait", "chosen")

    def __init__(self):
        self.pending = 0
        self.queue = []          # SigInfo of `pending`, in arrival order
        self.group_exit = 0      # the fatal signal that is ending the process
        self.stopped = False     # in a group stop (SIGSTOP & co)
        self.stop_sig = 0
        self.stop_queue = WaitQueue()  # its stopped threads, until SIGCONT
        self.itimers = {}        # ITIMER_* -> timers.ITimer
        self.timers = {}         # POSIX timer id -> timers.PosixTimer
        self.next_timer = 0
        self.chosen = {}         # sig -> the thread a process-directed signal was given to
        self.signalfd_wait = None  # sentry/signalfd.py's queue, notified as a signal becomes pending


def init_task(task) -> None:
    """The signal state of a new task (a fresh process's first thread)."""
    task.sigactions = {}
    task.sigmask = 0
    task.pending_signals = 0
    task.sigqueue = []
    task.sigshared = ProcSignals()
    task.altstack = None
    task.saved_sigmask = None
    task.restart_block = None
    task.sig_restart = None
    task.sigwait = None
    task.fault_report = None


def shared_of(proc):
    """The ProcSignals of a process (None when it has no thread left)."""
    for t in proc.tasks:
        return t.sigshared
    return None


# --- dispositions ------------------------------------------------------------------------------
_ACT = struct.Struct("<QQQQ")
IGNORE_ACTION = _ACT.pack(SIG_IGN, 0, 0, 0)


def action(task, sig: int):
    """(handler, flags, restorer, mask) of sig."""
    raw = task.sigactions.get(sig)
    if not raw:
        return (SIG_DFL, 0, 0, 0)
    if len(raw) < 32:
        raw = bytes(raw) + bytes(32 - len(raw))
    return _ACT.unpack_from(raw)


def handler_of(task, sig: int) -> int:
    raw = task.sigactions.get(sig)
    return int.from_bytes(raw[:8], "little") if raw else SIG_DFL


def _flags_of(task, sig: int) -> int:
    raw = task.sigactions.get(sig)
    return int.from_bytes(raw[8:16], "little") if raw else 0


def normalise_action(raw: bytes) -> bytes:
    """What rt_sigaction keeps of a new struct sigaction, as Linux: unknown flag bits
    cleared, SIGKILL and SIGSTOP out of the mask."""
    handler, flags, restorer, mask = _ACT.unpack_from(bytes(raw).ljust(32, b"\0"))
    return _ACT.pack(handler, flags & UAPI_SA_FLAGS, restorer, mask & ~UNBLOCKABLE)


def set_action(task, sig: int, raw: bytes) -> None:
    """Install a disposition. One that ignores the signal discards it where it is pending
    (in every thread of the process), as Linux does."""
    task.sigactions[sig] = raw
    if _ignored_by(task, sig):
        _flush(task, _bit(sig))


def nocldstop(task) -> bool:
    return bool(_flags_of(task, SIGCHLD) & SA_NOCLDSTOP)


def reaps_automatically(task) -> bool:
    """Children of this process leave no zombie: SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT."""
    return handler_of(task, SIGCHLD) == SIG_IGN or bool(_flags_of(task, SIGCHLD) & SA_NOCLDWAIT)


def _ignored_by(task, sig: int) -> bool:
    h = handler_of(task, sig)
    return h == SIG_IGN or (h == SIG_DFL and sig in IGNORED_BY_DEFAULT)


def on_exec(task) -> None:
    """execve: handlers go (ignored signals stay ignored), the alternate stack goes,
    POSIX timers are deleted; the mask, pending signals and interval timers stay."""
    task.sigactions = {s: _ACT.pack(SIG_IGN, 0, 0, 0) if handler_of(task, s) == SIG_IGN else b""
                       for s in task.sigactions}
    task.sigactions = {s: r for s, r in task.sigactions.items() if r}
    task.altstack = None
    task.restart_block = None
    from sentry import timers
    timers.delete_all(task.sigshared)


def on_clone(parent, child, *, thread: bool = False) -> None:
    """A new task: a new process (fork) or, with thread, a thread of parent's process."""
    child.sigmask = parent.sigmask
    child.altstack = None if thread else parent.altstack  # CLONE_VM without CLONE_VFORK resets it
    if thread:
        child.sigshared = parent.sigshared
        child.sigactions = parent.sigactions


# --- masks -------------------------------------------------------------------------------------
def set_mask(task, mask: int) -> None:
    """Change the blocked set (SIGKILL and SIGSTOP cannot be blocked). Signals it
    unblocks are taken when the task returns to user code."""
    task.sigmask = mask & MASK64 & ~UNBLOCKABLE


def set_wait_mask(task, mask: int) -> None:
    """The mask a call waits with (rt_sigsuspend, ppoll, pselect6, epoll_pwait): it holds
    until the call returns. Returning normally puts the old mask back before any signal
    is taken; returning EINTR (or a restart code) lets a handler run first, its frame
    saving the old mask for sigreturn to restore. Safe to call again when the call
    runs again after a wake-up."""
    if task.saved_sigmask is None:
        task.saved_sigmask = task.sigmask
    set_mask(task, mask)


def user_sp(task) -> int:
    """The task's stack pointer (cheaply where the CPU keeps it at hand)."""
    get = getattr(task.cpu, "get_sp", None)
    return get() if get is not None else task.cpu.get_context().sp


def signal_ready(task) -> bool:
    """Would a signal interrupt a wait that starts now? (Task.sigpending() is also true
    while a call's own mask waits to be put back: not a reason to stop waiting.)"""
    return bool((task.pending_signals | task.sigshared.pending) & ~task.sigmask)


def pending_set(task) -> int:
    return (task.pending_signals | task.sigshared.pending) & MASK64


# --- sending -----------------------------------------------------------------------------------
def send(task, sig: int, info=None) -> bool:
    """A thread-directed signal (tkill, tgkill, a fault, SIGPIPE of its own write).
    True when it was queued (not ignored, not already pending)."""
    if sig == 0 or task.exit_status is not None:
        return False
    return _send(task, sig, _info(sig, info), group=False)


def send_process(proc, sig: int, info=None) -> bool:
    """A process-directed signal (kill, timers, SIGCHLD): one of its threads that does
    not block it takes it. True when it was queued."""
    if sig == 0 or getattr(proc, "zombie", False):
        return False
    for t in proc.tasks:
        if t.exit_status is None:
            return _send(t, sig, _info(sig, info), group=True)
    return False


def _info(sig: int, info) -> SigInfo:
    if info is None:
        return SigInfo(sig, SI_KERNEL)
    if isinstance(info, SigInfo):
        info.signo = sig
        return info
    code, pid, uid, status = info  # the process tree's (si_code, si_pid, si_uid, si_status)
    return SigInfo(sig, code, pid=pid, uid=uid, status=status)


def _threads(task):
    proc = task.proc
    if proc is None:
        return [task]
    return [t for t in proc.tasks if t.exit_status is None]


def _send(task, sig: int, info: SigInfo, group: bool) -> bool:
    shared = task.sigshared
    if not _prepare(task, sig):
        return False
    bit = _bit(sig)
    queue = shared.queue if group else task.sigqueue
    if sig < SIGRTMIN and (shared.pending if group else task.pending_signals) & bit:
        return False  # a standard signal is pending at most once
    # RLIMIT_SIGPENDING binds only real-time signals of sigqueue and tkill (Linux's override_rlimit)
    if sig >= SIGRTMIN and info.code < 0 and len(queue) >= task.rlimits.get(11, (4096, 4096))[0]:
        import errno as E
        from sentry.errors import Errno
        raise Errno(E.EAGAIN)
    if group:
        shared.pending |= bit
    else:
        task.pending_signals |= bit
    if info is not None:
        queue.append(info)
    _complete(task, sig, group)
    if shared.signalfd_wait is not None:  # after _complete: a wait the signal interrupts stays so
        shared.signalfd_wait.notify()  # a signalfd of the process may be readable now
    return True


def _prepare(task, sig: int) -> bool:
    """Job control's side effects of sending sig; False when sig is ignored (dropped)."""
    shared = task.sigshared
    threads = _threads(task)
    if sig in STOP_BY_DEFAULT:
        _flush(task, _bit(SIGCONT))
    elif sig == SIGCONT:
        _flush(task, STOP_MASK)
        if shared.stopped:
            shared.stopped, shared.stop_sig = False, 0
            for t in threads:
                t.pending_signals |= JOBCTL  # each runs deliver once more on its way out of the stop
            shared.stop_queue.notify()
            if task.proc is not None:
                task.proc.report_continue()
    if sig == SIGKILL:
        return True
    if task.sigmask & _bit(sig):
        return True  # blocked signals are never ignored: the handler may change meanwhile
    return not _ignored_by(task, sig) or task.ptrace is not None  # a tracer sees ignored ones too


def _flush(task, mask: int) -> None:
    """Drop the signals of mask from every pending set of the process."""
    shared = task.sigshared
    if shared.pending & mask:
        shared.pending &= ~mask
        shared.queue = [i for i in shared.queue if not _bit(i.signo) & mask]
    for t in _threads(task):
        if t.pending_signals & mask:
            t.pending_signals &= ~mask
            t.sigqueue = [i for i in t.sigqueue if not _bit(i.signo) & mask]
    from sentry import timers
    timers.dropped(shared, mask)


def _wants(t, sig: int) -> bool:
    if t.exit_status is not None:
        return False
    if sig == SIGKILL:
        return True
    sw = t.sigwait
    if t.sigmask & _bit(sig) and not (sw is not None and t.blocked is sw[1] and sw[0] & _bit(sig)):
        return False  # blocked, unless a sigtimedwait of this thread waits for it now
    return not t.sigshared.stopped


def _complete(task, sig: int, group: bool) -> None:
    """Find a thread to take sig and wake it (Linux's complete_signal)."""
    if _wants(task, sig):
        target = task
    elif not group:
        return
    else:
        target = next((t for t in _threads(task) if _wants(t, sig)), None)
        if target is None:
            return
    shared = task.sigshared
    if group:
        # Linux wakes one thread for it (TIF_SIGPENDING); the others, the sender among them,
        # leave it pending for that one while it still wants it (see dequeue).
        shared.chosen[sig] = target
    h = handler_of(target, sig)
    kind = _DEFAULT.get(sig, TERM)
    if h == SIG_DFL and kind == TERM and not shared.group_exit and not target.sigmask & _bit(sig) \
            and (sig == SIGKILL or target.ptrace is None):  # a tracee's signal stops first
        # fatal to the whole process: every thread takes SIGKILL, the first to run ends it
        shared.group_exit = sig
        for t in _threads(task):
            t.pending_signals |= _bit(SIGKILL)
            _wake(t)
        return
    _wake(target)


def _wake(t) -> None:
    kernel = t.kernel
    sw = t.sigwait
    if sw is not None and t.blocked is sw[1]:
        kernel.interrupt(t)
        return
    if t is getattr(kernel, "current", None):
        return  # it takes the signal on its way back to user code
    interrupt = getattr(kernel, "interrupt", None)
    if interrupt is not None:
        interrupt(t)


# --- taking a signal ---------------------------------------------------------------------------
def _dequeue_from(bits: int, queue: list, mask: int):
    """(sig, info, bits left, queue left) for the first deliverable signal of one set."""
    ready = bits & ~mask & MASK64
    if not ready:
        return 0, None, bits, queue
    sync = ready & SYNCHRONOUS
    pick = sync if sync else ready
    sig = (pick & -pick).bit_length()
    info = None
    rest = []
    more = False
    for i in queue:
        if i.signo == sig:
            if info is None:
                info = i
                continue
            more = True
        rest.append(i)
    if not more:
        bits &= ~_bit(sig)
    return sig, info or SigInfo(sig, SI_KERNEL), bits, rest


def dequeue(task, mask: int):
    """Take the first pending signal not in mask: the task's own first, then the
    process's; (0, None) when there is none."""
    from sentry import timers
    own = task.pending_signals & MASK64
    if own & ~mask:
        sig, info, bits, task.sigqueue = _dequeue_from(own, task.sigqueue, mask)
        task.pending_signals = bits | (task.pending_signals & ~MASK64)
        timers.taken(info)
        return sig, info
    shared = task.sigshared
    if shared.pending & ~mask:
        chosen = shared.chosen
        if chosen:
            for sig, t in list(chosen.items()):
                if t is task:
                    continue
                if _wants(t, sig) and t.kernel.tasks.get(t.tid) is t:
                    mask |= _bit(sig)  # another thread was woken for it and will take it
                else:
                    del chosen[sig]
            if not shared.pending & ~mask:
                return 0, None
        sig, info, shared.pending, shared.queue = _dequeue_from(shared.pending, shared.queue, mask)
        if not shared.pending & _bit(sig):
            chosen.pop(sig, None)
        timers.taken(info)
        return sig, info
    return 0, None


def deliver(task, nr, result) -> None:
    """Before the task returns to user code: take its pending signals. Handlers get
    frames (nested, the last taken runs first), default actions end or stop the
    process, an interrupted syscall (result -ERESTART*) is restarted or fails with
    EINTR by Linux's rules. Raises TaskExit when the process ended, Wait to hold a
    stopped task until SIGCONT."""
    kernel = task.kernel
    arch = kernel.arch
    if task.saved_sigmask is not None and (result is None or (result & MASK64) not in _INTERRUPTED):
        set_mask(task, task.saved_sigmask)  # a call that set a mask for its wait returned normally:
        task.saved_sigmask = None           # the old mask is back before anything is delivered
    if nr is not None and result is not None:
        code = _RESTARTS.get(result & MASK64)
        if code and nr != NR_RT_SIGRETURN[arch]:
            _rewind(task, nr, code)
    ran_handler = False
    shared = task.sigshared
    while True:
        task.pending_signals &= ~JOBCTL
        traced = task.ptrace is not None
        if traced:
            ptrace_guest.before_signals(task)  # a ptrace stop that lasts, PTRACE_INTERRUPT's
        elif shared.stopped and not task.pending_signals & _bit(SIGKILL):
            raise Wait(queues=(shared.stop_queue,), interrupt_result=0)  # a group stop holds it
        if shared.group_exit and task.pending_signals & _bit(SIGKILL):
            task.pending_signals &= ~_bit(SIGKILL)
            _die(task, shared.group_exit, None)
        got = ptrace_guest.injected(task) if traced else None
        if got is not None:
            sig, info = got  # the tracer's choice at the signal-delivery stop
            if sig != SIGKILL and task.sigmask & _bit(sig):
                send(task, sig, info)  # blocked now: it waits as any other
                continue
        else:
            sig, info = dequeue(task, task.sigmask)
            if not sig:
                break
            if traced and sig != SIGKILL:
                ptrace_guest.signal_stop(task, sig, info)  # the tracer decides what is delivered
        handler, flags, restorer, mask = action(task, sig)
        if sig == SIGKILL:
            handler = SIG_DFL
        if handler == SIG_IGN:
            continue
        if handler == SIG_DFL:
            kind = _DEFAULT.get(sig, TERM)
            if kind in (IGN, CONT):
                continue
            if kind == STOP:
                if sig != SIGSTOP and _orphaned_pgrp(task):
                    continue  # a terminal stop for an orphaned process group is discarded
                _group_stop(task, sig)
                continue  # not reached: the stop raises Wait
            _die(task, sig, info)
        _restart_rule(task, flags)
        _handle(task, sig, info, handler, flags, restorer, mask)
        ran_handler = True
    if task.sig_restart is not None:
        nr0, code = task.sig_restart
        task.sig_restart = None
        if code == ERESTART_RESTARTBLOCK and not ran_handler:
            ctx = task.cpu.get_context()
            if arch == "x86_64":
                ctx.rax = NR_RESTART_SYSCALL[arch]
            else:
                ctx.x[8] = NR_RESTART_SYSCALL[arch]
            task.cpu.set_context(ctx)
    if task.saved_sigmask is not None and not ran_handler:
        set_mask(task, task.saved_sigmask)  # sigsuspend & co: no handler ran, the old mask is back
        task.saved_sigmask = None


def _rewind(task, nr: int, code: int) -> None:
    """Make the interrupted syscall run again when the task resumes (undone by
    _restart_rule when a handler is to see EINTR instead)."""
    arch = task.kernel.arch
    ctx = task.cpu.get_context()
    if arch == "x86_64":
        ctx.rax = nr
        ctx.rip -= 2
    else:
        args = getattr(task, "syscall_args", None)
        ctx.x[0] = args[0] if args else ctx.x[0]
        ctx.pc -= 4
    task.cpu.set_context(ctx)
    task.sig_restart = (nr, code)


def _restart_rule(task, flags: int) -> None:
    """A handler is about to run: does the interrupted syscall restart, or fail with EINTR?"""
    if task.sig_restart is None:
        return
    nr, code = task.sig_restart
    task.sig_restart = None
    if code == ERESTARTNOINTR or (code == ERESTARTSYS and flags & SA_RESTART):
        return  # stays rewound
    arch = task.kernel.arch
    ctx = task.cpu.get_context()
    if arch == "x86_64":
        ctx.rax = (-EINTR) & MASK64
        ctx.rip += 2
    else:
        ctx.x[0] = (-EINTR) & MASK64
        ctx.x[8] = nr
        ctx.pc += 4
    task.cpu.set_context(ctx)


def _handle(task, sig: int, info: SigInfo, handler: int, flags: int, restorer: int, mask: int) -> None:
    """Run the handler: a frame on the stack, the handler's registers, the new mask."""
    oldmask = task.saved_sigmask if task.saved_sigmask is not None else task.sigmask
    task.saved_sigmask = None
    from sentry.sigframe import BadFrame
    try:
        _setup_frame(task, sig, info, handler, flags, restorer, oldmask)
    except BadFrame:
        _force_sigsegv(task, sig)
        return
    blocked = task.sigmask | mask
    if not flags & SA_NODEFER:
        blocked |= _bit(sig)
    set_mask(task, blocked)
    if flags & SA_RESETHAND:
        raw = task.sigactions.get(sig)
        if raw:
            task.sigactions[sig] = _ACT.pack(SIG_DFL, *_ACT.unpack_from(raw)[1:])
    if task.fault_report and task.fault_report[0] == sig:
        task.fault_report = None


def _setup_frame(task, sig, info, handler, flags, restorer, oldmask) -> None:
    from sentry.sigframe import BUILD, AltStack, BadFrame
    arch = task.kernel.arch
    cpu = task.cpu
    ctx = cpu.get_context()
    alt = task.altstack or AltStack()
    sp = ctx.sp
    sp_top = sp - 128 if arch == "x86_64" else sp
    nested = alt.on(sp)
    entering = False
    if flags & SA_ONSTACK and alt.ss_flags(sp_top if arch == "x86_64" else sp) == 0:
        sp_top = alt.sp + alt.size
        entering = True
    if arch == "aarch64" and not flags & SA_RESTORER:
        restorer = _sigtramp(task)
    fault = None
    if info.code > 0 and info.code < SI_KERNEL and sig in FAULT_SIGNALS:
        fault = (info.trapno, info.err, info.addr) if arch == "x86_64" else (info.addr, info.esr)
    frame, blob, hctx = BUILD[arch](ctx, sig=sig, info=info.pack(), handler=handler, flags=flags,
                                    restorer=restorer, sp_top=sp_top & MASK64, oldmask=oldmask,
                                    stack_t=alt.pack(), fault=fault)
    if arch == "x86_64" and (nested or entering) and not alt.contains(frame):
        raise BadFrame("the alternate signal stack overflowed")
    from sentry.errors import Errno
    try:
        task.mm.write(frame, blob)
    except Errno:
        raise BadFrame("the frame's stack is not writable") from None
    if alt.flags & SS_AUTODISARM:
        task.altstack = None
    cpu.set_context(hctx)


_A64_SIGTRAMP = bytes.fromhex("681180d2010000d4")  # mov x8, #139 (rt_sigreturn); svc #0


def _sigtramp(task) -> int:
    """aarch64 without SA_RESTORER (glibc): Linux returns through the vDSO's
    __kernel_rt_sigreturn. The sandbox has no vDSO: one page of the same two
    instructions, mapped on first need."""
    mm = task.mm
    addr = getattr(mm, "sigtramp", 0)
    if addr:
        return addr
    addr = mm.mmap(0, 4096, 1 | 4, 0x02 | 0x20)  # PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS
    mm.space.write(addr, _A64_SIGTRAMP)
    mm.sigtramp = addr
    return addr


def _force_sigsegv(task, sig: int) -> None:
    """The frame could not be set up: SIGSEGV (with its handler reset first if the
    failing signal was SIGSEGV itself), as Linux's force_sigsegv."""
    if sig == SIGSEGV:
        raw = task.sigactions.get(SIGSEGV)
        if raw:
            task.sigactions[SIGSEGV] = _ACT.pack(SIG_DFL, *_ACT.unpack_from(raw)[1:])
    force(task, SigInfo(SIGSEGV, SI_KERNEL))


def force(task, info: SigInfo) -> None:
    """A signal the task cannot refuse (a fault): blocked or ignored, it gets its
    default action (Linux's force_sig_info)."""
    sig = info.signo
    h = handler_of(task, sig)
    blocked = task.sigmask & _bit(sig)
    if blocked or h == SIG_IGN:
        raw = task.sigactions.get(sig)
        if raw:
            task.sigactions[sig] = _ACT.pack(SIG_DFL, *_ACT.unpack_from(raw)[1:])
        task.sigmask &= ~_bit(sig)
    if not task.pending_signals & _bit(sig):
        task.pending_signals |= _bit(sig)
        task.sigqueue.append(info)


def fault(task, stop) -> None:
    """A hardware fault (FaultStop): queue the forced signal with Linux's siginfo;
    deliver then runs the handler or ends the process with the crash report."""
    sig, addr, pc = stop.signo, stop.addr, stop.pc
    if sig == SIGSEGV and addr and not _mapped(task, addr) and _grow_stack(task, addr):
        return  # a MAP_GROWSDOWN area grew down to addr: the instruction runs again
    info = SigInfo(sig, SI_KERNEL)
    info.pc = pc
    arch = task.kernel.arch
    if sig == SIGSEGV:
        if getattr(stop, "reason", "").startswith(("general protection", "privileged")):
            info.code, info.addr = SI_KERNEL, 0
        else:
            info.code = SEGV_ACCERR if _mapped(task, addr) else SEGV_MAPERR
            info.addr = addr
            info.trapno = 14
            reason = getattr(stop, "reason", "")
            info.err = 4 | (1 if info.code == SEGV_ACCERR else 0) | (2 if "write" in reason else 0) \
                | (16 if reason.startswith("fetch") else 0)
            info.esr = 0x92000000 | (0x40 if "write" in reason else 0) if arch == "aarch64" else 0
    elif sig == SIGBUS:
        info.code, info.addr = BUS_ADRERR, addr
    elif sig == SIGFPE:
        info.code, info.addr, info.trapno = FPE_INTDIV, pc, 0
    elif sig == SIGILL:
        info.code, info.addr, info.trapno = (ILL_ILLOPN if arch == "x86_64" else ILL_ILLOPC), pc, 6
    elif sig == SIGTRAP:
        if arch == "x86_64" and getattr(stop, "reason", "").startswith("debug trap"):
            info.code, info.addr, info.trapno = TRAP_TRACE, pc, 1  # the trap flag's single step (#DB)
        elif arch == "x86_64":
            info.code, info.trapno = SI_KERNEL, 3
        else:
            info.code, info.addr = TRAP_BRKPT, pc
    host_code = getattr(stop, "code", None)
    if host_code is not None:  # the host kernel said (ptrace): its si_code and si_addr stand
        info.code, info.addr = host_code, addr
    reason = getattr(stop, "reason", "") or _describe(task, pc)
    task.fault_report = (sig, f"{task.comm}[{task.tid}] killed by {NAMES.get(sig, sig)} at pc {pc:#x}"
                              f"{': ' + reason if reason else ''}")
    force(task, info)


def _grow_stack(task, addr: int) -> bool:
    from sentry.mm import VM_GROWSDOWN
    mm = task.mm
    if not any(v.flags & VM_GROWSDOWN for v in mm.vmas):
        return False
    return mm.expand_stack(addr, task.rlimits.get(3, (8 << 20, 0))[0])  # RLIMIT_STACK


def _mapped(task, addr: int) -> bool:
    try:
        return task.mm._find(addr) >= 0
    except Exception:
        return False


def _describe(task, pc: int) -> str:
    """The instruction at pc, decoded with capstone (for the crash report)."""
    arch = task.kernel.arch
    code = b""
    for size in ((16, (pc | 0xFFF) + 1 - pc) if arch == "x86_64" else (4,)):
        try:
            code = task.mm.space.read(pc, min(size, 16))
            break
        except Exception:
            continue
    if not code:
        return ""
    try:
        import capstone
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64) if arch == "x86_64" else \
            capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        for insn in md.disasm(code, pc, 1):
            return f"`{insn.mnemonic} {insn.op_str}`" if insn.op_str else f"`{insn.mnemonic}`"
    except Exception:
        pass
    return "undecodable bytes " + code[:8].hex(" ")


def _die(task, sig: int, info) -> None:
    """The default action of a fatal signal: the whole process ends."""
    kernel = task.kernel
    report = task.fault_report
    if report and report[0] == sig:
        kernel.note(report[1])
    task.fault_report = None
    core = _DEFAULT.get(sig) == CORE and task.rlimits.get(4, (0, 0))[0] > 0
    try:
        kernel.exit_group(task, 0, sig, core)
    except TypeError:
        kernel.exit_group(task, 0, sig)
    raise TaskExit


# --- job control -------------------------------------------------------------------------------
def _group_stop(task, sig: int) -> None:
    if task.ptrace is not None:
        ptrace_guest.group_stop(task, sig)  # its tracer is told, and resumes it
        return
    shared = task.sigshared
    if not shared.stopped:
        shared.stopped, shared.stop_sig = True, sig
        for t in _threads(task):
            if t is not task:
                t.pending_signals |= JOBCTL
                _wake(t)
        proc = task.proc
        if proc is not None:
            proc.report_stop(sig)
    raise Wait(queues=(shared.stop_queue,), interrupt_result=0)


def _orphaned_pgrp(task) -> bool:
    """Is the task's process group orphaned (no member has a parent in another group
    of the same session)? Terminal stops are then discarded. The sandbox's first
    process counts as having such a parent (whoever started the sandbox), as a
    program started from a shell does."""
    proc = task.proc
    procs = getattr(task.kernel, "procs", None)
    if proc is None or procs is None:
        return False
    for p in procs.values():
        if p.pgid != proc.pgid or getattr(p, "zombie", False):
            continue
        parent = p.parent
        if parent is None:
            return False  # the sandbox's first process: started from outside, as from a shell
        if parent.pgid != proc.pgid and parent.sid == proc.sid:
            return False
    return True


# --- rt_sigreturn ------------------------------------------------------------------------------
def sigreturn(task) -> int:
    """Restore what the frame at the stack pointer saved; the value for the result
    register (the restored rax / x0, so that the return leaves it as it was)."""
    from sentry.errors import Errno
    from sentry.sigframe import PARSE, BadFrame
    arch = task.kernel.arch
    cpu = task.cpu
    cur = cpu.get_context()
    try:
        ctx, mask, (ss_sp, ss_flags, ss_size) = PARSE[arch](task.mm.read, cur.sp, cur)
    except (BadFrame, Errno):
        force(task, SigInfo(SIGSEGV, SI_KERNEL))
        return cur.rax if arch == "x86_64" else cur.x[0]
    set_mask(task, mask)
    task.saved_sigmask = None
    cpu.set_context(ctx)
    try:
        set_altstack(task, ss_sp, ss_flags, ss_size, cur.sp if arch == "x86_64" else ctx.sp)
    except Errno:
        pass
    return ctx.rax if arch == "x86_64" else ctx.x[0]


def set_altstack(task, sp: int, flags: int, size: int, cur_sp: int) -> None:
    """sigaltstack's change (Linux's do_sigaltstack), raising Errno."""
    import errno as E
    from sentry.errors import Errno
    from sentry.sigframe import AltStack
    alt = task.altstack or AltStack()
    if alt.on(cur_sp):
        raise Errno(E.EPERM)
    mode = flags & ~SS_AUTODISARM
    if mode not in (0, 1, 2):  # 0, SS_ONSTACK, SS_DISABLE
        raise Errno(E.EINVAL)
    if (alt.sp, alt.size, alt.flags) == (sp, size, flags):
        return
    if mode == 2:
        task.altstack = None if not flags & SS_AUTODISARM else AltStack(0, 0, flags)
        return
    minsize = 2048 if task.kernel.arch == "x86_64" else 5120
    if size < minsize:
        raise Errno(E.ENOMEM)
    task.altstack = AltStack(sp, size, flags)
