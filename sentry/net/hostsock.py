"""The host sockets behind `--net host` and `--publish` (the rule that sends a
sandbox socket here, and why, is sentry/net/hostnet.py's): a TCP connection's
Relay and a UDP socket's HostDatagram. Loaded only by a sandbox given a way out."""
import errno as E
import socket
import struct
import time

from sentry.errors import Errno
from sentry.net.hostnet import R, W, HostNet, of
from sentry.net.inet import (ANY4, ANY6, AF_INET, IPPROTO_TCP, LOOP4, LOOP6, SYN_SENT, TCP_WMEM_CONNECTED, V4_PREFIX,
                             InetSocket, is_any, is_v4)
from sentry.net.unix import ESTABLISHED, RCV_SHUTDOWN, SOCK_STREAM, Skb, dgram_truesize

CHUNK = 256 * 1024    # bytes one host call moves
OUT_MAX = 256 * 1024  # bytes taken from the sandbox that the host has not taken yet, per connection
SO_KEEPALIVE = 9
TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 4, 5, 6


def host_addr(dest: bytes, port: int):
    """(host family, sockaddr tuple) of a 16-byte address."""
    if is_v4(dest):
        return socket.AF_INET, (socket.inet_ntop(socket.AF_INET, dest[12:]), port)
    return socket.AF_INET6, (socket.inet_ntop(socket.AF_INET6, dest), port)


def from_host(addr) -> tuple[bytes, int]:
    """A host sockaddr tuple -> (16-byte address, port)."""
    host, port = addr[0], addr[1]
    if ":" in host:
        return socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]), port
    return V4_PREFIX + socket.inet_pton(socket.AF_INET, host), port


def sockaddr_of(sock, ap) -> bytes:
    """(16-byte address, port) as the sockaddr the sandbox's socket shows (its family)."""
    addr, port = ap
    if sock.family == AF_INET:
        return struct.pack("<H", AF_INET) + port.to_bytes(2, "big") + addr[12:] + bytes(8)
    return struct.pack("<H", AF_INET6) + port.to_bytes(2, "big") + bytes(4) + addr + bytes(4)


def _errno(e: OSError) -> int:
    return e.errno or E.EIO


class _Collect:
    """A sink for UnixSocket.stream_take / dgram_take that keeps the bytes."""
    __slots__ = ("data",)

    def __init__(self, data=None):
        self.data = data if data is not None else bytearray()

    def room(self, n):
        return n

    def put(self, data):
        self.data += data


