"""The AF_INET/AF_INET6 side of the socket calls (the objects: sentry/net/inet.py).

syscalls/net.py owns the calls and sends an InetSocket here for what differs
from AF_UNIX: socket creation (inet_create's protocol table; raw sockets as an
unprivileged container: EPERM, EPROTONOSUPPORT for protocol 0), sockaddr_in /
sockaddr_in6 in and out, bind, listen, connect (EINPROGRESS then SO_ERROR when
non-blocking), accept, shutdown, UDP sends, the IPPROTO_IP / IPPROTO_IPV6 /
IPPROTO_TCP options and the interface ioctls of `lo`. TCP's reads and writes
go through the sockets' data path (sentry/net/transfer.py)."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.namespaces import ns_capable
from sentry.net import hostnet
from sentry.net.inet import (AF_INET, AF_INET6, ANY4, ANY6, IPPROTO_TCP, IPPROTO_UDP, LOOPBACK_MSS, SYN_SENT,
                             V4_PREFIX, InetSocket, is_any, is_local, is_v4, loopback)
from sentry.net.unix import (CLOSE, ESTABLISHED, LISTEN, RCV_SHUTDOWN, SEND_SHUTDOWN, SOCK_DGRAM, SOCK_STREAM,
                             UnixSocket)
from sentry.vfs.file import O_NONBLOCK, O_RDWR
from syscalls.abi import s32

SOCK_RAW = 3
AF_UNSPEC = 0
IPPROTO_IP, IPPROTO_ICMP, IPPROTO_IPV6, IPPROTO_ICMPV6, IPPROTO_RAW = 0, 1, 41, 58, 255
MSG_OOB, MSG_MORE = 0x1, 0x8000
SOL_SOCKET = 1
SO_SNDBUF, SO_RCVBUF, SO_PROTOCOL, SO_DOMAIN, SO_SNDBUFFORCE = 7, 8, 38, 39, 32
SO_BROADCAST, SO_BINDTODEVICE = 6, 25

# IPPROTO_IP
IP_TOS, IP_TTL, IP_HDRINCL, IP_OPTIONS, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR = 1, 2, 3, 4, 8, 10, 11
IP_RECVTTL, IP_RECVTOS, IP_MTU, IP_FREEBIND, IP_BIND_ADDRESS_NO_PORT = 12, 13, 14, 15, 24
IP_MULTICAST_TTL, IP_MULTICAST_LOOP = 33, 34
IP_INT_DEFAULTS = {IP_TOS: 0, IP_TTL: 64, IP_PKTINFO: 0, IP_MTU_DISCOVER: 1, IP_RECVERR: 0, IP_RECVTTL: 0,
                   IP_RECVTOS: 0, IP_FREEBIND: 0, IP_BIND_ADDRESS_NO_PORT: 0, IP_MULTICAST_TTL: 1,
                   IP_MULTICAST_LOOP: 1}
# IPPROTO_IPV6
IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_MTU_DISCOVER = 16, 18, 19, 23
IPV6_MTU, IPV6_RECVERR, IPV6_V6ONLY, IPV6_RECVPKTINFO, IPV6_TCLASS = 24, 25, 26, 49, 67
IPV6_INT_DEFAULTS = {IPV6_UNICAST_HOPS: 64, IPV6_MULTICAST_HOPS: 1, IPV6_MULTICAST_LOOP: 1, IPV6_MTU_DISCOVER: 1,
                     IPV6_RECVERR: 0, IPV6_RECVPKTINFO: 0, IPV6_TCLASS: 0}
IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, MCAST_JOIN_GROUP, MCAST_LEAVE_GROUP = 35, 36, 42, 45
GROUP_REQ = 136  # sizeof(struct group_req)
IPV6_ADDRFORM = 1
# IPPROTO_UDP
UDP_CORK = 1
# IPPROTO_TCP
TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 1, 2, 3, 4, 5, 6
TCP_SYNCNT, TCP_LINGER2, TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP, TCP_INFO, TCP_QUICKACK = 7, 8, 9, 10, 11, 12
TCP_CONGESTION, TCP_USER_TIMEOUT, TCP_FASTOPEN, TCP_NOTSENT_LOWAT = 13, 18, 23, 25
TCP_INT_DEFAULTS = {TCP_NODELAY: 0, TCP_CORK: 0, TCP_KEEPIDLE: 7200, TCP_KEEPINTVL: 75, TCP_KEEPCNT: 9,
                    TCP_SYNCNT: 6, TCP_LINGER2: 60, TCP_DEFER_ACCEPT: 0, TCP_WINDOW_CLAMP: 0, TCP_QUICKACK: 1,
                    TCP_USER_TIMEOUT: 0, TCP_FASTOPEN: 0, TCP_NOTSENT_LOWAT: 0}
TCP_RANGES = {TCP_KEEPIDLE: (1, 32767), TCP_KEEPINTVL: (1, 32767), TCP_KEEPCNT: (1, 127), TCP_SYNCNT: (1, 127)}
TCP_MSS_DEFAULT, TCP_INFO_SIZE = 536, 232
CONGESTION = (b"cubic", b"reno")

# interface ioctls (all answer for the one interface, lo)
SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFBRDADDR = 0x8910, 0x8912, 0x8913, 0x8915, 0x8919
SIOCGIFNETMASK, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX = 0x891B, 0x891D, 0x8921, 0x8927, 0x8933
SIOCGIFTXQLEN, SIOCATMARK, SIOCOUTQNSD = 0x8942, 0x8905, 0x894B
SIOCSIFFLAGS, SIOCSIFMTU, SIOCSIFADDR, SIOCSIFNETMASK = 0x8914, 0x8922, 0x8916, 0x891C
CAP_NET_ADMIN = 12
LO_MIN_MTU, LO_MAX_MTU = 68, 0x7FFFFFFF
FIONREAD, TIOCOUTQ = 0x541B, 0x5411
IFNAMSIZ, IFREQ = 16, 40
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
ARPHRD_LOOPBACK = 772
LO_INDEX, LO_MTU = 1, 65536


# --- creation ------------------------------------------------------------------------------------
def create(t, family: int, kind: int, protocol: int, flags: int) -> InetSocket:
    """inet_create / inet6_create: the protocol each type takes (0 picks it)."""
    if kind == SOCK_STREAM:
        if protocol not in (0, IPPROTO_TCP):
            raise Errno(E.EPROTONOSUPPORT)
        protocol = IPPROTO_TCP
    elif kind == SOCK_DGRAM:
        if protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6) and protocol == (IPPROTO_ICMP if family == AF_INET
                                                                       else IPPROTO_ICMPV6):
            raise Errno(E.EACCES)  # ping sockets: net.ipv4.ping_group_range is empty
        if protocol not in (0, IPPROTO_UDP):
            raise Errno(E.EPROTONOSUPPORT)
        protocol = IPPROTO_UDP
    elif kind == SOCK_RAW:
        if protocol == 0:
            raise Errno(E.EPROTONOSUPPORT)
        raise Errno(E.EPERM)  # no CAP_NET_RAW in the sandbox's network
    else:
        raise Errno(E.ESOCKTNOSUPPORT)
    return InetSocket(t.kernel, family, kind, protocol, flags, t)


# --- addresses -----------------------------------------------------------------------------------
def fmt(sock: InetSocket, ap) -> bytes:
    """A (16-byte address, port) as sockaddr_in or sockaddr_in6 in the socket's family."""
    addr, port = ap
    if sock.family == AF_INET:
        return struct.pack("<H", AF_INET) + port.to_bytes(2, "big") + addr[12:] + bytes(8)
    return struct.pack("<H", AF_INET6) + port.to_bytes(2, "big") + bytes(4) + addr + bytes(4)


