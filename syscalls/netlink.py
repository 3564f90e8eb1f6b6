"""The AF_NETLINK side of the socket calls (the objects: sentry/net/netlink.py, the
kernel's NETLINK_ROUTE answers: sentry/net/rtnetlink.py).

syscalls/net.py owns the calls and hands a NetlinkSocket here: creation
(netlink_create: SOCK_RAW or SOCK_DGRAM; NETLINK_ROUTE, NETLINK_USERSOCK and
NETLINK_KOBJECT_UEVENT exist, the last as in a container whose devices never
change: its groups can be joined and hear nothing; every other protocol (audit,
generic, netfilter, sock_diag, xfrm, ...) is EPROTONOSUPPORT as in a kernel built
without it, which libaudit, ethtool and ss take as "not here" and go on),
sockaddr_nl in and out, bind (a port id or an automatic one, multicast groups),
connect, a send's destination and checks (the object delivers it: to the kernel,
answered at once; to another port, queued there; to a group, its members), and the
SOL_NETLINK options. Receiving and the ioctls are the object's."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.namespaces import ns_capable, ns_of
from sentry.net.inet import loopback
from sentry.net.netlink import (AF_NETLINK, FLAG_OPTIONS, MAX_LINKS, NETLINK_LISTEN_ALL_NSID, NETLINK_ROUTE,
                                NETLINK_KOBJECT_UEVENT, NETLINK_USERSOCK, SOCKADDR_NL, NetlinkSocket)
from sentry.net.unix import SOCK_DGRAM, SOCK_RAW
from sentry.vfs.file import O_NONBLOCK
from syscalls.abi import s32

AF_UNSPEC = 0
SOL_SOCKET, SOL_NETLINK = 1, 270
SO_PROTOCOL, SO_DOMAIN = 38, 39
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS = 1, 2, 9
MSG_OOB, MSG_DONTWAIT = 0x1, 0x40
CAP_NET_BROADCAST, CAP_NET_ADMIN = 11, 12
PROTOCOLS = (NETLINK_ROUTE, NETLINK_USERSOCK, NETLINK_KOBJECT_UEVENT)


def create(t, kind: int, protocol: int, flags: int) -> NetlinkSocket:
    if kind not in (SOCK_RAW, SOCK_DGRAM):
        raise Errno(E.ESOCKTNOSUPPORT)
    if protocol < 0 or protocol >= MAX_LINKS or protocol not in PROTOCOLS:
        raise Errno(E.EPROTONOSUPPORT)
    return NetlinkSocket(t.kernel, kind, protocol, flags, t, ns_of(t, "net"), loopback(t))


def _may_send_multicast(t, sock: NetlinkSocket) -> bool:
    """netlink_allowed(NL_CFG_F_NONROOT_SEND): USERSOCK lets anyone, ROUTE wants CAP_NET_ADMIN."""
    return sock.protocol == NETLINK_USERSOCK or ns_capable(t, sock.lb.owner, CAP_NET_ADMIN)


def _sockaddr(raw):
    """(port id, groups) of a sockaddr_nl (EINVAL if short or of another family)."""
    if raw is None or len(raw) < SOCKADDR_NL.size:
        raise Errno(E.EINVAL)
    family, _, pid, groups = SOCKADDR_NL.unpack(raw[:SOCKADDR_NL.size])
    if family != AF_NETLINK:
        raise Errno(E.EINVAL)
    return s32(pid), groups & 0xFFFFFFFF


def _process_id(t) -> int:
    from syscalls.process import getpid
    return getpid(t)


def autobind(t, sock: NetlinkSocket) -> None:
    if not sock.bound:
        sock.table.autobind(sock, _process_id(t))


def bind(t, sock: NetlinkSocket, raw) -> int:
    pid, groups = _sockaddr(raw)
    if sock.ngroups < 32:
        groups &= (1 << sock.ngroups) - 1
    if sock.bound:
        if pid != sock.portid:
            raise Errno(E.EINVAL)
    elif pid:
        sock.table.insert(sock, pid)
    else:
        autobind(t, sock)
    sock.groups = {g for g in sock.groups if g > 32} | {i + 1 for i in range(32) if groups >> i & 1}
    return 0


def connect(t, sock: NetlinkSocket, raw) -> int:
    if raw is None or len(raw) < 2:
        raise Errno(E.EINVAL)
    if int.from_bytes(raw[:2], "little") == AF_UNSPEC:
        sock.dst = (0, 0)
        return 0
    pid, groups = _sockaddr(raw)
    if (pid or groups) and not _may_send_multicast(t, sock):
        raise Errno(E.EPERM)
    autobind(t, sock)
    sock.dst = (pid, (groups & -groups).bit_length())  # ffs(): the lowest group
    return 0


def _group_mask(sock: NetlinkSocket) -> int:
    return sum(1 << (g - 1) for g in sock.groups if g <= 32)


def sockname(sock: NetlinkSocket) -> bytes:
    return SOCKADDR_NL.pack(AF_NETLINK, 0, sock.portid & 0xFFFFFFFF, s32(_group_mask(sock)))


def peername(sock: NetlinkSocket) -> bytes:
    pid, group = sock.dst
    return SOCKADDR_NL.pack(AF_NETLINK, 0, pid & 0xFFFFFFFF, s32(1 << (group - 1)) if group else 0)


# --- sending ----------------------------------------------------------------------------------------
def send(t, sock: NetlinkSocket, get, length: int, flags: int, dest) -> int:
    """netlink_sendmsg: the destination (sockaddr_nl, else connect's), an automatic port
    id for an unbound sender, the size bound, then the object delivers it."""
    if flags & MSG_OOB:
        raise Errno(E.EOPNOTSUPP)
    if dest is not None:
        pid, groups = _sockaddr(dest)
        group = (groups & -groups).bit_length()
        if (pid or group) and not _may_send_multicast(t, sock):
            raise Errno(E.EPERM)
    else:
        pid, group = sock.dst
    autobind(t, sock)
    if not length:
        raise Errno(E.ENODATA)  # an empty message is refused, to the kernel or a port
    if length > sock.sndbuf - 32:
        raise Errno(E.EMSGSIZE)
    sock.unicast(t, get(0, length), pid, group, bool(flags & MSG_DONTWAIT or sock.flags & O_NONBLOCK))
    return length


# --- options -----------------------------------------------------------------------------------------
def setsockopt(t, sock: NetlinkSocket, level: int, optname: int, optval: int, optlen: int) -> bool:
    """netlink_setsockopt; False for SOL_SOCKET (net.py's common options)."""
    if level == SOL_SOCKET:
        return False
    if level != SOL_NETLINK:
        raise Errno(E.ENOPROTOOPT)
    val = s32(t.mm.read_u32(optval)) if optlen >= 4 else 0
    if optname in (NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP):
        group = val & 0xFFFFFFFF
        if not group or group - 1 >= sock.ngroups:
            raise Errno(E.EINVAL)
        if optname == NETLINK_ADD_MEMBERSHIP:
            sock.groups.add(group)  # joined; nothing in the sandbox is ever announced to it
        else:
            sock.groups.discard(group)
        return True
    if optname in FLAG_OPTIONS:
        if optname == NETLINK_LISTEN_ALL_NSID and not ns_capable(t, sock.lb.owner, CAP_NET_BROADCAST):
            raise Errno(E.EPERM)
        if val:
            sock.nl_flags.add(optname)
        else:
            sock.nl_flags.discard(optname)
        return True
    raise Errno(E.ENOPROTOOPT)


def getsockopt(t, sock: NetlinkSocket, level: int, optname: int, optval: int, optlen: int) -> bool:
    """netlink_getsockopt, and SO_DOMAIN/SO_PROTOCOL; False for SOL_SOCKET's common options."""
    if level == SOL_SOCKET:
        if optname not in (SO_DOMAIN, SO_PROTOCOL):
            return False
        n = s32(t.mm.read_u32(optlen))
        if n < 0:
            raise Errno(E.EINVAL)
        data = struct.pack("<i", AF_NETLINK if optname == SO_DOMAIN else sock.protocol)[:n]
        t.mm.write(optval, data)
        t.mm.write_u32(optlen, len(data))
        return True
    if level != SOL_NETLINK:
        raise Errno(E.ENOPROTOOPT)
    n = s32(t.mm.read_u32(optlen))
    if n < 0:
        raise Errno(E.EINVAL)
    if optname == NETLINK_LIST_MEMBERSHIPS:
        words = (sock.ngroups + 31) // 32
        mask = sum(1 << (g - 1) for g in sock.groups)
        for i in range(min(words, n // 4)):
            t.mm.write_u32(optval + 4 * i, mask >> (32 * i) & 0xFFFFFFFF)
        t.mm.write_u32(optlen, 4 * words)
        return True
    if optname in FLAG_OPTIONS:
        if n < 4:
            raise Errno(E.EINVAL)
        t.mm.write_u32(optlen, 4)
        t.mm.write_u32(optval, int(optname in sock.nl_flags))
        return True
    raise Errno(E.ENOPROTOOPT)


# The object's hook into this ABI side (sentry/net/transfer.py's send and write(2) reach it)
NetlinkSocket.sendmsg = staticmethod(send)
