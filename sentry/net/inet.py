"""AF_INET and AF_INET6 sockets over the sandbox's own loopback (`--net none`).

Each sandbox (kernel) has one `Loopback`: the table of bound ports and the
TIME_WAIT entries, with the addresses of its one interface, `lo` (127.0.0.1/8
and ::1). Nothing here touches the host's network: a destination outside
127.0.0.0/8 and ::1 is ENETUNREACH, as in an empty network namespace.

An InetSocket is a UnixSocket underneath (sentry/net/unix.py): the same
receive queue of Skbs, sender-charged flow control, wait queues and readiness,
so TCP over loopback is a connected stream pair and UDP a datagram queue.
What differs is kept here: addresses (held as 16-byte IPv6 addresses, IPv4 as
v4-mapped ::ffff:a.b.c.d, shown in the socket's own family), port binding
(ephemeral ports, SO_REUSEADDR/SO_REUSEPORT, IPV6_V6ONLY, TIME_WAIT after an
active close), the three-way handshake reduced to an immediate join with a
listener (or a wait in SYN_SENT while its accept queue is full), and TCP's
ending: close with unread data or SO_LINGER 0 resets the peer (ECONNRESET),
otherwise the peer reads end of file, and its next write is answered by a
reset (that write succeeds, the following one is EPIPE). UDP datagrams are
charged to the receiver (rmem) and dropped when its buffer is over SO_RCVBUF,
as udp_queue_rcv_skb does; a connected UDP socket that sends to a port nobody
has bound hears ECONNREFUSED on its next call (the ICMP port unreachable)."""
import errno as E
import itertools
import random
import time
import weakref

from sentry.errors import Errno
from sentry.net.unix import (CLOSE, ESTABLISHED, FIONREAD, LISTEN, POLLERR, RCV_SHUTDOWN, SEND_SHUTDOWN,
                             SHUTDOWN_MASK, SOCK_DGRAM, SOCK_STREAM, TIOCOUTQ, Skb, UnixSocket, dgram_truesize)

AF_INET, AF_INET6 = 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17
SYN_SENT, FIN_WAIT2, CLOSE_WAIT = 2, 5, 8

TCP_WMEM_DEFAULT, TCP_RMEM_DEFAULT = 16384, 131072  # net.ipv4.tcp_wmem[1], tcp_rmem[1]
TCP_WMEM_CONNECTED = 2626560  # what Linux's buffer autotuning gives a loopback connection at once
EPHEMERAL = (32768, 60999)    # net.ipv4.ip_local_port_range
TIME_WAIT_SECONDS = 60
LOOPBACK_MSS = 65483
SO_REUSEADDR, SO_REUSEPORT = 2, 15
MSG_MORE, TCP_CORK = 0x8000, 3
SIOCATMARK, SIOCOUTQNSD = 0x8905, 0x894B

V4_PREFIX = bytes(10) + b"\xff\xff"
ANY6 = bytes(16)
ANY4 = V4_PREFIX + bytes(4)
LOOP4 = V4_PREFIX + bytes((127, 0, 0, 1))
LOOP6 = bytes(15) + b"\x01"


def is_v4(addr: bytes) -> bool:
    return addr[:12] == V4_PREFIX


def is_any(addr: bytes) -> bool:
    return addr == ANY6 or addr == ANY4


def is_local(addr: bytes) -> bool:
    """An address of `lo`: 127.0.0.0/8 or ::1."""
    return (is_v4(addr) and addr[12] == 127) or addr == LOOP6


def route(lb: "Loopback", dest: bytes) -> bytes:
    """The address a connection or datagram to `dest` reaches, or ENETUNREACH: the
    unspecified address means this host (Linux connects it to the loopback)."""
    if dest == ANY4:
        return LOOP4
    if dest == ANY6:
        return LOOP6
    if not is_local(dest) or not lb.up:
        raise Errno(E.ENETUNREACH)
    return dest


