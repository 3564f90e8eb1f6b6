"""The data path of every socket (sentry/net/unix.py, sentry/net/inet.py): one receive
and one send with Linux's blocking rules, shared by read(2)/write(2) (the socket's
File methods) and the socket calls (syscalls/net.py, which decode the ABI around
them: msghdrs, control messages, addresses).

Waiting: a call that cannot go on parks the task on the socket's queues
(Wait); partial progress of a blocking call (a stream write cut by a full
buffer, a MSG_WAITALL read) and the deadline of SO_RCVTIMEO/SO_SNDTIMEO are
kept in task.restart_state (Progress) across its runs. A signal ends the wait
with what was done, or -ERESTARTSYS (EINTR when a timeout is set), as Linux's
sock_intr_errno.

A plain read or recv of a connected stream, the common case, is answered at once
from what is queued (UnixSocket.stream_read); the general rounds (stream_take,
with peeks, credentials, files, low-water marks, faults) take the rest."""
import errno as E
import time
from signal import SIGPIPE

from sentry.errors import Errno
from sentry.net.netlink import NetlinkSocket
from sentry.net.unix import (CLOSE, ESTABLISHED, RCV_SHUTDOWN, SEND_SHUTDOWN, SOCK_SEQPACKET, SOCK_STREAM,
                             UnixSocket, autobind, drop_file, find_other, hold_file, validate_addr)
from sentry.sched import ERESTARTSYS, Wait
from sentry.signals import send as send_signal
from sentry.vfs.file import O_NONBLOCK

INT_MAX = 0x7FFFFFFF
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_ERRQUEUE = 0x1, 0x2, 0x20, 0x40, 0x2000
MSG_WAITALL, MSG_NOSIGNAL = 0x100, 0x4000


def sender_cred(t):
    """(pid, uid, gid) a message carries (the real ids, as current_uid_gid)."""
    return (t.tgid, t.uid, t.gid)


def dgram_disconnected(sock: UnixSocket, other: UnixSocket) -> None:
    """A datagram socket leaves a peer: what that peer sent it is dropped, and a peer
    connected back hears ECONNRESET."""
    if sock.queue:
        while sock.queue:
            sock._uncharge(sock.queue.popleft())
        sock._relay_room()
        if not other.dead and other.peer is sock:
            other.set_err(E.ECONNRESET)


class Progress:
    """What a blocking socket call keeps across its runs: bytes (or messages) done and
    the deadline of SO_RCVTIMEO/SO_SNDTIMEO."""
    __slots__ = ("sock", "kind", "done", "deadline")

    def __init__(self, sock, kind, deadline):
        self.sock, self.kind, self.done, self.deadline = sock, kind, 0, deadline


def progress(t, sock, kind: str, timeo_ns: int) -> Progress:
    rs = t.restart_state if t is not None else None
    if rs.__class__ is Progress and rs.sock is sock and rs.kind == kind:
        return rs
    return Progress(sock, kind, time.monotonic() + timeo_ns / 1e9 if timeo_ns else None)


def wait(t, p: Progress, queues) -> Wait:
    """Park until one of queues changes; a timeout or a signal ends the call with what
    was done, else EAGAIN (timeout), EINTR (signal, with a timeout) or -ERESTARTSYS."""
    if t is None:
        return Errno(E.EAGAIN)
    t.restart_state = p
    done, timed = p.done, p.deadline is not None
    return Wait(queues=queues, deadline=p.deadline, timeout_result=done if done else -E.EAGAIN,
                on_interrupt=lambda task: done if done else (-E.EINTR if timed else -ERESTARTSYS))


class Collect:
    """A sink for read(2): the bytes are delivered by syscalls/io.py afterwards (the
    pieces are joined once, at the end)."""
    __slots__ = ("parts",)

    def __init__(self):
        self.parts = []

    def room(self, n):
        return n

    def put(self, data):
        self.parts.append(data)

    def advance(self, n):
        pass

    def bytes(self) -> bytes:
        parts = self.parts
        if len(parts) == 1 and parts[0].__class__ is bytes:
            return parts[0]
        return b"".join(parts)


class IovSink:
    """The program's buffers, filled in order; room(n) is how much of the next n bytes
    they take before the first bad page (copy_to_user's rule)."""
    __slots__ = ("mm", "iov", "i", "off")

    def __init__(self, mm, iov):
        self.mm, self.iov, self.i, self.off = mm, [(b, n) for b, n in iov if n], 0, 0

    def advance(self, n):
        while n and self.i < len(self.iov):
            take = min(n, self.iov[self.i][1] - self.off)
            n -= take
            self.off += take
            if self.off == self.iov[self.i][1]:
                self.i, self.off = self.i + 1, 0

    def room(self, n):
        total, i, off = 0, self.i, self.off
        while total < n and i < len(self.iov):
            base, length = self.iov[i]
            want = min(length - off, n - total)
            ok = self.mm.writable_prefix(base + off, want)
            total += ok
            if ok < want:
                break
            i, off = i + 1, 0
        return total

    def put(self, data):
        pos = 0
        while pos < len(data):
            base, length = self.iov[self.i]
            take = min(length - self.off, len(data) - pos)
            self.mm.write(base + self.off, data[pos:pos + take])
            pos += take
            self.off += take
            if self.off == length:
                self.i, self.off = self.i + 1, 0


