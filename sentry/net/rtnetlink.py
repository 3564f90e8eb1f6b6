"""The kernel side of NETLINK_ROUTE (Linux's net/core/rtnetlink.c and the dumps of
net/ipv4/devinet.c, fib_frontend.c and net/ipv6/addrconf.c, route.c), for the one
interface a sandbox's network namespace has: `lo`.

What it shows is the namespace's Loopback (sentry/net/inet.py), the one truth:
whether lo is up (IFF_UP|IFF_RUNNING|IFF_LOWER_UP, operstate UNKNOWN, qdisc
noqueue; down: operstate DOWN, qdisc noop), its MTU, and, while it is up, its
addresses 127.0.0.1/8 and ::1/128 and the kernel's routes of the local table
(127.0.0.0/8 and 127.0.0.1 local, 127.255.255.255 broadcast, ::1 local); the
main table is empty, as in a fresh namespace. Counters are zero (no traffic
statistics are kept) and IFLA_AF_SPEC (per-family device settings) is not given.

Requests are taken as netlink_rcv_skb takes them: each message in turn, one not
marked NLM_F_REQUEST or of a control type only acknowledged (with NLM_F_ACK), a
malformed length ending the batch; an error is NLMSG_ERROR with the request
echoed (only its header with NETLINK_CAP_ACK), and an extended-ack message where
Linux gives one and NETLINK_EXT_ACK is set. Changes need CAP_NET_ADMIN over the
namespace (else EPERM): setting lo up or down (RTM_NEWLINK/RTM_SETLINK, flags and
change mask as rtnl_dev_combine_flags) and its MTU; lo's own addresses may be
added again (EEXIST with NLM_F_EXCL); what the sandbox's network cannot have
(other devices, renaming, other addresses or routes, deleting lo) is EOPNOTSUPP,
an unknown device ENODEV."""
import errno as E
import struct
import time

