"""The sandbox's IPC: System V shared memory, message queues and semaphores, and
POSIX message queues, as Linux's ipc/ has them, all sentry objects (the host's IPC
objects are never touched).

- `namespace.IpcNamespace`: everything of one IPC namespace, on one object
  (`task.ipc_ns`); `ids`: ids, keys and permissions; `shm`, `msg`, `sem`: the
  three System V families; `mqueue`: the mqueue filesystem; `proc`: /proc/sysvipc
  and the IPC sysctls.
- The handlers are syscalls/shm.py, msg.py, sem.py and mqueue.py.

What a task's life does to its IPC state is here, called by the kernel: a fork or
clone shares the namespace and (CLONE_SYSVSEM, threads) the semaphore undo list, and
its copies of shared memory attachments count as attachments; exit applies the undo
list and detaches the address space's segments; exec detaches them too.
"""


def on_fork(parent, child, flags: int) -> None:
    """A new process (Kernel.fork): the parent's namespace; its undo list with
    CLONE_SYSVSEM (none otherwise); attachments copied into a new address space are
    opened again (shm_open: their attach time and pid)."""
    _share_ns(parent, child)
    if flags & 0x40000:  # CLONE_SYSVSEM
        from sentry.ipc import sem
        sem.share_undo(parent, child)
    if child.mm is not parent.mm:
        for seg in _segments(parent.mm):
            seg.opened(parent.tgid)


def on_thread(parent, child) -> None:
    """A new thread (Kernel.clone_thread): the same namespace and undo list (threads
    are made with CLONE_SYSVSEM)."""
    _share_ns(parent, child)
    if getattr(parent, "sem_undo", None) is not None:
        from sentry.ipc import sem
        sem.share_undo(parent, child)


def _share_ns(parent, child) -> None:
    # (a task whose namespaces are copied with its credentials has it already)
    if getattr(child, "ipc_ns", None) is not parent.ipc_ns:
        child.ipc_ns = parent.ipc_ns


def on_exit(task, mm) -> None:
    """A task ends (exit_mm, exit_sem, exit_shm); mm is its address space if this was
    its last user, else None."""
    if getattr(task, "sem_undo", None) is not None:
        from sentry.ipc import sem
        sem.exit_sem(task)
    if mm is not None:
        detach_all(mm)
    ns = getattr(task, "ipc_ns", None)
    if ns is not None and ns.shm.objects:
        from sentry.ipc import shm
        shm.task_exited(task, ns)


def on_unshare(task, flags: int) -> None:
    """unshare(2), before the task changes namespaces: CLONE_SYSVSEM or CLONE_NEWIPC let go
    of its undo list (applied if it was the last user), CLONE_NEWIPC also orphans the
    segments it made in the namespace it leaves (exit_shm), as Linux's ksys_unshare."""
    if flags & (0x40000 | 0x08000000) and getattr(task, "sem_undo", None) is not None:
        from sentry.ipc import sem
        sem.exit_sem(task)
    ns = getattr(task, "ipc_ns", None)
    if flags & 0x08000000 and ns is not None and ns.shm.objects:
        from sentry.ipc import shm
        shm.task_exited(task, ns)


def detach_all(mm) -> None:
    """An address space went (exit, exec): each of its attachments closes."""
    for v in mm.vmas:
        closed = getattr(v.backing, "vma_closed", None) if v.backing is not None else None
        if closed is not None:
            closed()


def _segments(mm):
    for v in mm.vmas:
        if v.backing is not None:
            seg = getattr(v.backing, "segment", None)
            if seg is not None:
                yield seg
