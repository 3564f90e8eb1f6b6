"""ptrace(2) between the sandbox's own tasks, as gVisor's sentry does it: the tracer and
the tracee are sandbox tasks, and a tracee's stops are the sentry's, not the host's (the
loop just does not run it). Never the host's ptrace: a guest's requests read and change
the tracee through the same register context and memory the dispatcher uses.

A traced task has a `Tracee` (task.ptrace). A ptrace stop is `Tracee.stop` set and the
task parked on `Tracee.wq` (a Wait only SIGKILL or the tracer ends); the kernel's hooks
call in here at the points Linux stops a tracee:

- syscall entry and exit (`traced_syscall`, `syscall_exit`) under PTRACE_SYSCALL: the
  tracer may change the number and arguments at the entry, the result at the exit;
- signal delivery (`signal_stop`, from signals.deliver): the tracer decides which signal,
  if any, is delivered when it resumes the tracee (`injected`);
- group stops of a traced task (`group_stop`), PTRACE_INTERRUPT's and PTRACE_LISTEN's;
- events: fork/vfork/clone (`forked`), exec (`execed`), exit (`exiting`).

wait4/waitid report a stop to the tracer once (`wait_report`), whatever WUNTRACED says.
"""
import errno as E

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue

MASK64 = (1 << 64) - 1
SIGTRAP, SIGKILL, SIGSTOP, SIGCHLD = 5, 9, 19, 17
SIGKILL_BIT = 1 << (SIGKILL - 1)
# signals.JOBCTL: set in a task's pending set, signals.deliver runs once more before it goes
# back to user code. A stop raised from inside deliver (a signal's, a group stop, an
# interrupt) leaves deliver unfinished: its end (a restart block's restart_syscall, the
# mask of sigsuspend) must still run when the tracer lets the task go.
JOBCTL = 1 << 64
ENOSYS = 38
CLD_TRAPPED, CLD_STOPPED = 4, 5

# PTRACE_EVENT_*: in bits 16.. of the wait status of an event stop
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC, EVENT_VFORK_DONE, EVENT_EXIT = 1, 2, 3, 4, 5, 6
EVENT_STOP = 128
# PTRACE_O_*
O_TRACESYSGOOD, O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE = 1, 2, 4, 8
O_TRACEEXEC, O_TRACEVFORKDONE, O_TRACEEXIT, O_TRACESECCOMP = 0x10, 0x20, 0x40, 0x80
O_EXITKILL, O_SUSPEND_SECCOMP = 0x100000, 0x200000
O_MASK = 0xFF | O_EXITKILL | O_SUSPEND_SECCOMP
EVENT_OPTION = {EVENT_FORK: O_TRACEFORK, EVENT_VFORK: O_TRACEVFORK, EVENT_CLONE: O_TRACECLONE,
                EVENT_EXEC: O_TRACEEXEC, EVENT_VFORK_DONE: O_TRACEVFORKDONE, EVENT_EXIT: O_TRACEEXIT}

EFLAGS_TF = 0x100


class Stop:
    """One ptrace stop: what kind, the wait status the tracer gets, its siginfo."""
    __slots__ = ("kind", "sig", "status", "info", "nr")

    def __init__(self, kind: str, sig: int, status: int, info=None, nr=None):
        self.kind = kind      # "signal", "group", "syscall-entry", "syscall-exit", "event", "listen"
        self.sig = sig
        self.status = status  # the wait status: (what << 8) | 0x7f
        self.info = info      # the SigInfo GETSIGINFO shows (and SETSIGINFO changes)
        self.nr = nr          # the syscall, for syscall stops