from sentry.errors import Errno
from sentry.namespaces import ns_capable, uid_seen
from sentry.net.netlink import (NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE,
                                NLMSG_ERROR, NLMSG_HDR, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK,
                                align, nlmsg)

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_GETNEIGH = 30
RTM_MAX = 123
NLM_F_ROOT, NLM_F_MATCH, NLM_F_DUMP_FILTERED = 0x100, 0x200, 0x20
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSGERR_ATTR_MSG = 1
CAP_NET_ADMIN = 12

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
LO_INDEX = 1
ARPHRD_LOOPBACK = 772
IFF_UP, IFF_LOOPBACK, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x8, 0x40, 0x10000
IF_OPER_UNKNOWN, IF_OPER_DOWN = 0, 2
IFINFOMSG = struct.Struct("<BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("<BBBBi")   # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("<BBBBBBBBI")   # family, dst_len, src_len, tos, table, protocol, scope, type, flags

# IFLA_*
(IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_QDISC, IFLA_STATS, IFLA_TXQLEN, IFLA_MAP,
 IFLA_OPERSTATE, IFLA_LINKMODE, IFLA_LINKINFO, IFLA_STATS64, IFLA_GROUP, IFLA_EXT_MASK, IFLA_PROMISCUITY,
 IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES, IFLA_CARRIER, IFLA_CARRIER_CHANGES, IFLA_PROTO_DOWN, IFLA_GSO_MAX_SEGS,
 IFLA_GSO_MAX_SIZE, IFLA_XDP, IFLA_CARRIER_UP_COUNT, IFLA_CARRIER_DOWN_COUNT, IFLA_MIN_MTU, IFLA_MAX_MTU,
 IFLA_GRO_MAX_SIZE, IFLA_TSO_MAX_SIZE, IFLA_TSO_MAX_SEGS, IFLA_ALLMULTI, IFLA_GSO_IPV4_MAX_SIZE,
 IFLA_GRO_IPV4_MAX_SIZE, IFLA_MAX_PACING_OFFLOAD_HORIZON, IFLA_NETNS_IMMUTABLE, IFLA_HEADROOM,
 IFLA_TAILROOM) = (1, 2, 3, 4, 6, 7, 13, 14, 16, 17, 18, 23, 27, 29, 30, 31, 32, 33, 35, 39, 40, 41, 43, 47, 48,
                   50, 51, 58, 59, 60, 61, 63, 64, 66, 67, 68, 69)
IFLA_XDP_ATTACHED = 2
IFLA_AF_SPEC, IFLA_INET6_FLAGS, IFLA_INET6_ADDR_GEN_MODE = 26, 1, 8
IF_READY, IN6_ADDR_GEN_MODE_EUI64 = 0x80000000, 0
# the attributes a change may carry and still be one the sandbox can make
IFLA_HARMLESS = (IFLA_IFNAME, IFLA_EXT_MASK, IFLA_MTU, IFLA_GROUP)
# IFA_*
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS, IFA_PROTO = 1, 2, 3, 6, 8, 11
IFA_F_PERMANENT = 0x80
IFAPROT_KERNEL_LO = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
# RTA_*
RTA_DST, RTA_SRC, RTA_OIF, RTA_PRIORITY, RTA_PREFSRC, RTA_CACHEINFO, RTA_TABLE, RTA_PREF, RTA_UID = (
    1, 2, 4, 6, 7, 12, 15, 20, 25)
RTCF_LOCAL = 0x80000000
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTPROT_KERNEL = 2
RTN_LOCAL, RTN_BROADCAST = 2, 3
RTM_F_CLONED, RTM_F_PREFIX = 0x200, 0x800
LO_MIN_MTU, LO_MAX_MTU = 68, 0x7FFFFFFF  # as SIOCSIFMTU takes them (syscalls/inet.py)

LO4 = bytes((127, 0, 0, 1))
LO6 = bytes(15) + b"\x01"


class NlError(Exception):
    """A request's failure: its errno and the extended-ack message Linux gives."""

    def __init__(self, errno: int, msg: str = ""):
        super().__init__(errno, msg)
        self.errno, self.msg = errno, msg


def attr(type_: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("<HH", n, type_) + data + bytes(align(n) - n)


def u8(type_: int, v: int) -> bytes:
    return attr(type_, struct.pack("<B", v))


def u16(type_: int, v: int) -> bytes:
    return attr(type_, struct.pack("<H", v))


def u32(type_: int, v: int) -> bytes:
    return attr(type_, struct.pack("<I", v & 0xFFFFFFFF))


def parse_attrs(data: bytes) -> dict:
    """type -> payload of the attributes (the last of a repeated type wins); a malformed
    one ends the list (EINVAL, as nla_parse)."""
    out, off = {}, 0
    while off + 4 <= len(data):
        n, type_ = struct.unpack_from("<HH", data, off)
        if n < 4 or off + n > len(data):
            raise NlError(E.EINVAL)
        out[type_ & 0x3FFF] = data[off + 4:off + n]
        off += align(n)
    return out


def _cstr(v: bytes) -> bytes:
    return v.split(b"\0", 1)[0]


# --- what lo looks like -------------------------------------------------------------------------
def link_payload(lb) -> bytes:
    up = lb.up
    flags = IFF_LOOPBACK | (IFF_UP | IFF_RUNNING | IFF_LOWER_UP if up else 0)
    return (IFINFOMSG.pack(AF_UNSPEC, ARPHRD_LOOPBACK, LO_INDEX, flags, 0)
            + attr(IFLA_IFNAME, b"lo\0") + u32(IFLA_TXQLEN, 1000)
            + u8(IFLA_OPERSTATE, IF_OPER_UNKNOWN if up else IF_OPER_DOWN) + u8(IFLA_LINKMODE, 0)
            + u8(IFLA_NETNS_IMMUTABLE, 1) + u32(IFLA_MTU, lb.mtu) + u32(IFLA_MIN_MTU, 0) + u32(IFLA_MAX_MTU, 0)
            + u32(IFLA_GROUP, 0) + u32(IFLA_PROMISCUITY, 0) + u32(IFLA_ALLMULTI, 0) + u32(IFLA_NUM_TX_QUEUES, 1)
            + u32(IFLA_GSO_MAX_SEGS, 65535) + u32(IFLA_GSO_MAX_SIZE, 65536) + u32(IFLA_GRO_MAX_SIZE, 65536)
            + u32(IFLA_GSO_IPV4_MAX_SIZE, 65536) + u32(IFLA_GRO_IPV4_MAX_SIZE, 65536)
            + u32(IFLA_TSO_MAX_SIZE, 524280) + u32(IFLA_TSO_MAX_SEGS, 65535)
            + u32(IFLA_MAX_PACING_OFFLOAD_HORIZON, 0) + u32(IFLA_NUM_RX_QUEUES, 1) + u8(IFLA_CARRIER, 1)
            + u32(IFLA_CARRIER_CHANGES, 0) + u32(IFLA_CARRIER_UP_COUNT, 0) + u32(IFLA_CARRIER_DOWN_COUNT, 0)
            + u16(IFLA_HEADROOM, 0) + u16(IFLA_TAILROOM, 0) + u8(IFLA_PROTO_DOWN, 0)
            + attr(IFLA_ADDRESS, bytes(6)) + attr(IFLA_BROADCAST, bytes(6))
            + attr(IFLA_STATS64, bytes(8 * 25)) + attr(IFLA_STATS, bytes(4 * 24))
            + attr(IFLA_XDP, u8(IFLA_XDP_ATTACHED, 0)) + attr(IFLA_QDISC, b"noqueue\0" if up else b"noop\0")
            + attr(IFLA_AF_SPEC, attr(AF_INET6, u32(IFLA_INET6_FLAGS, IF_READY if up else 0)
                                      + u8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_EUI64)))
            + attr(IFLA_MAP, bytes(32)))


def _stamp(sock) -> bytes:
    """IFA_CACHEINFO: forever valid and preferred; made and updated when first shown
    (hundredths of a second of the sentry's monotonic clock)."""
    table = sock.table
    if table.created is None:
        table.created = int(time.monotonic() * 100) & 0xFFFFFFFF
    return struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, table.created, table.created)


