"""Signal-driven I/O: a file's owner (fcntl F_SETOWN, F_SETOWN_EX), the signal
it is sent (F_SETSIG) and O_ASYNC, as Linux's fs/fcntl.c.

An open file with O_ASYNC and an owner sends the owner SIGIO when it becomes
readable (POLL_IN) or writable (POLL_OUT): pipes, AF_UNIX sockets, eventfds
and inotify files, whose wait queues announce every change (the watcher here
sits on them as an epoll entry does). With F_SETSIG set to a signal (SIGIO
included) the signal carries si_code POLL_*, si_band and si_fd; with 0, plain
SIGIO. Leases and dnotify send through the same owner (POLL_MSG). The
sandbox's terminal is the host's and sends none."""
import struct

from sentry import signals

PIDTYPE_PID, PIDTYPE_TGID, PIDTYPE_PGID = 0, 1, 2  # a thread, a process, a process group
POLL_IN, POLL_OUT, POLL_MSG, POLL_ERR, POLL_PRI, POLL_HUP = 1, 2, 3, 4, 5, 6
# band_table: si_band for each POLL_* reason
_BAND = {POLL_IN: 0x41, POLL_OUT: 0x304, POLL_MSG: 0x441, POLL_ERR: 0x8, POLL_PRI: 0x82, POLL_HUP: 0x18}
O_ASYNC = 0o20000
SIGIO = 29


class Owner:
    """fown_struct: who gets the file's signals. `target` is the Task, Process or
    process group id it was set to (a reused pid is never the same owner)."""
    __slots__ = ("type", "target", "uid", "euid", "signum")

    def __init__(self):
        self.type, self.target, self.uid, self.euid, self.signum = PIDTYPE_PID, None, 0, 0, 0


def owner_of(f) -> Owner:
    o = getattr(f, "fowner", None)
    if o is None:
        o = f.fowner = Owner()
    return o


def set_owner(t, f, ptype: int, target, force: bool = True) -> None:
    """__f_setown: without force only a file that has no owner yet takes one (leases,
    dnotify)."""
    o = owner_of(f)
    if force or o.target is None:
        o.type, o.target = ptype, target
        if target is not None:
            o.uid, o.euid = t.uid, t.euid


def alive(kernel, o: Owner) -> bool:
    """Does the owner still exist (pid_task)?"""
    if o.target is None:
        return False
    if o.type == PIDTYPE_PGID:
        return bool(kernel.ptable.in_group(o.target))
    if o.type == PIDTYPE_TGID:
        return kernel.procs.get(o.target.pid) is o.target
    return kernel.tasks.get(o.target.tid) is o.target


def owner_id(kernel, o: Owner) -> int:
    """The owner's pid (F_GETOWN_EX's), 0 once it is gone."""
    if not alive(kernel, o):
        return 0
    if o.type == PIDTYPE_PGID:
        return o.target
    return o.target.pid if o.type == PIDTYPE_TGID else o.target.tid


def _permitted(task, o: Owner) -> bool:
    """sigio_perm: the owner's ids (when it was set) against the target's."""
    return o.euid == 0 or o.euid in (task.suid, task.uid) or o.uid in (task.suid, task.uid)


def send_sigio(kernel, f, fd: int, reason: int) -> None:
    """send_sigio: the file's owner gets its signal."""
    o = getattr(f, "fowner", None)
    if o is None or o.target is None or not alive(kernel, o):
        return
    signum = o.signum

    def info():
        if not signum:
            return None  # plain SIGIO (SEND_SIG_PRIV)
        raw = bytearray(128)
        struct.pack_into("<iiiiqi", raw, 0, signum, 0, reason, 0, _BAND.get(reason, -1), fd)
        return signals.SigInfo(signum, reason, raw=bytes(raw))

    sig = signum or SIGIO
    if o.type == PIDTYPE_PGID:
        for p in kernel.ptable.in_group(o.target):
            live = [t for t in p.tasks if t.exit_status is None]
            if live and _permitted(live[0], o):
                signals.send_process(p, sig, info())
    elif o.type == PIDTYPE_TGID:
        live = [t for t in o.target.tasks if t.exit_status is None]
        if live and _permitted(live[0], o):
            signals.send_process(o.target, sig, info())
    elif o.target.exit_status is None and _permitted(o.target, o):
        signals.send(o.target, sig, info())


# --- O_ASYNC ---------------------------------------------------------------------------------------
class _Watcher:
    """Sits on one of a file's wait queues (as an epoll entry does) and signals its
    owner when the file is ready that way."""
    __slots__ = ("file", "fd", "kernel", "reason", "queue")

    def __init__(self, kernel, f, fd: int, reason: int, queue):
        self.kernel, self.file, self.fd, self.reason, self.queue = kernel, f, fd, reason, queue

    def changed(self) -> None:
        f = self.file
        if getattr(f, "fd_refs", 1) <= 0:  # closed: let go
            self.queue.unwatch(self)
            if getattr(f, "fasync", None):
                f.fasync = [w for w in f.fasync if w is not self]
            return
        if not f.flags & O_ASYNC:
            return
        from sentry.poll import POLLERR, POLLHUP, READABLE, WRITABLE, readiness
        ready = readiness(f)
        want = (READABLE | POLLHUP | POLLERR) if self.reason == POLL_IN else (WRITABLE | POLLERR)
        if ready & want:
            send_sigio(self.kernel, f, self.fd, self.reason)


def _queues(f):
    """(the queue told when f may have become readable, when writable)."""
    pipe = getattr(f, "pipe", None)
    if pipe is not None and hasattr(f, "reads"):
        return (pipe.can_read if f.reads else None), (pipe.can_write if f.writes else None)
    if hasattr(f, "rq") and hasattr(f, "wq"):  # a socket
        return f.rq, f.wq
    return getattr(f, "can_read", None), getattr(f, "can_write", None)


def set_async(t, f, fd: int, on: bool) -> None:
    """O_ASYNC set or cleared on f through fd (F_SETFL, FIOASYNC): Linux's ->fasync."""
    old = getattr(f, "fasync", None)
    if old:
        for w in old:
            w.queue.unwatch(w)
        f.fasync = None
    if not on:
        return
    watchers = []
    rq, wq = _queues(f)
    for queue, reason in ((rq, POLL_IN), (wq, POLL_OUT)):
        if queue is not None:
            w = _Watcher(t.kernel, f, fd, reason, queue)
            queue.watch(w)
            watchers.append(w)
    f.fasync = watchers or None