# --- TCP -----------------------------------------------------------------------------------------
class Relay:
    """One TCP connection between `end` (a sentry-held InetSocket; its peer is the
    sandbox's socket) and `conn` (a non-blocking host socket). `pending`: the sandbox's
    socket while the host connection is being made (its connect waits in SYN_SENT)."""

    def __init__(self, net: HostNet, end: InetSocket, conn: socket.socket, pending=None):
        self.net, self.end, self.conn, self.pending = net, end, conn, pending
        self.fd = conn.fileno()
        self.out = bytearray()  # from the sandbox, not yet taken by the host
        self.inbuf = b""        # from the host, not yet taken by the sandbox
        self.host_eof = self.sent_fin = self.closed = self.scheduled = False
        self.opts = None        # the options last put on the host socket
        end.rq.watch(self)
        end.wq.watch(self)
        net.endpoints.add(self)
        self._watch()

    # a WaitQueue watcher: `end` changed (data from the sandbox, room, a close)
    def changed(self) -> bool:
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.net.soon(self.run)
        return False

    def run(self, ready: int = 0) -> None:
        self.scheduled = False
        if self.closed:
            return
        try:
            if self.pending is not None:
                self._connected()
            else:
                self._pump()
        except OSError as e:
            self._reset(_errno(e))
        if not self.closed:
            self._watch()

    def _watch(self) -> None:
        if self.closed:
            return
        if self.pending is not None:
            events = W
        else:
            events = W if self.out else 0
            end = self.end
            if not self.host_eof and end.state == ESTABLISHED and end.peer is not None \
                    and not self.inbuf and end.wmem < end.sndbuf:
                events |= R
        self.net.kernel.watch_fd(self.fd, events, self.run)

    def _connected(self) -> None:
        """The host answered our connect (or the sandbox's socket went away meanwhile)."""
        sock = self.pending
        err = self.conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if sock.dead or sock.state != SYN_SENT:
            self.close()
            return
        if err == E.EINPROGRESS or err == E.EALREADY:
            return
        if err:
            self.pending = None
            sock.refuse(err)
            self.close()
            return
        try:
            local = from_host(self.conn.getsockname())
            self.conn.getpeername()  # (writable and no error, yet not connected: ENOTCONN)
        except OSError as e:
            if e.errno == E.ENOTCONN:
                return
            raise
        self.pending = None
        end = self.end
        if sock.local is not None:
            sock.lb.unbind(sock)
        sock.local = local
        end.local, end.remote = sock.remote, local
        end.peer, end.state = sock, ESTABLISHED
        sock.peer, sock.state = end, ESTABLISHED
        for s in (sock, end):
            if not s.sndbuf_locked:
                s.sndbuf = TCP_WMEM_CONNECTED
        self._sync_options()
        sock._changed()

    def _sync_options(self) -> None:
        """The options of the sandbox's socket that mean something on the host's."""
        sock = self.end.peer
        if sock is None:
            return
        opts = (sock.opt(SO_KEEPALIVE), sock.ip_opts.get((IPPROTO_TCP, TCP_NODELAY), 0),
                sock.ip_opts.get((IPPROTO_TCP, TCP_KEEPIDLE)), sock.ip_opts.get((IPPROTO_TCP, TCP_KEEPINTVL)),
                sock.ip_opts.get((IPPROTO_TCP, TCP_KEEPCNT)))
        if opts == self.opts:
            return
        self.opts = opts
        c = self.conn
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(bool(opts[0])))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(bool(opts[1])))
        for name, value in zip((TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT), opts[2:]):
            if value is not None:
                c.setsockopt(socket.IPPROTO_TCP, name, value)

    def _pump(self) -> None:
        end, conn = self.end, self.conn
        if end.state == SYN_SENT:
            return  # a published connection waiting for room in the sandbox's accept queue
        sock = end.peer
        if sock is None or end.state != ESTABLISHED:
            # the sandbox's side reset the connection (closed with data unread, SO_LINGER 0),
            # or its listener went away before accepting it
            self._reset(0)
            return
        self._sync_options()
        # the sandbox's bytes to the host
        while True:
            if not self.out and end.queue:
                end.stream_take(OUT_MAX, False, _Collect(self.out), 0, 1)
            if not self.out:
                break
            try:
                n = conn.send(self.out)
            except BlockingIOError:
                break
            del self.out[:n]
        if not self.out and not end.queue and end.shutdown & RCV_SHUTDOWN and not self.sent_fin:
            self.sent_fin = True
            conn.shutdown(socket.SHUT_WR)  # the sandbox's FIN
        # the host's bytes to the sandbox
        while not self.host_eof and end.peer is not None:
            if not self.inbuf:
                if end.wmem >= end.sndbuf:
                    break
                try:
                    self.inbuf = conn.recv(CHUNK)
                except BlockingIOError:
                    break
                if not self.inbuf:
                    self.host_eof = True
                    end.shut(1)  # SHUT_WR: the sandbox reads end of file
                    break
            data = self.inbuf
            n = end.stream_push(end.peer, lambda off, k: data[off:off + k], 0, len(data))
            self.inbuf = data[n:]
            if self.inbuf:
                break
        if end.peer is None:
            self._reset(0)  # our data found the sandbox's socket closed: the host hears a reset
        elif sock.dead and self.sent_fin:
            self.close()  # the sandbox closed: what the host still sends, its kernel answers
        elif self.host_eof and self.sent_fin and not self.inbuf:
            self.close()

    def drain(self, deadline: float) -> None:
        """Send what the sandbox left (the loop is over: this may block, until deadline)."""
        end = self.end
        if self.closed or self.pending is not None or end.state != ESTABLISHED or end.peer is None:
            return
        try:
            while self.out or end.queue:
                if not self.out:
                    end.stream_take(OUT_MAX, False, _Collect(self.out), 0, 1)
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.conn.settimeout(left)
                self.conn.sendall(self.out)
                self.out.clear()
            if not self.sent_fin:
                self.sent_fin = True
                self.conn.shutdown(socket.SHUT_WR)
        except (OSError, Errno):
            pass

    def _reset(self, err: int) -> None:
        """The connection ends abruptly: the host's error to the sandbox (ECONNRESET,
        ETIMEDOUT, ...), or (err 0) a reset to the host."""
        end = self.end
        sock = end.peer
        if err and sock is not None and not sock.dead:
            end.release(embryo=True)  # the sandbox's socket: reset
            sock.err = err
            sock._changed()
        elif not err:
            try:
                self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        end = self.end
        end.rq.unwatch(self)
        end.wq.unwatch(self)
        self.net.kernel.watch_fd(self.fd, 0, None)
        if self.pending is not None and not self.pending.dead and self.pending.state == SYN_SENT:
            self.pending.refuse(E.ECONNREFUSED)  # the sandbox ends before the host answered
        if not end.dead:
            end.close()
        self.conn.close()
        self.net.endpoints.discard(self)