class Loopback:
    """A network namespace's `lo`: its bound inet sockets by (protocol, port), its
    TIME_WAIT entries, whether it is up (a new namespace's is down until SIOCSIFFLAGS
    brings it up) and the user namespace owning it (CAP_NET_ADMIN is checked there)."""

    def __init__(self, up: bool = True, owner=None):
        self.up, self.owner = up, owner
        self.bound: dict[tuple[int, int], list["InetSocket"]] = {}
        self.timewait: dict[int, list[tuple[float, "InetSocket"]]] = {}  # TCP port -> (expiry, a stand-in)
        self.rotor = itertools.count(random.randrange(1 << 16))
        self.mtu = 65536  # lo's, as SIOCGIFMTU shows it

    def users(self, proto: int, port: int):
        return [s for s in self.bound.get((proto, port), ()) if not s.dead]

    def _timewait(self, port: int):
        entries = self.timewait.get(port)
        if not entries:
            return []
        now = time.monotonic()
        entries[:] = [e for e in entries if e[0] > now]
        return [s for _, s in entries]

    def conflict(self, sock: "InetSocket", port: int, timewait: bool = True) -> bool:
        """inet_csk_bind_conflict / udp_lib_lport_inuse: another socket on the port whose
        addresses overlap and whose options do not allow sharing."""
        reuse, reuseport = sock.opt(SO_REUSEADDR), sock.opt(SO_REUSEPORT)
        for other in self.users(sock.proto, port):
            if other is sock or not overlap(sock, other):
                continue
            if reuseport and other.opt(SO_REUSEPORT) and other.uid == sock.uid:
                continue
            if reuse and other.opt(SO_REUSEADDR):
                if sock.type == SOCK_DGRAM or other.state != LISTEN:
                    continue
            return True
        if timewait and sock.type == SOCK_STREAM:
            for other in self._timewait(port):  # a TIME_WAIT yields only if both asked SO_REUSEADDR
                if overlap(sock, other) and not (reuse and other.opt(SO_REUSEADDR)):
                    return True
        return False

    def bind(self, sock: "InetSocket", addr: bytes, port: int) -> None:
        """Bind to (addr, port); port 0 takes a free ephemeral port."""
        sock.local = (addr, 0)
        if port == 0:
            lo, hi = EPHEMERAL
            span = hi - lo + 1
            start = random.randrange(span)
            for i in range(span):
                p = lo + (start + i) % span
                if not self.users(sock.proto, p) and not (sock.type == SOCK_STREAM and self._timewait(p)):
                    port = p
                    break
            else:
                sock.local = None
                raise Errno(E.EADDRINUSE)
        elif self.conflict(sock, port):
            sock.local = None
            raise Errno(E.EADDRINUSE)
        sock.local = (addr, port)
        self.bound.setdefault((sock.proto, port), []).append(sock)

    def join(self, sock: "InetSocket", port: int) -> None:
        """An accepted connection shares its listener's port (inet_inherit_port)."""
        self.bound.setdefault((sock.proto, port), []).append(sock)

    def unbind(self, sock: "InetSocket") -> None:
        if sock.local is None:
            return
        key = (sock.proto, sock.local[1])
        users = self.bound.get(key)
        if users is not None:
            if sock in users:
                users.remove(sock)
            if not users:
                del self.bound[key]

    def add_timewait(self, sock: "InetSocket") -> None:
        stand_in = InetSocket.__new__(InetSocket)  # holds only what overlap() reads
        stand_in.family, stand_in.local, stand_in.v6only = sock.family, sock.local, sock.v6only
        stand_in.options = {SO_REUSEADDR: sock.opt(SO_REUSEADDR)}
        self.timewait.setdefault(sock.local[1], []).append((time.monotonic() + TIME_WAIT_SECONDS, stand_in))

    def receivers(self, proto: int, dest: bytes, port: int, state=None):
        """Sockets bound to (dest, port) that take traffic for it: the exact address
        before the wildcard, as Linux's lookup scores them."""
        exact, wild = [], []
        for s in self.users(proto, port):
            if state is not None and s.state != state:
                continue
            if not s.accepts(dest):
                continue
            (wild if is_any(s.local[0]) else exact).append(s)
        return exact or wild

    def pick(self, group):
        """One of a SO_REUSEPORT group (spread in turn), else the first bound."""
        if not group:
            return None
        if len(group) > 1 and all(s.opt(SO_REUSEPORT) for s in group):
            return group[next(self.rotor) % len(group)]
        return group[0]


_LOOPBACKS = weakref.WeakKeyDictionary()


def loopback(task) -> Loopback:
    """The loopback of the task's network namespace (the sandbox's first one is up)."""
    from sentry.namespaces import initial, ns_of
    ns = ns_of(task, "net")
    lb = _LOOPBACKS.get(ns)
    if lb is None:
        lb = _LOOPBACKS[ns] = Loopback(up=ns is initial(task.kernel)[0].net, owner=ns.owner)
    return lb


def _v4_set(s):
    """The IPv4 addresses a bound socket covers: None, 'any' or one address."""
    addr = s.local[0]
    if s.family == AF_INET:
        return "any" if is_any(addr) else addr
    if addr == ANY6:
        return None if s.v6only else "any"
    if is_v4(addr):
        return "any" if addr == ANY4 else addr
    return None