def addr_payloads(sock, lb, family: int):
    if not lb.up:
        return []
    out = []
    if family in (AF_UNSPEC, AF_INET):
        out.append(IFADDRMSG.pack(AF_INET, 8, IFA_F_PERMANENT, RT_SCOPE_HOST, LO_INDEX)
                   + attr(IFA_ADDRESS, LO4) + attr(IFA_LOCAL, LO4) + attr(IFA_LABEL, b"lo\0")
                   + u32(IFA_FLAGS, IFA_F_PERMANENT) + attr(IFA_CACHEINFO, _stamp(sock)))
    if family in (AF_UNSPEC, AF_INET6):
        out.append(IFADDRMSG.pack(AF_INET6, 128, IFA_F_PERMANENT, RT_SCOPE_HOST, LO_INDEX)
                   + attr(IFA_ADDRESS, LO6) + attr(IFA_CACHEINFO, _stamp(sock))
                   + u32(IFA_FLAGS, IFA_F_PERMANENT) + u8(IFA_PROTO, IFAPROT_KERNEL_LO))
    return out


def _route4(dst: bytes, dst_len: int, scope: int, type_: int) -> bytes:
    return (RTMSG.pack(AF_INET, dst_len, 0, 0, RT_TABLE_LOCAL, RTPROT_KERNEL, scope, type_, 0)
            + u32(RTA_TABLE, RT_TABLE_LOCAL) + attr(RTA_DST, dst) + attr(RTA_PREFSRC, LO4) + u32(RTA_OIF, LO_INDEX))


