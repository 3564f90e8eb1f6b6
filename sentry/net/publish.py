"""`--publish [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]`: the sentry listens on the
host and joins what arrives to the sandbox's own loopback, as `docker run -p`.

TCP: each connection the host listener accepts becomes a connection from
127.0.0.1 (an ephemeral port of the sandbox's loopback) to the sandbox's
listener on GUEST_PORT, joined to the host's by a sentry/net/hostnet.py Relay
(bulk data, flow control both ways, bounded memory). A connection arriving
while nothing in the sandbox listens on GUEST_PORT is reset at once (the host
client sees ECONNRESET or an empty reply, as from docker's proxy with no
server); one arriving while the sandbox's accept queue is full waits in
SYN_SENT, as the loopback's connects do. The host sees the sentry as the
server; the sandbox sees a loopback client.

UDP: each host client address gets its own sandbox UDP socket (a "session" on
an ephemeral port of the loopback): its datagrams go to GUEST_PORT from there,
and what the sandbox sends back to that port goes to the client. Sessions idle
for UDP_IDLE seconds end, at most UDP_SESSIONS at once (the oldest goes)."""
import ipaddress
import socket
import time
from dataclasses import dataclass

from sentry.errors import Errno
from sentry.net.hostnet import R
from sentry.net.hostsock import Relay, _Collect, sockaddr_of
from sentry.net.inet import AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, LOOP4, LOOP6, SYN_SENT, InetSocket
from sentry.net.unix import LISTEN, SOCK_DGRAM, SOCK_STREAM

UDP_IDLE = 180.0
UDP_SESSIONS = 256
ACCEPTS_PER_WAKE = 64


@dataclass(frozen=True)
class Publish:
    host_ip: str
    host_port: int
    guest_port: int
    proto: str  # "tcp" or "udp"

    def __str__(self):
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.host_port}:{self.guest_port}/{self.proto}"


def _port(text: str, spec: str, what: str, zero: bool = False) -> int:
    if not text.isdigit() or not (0 if zero else 1) <= int(text) <= 65535:
        raise ValueError(f"publish {spec!r}: {what} port {text!r} is not a port number (1-65535)")
    return int(text)


def parse(spec) -> Publish:
    """[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp] -> Publish; ValueError names what is wrong.
    HOST_IP may be an IPv6 address in brackets; HOST_PORT 0 takes a free port."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"publish {spec!r}: expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]")
    body, proto = spec, "tcp"
    if "/" in spec:
        body, proto = spec.rsplit("/", 1)
        if proto not in ("tcp", "udp"):
            raise ValueError(f"publish {spec!r}: protocol {proto!r} is not tcp or udp")
    host_ip = "127.0.0.1"
    if body.startswith("["):
        close = body.find("]:")
        if close < 0:
            raise ValueError(f"publish {spec!r}: expected [IPV6]:HOST_PORT:GUEST_PORT")
        host_ip, body = body[1:close], body[close + 2:]
        parts = body.split(":")
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip = parts.pop(0)
    if len(parts) != 2:
        raise ValueError(f"publish {spec!r}: expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]")
    try:
        host_ip = str(ipaddress.ip_address(host_ip))
    except ValueError:
        raise ValueError(f"publish {spec!r}: {host_ip!r} is not an IP address") from None
    return Publish(host_ip, _port(parts[0], spec, "host", zero=True), _port(parts[1], spec, "guest"), proto)


def _listen_socket(p: Publish, kind: int, v6only: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
    s = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((p.host_ip, p.host_port))
        if kind == socket.SOCK_STREAM:
            s.listen(socket.SOMAXCONN)
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"publish {p}: {e.strerror}") from None
    return s


class PublishedTcp:
    v6only = False

    def __init__(self, net, p: Publish):
        self.net, self.p = net, p
        self.sock = _listen_socket(p, socket.SOCK_STREAM, self.v6only)
        self.address = self.sock.getsockname()  # (the port HOST_PORT 0 took)
        self.fd = self.sock.fileno()
        self.closed = False
        net.endpoints.add(self)
        net.kernel.watch_fd(self.fd, R, self.accept)

    def accept(self, ready: int = 0) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError:
                continue  # (the client gave up before we took it: ECONNABORTED)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            end = self._join()
            if end is None:
                # nothing in the sandbox listens on GUEST_PORT: the client hears a reset
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                conn.close()
                continue
            Relay(self.net, end, conn)

    def _join(self):
        """A connection from the sandbox's loopback to its listener on GUEST_PORT, or None."""
        lb = self.net.loopback()
        for family, dest in ((AF_INET, LOOP4), (AF_INET6, LOOP6)):
            end = InetSocket(self.net.kernel, family, SOCK_STREAM, IPPROTO_TCP, 0, None, lb)
            try:
                end.tcp_connect(dest, self.p.guest_port)
                return end
            except Errno:
                end.close()
        return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.net.kernel.watch_fd(self.fd, 0, None)
            self.sock.close()
            self.net.endpoints.discard(self)


