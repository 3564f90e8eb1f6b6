"""`--net host`: the sandbox's inet sockets that leave its loopback become host
sockets the sentry opens and owns (and sentry/net/publish.py's published ports
use the same joins).

The rule (documented in docs/architecture.md, "Sockets"):
- A TCP connect or a UDP send/connect goes to the host when its destination is
  not the sandbox's loopback (127.0.0.0/8, ::1, the unspecified address), or
  when it is a loopback address and port where no sandbox socket takes it (no
  listener, no bound UDP socket): the sandbox's own servers come first, then the
  host's loopback, which --net host reaches as the host does.
- A TCP listener on the wildcard address (0.0.0.0, ::) is listened for on the
  host too, at the same address and port (sentry/net/publish.py's
  HostListener; listen fails EADDRINUSE if the host has the port), as sharing
  the host's network would; one on a loopback address stays the sandbox's own
  (reached from the host only through --publish). bind takes the loopback's
  addresses and the wildcard only.
- A new network namespace made inside the sandbox (unshare(CLONE_NEWNET)) has
  its own empty loopback and never the host.

The host sockets themselves are sentry/net/hostsock.py's (loaded only by a
sandbox given a way out). A TCP connection to the host is a `Relay`: the sandbox's socket is connected,
as over the loopback, to a sentry-held InetSocket (`end`) whose other side is a
non-blocking host socket. The relay moves bytes between the two on the
kernel's loop (Kernel.watch_fd for the host fd, WaitQueue watchers on `end`),
never inside a task's call: so reads, writes, poll/epoll, MSG_* flags and
shutdown are the loopback's, and flow control holds both ways (the host takes
no more than it has room for; `end` pushes no more than the sandbox's receive
side takes; at most OUT_MAX bytes wait in the sentry per direction).
getsockname/getpeername show the host's addresses; the host's errors
(ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ECONNRESET) reach the program as
SO_ERROR, connect's or the next call's error. A UDP socket that reaches the
host gets one host UDP socket (`HostDatagram`) for its life: sends go out
through it, datagrams it receives are queued on the sandbox's socket as the
loopback's are (dropped past SO_RCVBUF)."""
import errno as E
import selectors

from sentry.errors import Errno
from sentry.net.inet import AF_INET6, IPPROTO_TCP, IPPROTO_UDP, LOOP4, LOOP6, InetSocket, is_any, is_local, is_v4
from sentry.net.unix import LISTEN

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
DRAIN_SECONDS = 10.0  # the sandbox ended: how long its connections' last bytes may take to go out


class HostNet:
    """A sandbox's way out: whether --net host was granted, and every host socket and
    listener the sentry holds for it (all closed by close() when the sandbox ends)."""

    def __init__(self, kernel, host: bool):
        self.kernel, self.host = kernel, host
        self.endpoints = set()  # objects with close()

    def loopback(self):
        """The loopback of the sandbox's first network namespace (the only one with a way out)."""
        from sentry.namespaces import initial
        from sentry.net.inet import _LOOPBACKS, Loopback
        ns = initial(self.kernel)[0].net
        lb = _LOOPBACKS.get(ns)
        if lb is None:
            lb = _LOOPBACKS[ns] = Loopback(up=True, owner=ns.owner)
        return lb

    def soon(self, fn) -> None:
        """Run fn from the loop, after the current call (never inside a task's syscall)."""
        self.kernel.call_at(0, fn)

    def close(self) -> None:
        """The sandbox ended: what its connections still had to send goes out first (as a
        closed socket's data outlives its process), for at most DRAIN_SECONDS in all."""
        import time
        deadline = time.monotonic() + DRAIN_SECONDS
        for e in list(self.endpoints):
            drain = getattr(e, "drain", None)
            if drain is not None:
                drain(deadline)
        for e in list(self.endpoints):
            e.close()
        self.endpoints.clear()


def of(sock):
    """The HostNet a socket may leave through, or None (--net none, another namespace)."""
    net = getattr(sock.kernel, "hostnet", None)
    if net is None or not net.host or sock.lb is not net.loopback():
        return None
    return net


def routes_to_host(sock, dest: bytes, port: int) -> bool:
    """Whether traffic from `sock` to (dest, port) goes to the host (the rule above)."""
    if of(sock) is None:
        return False
    if is_v4(dest) and sock.family == AF_INET6 and sock.v6only:
        return False  # the loopback's answer (ENETUNREACH)
    if is_any(dest):
        dest = LOOP4 if is_v4(dest) else LOOP6
    if not is_local(dest):
        return True
    if sock.proto == IPPROTO_TCP:
        return not sock.lb.receivers(IPPROTO_TCP, dest, port, LISTEN)
    return not sock.lb.receivers(IPPROTO_UDP, dest, port)


# --- addresses -----------------------------------------------------------------------------------


# --- the calls' entry points (the host sockets themselves: sentry/net/hostsock.py) ---------------
def tcp_connect(sock: InetSocket, dest: bytes, port: int) -> None:
    from sentry.net.hostsock import tcp_connect
    tcp_connect(sock, dest, port)


def udp_connect(sock: InetSocket, dest: bytes, port: int) -> int:
    from sentry.net.hostsock import udp_connect
    return udp_connect(sock, dest, port)


def udp_send(sock: InetSocket, data: bytes, dest: bytes, port: int) -> None:
    from sentry.net.hostsock import udp_send
    udp_send(sock, data, dest, port)


def disconnect(sock: InetSocket) -> None:
    """connect(AF_UNSPEC) of a UDP socket: its host socket goes (the next send makes another,
    on the same port if the host has it free)."""
    hd = getattr(sock, "host_dgram", None)
    if hd is not None:
        hd.close()


def listen(sock: InetSocket) -> None:
    """listen(2) on the wildcard address under --net host: the host's port too (EADDRINUSE
    if the host has it), joined to this listener (sentry/net/publish.py's HostListener)."""
    net = of(sock)
    held = getattr(sock, "host_listener", None)
    if net is None or not is_any(sock.local[0]) or (held is not None and not held.closed):
        return
    from sentry.net.publish import HostListener
    try:
        sock.host_listener = HostListener(net, sock)
    except OSError as e:
        raise Errno(e.errno or E.EIO) from None


def attach(kernel, host: bool, publish=()) -> HostNet:
    """Give the kernel its way out (--net host) and its published ports (sentry/net/publish.py
    Publish records), listening before the program starts; Kernel.run closes them all."""
    from sentry.errors import SentryError
    from sentry.net.publish import open_all
    net = kernel.hostnet = HostNet(kernel, host)
    try:
        net.published = open_all(net, publish)
    except OSError as e:
        net.close()
        raise SentryError(e.strerror) from None
    return net