def route_payloads(lb, family: int, table: int):
    """The routes of lo (the local table's; the main table is empty), those of `table`
    only when it is not 0. IPv4's tables exist once a route is in them (the local one
    once lo has been up: here, while it is up), IPv6's main and local ones always."""
    out = []
    if family in (AF_UNSPEC, AF_INET):
        if table and family == AF_INET and not (table == RT_TABLE_LOCAL and lb.up):
            raise NlError(E.ENOENT, "ipv4: FIB table does not exist")
        if lb.up and table in (0, RT_TABLE_LOCAL):
            out += [_route4(bytes((127, 0, 0, 0)), 8, RT_SCOPE_HOST, RTN_LOCAL),
                    _route4(LO4, 32, RT_SCOPE_HOST, RTN_LOCAL),
                    _route4(bytes((127, 255, 255, 255)), 32, RT_SCOPE_LINK, RTN_BROADCAST)]
    if family in (AF_UNSPEC, AF_INET6):
        if table and family == AF_INET6 and table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL):
            raise NlError(E.ENOENT, "ipv6: FIB table does not exist")
        if lb.up and table in (0, RT_TABLE_LOCAL):
            out.append(RTMSG.pack(AF_INET6, 128, 0, 0, RT_TABLE_LOCAL, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, RTN_LOCAL, 0)
                       + u32(RTA_TABLE, RT_TABLE_LOCAL) + attr(RTA_DST, LO6) + u32(RTA_PRIORITY, 0)
                       + u32(RTA_OIF, LO_INDEX) + attr(RTA_CACHEINFO, bytes(32)) + u8(RTA_PREF, 0))
    return out


# --- requests ---------------------------------------------------------------------------------
class Request:
    __slots__ = ("sock", "lb", "task", "type", "flags", "seq", "payload", "strict")

    def __init__(self, sock, lb, task, type_, flags, seq, payload):
        self.sock, self.lb, self.task = sock, lb, task
        self.type, self.flags, self.seq, self.payload = type_, flags, seq, payload
        self.strict = NETLINK_GET_STRICT_CHK in sock.nl_flags

    def reply(self, type_: int, payload: bytes, flags: int = 0) -> bytes:
        return nlmsg(type_, flags, self.seq, self.sock.portid, payload)

    def dump(self, type_: int, payloads, filtered: bool = False) -> None:
        flags = NLM_F_MULTI | (NLM_F_DUMP_FILTERED if filtered else 0)
        self.sock.start_dump([self.reply(type_, p, flags) for p in payloads],
                             self.reply(NLMSG_DONE, struct.pack("<i", 0), flags))

    def dump_error(self, e: "NlError", filtered: bool) -> None:
        """A dump that fails on its first pass ends at once: NLMSG_DONE carries the error
        (and the extended ack's message), as netlink_dump_done."""
        flags = NLM_F_MULTI | (NLM_F_DUMP_FILTERED if filtered else 0)
        body = struct.pack("<i", -e.errno)
        if e.msg and NETLINK_EXT_ACK in self.sock.nl_flags:
            flags |= NLM_F_ACK_TLVS
            body += attr(NLMSGERR_ATTR_MSG, e.msg.encode() + b"\0")
        self.sock.start_dump([], self.reply(NLMSG_DONE, body, flags))


def _header(req: Request, size: int, what: str):
    if len(req.payload) < size:
        raise NlError(E.EINVAL, f"Invalid header for {what}")
    return req.payload[:size], parse_attrs(req.payload[align(size):])


def _get_link(req: Request, dump: bool) -> None:
    if dump:
        try:
            if req.strict:
                head, _ = _header(req, IFINFOMSG.size, "link dump")
                _, type_, index, flags, change = IFINFOMSG.unpack(head)
                if head[1] or type_ or flags or change:
                    raise NlError(E.EINVAL, "Invalid values in header for link dump request")
                if index:
                    raise NlError(E.EINVAL, "Filter by device index not supported for link dumps")
        except NlError as e:
            req.dump_error(e, False)
            return
        req.dump(RTM_NEWLINK, [link_payload(req.lb)])
        return
    _find_link(req)
    req.sock.deliver(req.reply(RTM_NEWLINK, link_payload(req.lb)))