class Tracee:
    """What a traced task keeps of its tracer (Linux's task->ptrace, ->parent, jobctl bits)."""
    __slots__ = ("task", "tracer", "seized", "options", "stop", "reported", "wq", "syscalls",
                 "sysemu", "step", "injected", "call", "orig_rax", "eventmsg", "interrupt",
                 "event_done", "debugregs", "set_tf", "vfork_child", "hw_slots")

    def __init__(self, task, tracer, seized: bool, options: int = 0):
        self.task = task
        self.tracer = tracer      # the tracing thread (a Task)
        self.seized = seized
        self.options = options
        self.stop = None          # the Stop it is in, or None while it runs
        self.reported = False     # wait has told the tracer of `stop`
        self.wq = WaitQueue()     # the tracee, parked in its stop
        self.syscalls = False     # resumed by PTRACE_SYSCALL (or SYSEMU): stop at syscalls
        self.sysemu = False       # PTRACE_SYSEMU: the call is skipped after its entry stop
        self.step = False         # PTRACE_SINGLESTEP
        self.set_tf = False       # the trap flag was set by us for the step (cleared at the stop)
        self.injected = None      # (sig, info) the tracer chose at a signal-delivery stop
        self.call = None          # the SyscallStop to run after its entry stop (a new nr, args)
        self.orig_rax = MASK64    # the syscall number the tracer sees (orig_rax)
        self.eventmsg = 0
        self.interrupt = False    # PTRACE_INTERRUPT asked for a stop
        self.event_done = None    # the event already reported for the call that re-runs
        self.debugregs = [0] * 8  # DR0-7 as the tracer set them (kept, never armed)
        self.hw_slots = set()     # DR0-3 slots that have a breakpoint (an address set, or enabled once)
        self.vfork_child = None   # the child of a vfork whose event stop it is in


# --- attaching and detaching ---------------------------------------------------------------------
def attach(tracer, task, seized: bool, options: int = 0):
    tr = Tracee(task, tracer, seized, options)
    task.ptrace = tr
    shared = task.sigshared
    if shared.stopped and not seized:
        # already in a group stop: it is now a traced stop (Linux's JOBCTL_TRAP_STOP), reported
        # to the tracer's wait with the stop signal
        tr.stop = Stop("group", shared.stop_sig, (shared.stop_sig << 8) | 0x7F)
        _notify(tr)
    return tr


def detach(task, sig: int = 0) -> None:
    """The tracer lets go: a stopped tracee runs on (with `sig` delivered)."""
    tr = task.ptrace
    if tr is None:
        return
    stop = tr.stop
    task.ptrace = None
    if tr.set_tf:
        _clear_tf(task, tr)
    if stop is not None and task.exit_status is None:
        if sig and stop.kind == "signal":
            from sentry import signals
            signals.send(task, sig)
        if stop.kind == "syscall-exit":
            _finish_exit(task, stop)
        if _in_deliver(stop):  # (and a group stop it was in goes on holding it)
            task.pending_signals |= JOBCTL
        task.kernel.wake(task)
    tr.tracer.proc.child_events.notify()


def tracer_gone(tracer) -> None:
    """A tracing thread ended: its tracees are detached (killed with PTRACE_O_EXITKILL)."""
    from sentry import signals
    for task in list(tracer.kernel.tasks.values()):
        tr = task.ptrace
        if tr is not None and tr.tracer is tracer:
            if tr.options & O_EXITKILL:
                signals.send(task, SIGKILL)
            detach(task)


def tracee_gone(task) -> None:
    """A tracee ended: its tracer's wait reports the exit once, unless the tracer is the
    parent of its process and hears of it the usual way (its zombie)."""
    tr = task.ptrace
    if tr is None:
        return
    task.ptrace = None
    tracer = tr.tracer.proc
    if not (task.proc.parent is tracer and task.tid == task.proc.pid) and task.exit_status is not None:
        exits = getattr(tracer, "ptrace_exits", None)
        if exits is None:
            exits = tracer.ptrace_exits = []
        exits.append(Reported(task, tr.tracer))
        if not tracer.zombie and tracer.leader is not None:  # and SIGCHLD, as do_notify_parent's to a tracer
            from sentry import signals
            code, signo = task.exit_status
            signals.send_process(tracer, SIGCHLD, signals.child_info(task.proc, 2 if signo else 1, signo or code))
    tracer.child_events.notify()


def on_release(task) -> None:
    """Kernel._release's hook: a task that ends stops tracing and being traced."""
    if task.ptrace is not None:
        tracee_gone(task)
    if getattr(task, "traces", False):
        tracer_gone(task)


# --- stopping -------------------------------------------------------------------------------------
def _notify(tr) -> None:
    """The tracer's wait finds the stop; its process gets SIGCHLD (CLD_TRAPPED)."""
    from sentry import signals
    tracer = tr.tracer
    proc = tracer.proc
    proc.child_events.notify()
    stop = tr.stop
    if stop is not None and tracer.exit_status is None and not signals.nocldstop(tracer):
        code = CLD_STOPPED if stop.kind == "group" else CLD_TRAPPED
        signals.send_process(proc, SIGCHLD, signals.child_info(tr.task.proc, code, stop.status >> 8 & 0xFF
                                                                if stop.status >> 8 & 0xFF else SIGTRAP))


