"""epoll_create(2), epoll_create1(2), epoll_ctl(2), epoll_wait(2), epoll_pwait(2),
epoll_pwait2(2): level- and edge-triggered, one-shot, nested (sentry/epoll.py)."""
import errno as E
import struct
import time

from sentry.epoll import EPOLLEXCLUSIVE, EpollFile, Interest
from sentry.errors import Errno
from sentry.poll import can_poll
from sentry.sched import Wait
from sentry.signals import set_wait_mask, signal_ready
from sentry.vfs.file import O_CLOEXEC
from syscalls.abi import read_timespec, s32
from syscalls.paths import file_of
from syscalls.registry import PARTIAL, syscall

EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLL_CLOEXEC = O_CLOEXEC
ERESTARTNOHAND = 514
EP_MAX_EVENTS = 0x7FFFFFFF // 12
# what may go with EPOLLEXCLUSIVE: IN OUT ERR HUP WAKEUP ET EXCLUSIVE
EPOLLEXCLUSIVE_OK_BITS = 0x1 | 0x4 | 0x8 | 0x10 | (1 << 29) | (1 << 31) | EPOLLEXCLUSIVE
# struct epoll_event is packed on x86-64 (12 bytes), naturally aligned elsewhere (16)
_EVENT = {"x86_64": struct.Struct("<IQ"), "aarch64": struct.Struct("<I4xQ")}


def _new(t, flags: int) -> int:
    if flags & ~EPOLL_CLOEXEC:
        raise Errno(E.EINVAL)
    return t.fds.install(EpollFile(), cloexec=bool(flags & EPOLL_CLOEXEC))


@syscall("epoll_create")
def epoll_create(t, size):
    if s32(size) <= 0:
        raise Errno(E.EINVAL)
    return _new(t, 0)


@syscall("epoll_create1")
def epoll_create1(t, flags):
    return _new(t, flags)


def _epoll(t, epfd) -> EpollFile:
    f = t.fds.get(s32(epfd))
    if not isinstance(f, EpollFile):
        raise Errno(E.EINVAL)
    return f


@syscall("epoll_ctl", status=PARTIAL, note="ADD, MOD, DEL; EPOLLEXCLUSIVE wakes one waiting instance per "
         "event; a loop of epolls, or nesting past 4, is ELOOP; files without a poll operation EPERM")
def epoll_ctl(t, epfd, op, fd, event):
    # Linux's order: the event (EFAULT), both descriptors (EBADF; O_PATH ones too), a target
    # without poll (EPERM), then the epoll itself and the flags (EINVAL), then the entry
    op = s32(op)
    if op != EPOLL_CTL_DEL:
        layout = _EVENT[t.kernel.arch]
        events, data = layout.unpack(t.mm.read(event, layout.size))
    epf = file_of(t, epfd)
    fd = s32(fd)
    target = file_of(t, fd)
    if not can_poll(target):
        raise Errno(E.EPERM)  # always ready: Linux refuses files without a poll operation
    if target is epf or not isinstance(epf, EpollFile):
        raise Errno(E.EINVAL)
    ep = epf
    if op != EPOLL_CTL_DEL and events & EPOLLEXCLUSIVE:
        if op == EPOLL_CTL_MOD or op == EPOLL_CTL_ADD and (isinstance(target, EpollFile)
                                                          or events & ~EPOLLEXCLUSIVE_OK_BITS):
            raise Errno(E.EINVAL)
    key = (fd, id(target))
    if op == EPOLL_CTL_ADD:
        if key in ep.interest:
            raise Errno(E.EEXIST)
        if isinstance(target, EpollFile):
            ep.check_nesting(target)
        ep.add(key, Interest(fd, target, events, data))
        return 0
    if op not in (EPOLL_CTL_DEL, EPOLL_CTL_MOD):
        raise Errno(E.EINVAL)
    item = ep.interest.get(key)
    if item is None:
        raise Errno(E.ENOENT)
    if op == EPOLL_CTL_DEL:
        ep.remove(key)
        return 0
    if item.events & EPOLLEXCLUSIVE:
        raise Errno(E.EINVAL)
    ep.modify(key, events, data)
    return 0


def _wait(t, epfd, events, maxevents, timeout_ns):
    ep = _epoll(t, epfd)
    maxevents = s32(maxevents)
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise Errno(E.EINVAL)
    layout = _EVENT[t.kernel.arch]
    t.mm.check(events, layout.size * maxevents, 2)
    deadline = t.restart_state if t.restart_state is not None else (
        None if timeout_ns is None else time.monotonic() + timeout_ns / 1e9)
    found = ep.ready(maxevents)
    if found:
        t.mm.write(events, b"".join(layout.pack(ev & 0xFFFFFFFF, data) for ev, data in found))
        return len(found)
    if timeout_ns == 0 or deadline is not None and time.monotonic() >= deadline:
        return 0
    if t.saved_sigmask is not None and signal_ready(t):
        raise Errno(ERESTARTNOHAND)
    queues, fds = ep.wakers()
    t.restart_state = deadline
    raise Wait(queues=tuple(queues), fds=tuple(fds), deadline=deadline, timeout_result=0,
               interrupt_result=-ERESTARTNOHAND)


@syscall("epoll_wait")
def epoll_wait(t, epfd, events, maxevents, timeout):
    timeout = s32(timeout)
    return _wait(t, epfd, events, maxevents, None if timeout < 0 else timeout * 1_000_000)


@syscall("epoll_pwait")
def epoll_pwait(t, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    if sigmask:
        if sigsetsize != 8:
            raise Errno(E.EINVAL)
        set_wait_mask(t, t.mm.read_u64(sigmask))
    timeout = s32(timeout)
    return _wait(t, epfd, events, maxevents, None if timeout < 0 else timeout * 1_000_000)


@syscall("epoll_pwait2")
def epoll_pwait2(t, epfd, events, maxevents, timeout, sigmask, sigsetsize):
    if sigmask:
        if sigsetsize != 8:
            raise Errno(E.EINVAL)
        set_wait_mask(t, t.mm.read_u64(sigmask))
    return _wait(t, epfd, events, maxevents, read_timespec(t.mm, timeout) if timeout else None)