def parse(sock: InetSocket, raw, unspec_any: bool = False):
    """sockaddr bytes in the socket's family -> (16-byte address, port); EINVAL if short,
    EAFNOSUPPORT for another family (bind's AF_UNSPEC with INADDR_ANY passes)."""
    if sock.family == AF_INET:
        if raw is None or len(raw) < 16:
            raise Errno(E.EINVAL)
        fam = int.from_bytes(raw[:2], "little")
        if fam != AF_INET and not (unspec_any and fam == AF_UNSPEC and raw[4:8] == bytes(4)):
            raise Errno(E.EAFNOSUPPORT)
        return V4_PREFIX + bytes(raw[4:8]), int.from_bytes(raw[2:4], "big")
    if raw is None or len(raw) < 24:
        raise Errno(E.EINVAL)
    if int.from_bytes(raw[:2], "little") != AF_INET6:
        raise Errno(E.EAFNOSUPPORT)
    return bytes(raw[8:24]), int.from_bytes(raw[2:4], "big")


def unbound(sock: InetSocket):
    return (ANY4 if sock.family == AF_INET else ANY6, 0)


# --- the calls -----------------------------------------------------------------------------------
def bind(t, sock: InetSocket, raw) -> int:
    addr, port = parse(sock, raw, unspec_any=True)
    if sock.family == AF_INET6 and is_v4(addr):
        if sock.v6only:
            raise Errno(E.EINVAL)
    if sock.local is not None or sock.state != CLOSE:
        raise Errno(E.EINVAL)
    if not is_any(addr) and not is_local(addr):  # (lo's addresses are its own even while it is down)
        raise Errno(E.EADDRNOTAVAIL)
    if 0 < port < 1024 and t.euid != 0:
        raise Errno(E.EACCES)  # net.ipv4.ip_unprivileged_port_start
    sock.lb.bind(sock, addr, port)
    sock.port_locked = port != 0
    sock.addr_locked = not is_any(addr)  # (SOCK_BINDADDR_LOCK)
    return 0