def _park(tr, wake_result=None):
    return Wait(queues=(tr.wq,), interruptible=False, killable=True, wake_result=wake_result)


def _enter(task, tr, stop: Stop, wake_result=None):
    """Put the tracee in `stop` and park it there (raises Wait); not for a task being
    killed, which goes on to die."""
    if task.pending_signals & SIGKILL_BIT:
        return
    if tr.set_tf:
        _clear_tf(task, tr)
    tr.stop, tr.reported = stop, False
    _notify(tr)
    raise _park(tr, wake_result)


def still_stopped(task) -> None:
    """A tracee woken while its stop lasts (a spurious wake): back to it."""
    tr = task.ptrace
    if tr is not None and tr.stop is not None and not task.pending_signals & SIGKILL_BIT:
        raise _park(tr)


def _event_status(event: int) -> int:
    return (event << 16) | (SIGTRAP << 8) | 0x7F


def _trap_info(task, code: int):
    from sentry.signals import SigInfo
    return SigInfo(SIGTRAP, code, pid=task.tgid, uid=task.uid)


def event(task, ev: int, msg: int = 0, wake_result=None) -> None:
    """An event stop, when the tracer asked for it (PTRACE_O_TRACE*): raises Wait."""
    tr = task.ptrace
    if tr is None or not tr.options & EVENT_OPTION.get(ev, 0):
        return
    tr.eventmsg = msg
    _enter(task, tr, Stop("event", SIGTRAP, _event_status(ev), _trap_info(task, SIGTRAP | ev << 8)),
           wake_result)


# --- syscalls -------------------------------------------------------------------------------------
def traced_syscall(dispatch, task, stop):
    """A traced task's syscall: its entry stop, then the call (as the tracer left it)."""
    tr = task.ptrace
    if tr.stop is not None:
        still_stopped(task)
    call = tr.call
    if call is None:
        if tr.syscalls:
            tr.orig_rax = stop.nr
            tr.call = stop
            if task.kernel.arch == "x86_64":
                task.cpu.set_result(-ENOSYS)  # what rax holds at a syscall-entry stop (aarch64's x0 is an argument)
            sig = SIGTRAP | (0x80 if tr.options & O_TRACESYSGOOD else 0)
            _enter(task, tr, Stop("syscall-entry", SIGTRAP, (sig << 8) | 0x7F, _trap_info(task, sig), stop.nr))
        call = stop
        tr.call = stop
    if tr.sysemu or call.nr == MASK64:
        # PTRACE_SYSEMU, or the tracer skipped the call (orig_rax -1): rax is the result
        tr.sysemu = False
        return _rax(task)
    return dispatch(task, call.nr, call.args)


def _rax(task) -> int:
    ctx = task.cpu.get_context()
    return ctx.rax if hasattr(ctx, "rax") else ctx.x[0]


def syscall_exit(task, nr: int, ret: int) -> bool:
    """After a traced task's syscall: its exit stop under PTRACE_SYSCALL (True: parked there)."""
    tr = task.ptrace
    call, tr.call = tr.call, None
    tr.event_done = None
    if call is None or not tr.syscalls or task.exit_status is not None or task.pending_signals & SIGKILL_BIT:
        return False
    nr = call.nr  # (the call the tracer may have changed at its entry)
    task.cpu.set_result(ret)
    sig = SIGTRAP | (0x80 if tr.options & O_TRACESYSGOOD else 0)
    tr.stop, tr.reported = Stop("syscall-exit", SIGTRAP, (sig << 8) | 0x7F, _trap_info(task, sig), nr), False
    _notify(tr)
    task.kernel._park(task, None, _park(tr))
    return True


def _finish_exit(task, stop) -> None:
    """Leaving an exit stop: the result (as the tracer left it) goes through the signal and
    restart rules as the call's own would have."""
    task.pending_result = (stop.nr, _rax(task) & MASK64)


# --- signals ----------------------------------------------------------------------------------------
def injected(task):
    """(sig, info) the tracer chose at the last signal-delivery stop, once; or None."""
    tr = task.ptrace
    if tr is None:
        return None
    got, tr.injected = tr.injected, None
    return got


