"""The only ways a handler hands control back to the kernel loop other than
returning or raising Errno: wait for something, or end the task; and the
wait queues sentry objects (pipes, children, futexes) wake waiters through; and a
task's system time (the sentry's time answering its calls, the host's in its thread)."""

import os

ERESTARTSYS = 512


class WaitQueue:
    """Tasks waiting for one sentry object to change. notify() queues them all
    to run again; each re-runs its syscall from the start and either succeeds
    or waits again (so a spurious wake-up is harmless)."""

    __slots__ = ("waiters", "watchers")

    def __init__(self):
        self.waiters = []
        self.watchers = None  # objects told changed() at each notify (epoll entries), or None

    def notify(self) -> None:
        if self.waiters:
            for task in list(self.waiters):
                task.kernel.wake(task)
        if self.watchers:
            for w in list(self.watchers):
                if w.changed():
                    break  # an exclusive watcher woke someone: the rest stay asleep (EPOLLEXCLUSIVE)

    def watch(self, watcher, exclusive: bool = False) -> None:
        """Exclusive watchers go last, as Linux's add_wait_queue_exclusive: every other
        watcher hears a notify, exclusive ones only until one of them wakes a waiter."""
        if self.watchers is None:
            self.watchers = []
        if exclusive:
            self.watchers.append(watcher)
        else:
            self.watchers.insert(0, watcher)

    def unwatch(self, watcher) -> None:
        try:
            self.watchers.remove(watcher)
        except (AttributeError, ValueError):
            pass


class Wait(Exception):
    """Park the task until one of `queues` is notified, `fd` (a host fd) is
    ready for `events` (selectors EVENT_READ/EVENT_WRITE) or one of `fds`
    ((host fd, events) pairs) is, or `deadline`
    (time.monotonic seconds) passes. On a notify or a ready fd the syscall runs
    again from the start; at the deadline it returns `timeout_result`; when a
    signal interrupts the wait it returns `interrupt_result` (-ERESTARTSYS:
    the signal code decides between EINTR and a restart), or whatever
    `on_interrupt(task)` computes. With `wake_result` set, a notify finishes
    the syscall with that value instead of running it again (vfork)."""

    __slots__ = ("queues", "fds", "deadline", "timeout_result", "interrupt_result",
                 "on_interrupt", "interruptible", "wake_result", "killable")

    def __init__(self, fd=None, events=0, deadline=None, timeout_result=0, queues=(),
                 interrupt_result=-ERESTARTSYS, on_interrupt=None, interruptible=True, wake_result=None,
                 fds=(), killable=False):
        self.queues = queues
        self.fds = ((fd, events),) + tuple(fds) if fd is not None else tuple(fds)  # (host fd, events)
        self.deadline = deadline
        self.timeout_result = timeout_result
        self.interrupt_result = interrupt_result
        self.on_interrupt = on_interrupt
        self.interruptible = interruptible
        self.wake_result = wake_result
        self.killable = killable  # not interruptible, but SIGKILL ends it (a ptrace stop)


class TaskExit(Exception):
    """The task has ended (exit/exit_group or a fatal signal already recorded)."""


class Resumed(Exception):
    """The platform has let the task's syscall run on the host and resumed it (a ptrace
    read passed through): there is no result for the sentry to set."""


# --- system time ------------------------------------------------------------------------------
_HOST_TICK_NS = 10**9 // (os.sysconf("SC_CLK_TCK") or 100)


def host_stime_ns(cpu) -> int:
    """ptrace: the host kernel's system time in the traced thread (/proc/<tid>/stat's stime);
    unicorn's tasks are no host threads: 0."""
    tid = getattr(cpu, "tid", None)
    if not isinstance(tid, int):
        return 0
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[12]) * _HOST_TICK_NS  # stime, the 15th field
    except (OSError, ValueError, IndexError):
        return 0


def task_system_ns(task) -> int:
    """A thread's system time: the sentry's CPU time answering its syscalls (Task.sys_ns,
    counted by the dispatcher) and, on ptrace, the host kernel's time in its thread."""
    return getattr(task, "sys_ns", 0) + host_stime_ns(task.cpu)


def process_system_ns(proc) -> int:
    """Its ended threads' system time (Process.sys_ns) and its live ones'."""
    return getattr(proc, "sys_ns", 0) + sum(task_system_ns(t) for t in proc.tasks if t.exit_status is None)