def _find_link(req: Request):
    """The device a request names (ifi_index, else IFLA_IFNAME): lo, or ENODEV."""
    if len(req.payload) < IFINFOMSG.size:
        raise NlError(E.EINVAL)
    _, _, index, flags, change = IFINFOMSG.unpack_from(req.payload)
    attrs = parse_attrs(req.payload[IFINFOMSG.size:])
    name = _cstr(attrs[IFLA_IFNAME]) if IFLA_IFNAME in attrs else None
    if index:
        if index != LO_INDEX:
            raise NlError(E.ENODEV)
    elif name != b"lo":
        raise NlError(E.ENODEV if name is not None or IFLA_LINKINFO not in attrs else E.EOPNOTSUPP)
    return index, flags, change, attrs


def _set_link(req: Request) -> None:
    if len(req.payload) < IFINFOMSG.size:
        raise NlError(E.EINVAL)
    attrs = parse_attrs(req.payload[IFINFOMSG.size:])
    index = IFINFOMSG.unpack_from(req.payload)[2]
    named = _cstr(attrs.get(IFLA_IFNAME, b""))
    if req.type == RTM_NEWLINK and not index and named != b"lo" and IFLA_LINKINFO in attrs:
        raise NlError(E.EOPNOTSUPP, "Unknown device type")  # no link kinds (dummy, veth, bridge, ...)
    _, flags, change, attrs = _find_link(req)
    if req.type == RTM_NEWLINK and req.flags & NLM_F_CREATE and req.flags & NLM_F_EXCL:
        raise NlError(E.EEXIST)
    if named and named != b"lo":
        raise NlError(E.EOPNOTSUPP)  # renaming lo: the sandbox's network knows it by that name only
    if any(a not in IFLA_HARMLESS for a in attrs):
        raise NlError(E.EOPNOTSUPP)
    lb = req.lb
    if IFLA_MTU in attrs:
        mtu = struct.unpack("<i", attrs[IFLA_MTU][:4].ljust(4, b"\0"))[0]
        if not LO_MIN_MTU <= mtu <= LO_MAX_MTU:
            raise NlError(E.EINVAL, "mtu less than device minimum" if mtu < LO_MIN_MTU else "")
        lb.mtu = mtu
    if flags or change:
        if change:  # rtnl_dev_combine_flags: a zero change mask means every flag
            up = (flags & IFF_UP) if change & IFF_UP else lb.up
        else:
            up = flags & IFF_UP
        lb.up = bool(up)


def _get_addr(req: Request, dump: bool) -> None:
    if not dump:
        raise NlError(E.EOPNOTSUPP)
    family = req.payload[0]
    filtered = False
    if req.strict:
        try:
            head, attrs = _header(req, IFADDRMSG.size, "address dump request")
            _, prefixlen, flags, scope, index = IFADDRMSG.unpack(head)
            if prefixlen or flags or scope:
                raise NlError(E.EINVAL, "Invalid values in header for address dump request")
            if index:
                filtered = True
                if index != LO_INDEX:
                    raise NlError(E.ENODEV)
        except NlError as e:
            req.dump_error(e, filtered)
            return
    if family not in (AF_INET, AF_INET6):
        family = AF_UNSPEC  # rtnl_dump_all: every family's
    req.dump(RTM_NEWADDR, addr_payloads(req.sock, req.lb, family), filtered)