def before_signals(task) -> None:
    """signals.deliver's first step for a tracee: a stop still on, or PTRACE_INTERRUPT's."""
    tr = task.ptrace
    if tr.stop is not None:
        still_stopped(task)
        return
    if tr.interrupt:
        tr.interrupt = False
        _enter(task, tr, Stop("event", SIGTRAP, _event_status(EVENT_STOP), _trap_info(task, SIGTRAP | EVENT_STOP << 8)))


def signal_stop(task, sig: int, info) -> None:
    """A signal is about to be delivered to a tracee: its signal-delivery stop (raises Wait)."""
    from sentry.signals import SigInfo
    tr = task.ptrace
    _enter(task, tr, Stop("signal", sig, (sig << 8) | 0x7F, info or SigInfo(sig)))


def group_stop(task, sig: int) -> None:
    """A tracee takes a stopping signal's default action: a stop its tracer is told of
    (PTRACE_EVENT_STOP for a seized one) and ends."""
    tr = task.ptrace
    status = _event_status(EVENT_STOP) & ~0xFF00 | (sig << 8) if tr.seized else (sig << 8) | 0x7F
    _enter(task, tr, Stop("group", sig, status, None))


# --- resuming --------------------------------------------------------------------------------------
def resume(task, *, syscalls=False, sysemu=False, step=False, sig: int = 0, tracer=None) -> None:
    """PTRACE_CONT / SYSCALL / SYSEMU / SINGLESTEP / LISTEN's end: the tracee runs on."""
    tr = task.ptrace
    stop = tr.stop
    tr.syscalls, tr.sysemu, tr.step = syscalls or sysemu, sysemu, step
    if step:
        _set_tf(task, tr)
    tr.stop = None
    if stop is None:
        return
    if stop.kind == "signal" and sig:
        from sentry.signals import SigInfo, SI_USER
        info = stop.info
        if info is None or sig != stop.sig:
            info = SigInfo(sig, SI_USER, pid=tracer.tgid if tracer else 0, uid=tracer.uid if tracer else 0)
        tr.injected = (sig, info)
    elif stop.kind == "syscall-entry":
        ctx = task.cpu.get_context()
        if hasattr(ctx, "rdi"):
            from sentry.platform import SyscallStop
            tr.call = SyscallStop(tr.orig_rax, (ctx.rdi, ctx.rsi, ctx.rdx, ctx.r10, ctx.r8, ctx.r9))
    elif stop.kind == "syscall-exit":
        _finish_exit(task, stop)
    elif stop.kind == "event":
        tr.event_done = stop.status >> 16
        child, tr.vfork_child = tr.vfork_child, None
        if child is not None and not child.proc.execed and not child.proc.zombie and task.blocked is not None:
            # after PTRACE_EVENT_VFORK the parent still waits for its child's exec or exit
            kernel = task.kernel
            child_id = kernel._unpark(task).wake_result
            kernel._park(task, None, Wait(queues=(child.proc.vfork_done,), interruptible=False,
                                          wake_result=child_id))
            return
    if _in_deliver(stop):
        task.pending_signals |= JOBCTL
    task.kernel.wake(task)


def _in_deliver(stop) -> bool:
    """Was the stop made inside signals.deliver (which then still has its end to run)?"""
    return stop.kind in ("signal", "group") or stop.kind == "event" and stop.status >> 16 == EVENT_STOP


def _set_tf(task, tr) -> None:
    ctx = task.cpu.get_context()
    if hasattr(ctx, "eflags") and not ctx.eflags & EFLAGS_TF:
        ctx.eflags |= EFLAGS_TF
        task.cpu.set_context(ctx)
        tr.set_tf = True


def _clear_tf(task, tr) -> None:
    tr.set_tf = False
    ctx = task.cpu.get_context()
    if hasattr(ctx, "eflags") and ctx.eflags & EFLAGS_TF:
        ctx.eflags &= ~EFLAGS_TF
        task.cpu.set_context(ctx)


def interrupt(task) -> None:
    """PTRACE_INTERRUPT: a running seized tracee stops at its next chance."""
    tr = task.ptrace
    if tr.stop is not None:
        return
    tr.interrupt = True
    task.pending_signals |= JOBCTL
    task.kernel.interrupt(task)