class IovSource:
    """The program's buffers to send from: get(offset, n) reads n bytes at a byte offset."""
    __slots__ = ("mm", "iov")

    def __init__(self, mm, iov):
        self.mm, self.iov = mm, [(b, n) for b, n in iov if n]

    def get(self, offset: int, n: int) -> bytes:
        parts = []
        for base, length in self.iov:
            if offset >= length:
                offset -= length
                continue
            take = min(length - offset, n)
            parts.append(self.mm.read(base + offset, take))
            n -= take
            offset = 0
            if not n:
                break
        return b"".join(parts)


# --- receiving ---------------------------------------------------------------------------------
def recv(t, sock: UnixSocket, sink, size: int, flags: int, lowat: bool = True):
    """One receive: (result, msg_flags, passed files, cred, sender's address). Without
    `lowat` a stream read ends with whatever it got (read(2): the bytes are delivered
    after the call, so it may not wait once it has taken some)."""
    if isinstance(sock, NetlinkSocket):
        return sock.recvmsg(t, sink, size, flags)
    if flags & MSG_ERRQUEUE and sock.inet:
        raise Errno(E.EAGAIN)  # ip_recv_error: nothing is ever on the error queue
    nonblock = flags & MSG_DONTWAIT or sock.flags & O_NONBLOCK
    peek = bool(flags & MSG_PEEK)
    if sock.type == SOCK_STREAM:
        if sock.state != ESTABLISHED:
            raise Errno(E.ENOTCONN if sock.inet else E.EINVAL)
        if flags & MSG_OOB:
            raise Errno(E.EINVAL)  # no out-of-band byte is ever pending
        if sock.queue and not flags & (MSG_PEEK | MSG_WAITALL) and (sock.rcvlowat == 1 or not lowat):
            # the common case: what is queued, taken at once and copied out in one piece
            # (the program's buffers checked first: a fault takes the piece-by-piece way)
            avail = min(size, sock.inq)
            if sink.room(avail) == avail:
                addr = sock.queue[0].addr
                data = sock.stream_read(size)
                if data is not None:
                    sink.put(data)
                    return len(data), 0, None, None, addr
        p = progress(t, sock, "recv", sock.rcvtimeo)
        start = 0 if peek else p.done
        sink.advance(start)
        target = size if flags & MSG_WAITALL else (min(sock.rcvlowat if lowat else 1, size) or 1)
        copied, fds, cred, addr, status = sock.stream_take(size - start, peek, sink, start, target)
        if status is None:
            return copied, 0, fds, cred, addr
        err = sock.pop_err()
        if err:
            if copied:
                return copied, 0, fds, cred, addr
            raise Errno(err)
        if sock.shutdown & RCV_SHUTDOWN:
            return copied, 0, fds, cred, addr
        if nonblock:
            if copied:
                return copied, 0, fds, cred, addr
            raise Errno(E.EAGAIN)
        p.done = copied
        raise wait(t, p, (sock.rq,))
    if flags & MSG_OOB:
        raise Errno(E.EOPNOTSUPP)
    if sock.type == SOCK_SEQPACKET and sock.state != ESTABLISHED:
        raise Errno(E.ENOTCONN)
    err = sock.pop_err()
    if err:
        raise Errno(err)
    got = sock.dgram_take(size, peek, sink)
    if got is None:
        if sock.shutdown & RCV_SHUTDOWN and (not nonblock or sock.type == SOCK_SEQPACKET):
            return 0, 0, None, None, None
        if nonblock:
            raise Errno(E.EAGAIN)
        raise wait(t, progress(t, sock, "recv", sock.rcvtimeo), (sock.rq,))
    n, whole, fds, cred, addr = got
    return (whole if flags & MSG_TRUNC else n), (MSG_TRUNC if n < whole else 0), fds, cred, addr


def drop_all(fds) -> None:
    for f in fds or ():
        drop_file(f)


def read(t, sock: UnixSocket, size: int) -> bytes:
    """read(2), readv(2): a receive without flags (a read of 0 bytes is 0 at once)."""
    if size == 0:
        return b""
    size = min(size, INT_MAX)
    if sock.type == SOCK_STREAM and sock.state == ESTABLISHED:  # the common cases at once
        if sock.queue:
            data = sock.stream_read(size)
            if data is not None:
                return data
        elif not (sock.err or sock.shutdown & RCV_SHUTDOWN or sock.flags & O_NONBLOCK or sock.rcvtimeo
                  or t is None):
            raise Wait(queues=(sock.rq,))  # recv's wait when nothing was taken and no deadline runs
    sink = Collect()
    _, _, fds, _, _ = recv(t, sock, sink, size, 0, lowat=False)
    drop_all(fds)
    return sink.bytes()


