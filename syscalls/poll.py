"""Waiting on many descriptors: poll(2), ppoll(2), select(2), pselect6(2).

Readiness comes from sentry/poll.py (one mechanism for every file kind); a
call that must wait parks on every queue and host fd that could change the
answer and runs again when one does, keeping its first deadline."""
import errno as E
import struct
import time

from sentry.errors import Errno
from sentry.poll import ALWAYS, POLLERR, POLLHUP, POLLNVAL, POLLPRI, READABLE, WRITABLE, readiness, wakers
from sentry.sched import Wait
from sentry.signals import set_wait_mask, signal_ready
from syscalls.abi import read_timespec, s32, write_timespec, write_timeval
from syscalls.registry import syscall

ERESTARTNOHAND = 514  # EINTR after a handler ran, else the call restarts: poll and select never honour SA_RESTART
_POLLFD = struct.Struct("<ihh")


def _deadline(t, timeout_ns):
    """The call's deadline in monotonic seconds (None: forever), fixed at its first run."""
    if t.restart_state is not None:
        return t.restart_state[0]
    return None if timeout_ns is None else time.monotonic() + timeout_ns / 1e9


def _wait(t, files_events, deadline, saved=None, left=None):
    """Park on everything that could change the answer. At the deadline the call runs
    again (and finds it has timed out: select and ppoll then write the time left, 0);
    interrupted, it writes the time left too (left(ns), as Linux's poll_select_finish)."""
    queues, fds = [], []
    for f, events in files_events:
        t.hold_file(-1, f)  # open until the call ends, whoever closes its fd (Linux's poll table)
        q, h = wakers(f, events)
        queues.extend(q)
        fds.extend(h)
    if t.saved_sigmask is not None and signal_ready(t):
        raise Errno(ERESTARTNOHAND)  # the call's own mask lets a pending signal in: no wait
    t.restart_state = (deadline, saved)
    if deadline is not None:
        kernel, token = t.kernel, t.wait_token + 1  # the token this wait will have
        kernel.call_at(deadline, lambda: t.wait_token == token and t.blocked is not None and kernel.wake(t))
    on_interrupt = None
    if left is not None and deadline is not None:
        def on_interrupt(task):
            left(max(0, int((deadline - time.monotonic()) * 1e9)))
            return -ERESTARTNOHAND
    raise Wait(queues=tuple(queues), fds=tuple(fds), interrupt_result=-ERESTARTNOHAND, on_interrupt=on_interrupt)


def _time_left(t, deadline, timeout_ns, left) -> None:
    """A finished select/pselect6/ppoll writes back the time it did not use (not for a
    zero or no timeout), as Linux does."""
    if left is not None and timeout_ns:
        left(max(0, int((deadline - time.monotonic()) * 1e9)))


def _poll(t, fds_addr: int, nfds: int, timeout_ns, left=None) -> int:
    if nfds > t.fds.limit:
        raise Errno(E.EINVAL)
    raw = t.mm.read(fds_addr, 8 * nfds) if nfds else b""
    deadline = _deadline(t, timeout_ns)
    out, ready, watched = bytearray(raw), 0, []
    for i in range(nfds):
        fd, events, _ = _POLLFD.unpack_from(raw, 8 * i)
        revents = 0
        if fd >= 0:
            f = t.fds.files.get(fd)
            if f is None:
                revents = POLLNVAL
            else:
                revents = readiness(f) & (events | ALWAYS)
                watched.append((f, events))
        struct.pack_into("<h", out, 8 * i + 6, revents)
        ready += revents != 0
    if ready or timeout_ns == 0 or deadline is not None and time.monotonic() >= deadline:
        t.mm.write(fds_addr, bytes(out))
        _time_left(t, deadline, timeout_ns, left)
        return ready
    t.mm.write(fds_addr, bytes(out))  # all revents 0: what a timeout leaves
    _wait(t, watched, deadline, left=left)