def listen(t, sock: InetSocket, backlog: int) -> int:
    if sock.type != SOCK_STREAM:
        raise Errno(E.EOPNOTSUPP)
    if sock.state not in (CLOSE, LISTEN) or sock.connecting:
        raise Errno(E.EINVAL)
    if sock.state != LISTEN:
        sock.autobind()
        if sock.lb.conflict(sock, sock.local[1], timewait=False):
            raise Errno(E.EADDRINUSE)
        hostnet.listen(sock)  # --net host: a wildcard listener is the host's too
        sock.shutdown = 0
    sock.backlog = backlog
    sock.state = LISTEN
    sock.admit_waiting()
    sock._changed()
    return 0


def _disconnect(sock: InetSocket) -> int:
    """connect(AF_UNSPEC): a TCP connection is reset, a UDP socket forgets its peer."""
    if sock.type == SOCK_STREAM:
        if sock.state == LISTEN:
            sock.release_listener(E.ECONNREFUSED)
        peer = sock.peer
        if peer is not None and not peer.dead:
            peer.peer, peer.remote, peer.err, peer.shutdown = None, None, E.ECONNRESET, 3
            peer._changed()
        sock.peer = None
        while sock.queue:
            sock._uncharge(sock.queue.popleft())
        sock.inq = 0
        sock.cork = None
        if sock.state != CLOSE:
            sock.release_port()
    elif sock.local is not None and not getattr(sock, "addr_locked", False):
        sock.local = (ANY4 if sock.family == AF_INET else ANY6, sock.local[1])  # inet_reset_saddr
        hostnet.disconnect(sock)
    sock.remote = None
    sock.state = CLOSE
    sock.connecting = False
    sock.shutdown = 0
    sock._changed()
    return 0


