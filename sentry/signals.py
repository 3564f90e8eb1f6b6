"""Signals as the kernel keeps them: dispositions, default actions, sending.

Delivery to a handler (the signal frame, rt_sigreturn) is not built yet:
a signal whose disposition is a handler is logged once and dropped."""
from sentry.sched import TaskExit

SIG_DFL, SIG_IGN = 0, 1
SIGABRT, SIGKILL, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH = (
    6, 9, 17, 18, 19, 20, 21, 22, 23, 28)
IGNORED_BY_DEFAULT = {SIGCHLD, SIGCONT, SIGURG, SIGWINCH}
STOP_BY_DEFAULT = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}


def handler_of(task, sig: int) -> int:
    raw = task.sigactions.get(sig)
    return int.from_bytes(raw[:8], "little") if raw else SIG_DFL


def send(task, sig: int) -> None:
    """Send sig to the task's process. May end it (raising TaskExit when the
    sender is the task itself)."""
    if sig == 0:
        return
    if sig not in (SIGKILL, SIGSTOP):
        if task.sigmask >> (sig - 1) & 1:
            task.pending_signals |= 1 << (sig - 1)
            return
        action = handler_of(task, sig)
        if action == SIG_IGN or action == SIG_DFL and sig in IGNORED_BY_DEFAULT:
            return
        if action != SIG_DFL:
            task.kernel.log_once(f"signal handlers are not run yet: signal {sig} to "
                                 f"{task.comm}[{task.tid}] dropped")
            return
    if sig in STOP_BY_DEFAULT:
        task.kernel.log_once("job-control stops are not implemented yet: stop signal ignored")
        return
    task.kernel.exit_group(task, 0, sig)
    raise TaskExit


def set_mask(task, mask: int) -> None:
    """Change the blocked set; signals pending and now unblocked take effect."""
    task.sigmask = mask & ~((1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1)))
    ready = task.pending_signals & ~task.sigmask
    while ready:
        sig = (ready & -ready).bit_length()
        task.pending_signals &= ~(1 << (sig - 1))
        ready &= ready - 1
        send(task, sig)