class HostListener(PublishedTcp):
    """--net host: a sandbox TCP socket listening on the wildcard address (0.0.0.0, ::) is
    listened for on the host too, at the same address and port, and what arrives there
    joins that very listener; it ends with the listener (sentry/net/hostnet.py's rule)."""

    def __init__(self, net, sock: InetSocket):
        self.target = sock
        v6 = sock.family == AF_INET6
        p = Publish("::" if v6 else "0.0.0.0", sock.local[1], sock.local[1], "tcp")
        if v6 and sock.v6only:
            self.v6only = True
        super().__init__(net, p)
        self.scheduled = False
        sock.rq.watch(self)

    def changed(self) -> bool:
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.net.soon(self._check)
        return False

    def _check(self) -> None:
        self.scheduled = False
        if self.target.dead or self.target.state != LISTEN:
            self.close()

    def _join(self):
        sock = self.target
        if sock.dead or sock.state != LISTEN or sock.shutdown & 1:
            return None
        dest, family = (LOOP4, AF_INET) if sock.accepts(LOOP4) else (LOOP6, AF_INET6)
        end = InetSocket(self.net.kernel, family, SOCK_STREAM, IPPROTO_TCP, 0, None, sock.lb)
        end.autobind()
        end.set_local_addr(dest)
        end.remote, end.shutdown = (dest, sock.local[1]), 0
        if sock.recvq_full():
            end.state = SYN_SENT
            sock.syn_queue.append(end)
        else:
            end.establish(sock)
        return end

    def close(self) -> None:
        self.target.rq.unwatch(self)
        super().close()


class _Session:
    """One host client of a published UDP port: its own socket on the sandbox's loopback."""

    def __init__(self, pub: "PublishedUdp", client):
        self.pub, self.client = pub, client
        self.end = InetSocket(pub.net.kernel, AF_INET, SOCK_DGRAM, IPPROTO_UDP, 0, None, pub.net.loopback())
        self.end.autobind()
        self.used = time.monotonic()
        self.scheduled = False
        self.end.rq.watch(self)

    def changed(self) -> bool:
        if not self.scheduled and not self.end.dead:
            self.scheduled = True
            self.pub.net.soon(self.replies)
        return False

    def replies(self) -> None:
        """What the sandbox sent back goes to the client (dropped if the host will not take it now)."""
        self.scheduled = False
        end = self.end
        while end.queue and not end.dead:
            sink = _Collect()
            end.dgram_take(65536, False, sink)
            try:
                self.pub.sock.sendto(bytes(sink.data), self.client)
            except OSError:
                pass
            self.used = time.monotonic()

    def close(self) -> None:
        self.end.rq.unwatch(self)
        self.end.close()


class PublishedUdp:
    def __init__(self, net, p: Publish):
        self.net, self.p = net, p
        self.sock = _listen_socket(p, socket.SOCK_DGRAM)
        self.address = self.sock.getsockname()
        self.fd = self.sock.fileno()
        self.sessions: dict = {}  # client address -> _Session, oldest use first
        self.closed = False
        net.endpoints.add(self)
        net.kernel.watch_fd(self.fd, R, self.receive)

    def receive(self, ready: int = 0) -> None:
        now = time.monotonic()
        for client, s in list(self.sessions.items()):
            if now - s.used > UDP_IDLE:
                del self.sessions[client]
                s.close()
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                data, client = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error about an earlier reply
            s = self.sessions.pop(client, None)
            if s is None:
                if len(self.sessions) >= UDP_SESSIONS:
                    oldest = next(iter(self.sessions))
                    self.sessions.pop(oldest).close()
                s = _Session(self, client)
            self.sessions[client] = s  # (last: the most recently used)
            s.used = now
            # nobody bound to GUEST_PORT: dropped, as a datagram to a closed port is
            s.end.udp_deliver(data, LOOP4, self.p.guest_port, sockaddr_of)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.net.kernel.watch_fd(self.fd, 0, None)
            for s in self.sessions.values():
                s.close()
            self.sessions.clear()
            self.sock.close()
            self.net.endpoints.discard(self)


def open_all(net, specs) -> list:
    """Listen on the host for each Publish; an OSError (EADDRINUSE, EADDRNOTAVAIL, EACCES) says which."""
    opened = []
    try:
        for p in specs:
            opened.append((PublishedTcp if p.proto == "tcp" else PublishedUdp)(net, p))
    except OSError:
        for o in opened:
            o.close()
        raise
    return opened