def connect(t, sock: InetSocket, raw, progress, wait) -> int:
    """inet_stream_connect / inet_dgram_connect. `progress` is the blocking call's record
    (a re-run after a wait), `wait(queues)` parks the task."""
    if raw is None or len(raw) < 2:
        raise Errno(E.EINVAL)
    if int.from_bytes(raw[:2], "little") == AF_UNSPEC:
        return _disconnect(sock)
    nonblock = bool(sock.flags & O_NONBLOCK)
    if sock.type == SOCK_DGRAM:
        if sock.family == AF_INET6 and int.from_bytes(raw[:2], "little") == AF_INET and len(raw) >= 16:
            if sock.v6only:
                raise Errno(E.EAFNOSUPPORT)
            addr, port = V4_PREFIX + bytes(raw[4:8]), int.from_bytes(raw[2:4], "big")
        else:
            addr, port = parse(sock, raw)
        if hostnet.routes_to_host(sock, addr, port):
            return hostnet.udp_connect(sock, addr, port)
        sock.autobind()
        dest = sock.check_route(addr)
        sock.set_local_addr(sock.source_for(dest))
        sock.remote = (dest, port)
        sock.state = ESTABLISHED
        sock._changed()
        return 0
    waited = progress is not None
    if sock.connecting or waited:
        if sock.state == SYN_SENT:
            if nonblock and not waited:
                raise Errno(E.EALREADY)
            raise wait((sock.wq, sock.rq))
        sock.connecting = False
        if sock.state == CLOSE:
            raise Errno(sock.pop_err() or E.ECONNABORTED)
        return 0
    if sock.state == ESTABLISHED or sock.state == LISTEN:
        raise Errno(E.EISCONN)
    if sock.state != CLOSE:
        raise Errno(E.EALREADY)
    addr, port = parse(sock, raw)
    if sock.family == AF_INET6 and not is_v4(addr) and addr[0] == 0xFF:
        raise Errno(E.ENETUNREACH)  # multicast
    if nonblock:
        try:
            _tcp_connect(sock, addr, port)
        except Errno as e:
            if e.errno != E.ECONNREFUSED:
                raise
            sock.refuse(e.errno)  # the reset comes after the call returned
        sock.connecting = True
        raise Errno(E.EINPROGRESS)
    _tcp_connect(sock, addr, port)
    if sock.state == SYN_SENT:
        raise wait((sock.wq, sock.rq))
    return 0


def _tcp_connect(sock: InetSocket, addr: bytes, port: int) -> None:
    """The sandbox's loopback, or under --net host a host address (sentry/net/hostnet.py's rule)."""
    if hostnet.routes_to_host(sock, addr, port):
        hostnet.tcp_connect(sock, addr, port)
    else:
        sock.tcp_connect(addr, port)


def accept(t, sock: InetSocket, flags: int, wait):
    """The next connection of a listener: (the new socket, its peer's address), or wait."""
    if sock.type != SOCK_STREAM:
        raise Errno(E.EOPNOTSUPP)
    if sock.state != LISTEN:
        raise Errno(E.EINVAL)
    if not sock.queue:
        err = sock.pop_err()
        if err:
            raise Errno(err)
        if sock.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise wait((sock.rq,))
    skb = sock.queue.popleft()
    sock.admit_waiting()
    new = skb.embryo
    new.orphan = False
    new.flags = O_RDWR | (flags & O_NONBLOCK)
    return new, fmt(new, new.remote) if new.remote is not None else fmt(new, unbound(new))


def sockname(sock: InetSocket) -> bytes:
    return fmt(sock, sock.local if sock.local is not None else unbound(sock))


def peername(sock: InetSocket) -> bytes:
    if sock.remote is None or sock.state not in (ESTABLISHED,):
        raise Errno(E.ENOTCONN)
    return fmt(sock, sock.remote)


def shutdown(sock: InetSocket, how: int) -> int:
    """inet_shutdown: an unconnected socket is ENOTCONN (its shutdown bits still set)."""
    connected = sock.state == ESTABLISHED or sock.state == SYN_SENT
    if sock.state == LISTEN:
        sock.shut(how)
        return 0
    sock.shut(how)
    if not connected:
        raise Errno(E.ENOTCONN)
    return 0