def _get_route(req: Request, dump: bool) -> None:
    family = req.payload[0]
    if not dump:
        _route_get(req, family)
        return
    table, filtered = 0, False
    try:
        table, filtered = _route_filter(req, family)
        if family not in (AF_INET, AF_INET6):
            family = AF_UNSPEC
        payloads = route_payloads(req.lb, family, table)
    except NlError as e:
        req.dump_error(e, filtered)
        return
    req.dump(RTM_NEWROUTE, payloads, filtered)


def _route_filter(req: Request, family: int):
    """ip_valid_fib_dump_req (strict checking): (table, filtered)."""
    table, filtered = 0, False
    if req.strict and family in (AF_INET, AF_INET6):
        head, attrs = _header(req, RTMSG.size, "FIB dump request")
        _, dst_len, src_len, tos, rtm_table, _, scope, _, rflags = RTMSG.unpack(head)
        if dst_len or src_len or tos or scope:
            raise NlError(E.EINVAL, "Invalid values in header for FIB dump request")
        if rflags & ~(RTM_F_CLONED | RTM_F_PREFIX):
            raise NlError(E.EINVAL, "Invalid flags for FIB dump request")
        for a, v in attrs.items():
            if a == RTA_TABLE:
                rtm_table = struct.unpack("<I", v[:4].ljust(4, b"\0"))[0]
            elif a == RTA_OIF:
                if struct.unpack("<i", v[:4].ljust(4, b"\0"))[0] not in (0, LO_INDEX):
                    raise NlError(E.ENODEV)
                filtered = True
            else:
                raise NlError(E.EINVAL, "Unsupported attribute in dump request")
        if rtm_table:
            table, filtered = rtm_table, True
    return table, filtered


def _route_get(req: Request, family: int) -> None:
    """`ip route get`: a local destination answers with the local route (a host
    route, RTM_F_CLONED), anything else, or a down lo, ENETUNREACH."""
    if len(req.payload) < RTMSG.size:
        raise NlError(E.EINVAL)
    attrs = parse_attrs(req.payload[RTMSG.size:])
    dst = attrs.get(RTA_DST, b"")
    if family == AF_INET and len(dst) == 4:
        local = dst[0] == 127
    elif family == AF_INET6 and len(dst) == 16:
        local = dst == LO6
    else:
        raise NlError(E.EINVAL)
    if not local or not req.lb.up:
        raise NlError(E.ENETUNREACH)
    cacheinfo = attr(RTA_CACHEINFO, struct.pack("<I", 2) + bytes(28))  # rta_clntref 2, no expiry, no use
    if family == AF_INET:  # the route cache's answer: table main, RTCF_LOCAL, the caller's uid
        payload = (RTMSG.pack(AF_INET, 32, 0, 0, RT_TABLE_MAIN, 0, RT_SCOPE_UNIVERSE, RTN_LOCAL,
                              RTCF_LOCAL | RTM_F_CLONED)
                   + u32(RTA_TABLE, RT_TABLE_MAIN) + attr(RTA_DST, dst) + u32(RTA_OIF, LO_INDEX)
                   + attr(RTA_PREFSRC, LO4) + u32(RTA_UID, uid_seen(req.task, req.task.uid)) + cacheinfo)
    else:
        payload = (RTMSG.pack(AF_INET6, 128, 128, 0, RT_TABLE_LOCAL, RTPROT_KERNEL, RT_SCOPE_UNIVERSE, RTN_LOCAL, 0)
                   + u32(RTA_TABLE, RT_TABLE_LOCAL) + attr(RTA_DST, dst) + attr(RTA_SRC, bytes(16))
                   + attr(RTA_PREFSRC, LO6) + u32(RTA_PRIORITY, 0) + u32(RTA_OIF, LO_INDEX) + cacheinfo
                   + u8(RTA_PREF, 0))
    req.sock.deliver(req.reply(RTM_NEWROUTE, payload))