def tcp_connect(sock: InetSocket, dest: bytes, port: int) -> None:
    """Start the sandbox's connect to a host address: the socket waits in SYN_SENT until
    the host answers (a Relay joins it then) or refuses (SO_ERROR, connect's error)."""
    net = of(sock)
    if is_any(dest):
        dest = LOOP4 if is_v4(dest) else LOOP6
    family, addr = host_addr(dest, port)
    conn = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if sock.local is not None and sock.port_locked:  # bind named a port: the host's socket takes it
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            conn.bind(("0.0.0.0" if family == socket.AF_INET else "::", sock.local[1]))
        err = conn.connect_ex(addr)
    except OSError as e:
        conn.close()
        raise Errno(_errno(e)) from None
    if err not in (0, E.EINPROGRESS):
        conn.close()
        raise Errno(err)
    sock.remote = (dest, port)
    sock.shutdown = 0
    sock.state = SYN_SENT
    end = InetSocket(sock.kernel, sock.family, SOCK_STREAM, IPPROTO_TCP, 0, None, sock.lb)
    relay = Relay(net, end, conn, pending=sock)
    if err == 0:
        relay.run()


# --- UDP -----------------------------------------------------------------------------------------
class HostDatagram:
    """The host UDP socket of a sandbox UDP socket that reached the host."""

    def __init__(self, net: HostNet, sock: InetSocket):
        self.net, self.sock, self.closed = net, sock, False
        v4 = sock.family == AF_INET  # an AF_INET6 one is dual-stack on the host too (v4-mapped)
        self.family = socket.AF_INET if v4 else socket.AF_INET6
        self.h = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.fd = self.h.fileno()
        self.scheduled = False
        port = sock.local[1] if sock.local is not None else 0
        try:
            self.h.bind(("0.0.0.0" if v4 else "::", port))
        except OSError:
            self.h.bind(("0.0.0.0" if v4 else "::", 0))  # the port is the host's: another one
        if sock.local is None:
            sock.local = (ANY4 if sock.family == AF_INET else ANY6, 0)
            try:
                sock.lb.bind(sock, sock.local[0], self.h.getsockname()[1])
            except Errno:
                sock.local = (sock.local[0], self.h.getsockname()[1])  # (not reachable over the loopback)
        sock.rq.watch(self)
        sock.peer_wait.watch(self)
        net.endpoints.add(self)
        self._watch()

    def changed(self) -> bool:
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.net.soon(self.run)
        return False

    def _watch(self) -> None:
        sock = self.sock
        self.net.kernel.watch_fd(self.fd, R if sock.rmem <= sock.rcvbuf else 0, self.run)

    def run(self, ready: int = 0) -> None:
        self.scheduled = False
        if self.closed:
            return
        sock = self.sock
        if sock.dead:
            self.close()
            return
        while sock.rmem <= sock.rcvbuf:
            try:
                data, addr = self.h.recvfrom(65536)
            except BlockingIOError:
                break
            except OSError as e:  # an ICMP error for an earlier datagram
                sock.set_err(_errno(e))
                continue
            if sock.shutdown & RCV_SHUTDOWN:
                continue
            truesize = dgram_truesize(len(data))
            sock.rmem += truesize
            sock.enqueue(Skb(data, None, truesize, addr=sockaddr_of(sock, from_host(addr))))
        self._watch()

    def connect(self, dest: bytes, port: int) -> None:
        try:
            self.h.connect(self._addr(dest, port))
        except OSError as e:
            raise Errno(_errno(e)) from None
        self.sock.local = (from_host(self.h.getsockname())[0], self.sock.local[1])

    def _addr(self, dest: bytes, port: int):
        if self.family == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, dest), port
        return host_addr(dest, port)[1]

    def send(self, data: bytes, dest: bytes, port: int) -> None:
        try:
            self.h.sendto(data, self._addr(dest, port))
        except BlockingIOError:
            pass  # the host's send buffer is full: the datagram is dropped, as a full queue drops
        except OSError as e:
            raise Errno(_errno(e)) from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.rq.unwatch(self)
        self.sock.peer_wait.unwatch(self)
        self.net.kernel.watch_fd(self.fd, 0, None)
        self.h.close()
        self.net.endpoints.discard(self)


def _datagram(sock: InetSocket) -> HostDatagram:
    hd = getattr(sock, "host_dgram", None)
    if hd is None or hd.closed:
        hd = sock.host_dgram = HostDatagram(of(sock), sock)
    return hd


def udp_connect(sock: InetSocket, dest: bytes, port: int) -> int:
    """connect(2) of a UDP socket to a host address: its host socket is connected there
    (getsockname then shows the host's source address)."""
    if is_any(dest):
        dest = LOOP4 if is_v4(dest) else LOOP6
    _datagram(sock).connect(dest, port)
    sock.remote = (dest, port)
    sock.state = ESTABLISHED
    sock._changed()
    return 0


def udp_send(sock: InetSocket, data: bytes, dest: bytes, port: int) -> None:
    if is_any(dest):
        dest = LOOP4 if is_v4(dest) else LOOP6
    _datagram(sock).send(data, dest, port)