def send_dgram(t, sock: InetSocket, get, length: int, flags: int, dest_raw) -> int:
    """udp_sendmsg / udpv6_sendmsg over the loopback."""
    if flags & MSG_OOB:
        raise Errno(E.EOPNOTSUPP)
    if sock.cork is not None:  # an earlier MSG_MORE: this joins the held datagram and its destination
        dest, port = sock.cork_dest
    elif dest_raw is not None:
        if (sock.family == AF_INET6 and len(dest_raw) >= 16
                and int.from_bytes(dest_raw[:2], "little") == AF_INET):
            if sock.v6only:
                raise Errno(E.ENETUNREACH)
            dest, port = V4_PREFIX + bytes(dest_raw[4:8]), int.from_bytes(dest_raw[2:4], "big")
        else:
            dest, port = parse(sock, dest_raw)
        if port == 0:
            raise Errno(E.EINVAL)
    else:
        if sock.remote is None:
            raise Errno(E.EDESTADDRREQ)
        dest, port = sock.remote
    held = len(sock.cork) if sock.cork is not None else 0
    if held + length > (65507 if is_v4(dest) else 65527):
        sock.cork = None
        raise Errno(E.EMSGSIZE)
    err = sock.pop_err()
    if err:
        raise Errno(err)
    if sock.shutdown & SEND_SHUTDOWN:
        raise Errno(E.EPIPE)
    if dest == V4_PREFIX + b"\xff" * 4 and not sock.opt(SO_BROADCAST):
        raise Errno(E.EACCES)  # a broadcast needs SO_BROADCAST (and then finds no route)
    to_host = hostnet.routes_to_host(sock, dest, port)  # --net host: out through a host socket
    if not to_host:
        dest = sock.check_route(dest)
        sock.autobind()
    data = get(0, length) if length else b""
    if sock.cork is not None:
        data = bytes(sock.cork) + data
    if flags & MSG_MORE or sock.ip_opts.get((IPPROTO_UDP, UDP_CORK)):
        sock.cork, sock.cork_dest = bytearray(data), (dest, port)
        return length
    sock.cork = None
    if to_host:
        hostnet.udp_send(sock, data, dest, port)
        return length
    if not sock.udp_deliver(data, dest, port, fmt) and sock.remote == (dest, port):
        sock.set_err(E.ECONNREFUSED)  # the ICMP port unreachable a connected socket hears
    return length


# --- options -------------------------------------------------------------------------------------
def _get_int(t, optval: int, optlen: int) -> int:
    if optlen < 4:
        raise Errno(E.EINVAL)
    return s32(t.mm.read_u32(optval))


def _ip_int(t, optval: int, optlen: int) -> int:
    """ip_setsockopt's integer: an int, or one byte when shorter."""
    if optlen >= 4:
        return s32(t.mm.read_u32(optval))
    if optlen >= 1:
        return t.mm.read(optval, 1)[0]
    raise Errno(E.EINVAL)