def _new_addr(req: Request) -> None:
    if len(req.payload) < IFADDRMSG.size:
        raise NlError(E.EINVAL)
    family, prefixlen, _, _, index = IFADDRMSG.unpack_from(req.payload)
    attrs = parse_attrs(req.payload[align(IFADDRMSG.size):])
    if index != LO_INDEX:
        raise NlError(E.ENODEV)
    addr = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    ours = (family, prefixlen, addr) in ((AF_INET, 8, LO4), (AF_INET6, 128, LO6))
    if not ours or not req.lb.up:
        raise NlError(E.EOPNOTSUPP)  # lo has its own addresses and no others
    if req.flags & NLM_F_EXCL:
        raise NlError(E.EEXIST)


def handle(req: Request) -> bool:
    """rtnetlink_rcv_msg for one request: True if a dump was started (no ack follows)."""
    type_ = req.type
    if type_ > RTM_MAX:
        raise NlError(E.EOPNOTSUPP)
    if len(req.payload) < 1:
        return False  # rtnetlink takes a message without even a family as done
    kind = (type_ - RTM_NEWLINK) & 3
    if kind != 2:
        if not ns_capable(req.task, req.lb.owner, CAP_NET_ADMIN):
            raise NlError(E.EPERM)
    dump = kind == 2 and bool(req.flags & (NLM_F_ROOT | NLM_F_MATCH))
    if dump and req.sock.dump:
        raise NlError(E.EBUSY)  # one dump at a time per socket (netlink_dump_start)
    if type_ == RTM_GETLINK:
        _get_link(req, dump)
    elif type_ == RTM_GETADDR:
        _get_addr(req, dump)
    elif type_ == RTM_GETROUTE:
        _get_route(req, dump)
    elif type_ == RTM_GETNEIGH and dump:
        req.dump(RTM_GETNEIGH - 2, [])  # lo resolves no neighbours (RTM_NEWNEIGH)
    elif type_ in (RTM_NEWLINK, RTM_SETLINK):
        _set_link(req)
    elif type_ == RTM_DELLINK:
        _find_link(req)
        raise NlError(E.EOPNOTSUPP)  # lo cannot be deleted
    elif type_ == RTM_NEWADDR:
        _new_addr(req)
    else:
        raise NlError(E.EOPNOTSUPP)
    return dump


def _ack(sock, header: bytes, payload: bytes, err: int, msg: str) -> None:
    """netlink_ack: NLMSG_ERROR with the request's header (and its payload for an error,
    unless NETLINK_CAP_ACK), the extended ack's message with NETLINK_EXT_ACK."""
    flags = 0
    body = struct.pack("<i", -err) + header
    if err and NETLINK_CAP_ACK not in sock.nl_flags:
        body += payload
    else:
        flags |= NLM_F_CAPPED
    if err and msg and NETLINK_EXT_ACK in sock.nl_flags:
        flags |= NLM_F_ACK_TLVS
        body += attr(NLMSGERR_ATTR_MSG, msg.encode() + b"\0")
    _, _, _, seq, _ = NLMSG_HDR.unpack(header)
    sock.deliver(nlmsg(NLMSG_ERROR, flags, seq, sock.portid, body))


def receive(task, sock, lb, data: bytes) -> None:
    """netlink_rcv_skb over what one send carried."""
    off = 0
    while len(data) - off >= NLMSG_HDR.size:
        n, type_, flags, seq, _ = NLMSG_HDR.unpack_from(data, off)
        if n < NLMSG_HDR.size or len(data) - off < n:
            return
        header, payload = data[off:off + NLMSG_HDR.size], data[off + NLMSG_HDR.size:off + n]
        err, msg, dumped = 0, "", False
        if flags & NLM_F_REQUEST and type_ >= RTM_NEWLINK:
            try:
                dumped = handle(Request(sock, lb, task, type_, flags, seq, payload))
            except NlError as e:
                err, msg = e.errno, e.msg
            except Errno as e:
                err = e.errno
        if not dumped and (flags & NLM_F_ACK or err):
            _ack(sock, header, payload, err, msg)
        off += min(align(n), len(data) - off)
