"""Readiness of any open file, as poll(2) sees it, and what to wait on until
it changes: the one mechanism poll, ppoll, select, pselect6 and epoll share.
Pipes are looked at first (the common case); eventfd, timerfd and signalfd
files answer through their own poll_readiness()/poll_wakers(events)."""
import select as _select
import stat as _stat

POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND, POLLRDHUP = 0x40, 0x80, 0x100, 0x200, 0x2000
READABLE = POLLIN | POLLRDNORM
WRITABLE = POLLOUT | POLLWRNORM
ALWAYS = POLLERR | POLLHUP | POLLNVAL  # reported whether asked for or not
EVENT_READ, EVENT_WRITE = 1, 2  # selectors' bits, for host fds


def readiness(f) -> int:
    """The poll bits true of open file f now."""
    from sentry.vfs.pipe import PipeFile
    if f.__class__ is PipeFile:
        p = f.pipe
        mask = 0
        if f.reads:
            if p.count:
                mask |= READABLE
            if not p.writers:
                mask |= POLLHUP
        if f.writes:
            if not p.full():  # a free slot
                mask |= WRITABLE
            if not p.readers:
                mask |= POLLERR
        return mask
    own = getattr(f, "poll_readiness", None)
    if own is not None:  # eventfd, timerfd, signalfd: sentry objects that know their own state
        return own()
    host_fd = getattr(f, "host_fd", None)
    if host_fd is not None and hasattr(f, "pushback"):  # a host stream: ask the host
        if f.pushback:
            return READABLE | WRITABLE
        p = _select.poll()
        p.register(host_fd, _select.POLLIN | _select.POLLOUT)
        mask = 0
        for _, ev in p.poll(0):
            mask |= ev
        if mask & POLLIN:
            mask |= POLLRDNORM
        if mask & POLLOUT:
            mask |= POLLWRNORM
        return mask & (READABLE | WRITABLE | POLLERR | POLLHUP)
    proc = getattr(f, "proc", None)
    if proc is not None:  # a pidfd: readable once the process has ended
        return READABLE if proc.zombie else 0
    if hasattr(f, "interest"):  # an epoll file: readable while something in it is ready
        return READABLE if f.any_ready() else 0
    return READABLE | WRITABLE  # files, directories, devices: never wait


NO_POLL_MEM_DEVICES = {(1 << 8) | minor for minor in (1, 3, 4, 5, 7)}  # mem, null, port, zero, full


def can_poll(f) -> bool:
    """Whether f has a poll operation of its own (epoll_ctl refuses the others, EPERM):
    regular files, directories, the memory devices and anonymous files without one (an
    fs context) have none; readiness() calls them always ready."""
    from sentry.vfs.pipe import PipeFile
    if f.__class__ is PipeFile or hasattr(f, "poll_readiness") or hasattr(f, "interest"):
        return True
    if getattr(f, "host_fd", None) is not None and hasattr(f, "pushback") or getattr(f, "proc", None) is not None:
        return True
    mode = f.inode.mode
    kind = _stat.S_IFMT(mode)
    if kind in (0, _stat.S_IFREG, _stat.S_IFDIR):
        return False
    return not (kind == _stat.S_IFCHR and f.inode.rdev in NO_POLL_MEM_DEVICES)


def wakers(f, events: int):
    """(wait queues, host fds with selector events) whose change may change f's readiness."""
    from sentry.vfs.pipe import PipeFile
    if f.__class__ is PipeFile:
        p = f.pipe  # each end hears its own side, as pipe_poll waits on rd_wait or wr_wait
        return (p.can_read,) * bool(f.reads) + (p.can_write,) * bool(f.writes), ()
    own = getattr(f, "poll_wakers", None)
    if own is not None:
        return own(events), ()
    host_fd = getattr(f, "host_fd", None)
    if host_fd is not None and hasattr(f, "pushback"):
        ev = (EVENT_READ if events & READABLE else 0) | (EVENT_WRITE if events & WRITABLE else 0)
        return (), (((host_fd, ev or EVENT_READ)),)
    proc = getattr(f, "proc", None)
    if proc is not None:
        return (proc.exit_event,), ()
    if hasattr(f, "interest"):
        queues, fds = f.wakers()
        return tuple(queues), tuple(fds)
    return (), ()