def setsockopt(t, sock: InetSocket, level: int, optname: int, optval: int, optlen: int) -> bool:
    """True when handled here; False sends SOL_SOCKET options to syscalls/net.py."""
    if level == SOL_SOCKET:
        if optname in (SO_SNDBUF, SO_SNDBUFFORCE):
            sock.sndbuf_locked = True
        if optname == SO_BINDTODEVICE:
            name = t.mm.read(optval, min(max(optlen, 0), IFNAMSIZ)).split(b"\0", 1)[0] if optlen > 0 else b""
            if name not in (b"", b"lo"):
                raise Errno(E.ENODEV)
            sock.device = name  # lo is the only interface: binding to it changes nothing
            return True
        return False
    if level == IPPROTO_TCP and sock.type == SOCK_STREAM:
        if optname == TCP_CONGESTION:
            name = t.mm.read(optval, min(max(optlen, 0), 16)).split(b"\0", 1)[0]
            if name not in CONGESTION:
                raise Errno(E.ENOENT)
            sock.ip_opts[(level, optname)] = name
            return True
        val = _get_int(t, optval, optlen)
        if optname == TCP_MAXSEG:
            if val and not 88 <= val <= 65535:
                raise Errno(E.EINVAL)
        elif optname in TCP_RANGES:
            lo, hi = TCP_RANGES[optname]
            if not lo <= val <= hi:
                raise Errno(E.EINVAL)
        elif optname in (TCP_NODELAY, TCP_CORK, TCP_QUICKACK):
            val = int(bool(val))
            if val if optname == TCP_NODELAY else (optname == TCP_CORK and not val):
                sock.flush_cork()  # uncorking, or no delay, sends what was held
        elif optname == TCP_USER_TIMEOUT or optname == TCP_WINDOW_CLAMP:
            if val < 0:
                raise Errno(E.EINVAL)
        elif optname not in TCP_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        sock.ip_opts[(level, optname)] = val
        return True
    if level == IPPROTO_IP and optname in (IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP, MCAST_JOIN_GROUP,
                                           MCAST_LEAVE_GROUP):
        if optname in (MCAST_JOIN_GROUP, MCAST_LEAVE_GROUP):
            if optlen < GROUP_REQ:
                raise Errno(E.EINVAL)
            fam, group = struct.unpack("<H2x4s", t.mm.read(optval + 8, 8))
            if fam != AF_INET:
                raise Errno(E.EINVAL)
        else:
            if optlen < 8:
                raise Errno(E.EINVAL)
            group = t.mm.read(optval, 4)
        if group[0] & 0xF0 != 0xE0:
            raise Errno(E.EINVAL)
        if optname in (IP_ADD_MEMBERSHIP, MCAST_JOIN_GROUP):
            if group in sock.mc_groups:
                raise Errno(E.EADDRINUSE)
            sock.mc_groups.add(group)
        else:
            if group not in sock.mc_groups:
                raise Errno(E.EADDRNOTAVAIL)
            sock.mc_groups.discard(group)
        return True
    if level == IPPROTO_UDP and sock.type == SOCK_DGRAM:
        if optname != UDP_CORK:
            raise Errno(E.ENOPROTOOPT)
        val = _get_int(t, optval, optlen)
        sock.ip_opts[(level, optname)] = int(bool(val))
        if not val and sock.cork is not None:
            data, sock.cork = bytes(sock.cork), None
            dest, port = sock.cork_dest
            sock.udp_deliver(data, dest, port, fmt)
        return True
    if level == IPPROTO_IP:
        if optname not in IP_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        val = _ip_int(t, optval, optlen)
        if optname == IP_TTL:
            if val == -1:
                val = 64
            if not 1 <= val <= 255:
                raise Errno(E.EINVAL)
        elif optname == IP_TOS:
            if sock.type == SOCK_STREAM:
                val = (val & ~3) | (sock.ip_opts.get((level, optname), 0) & 3)
            val &= 0xFF
        elif optname == IP_MTU_DISCOVER:
            if not 0 <= val <= 5:
                raise Errno(E.EINVAL)
        elif optname == IP_MULTICAST_TTL:
            if val == -1:
                val = 1
            if not 0 <= val <= 255:
                raise Errno(E.EINVAL)
        else:
            val = int(bool(val))
        sock.ip_opts[(level, optname)] = val
        return True
    if level == IPPROTO_IPV6 and sock.family == AF_INET6:
        val = _get_int(t, optval, optlen)
        if optname == IPV6_V6ONLY:
            if sock.local is not None:
                raise Errno(E.EINVAL)
            sock.v6only = bool(val)
            return True
        if optname == IPV6_ADDRFORM:
            if val != AF_INET:
                raise Errno(E.EINVAL)
            if sock.state != ESTABLISHED:
                raise Errno(E.ENOTCONN)
            if sock.v6only or sock.remote is None or not is_v4(sock.remote[0]):
                raise Errno(E.EADDRNOTAVAIL)
            sock.family = AF_INET  # the connection goes on as IPv4 (its addresses are v4-mapped already)
            return True
        if optname not in IPV6_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        if optname in (IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS, IPV6_TCLASS):
            if not -1 <= val <= 255:
                raise Errno(E.EINVAL)
            if val == -1:
                val = IPV6_INT_DEFAULTS[optname]
        elif optname == IPV6_MTU_DISCOVER:
            if not 0 <= val <= 5:
                raise Errno(E.EINVAL)
        else:
            val = int(bool(val))
        sock.ip_opts[(level, optname)] = val
        return True
    raise Errno(E.ENOPROTOOPT)