# --- events -------------------------------------------------------------------------------------
def forked(parent, child, flags: int, child_id: int) -> None:
    """A tracee made a process or thread: it is traced too when the tracer asked
    (PTRACE_O_TRACEFORK & co, CLONE_PTRACE), starting in a stop; the parent then makes
    its event stop, its call returning child_id afterwards."""
    tr = parent.ptrace
    if tr is None:
        return
    CLONE_VFORK, CLONE_PTRACE, CLONE_UNTRACED = 0x4000, 0x2000, 0x800000
    if flags & CLONE_VFORK:
        ev = EVENT_VFORK
    elif flags & 0xFF != SIGCHLD or flags & 0x10000:
        ev = EVENT_CLONE
    else:
        ev = EVENT_FORK
    if not tr.options & EVENT_OPTION[ev] and not (flags & CLONE_PTRACE and not flags & CLONE_UNTRACED):
        return
    ctr = attach(tr.tracer, child, tr.seized, tr.options)
    tr.tracer.traces = True
    if tr.seized:
        ctr.stop = Stop("event", SIGTRAP, _event_status(EVENT_STOP), _trap_info(child, SIGTRAP | EVENT_STOP << 8))
        child.pending_signals |= JOBCTL  # (it goes through deliver, and so into the stop, first)
    else:
        from sentry import signals
        signals.send(child, SIGSTOP)
    if tr.options & EVENT_OPTION[ev]:
        from sentry.namespaces import vnr
        tr.vfork_child = child if ev == EVENT_VFORK else None
        event(parent, ev, vnr(tr.tracer, child), wake_result=child_id)


def execed(task) -> None:
    """After a tracee's successful execve: PTRACE_EVENT_EXEC, or the legacy SIGTRAP."""
    tr = task.ptrace
    if tr is None:
        return
    if tr.options & O_TRACEEXEC:
        tr.eventmsg = task.tid
        tr.event_done = EVENT_EXEC
        tr.stop, tr.reported = Stop("event", SIGTRAP, _event_status(EVENT_EXEC),
                                    _trap_info(task, SIGTRAP | EVENT_EXEC << 8)), False
        _notify(tr)
        raise _park(tr, wake_result=0)
    if not tr.seized:
        from sentry import signals
        signals.send(task, SIGTRAP)


def exiting(task, code: int) -> None:
    """exit/exit_group of a tracee with PTRACE_O_TRACEEXIT: its exit event stop first
    (the call runs again when resumed, the event then done)."""
    tr = task.ptrace
    if tr is None or not tr.options & O_TRACEEXIT or tr.event_done == EVENT_EXIT:
        return
    event(task, EVENT_EXIT, (code & 0xFF) << 8)


# --- what the tracer's wait finds -----------------------------------------------------------------
class Reported:
    """What wait reports of a tracee's stop: stands for its Process in wait's answer (the
    tracee's own thread id; the tracing thread as its creator, for __WNOTHREAD)."""
    __slots__ = ("pid", "task", "creator")

    def __init__(self, task, tracer=None):
        self.task, self.pid = task, task.tid
        self.creator = task.ptrace.tracer if task.ptrace is not None else tracer

    def __getattr__(self, name):
        return getattr(self.task.proc, name)


def wait_candidates(t) -> list:
    """The tasks traced by t's process (wait's candidates beside its children), and the
    ended ones whose end it has not reaped."""
    return [x for x in t.kernel.tasks.values() if x.ptrace is not None and x.ptrace.tracer.proc is t.proc] \
        + [r.task for r in getattr(t.proc, "ptrace_exits", None) or ()]


def wait_report(t, match, consume: bool):
    """(Reported, CLD_TRAPPED/CLD_STOPPED, sig, status) of a stop of a tracee that `match`
    accepts and wait has not reported yet, or of its end (CLD_EXITED/KILLED); None if none."""
    exits = getattr(t.proc, "ptrace_exits", None)
    for rep in exits or ():
        if match(rep):
            if consume:
                exits.remove(rep)
            code, signo = rep.task.exit_status
            status = signo if signo else (code & 0xFF) << 8
            return rep, (2 if signo else 1), signo or code, status  # CLD_KILLED, CLD_EXITED
    for task in wait_candidates(t):
        tr = task.ptrace
        if tr.stop is None or tr.reported:
            continue
        rep = Reported(task)
        if not match(rep):
            continue
        if consume:
            tr.reported = True
        stop = tr.stop
        code = CLD_STOPPED if stop.kind == "group" else CLD_TRAPPED
        return rep, code, stop.status >> 8 & 0xFF, stop.status
    return None

