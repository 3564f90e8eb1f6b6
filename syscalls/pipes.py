"""pipe(2), pipe2(2), and writing to a pipe with Linux's blocking rules."""
import errno as E
from signal import SIGPIPE

from sentry.errors import Errno
from sentry.sched import Wait
from sentry.signals import send
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK
from sentry.vfs.pipe import PipeFile, make_pipe
from syscalls.registry import syscall

O_DIRECT, O_NOTIFICATION_PIPE = 0o40000, 0o40000 << 1


def pipe_write(t, f, data) -> int:
    """Write all of data to a pipe, waiting for room as often as needed: a blocking
    write returns only when everything went (or, after part of it, a signal came:
    then the part), as Linux's pipe_write."""
    done = t.restart_state if t.restart_state is not None else 0
    while True:
        try:
            if done and f.__class__ is PipeFile:
                n = f.write(data[done:], False)  # Linux tops up the last page only at a write's start
            else:
                n = f.write(data[done:] if done else data)
        except Wait as w:
            if done:
                t.restart_state = done
                w.on_interrupt = lambda task, part=done: part
            raise
        except Errno as e:
            if e.errno == E.EPIPE:
                # SIGPIPE ends the program unless blocked, ignored or handled. A pipe sends it
                # even after part of the write went; a socket only when nothing went, and
                # only if its kind signals (`sigpipe`: streams), as Linux's af_unix.
                kind = getattr(f, "sigpipe", None)  # None: not a socket (a pipe, a host stream)
                if kind is None or kind and not done:
                    send(t, SIGPIPE)
                if done:
                    return done
            raise
        done += n
        if done >= len(data) or f.flags & O_NONBLOCK:
            return done


@syscall("pipe2", note="O_CLOEXEC, O_NONBLOCK, O_DIRECT (packet mode); O_NOTIFICATION_PIPE EINVAL, as "
         "Linux without CONFIG_WATCH_QUEUE")
def pipe2(t, fds_addr, flags):
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise Errno(E.EINVAL)
    t.mm.check(fds_addr, 8, 2)  # EFAULT before anything is made
    r, w = make_pipe(flags & (O_NONBLOCK | O_DIRECT), (t.fsuid, t.fsgid))
    cloexec = bool(flags & O_CLOEXEC)
    rfd = t.fds.install(r, cloexec)
    try:
        wfd = t.fds.install(w, cloexec)
    except Errno:
        t.fds.close(rfd)
        raise
    t.mm.write(fds_addr, rfd.to_bytes(4, "little") + wfd.to_bytes(4, "little"))
    return 0


@syscall("pipe")
def pipe(t, fds_addr):
    return pipe2(t, fds_addr, 0)