def _v6_set(s):
    if s.family == AF_INET:
        return None
    addr = s.local[0]
    if addr == ANY6:
        return "any"
    return None if is_v4(addr) else addr


def _meet(a, b) -> bool:
    return a is not None and b is not None and (a == "any" or b == "any" or a == b)


def overlap(a, b) -> bool:
    return _meet(_v4_set(a), _v4_set(b)) or _meet(_v6_set(a), _v6_set(b))


class InetSocket(UnixSocket):
    """A TCP or UDP socket of the sandbox's loopback."""
    inet = True

    def __init__(self, kernel, family: int, type_: int, proto: int, flags: int = 0, task=None, lb=None):
        super().__init__(kernel, type_, flags, task)
        self.family, self.proto = family, proto
        self.lb = lb if lb is not None else loopback(task)  # the namespace it was made in, for good
        self.uid = task.euid if task is not None else 0
        self.local = None          # (16-byte address, port) once bound
        self.port_locked = False   # bind named the port: it stays when a connection ends (SOCK_BINDPORT_LOCK)
        self.cork = None           # MSG_MORE / TCP_CORK / UDP_CORK: bytes held back (UDP: with their destination)
        self.cork_dest = None
        self.mc_groups = set()     # multicast groups joined (never inherited by accept)
        self.remote = None         # (16-byte address, port) once connected
        self.v6only = False
        self.sndbuf_locked = False
        self.rmem = 0              # UDP: truesize of the datagrams queued here
        self.syn_queue = []        # TCP listener: connecters waiting for room in the accept queue
        self.connecting = False    # a non-blocking connect answered EINPROGRESS (SS_CONNECTING)
        self.peer_closed = False   # TCP: the peer closed (its FIN came); our next data is answered by a reset
        self.ip_opts: dict[tuple[int, int], object] = {}  # (level, optname) -> value, for getsockopt
        if type_ == SOCK_STREAM:
            self.sndbuf, self.rcvbuf = TCP_WMEM_DEFAULT, TCP_RMEM_DEFAULT

    def opt(self, name: int) -> int:
        return self.options.get(name, 0)

    def accepts(self, dest: bytes) -> bool:
        """Whether traffic to `dest` may reach this bound socket (family and V6ONLY)."""
        if is_v4(dest):
            v4 = _v4_set(self)
            return v4 == "any" or v4 == dest
        v6 = _v6_set(self)
        return v6 == "any" or v6 == dest

    def source_for(self, dest: bytes) -> bytes:
        """The local address of traffic to `dest`: the bound one, else lo's own."""
        if self.local is not None and not is_any(self.local[0]):
            return self.local[0]
        return LOOP4 if is_v4(dest) else LOOP6

    def check_route(self, dest: bytes) -> bytes:
        if is_v4(dest) and self.family == AF_INET6 and self.v6only:
            raise Errno(E.ENETUNREACH)
        dest = route(self.lb, dest)
        if self.local is not None and not is_any(self.local[0]) and is_v4(self.local[0]) != is_v4(dest):
            raise Errno(E.ENETUNREACH if is_v4(dest) else E.EAFNOSUPPORT)
        return dest

    def autobind(self) -> None:
        if self.local is None:
            self.lb.bind(self, ANY6 if self.family == AF_INET6 else ANY4, 0)

    def set_local_addr(self, addr: bytes) -> None:
        """A connection fixes a wildcard-bound socket's address to its source."""
        if self.local is not None and is_any(self.local[0]):
            self.local = (addr, self.local[1])

    # --- TCP: connecting -------------------------------------------------------------------
    def tcp_connect(self, dest: bytes, port: int) -> None:
        """Join a listener on (dest, port) now, or wait in SYN_SENT for room in its accept
        queue; no listener is ECONNREFUSED (the reset that answers the SYN)."""
        dest = self.check_route(dest)
        lb = self.lb
        listener = lb.pick(lb.receivers(IPPROTO_TCP, dest, port, LISTEN))
        if listener is None or listener.shutdown & RCV_SHUTDOWN:
            raise Errno(E.ECONNREFUSED)
        self.autobind()
        self.set_local_addr(self.source_for(dest))
        self.remote = (dest, port)
        self.shutdown = 0
        if listener.recvq_full():
            self.state = SYN_SENT
            listener.syn_queue.append(self)
            return
        self.establish(listener)

    def establish(self, listener: "InetSocket") -> None:
        dest, port = self.remote
        new = InetSocket(self.kernel, listener.family, SOCK_STREAM, IPPROTO_TCP, 0, None, listener.lb)
        new.uid = listener.uid
        new.options = dict(listener.options)
        new.ip_opts = dict(listener.ip_opts)
        new.linger, new.rcvtimeo, new.sndtimeo = listener.linger, listener.rcvtimeo, listener.sndtimeo
        new.sndbuf_locked = listener.sndbuf_locked
        new.sndbuf, new.rcvbuf = listener.sndbuf, listener.rcvbuf
        new.local, new.remote = (dest, port), self.local
        new.orphan = True
        new.listener = listener
        new.peer, new.state = self, ESTABLISHED
        self.peer, self.state = new, ESTABLISHED
        for s in (self, new):
            if not s.sndbuf_locked:
                s.sndbuf = TCP_WMEM_CONNECTED
        self.lb.join(new, port)
        self._changed()
        listener.enqueue(Skb(b"", embryo=new))

    def admit_waiting(self) -> None:
        """The accept queue has room: the first connecter waiting in SYN_SENT joins."""
        while self.syn_queue and not self.recvq_full():
            s = self.syn_queue.pop(0)
            if not s.dead and s.state == SYN_SENT:
                s.establish(self)

    def release_port(self) -> None:
        """A connection ended (tcp_set_state CLOSE): a port bind did not name is given back."""
        if not self.port_locked:
            self.lb.unbind(self)
            self.local = None

    def refuse(self, err: int) -> None:
        """A connection attempt ends with `err` (the listener went away)."""
        self.state = CLOSE
        self.release_port()
        self.remote = None
        self.err = err
        self.shutdown = SHUTDOWN_MASK  # tcp_done
        self._changed()

    # --- TCP: sending (the checks and pushes syscalls/net.py's stream path calls) -----------
    def stream_check(self) -> "UnixSocket":
        if self.err and self.peer is None:
            raise Errno(self.pop_err())  # the reset's error first, as sk_stream_error's sock_error
        if self.shutdown & SEND_SHUTDOWN or self.peer is None or self.state != ESTABLISHED:
            raise Errno(E.EPIPE)
        return self.peer

    def flush_cork(self) -> None:
        """What MSG_MORE or TCP_CORK held back goes to the peer (past the send buffer's
        bound: it is at most one segment)."""
        data, self.cork = self.cork, None
        if data and self.type == SOCK_STREAM and self.peer is not None and not self.peer.dead:
            UnixSocket.stream_push(self, self.peer, lambda off, n: bytes(data[off:off + n]), 0, len(data))

    def cork_more(self, get, length: int, flags: int) -> bool:
        """MSG_MORE or TCP_CORK on a connected TCP socket: up to one segment is held back (True:
        taken); the next send without it, shutdown or close sends it."""
        if not (flags & MSG_MORE or self.ip_opts.get((IPPROTO_TCP, TCP_CORK))):
            return False
        peer = self.peer
        if self.state != ESTABLISHED or peer is None or peer.dead or self.err or self.shutdown & SEND_SHUTDOWN:
            return False  # the ordinary path gives the error
        held = len(self.cork) if self.cork else 0
        if held + length >= LOOPBACK_MSS:
            return False
        if self.cork is None:
            self.cork = bytearray()
        self.cork += get(0, length)
        return True

    def stream_push(self, other, get, start: int, length: int, fds=None, cred=None) -> int:
        if self.cork:
            self.flush_cork()
        if other.dead:
            # The peer's socket is closed: it answers this data with a reset, which finds us
            # in CLOSE_WAIT (EPIPE next, tcp_reset) and ends the connection.
            self.peer = None
            self.remote = None
            self.err = E.EPIPE
            self.shutdown = SHUTDOWN_MASK
            self._changed()
            return length - start
        return UnixSocket.stream_push(self, other, get, start, length, None, None)  # (not super(): the hot path)

    # --- UDP ---------------------------------------------------------------------------------
    # udp_sendmsg with its destination sockaddr, the ABI side's (syscalls/inet.py registers it):
    # (task, sock, get, length, flags, destination sockaddr or None) -> bytes sent
    udp_sendmsg = None

    def udp_deliver(self, data: bytes, dest: bytes, port: int, fmt) -> bool:
        """Hand a datagram to the socket bound to (dest, port); False if nobody is there.
        `fmt(receiver, (addr, port))` gives the sender's address as the receiver sees it."""
        lb = self.lb
        src = (self.source_for(dest), self.local[1])
        group = [s for s in lb.receivers(IPPROTO_UDP, dest, port)
                 if s.remote is None or s.remote == src]
        receiver = lb.pick(group)
        if receiver is None:
            return False
        if receiver.shutdown & RCV_SHUTDOWN or receiver.rmem > receiver.rcvbuf:
            return True  # dropped, as a full receive buffer drops (the sender is not told)
        truesize = dgram_truesize(len(data))
        receiver.rmem += truesize
        receiver.enqueue(Skb(bytes(data), None, truesize, addr=fmt(receiver, src)))
        return True

    def dgram_take(self, size: int, peek: bool, sink):
        skb = self.queue[0] if self.queue else None
        try:
            return super().dgram_take(size, peek, sink)
        finally:
            if skb is not None and not peek and (not self.queue or self.queue[0] is not skb):
                self.rmem -= skb.truesize

    # --- readiness ---------------------------------------------------------------------------
    def poll_readiness(self) -> int:
        if self.state == SYN_SENT:
            return POLLERR if self.err else 0
        return super().poll_readiness()

    def tcp_state(self) -> int:
        """The TCP state as TCP_INFO shows it."""
        if self.state == ESTABLISHED:
            if self.peer is None:
                return CLOSE
            if self.shutdown & SEND_SHUTDOWN:
                return FIN_WAIT2
            if self.shutdown & RCV_SHUTDOWN:
                return CLOSE_WAIT
        return self.state

    # --- shutting down and closing ------------------------------------------------------------
    def shut(self, how: int) -> None:
        """Only our end of output reaches the peer (a FIN); SHUT_RD stays local."""
        mode = how + 1
        if mode & SEND_SHUTDOWN and self.cork and self.type == SOCK_STREAM:
            self.flush_cork()
        self.shutdown |= mode
        if self.state == LISTEN and mode & RCV_SHUTDOWN:
            self.release_listener(E.ECONNREFUSED)
            self.state = CLOSE
        self._changed()
        peer = self.peer
        if peer is not None and self.type == SOCK_STREAM and mode & SEND_SHUTDOWN:
            peer.shutdown |= RCV_SHUTDOWN
            peer._changed()

    def release_listener(self, err: int) -> None:
        for s in self.syn_queue:
            if not s.dead and s.state == SYN_SENT:
                s.refuse(err)
        self.syn_queue = []
        while self.queue:
            skb = self.queue.popleft()
            if skb.embryo is not None:
                skb.embryo.release(embryo=True)

    def release(self, embryo: bool) -> None:
        if self.cork and self.type == SOCK_STREAM:
            self.flush_cork()
        self.dead = True
        lb = self.lb
        state, self.state = self.state, CLOSE
        peer, self.peer = self.peer, None
        if self.type == SOCK_STREAM:
            if state == LISTEN:
                self.release_listener(E.ECONNREFUSED)
            elif peer is not None and not peer.dead:
                if self.queue or embryo or self.linger == (1, 0):
                    peer.peer = None
                    peer.remote = None
                    peer.err = E.ECONNRESET
                    peer.shutdown = SHUTDOWN_MASK
                else:
                    if not peer.shutdown & SEND_SHUTDOWN and self.local is not None:
                        lb.add_timewait(self)  # we closed first: TIME_WAIT holds the port
                    peer.shutdown |= RCV_SHUTDOWN
                    peer.peer_closed = True
                peer._changed()
        lb.unbind(self)
        self.shutdown = SHUTDOWN_MASK
        while self.queue:
            self._uncharge(self.queue.popleft())
        self.inq = self.rmem = 0
        self._changed()

    def close(self) -> None:
        if not self.dead:
            self.release(embryo=False)

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            if self.state == LISTEN:
                raise Errno(E.EINVAL)
            if self.type == SOCK_STREAM:
                n = self.inq
            else:
                n = len(self.queue[0].data) if self.queue else 0
            task.mm.write_u32(arg, n)
            return 0
        if request in (TIOCOUTQ, SIOCOUTQNSD):
            if self.state == LISTEN:
                raise Errno(E.EINVAL)
            peer = self.peer if self.type == SOCK_STREAM else None
            # what the peer's receive window does not take stays in our send queue
            n = max(0, peer.inq - peer.rcvbuf) if peer is not None and not peer.dead else 0
            task.mm.write_u32(arg, n)
            return 0
        if request == SIOCATMARK and self.type == SOCK_STREAM:  # tcp_ioctl's; UDP has no mark: ENOTTY
            task.mm.write_u32(arg, 0)
            return 0
        if self.interface_ioctl(task, request, arg):
            return 0
        raise Errno(E.ENOTTY)