def _tcp_info(sock: InetSocket) -> bytes:
    """struct tcp_info as far as libraries read it: state, MSS, window and RTT figures."""
    connected = sock.state == ESTABLISHED
    mss = LOOPBACK_MSS if connected else TCP_MSS_DEFAULT
    head = struct.pack("<8B", sock.tcp_state(), 0, 0, 0, 0, 0, 0x77 if connected else 0, 0)
    rto, ato = (201000, 40000) if connected else (1000000, 0)
    body = struct.pack("<4I", rto, ato, mss, mss if connected else 0)
    body += bytes(20 + 16)  # unacked .. fackets, last_data_sent .. last_ack_recv
    body += struct.pack("<8I", LO_MTU if connected else 0, 64076 if connected else 0, 50 if connected else 0,
                        25 if connected else 250000, 0x7FFFFFFF, 10, mss, 3)
    body += struct.pack("<3I", 0, sock.rcvbuf // 2 if connected else 0, 0)
    out = head + body
    return out + bytes(TCP_INFO_SIZE - len(out))


def getsockopt(t, sock: InetSocket, level: int, optname: int):
    """The option's bytes (None: a SOL_SOCKET option for syscalls/net.py), and whether a
    short buffer takes one byte of a small value (ip_getsockopt's rule)."""
    if level == SOL_SOCKET:
        if optname == SO_DOMAIN:
            return struct.pack("<i", sock.family), False
        if optname == SO_PROTOCOL:
            return struct.pack("<i", sock.proto), False
        if optname == SO_BINDTODEVICE:
            name = getattr(sock, "device", b"")
            return (name + b"\0") if name else b"", False
        return None, False
    if level == IPPROTO_TCP and sock.type == SOCK_STREAM:
        if optname == TCP_INFO:
            return _tcp_info(sock), False
        if optname == TCP_CONGESTION:
            name = sock.ip_opts.get((level, optname), CONGESTION[0])
            return name + bytes(16 - len(name)), False
        if optname == TCP_MAXSEG:
            return struct.pack("<i", LOOPBACK_MSS if sock.state == ESTABLISHED else TCP_MSS_DEFAULT), False
        if optname not in TCP_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        return struct.pack("<i", sock.ip_opts.get((level, optname), TCP_INT_DEFAULTS[optname])), False
    if level == IPPROTO_IP:
        if optname == IP_MTU:
            if sock.remote is None:
                raise Errno(E.ENOTCONN)
            return struct.pack("<i", LO_MTU), True
        if optname == IP_OPTIONS:
            return b"", False
        if optname not in IP_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        return struct.pack("<i", sock.ip_opts.get((level, optname), IP_INT_DEFAULTS[optname])), True
    if level == IPPROTO_IPV6 and sock.family == AF_INET6:
        if optname == IPV6_V6ONLY:
            return struct.pack("<i", int(sock.v6only)), False
        if optname == IPV6_MTU:
            if sock.remote is None:
                raise Errno(E.ENOTCONN)
            return struct.pack("<i", LO_MTU), False
        if optname not in IPV6_INT_DEFAULTS:
            raise Errno(E.ENOPROTOOPT)
        return struct.pack("<i", sock.ip_opts.get((level, optname), IPV6_INT_DEFAULTS[optname])), False
    if level == IPPROTO_UDP and sock.type == SOCK_DGRAM:
        if optname != UDP_CORK:
            raise Errno(E.ENOPROTOOPT)
        return struct.pack("<i", sock.ip_opts.get((level, optname), 0)), False
    # another level: ip_getsockopt's EOPNOTSUPP, ipv6_getsockopt's ENOPROTOOPT
    raise Errno(E.EOPNOTSUPP if sock.family == AF_INET else E.ENOPROTOOPT)


# --- ioctls --------------------------------------------------------------------------------------
def _ifname(t, arg: int) -> bytes:
    return t.mm.read(arg, IFNAMSIZ).split(b"\0", 1)[0]


def _lo_only(t, arg: int) -> None:
    if _ifname(t, arg) != b"lo":
        raise Errno(E.ENODEV)


def _sockaddr_in(addr4: bytes) -> bytes:
    return struct.pack("<H", AF_INET) + bytes(2) + addr4 + bytes(8)


def interface_ioctl(t, request: int, arg: int) -> bool:
    """The SIOCGIF* requests every socket answers (dev_ioctl), for `lo` alone. False if
    `request` is not one of them."""
    lb = loopback(t)
    if request == SIOCGIFCONF:  # the interfaces with an IPv4 address: lo once it is up
        length, buf = struct.unpack("<i4xQ", t.mm.read(arg, 16))
        entry = b"lo".ljust(IFNAMSIZ, b"\0") + _sockaddr_in(bytes((127, 0, 0, 1))) + bytes(8)
        if buf == 0:
            t.mm.write_u32(arg, IFREQ if lb.up else 0)
            return True
        n = 0
        if length >= IFREQ and lb.up:
            t.mm.write(buf, entry)
            n = IFREQ
        t.mm.write_u32(arg, n)
        return True
    if request == SIOCGIFNAME:
        index = s32(t.mm.read_u32(arg + IFNAMSIZ))
        if index != LO_INDEX:
            raise Errno(E.ENODEV)
        t.mm.write(arg, b"lo".ljust(IFNAMSIZ, b"\0"))
        return True
    values = {
        SIOCGIFINDEX: lambda: struct.pack("<i", LO_INDEX),
        SIOCGIFFLAGS: lambda: struct.pack("<H", IFF_LOOPBACK | (IFF_UP | IFF_RUNNING if lb.up else 0)),
        SIOCGIFADDR: lambda: _sockaddr_in(bytes((127, 0, 0, 1))),
        SIOCGIFNETMASK: lambda: _sockaddr_in(bytes((255, 0, 0, 0))),
        SIOCGIFBRDADDR: lambda: _sockaddr_in(bytes(4)),
        SIOCGIFMTU: lambda: struct.pack("<i", lb.mtu),
        SIOCGIFMETRIC: lambda: struct.pack("<i", 0),
        SIOCGIFTXQLEN: lambda: struct.pack("<i", 1000),
        SIOCGIFHWADDR: lambda: struct.pack("<H", ARPHRD_LOOPBACK) + bytes(14),
    }
    if request in (SIOCSIFMTU, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK):
        _lo_only(t, arg)
        if not ns_capable(t, lb.owner, CAP_NET_ADMIN):
            raise Errno(E.EPERM)
        if request in (SIOCSIFADDR, SIOCSIFNETMASK):
            fam, addr = struct.unpack("<H2x4s", t.mm.read(arg + IFNAMSIZ, 8))
            if fam != AF_INET:
                raise Errno(E.EINVAL)
            want = bytes((127, 0, 0, 1)) if request == SIOCSIFADDR else bytes((255, 0, 0, 0))
            if addr != want:
                raise Errno(E.EOPNOTSUPP)  # lo keeps 127.0.0.1/8: setting it again (ifconfig lo up) is all
            return True
        value = s32(t.mm.read_u32(arg + IFNAMSIZ))
        if request == SIOCSIFMTU:
            if not LO_MIN_MTU <= value <= LO_MAX_MTU:
                raise Errno(E.EINVAL)
            lb.mtu = value  # shown by SIOCGIFMTU; datagrams are not cut to it
        else:
            lb.up = bool(value & IFF_UP)  # a down lo: ENETUNREACH, its addresses gone
        return True
    make = values.get(request)
    if make is None:
        return False
    _lo_only(t, arg)
    if request in (SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFBRDADDR) and not lb.up:
        raise Errno(E.EADDRNOTAVAIL)
    t.mm.write(arg + IFNAMSIZ, make())
    return True


# The objects' hooks into this ABI side: a UDP send decodes its destination here (write(2)
# on a UDP socket reaches it through the object), and every socket answers dev_ioctl's
# interface requests with this.
InetSocket.udp_sendmsg = staticmethod(send_dgram)
UnixSocket.interface_ioctl = staticmethod(interface_ioctl)