# --- sending -----------------------------------------------------------------------------------
def send(t, sock: UnixSocket, get, length: int, flags: int, files=(), cred=None, dest=None) -> int:
    """One send of `length` bytes (get(offset, n) reads them), as unix_stream_sendmsg /
    unix_dgram_sendmsg / unix_seqpacket_sendmsg. `files` go as SCM_RIGHTS."""
    if isinstance(sock, NetlinkSocket):
        return sock.sendmsg(t, sock, get, length, flags, dest)  # (passed files are dropped, as netlink's)
    if sock.inet:  # TCP takes the stream path (a destination is ignored), UDP its own
        if sock.type != SOCK_STREAM:
            return sock.udp_sendmsg(t, sock, get, length, flags, dest)
        if sock.cork_more(get, length, flags):
            return length
        files, cred, dest = (), None, None
    nonblock = flags & MSG_DONTWAIT or sock.flags & O_NONBLOCK
    if sock.type == SOCK_STREAM:
        if flags & MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        if dest is not None:
            raise Errno(E.EISCONN if sock.state == ESTABLISHED else E.EOPNOTSUPP)
        p = progress(t, sock, "send", sock.sndtimeo)
        sent = p.done
        try:
            other = sock.stream_check()
        except Errno as e:
            if sent:
                return sent
            if e.errno == E.EPIPE and not flags & MSG_NOSIGNAL and t is not None:
                send_signal(t, SIGPIPE)
            raise
        if cred is None and t is not None and (sock.passcred or other.passcred or getattr(other, "orphan", False)):
            cred = sender_cred(t)
        fds = None
        if files and not sent:
            fds = list(files)
            for f in fds:
                hold_file(f)
        try:
            sent += sock.stream_push(other, get, sent, length, fds, cred)
        except Errno:
            if fds:
                drop_all(fds)
            if sent:
                return sent
            raise
        if fds and sent == p.done:  # nothing was queued: the files stay with the caller
            drop_all(fds)
        if sent >= length:
            return sent
        if nonblock:
            if sent:
                return sent
            raise Errno(E.EAGAIN)
        p.done = sent
        raise wait(t, p, (sock.wq,))
    if flags & MSG_OOB:
        raise Errno(E.EOPNOTSUPP)
    if sock.type == SOCK_SEQPACKET:
        err = sock.pop_err()
        if err:
            raise Errno(err)
        if sock.state != ESTABLISHED:
            raise Errno(E.ENOTCONN)
        dest = None
    if dest is not None:
        validate_addr(dest)
    if sock.passcred and sock.addr is None:
        autobind(t, sock)
    if sock.shutdown & SEND_SHUTDOWN:
        raise Errno(E.EPIPE)
    if length > sock.sndbuf - 32:
        raise Errno(E.EMSGSIZE)
    if sock.wmem >= sock.sndbuf:
        if nonblock:
            raise Errno(E.EAGAIN)
        raise wait(t, progress(t, sock, "send", sock.sndtimeo), (sock.wq,))
    data = get(0, length)
    if dest is not None:
        other = find_other(t, sock.type, dest)
    else:
        other = sock.peer
        if other is None:
            raise Errno(E.ENOTCONN)
    if other.peer is not None and other.peer is not sock:
        raise Errno(E.EPERM)
    if other.dead:
        if sock.type == SOCK_SEQPACKET:
            raise Errno(E.EPIPE)
        if sock.peer is other:
            sock.peer = None
            sock.state = CLOSE
            sock._changed()
            dgram_disconnected(sock, other)
            raise Errno(E.ECONNREFUSED)
        raise Errno(E.ECONNRESET)
    if other.shutdown & RCV_SHUTDOWN:
        raise Errno(E.EPIPE)
    if other is not sock and other.peer is not sock and other.full_for(sock):
        if nonblock:
            raise Errno(E.EAGAIN)
        raise wait(t, progress(t, sock, "send", sock.sndtimeo), (other.peer_wait, sock.wq))
    if cred is None and t is not None and (sock.passcred or other.passcred):
        cred = sender_cred(t)
    fds = list(files) if files else None
    for f in fds or ():
        hold_file(f)
    sock.dgram_push(other, data, fds, cred)
    return length


def write(t, sock: UnixSocket, data) -> int:
    """write(2) and the other file writes: a send without flags. A stream takes what fits
    now (syscalls/pipes.py's pipe_write loops, waits and keeps the progress)."""
    if sock.type == SOCK_STREAM:
        other = sock.stream_check()
        n = len(data)
        if not n:
            return 0
        cred = None
        if t is not None and (sock.passcred or other.passcred or other.orphan):
            cred = sender_cred(t)
        done = sock.stream_push(other, lambda off, k: bytes(data[off:off + k]), 0, n, None, cred)
        if done:
            return done
        if sock.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise Wait(queues=(sock.wq,))
    return send(t, sock, lambda off, k: bytes(data[off:off + k]), len(data), 0)