@syscall("poll")
def poll(t, fds, nfds, timeout):
    timeout = s32(timeout)
    return _poll(t, fds, nfds & 0xFFFFFFFF, None if timeout < 0 else timeout * 1_000_000)


@syscall("ppoll")
def ppoll(t, fds, nfds, tsp, sigmask, sigsetsize):
    if sigmask and sigsetsize != 8:
        raise Errno(E.EINVAL)
    timeout = read_timespec(t.mm, tsp) if tsp else None
    if sigmask:
        set_wait_mask(t, t.mm.read_u64(sigmask))
    return _poll(t, fds, nfds & 0xFFFFFFFF, timeout,
                 (lambda ns: write_timespec(t.mm, tsp, ns)) if tsp and not _sticky(t) else None)


STICKY_TIMEOUTS = 0x4000000


def _sticky(t) -> bool:
    """personality(STICKY_TIMEOUTS): select, pselect6 and ppoll leave the timeout as given."""
    return bool(getattr(t, "personality", 0) & STICKY_TIMEOUTS)


def _select(t, nfds: int, sets, timeout_ns, left=None):
    nfds = s32(nfds)
    if nfds < 0 or nfds > t.fds.limit:
        raise Errno(E.EINVAL)
    nbytes = (nfds + 63) // 64 * 8
    deadline = _deadline(t, timeout_ns)
    if t.restart_state is not None and t.restart_state[1] is not None:
        given = t.restart_state[1]  # what the program asked first (the sets are overwritten)
    else:
        given = [int.from_bytes(t.mm.read(a, nbytes), "little") if a and nbytes else 0 for a in sets]
    result = [0, 0, 0]
    watched, ready = [], 0
    wants = (READABLE | POLLHUP | POLLERR, WRITABLE | POLLERR, POLLPRI)
    for fd in range(nfds):
        bit = 1 << fd
        if not (given[0] | given[1] | given[2]) & bit:
            continue
        f = t.fds.files.get(fd)
        if f is None:
            raise Errno(E.EBADF)
        r = readiness(f)
        events = 0
        for k in range(3):
            if given[k] & bit:
                events |= wants[k]
                if r & wants[k]:
                    result[k] |= bit
                    ready += 1
        watched.append((f, events))
    done = ready or timeout_ns == 0 or deadline is not None and time.monotonic() >= deadline
    for k, a in enumerate(sets):
        if a and nbytes:
            t.mm.write(a, (result[k] if done else 0).to_bytes(nbytes, "little"))
    if done:
        _time_left(t, deadline, timeout_ns, left)
        return ready
    _wait(t, watched, deadline, given, left)


@syscall("select")
def select(t, nfds, readfds, writefds, exceptfds, timeout):
    ns = None
    if timeout:
        sec, usec = struct.unpack("<qq", t.mm.read(timeout, 16))
        if sec < 0 or not 0 <= usec < 1_000_000:
            raise Errno(E.EINVAL)
        ns = sec * 1_000_000_000 + usec * 1000
    return _select(t, nfds, (readfds, writefds, exceptfds), ns,
                   (lambda left: write_timeval(t.mm, timeout, left)) if timeout and not _sticky(t) else None)


@syscall("pselect6")
def pselect6(t, nfds, readfds, writefds, exceptfds, tsp, sig):
    ns = read_timespec(t.mm, tsp) if tsp else None
    if sig:  # struct { const sigset_t *ss; size_t ss_len; }
        ss, ss_len = struct.unpack("<QQ", t.mm.read(sig, 16))
        if ss:
            if ss_len != 8:
                raise Errno(E.EINVAL)
            set_wait_mask(t, t.mm.read_u64(ss))
    return _select(t, nfds, (readfds, writefds, exceptfds), ns,
                   (lambda left: write_timespec(t.mm, tsp, left)) if tsp and not _sticky(t) else None)
