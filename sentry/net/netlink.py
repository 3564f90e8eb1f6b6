"""AF_NETLINK sockets (netlink(7)), kept as Linux's net/netlink/af_netlink.c keeps them.

A NetlinkSocket is a datagram socket whose peer is usually the kernel: what it
sends to port 0 is answered at once by the protocol's kernel side (NETLINK_ROUTE:
sentry/net/rtnetlink.py), the replies queued on its own receive queue; what it
sends to another port goes to the socket bound there (NETLINK_USERSOCK has no
kernel side at all; NETLINK_KOBJECT_UEVENT's takes messages and answers none, and
announces nothing: the sandbox's devices never change). Each network namespace has a port table per protocol
(`ports()`): bind names a port id, or takes one automatically (the process's id,
then a random negative one, netlink_autobind). Receiving is charged to the
receiver (`rmem`): a kernel reply to a socket over SO_RCVBUF is dropped and the
socket hears ENOBUFS once and takes nothing more until its queue is read empty,
as netlink_overrun. A dump (NLM_F_DUMP) is a list of
messages handed over in skbs of a few KiB, the next one made when the reader
takes one and its queue is under half its buffer, then NLMSG_DONE in an skb of
its own, as netlink_dump does.

Multicast groups can be joined (bind's nl_groups, NETLINK_ADD_MEMBERSHIP) but
nothing is ever multicast: the sandbox's network does not change by itself, and
the changes a program makes are not announced (no RTM_NEWLINK to `ip monitor`)."""
import errno as E
import random
import struct
import weakref
from collections import deque

from sentry.errors import Errno
from sentry.net.unix import (POLLERR, POLLIN, POLLOUT, POLLRDNORM, POLLWRBAND, POLLWRNORM, Skb, UnixSocket,
                             dgram_truesize)
from sentry.vfs.file import O_NONBLOCK

AF_NETLINK = 16
NETLINK_ROUTE, NETLINK_USERSOCK, NETLINK_KOBJECT_UEVENT = 0, 2, 15
MAX_LINKS = 32
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT = 0x1, 0x2, 0x20, 0x40
NLMSG_HDR = struct.Struct("<IHHII")  # len, type, flags, seq, pid
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x1, 0x2, 0x4, 0x100, 0x200
SOCKADDR_NL = struct.Struct("<HHIi")  # family, pad, pid, groups (as the first 32 bits)
NLMSG_GOODSIZE = 4096 - 320           # SKB_WITH_OVERHEAD(PAGE_SIZE)
MAX_RECVMSG_LEN = 32768 - 320         # SKB_WITH_OVERHEAD(32768): the largest dump skb a reader's buffer asks

# socket flags (SOL_NETLINK options that are booleans)
NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS = 3, 4, 5
NETLINK_LISTEN_ALL_NSID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 8, 10, 11, 12
FLAG_OPTIONS = (NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID,
                NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK)

RTNLGRP_MAX = 39  # the groups of NETLINK_ROUTE (__RTNLGRP_MAX - 1 in Linux 6.x)
NGROUPS = {NETLINK_ROUTE: RTNLGRP_MAX, NETLINK_USERSOCK: 32}


def align(n: int) -> int:
    return (n + 3) & ~3


def nlmsg(type_: int, flags: int, seq: int, pid: int, payload: bytes) -> bytes:
    """One message: the header, then the payload padded to NLMSG_ALIGNTO."""
    n = NLMSG_HDR.size + len(payload)
    return NLMSG_HDR.pack(n, type_, flags, seq & 0xFFFFFFFF, pid & 0xFFFFFFFF) + payload + bytes(align(n) - n)


class Ports:
    """A network namespace's bound netlink sockets: protocol -> port id -> socket."""

    def __init__(self):
        self.bound: dict[int, dict[int, "NetlinkSocket"]] = {}
        self.created = None  # when lo's addresses were first shown (IFA_CACHEINFO stamps), in 1/100 s

    def lookup(self, protocol: int, portid: int):
        s = self.bound.get(protocol, {}).get(portid)
        return None if s is None or s.dead else s

    def insert(self, sock: "NetlinkSocket", portid: int) -> None:
        if self.lookup(sock.protocol, portid) is not None:
            raise Errno(E.EADDRINUSE)
        self.bound.setdefault(sock.protocol, {})[portid] = sock
        sock.portid, sock.bound = portid, True

    def autobind(self, sock: "NetlinkSocket", pid: int) -> None:
        """netlink_autobind: the caller's process id, else a random negative id below -4096."""
        portid = pid
        while self.lookup(sock.protocol, portid) is not None:
            portid = random.randrange(-(1 << 31), -4096)
        self.insert(sock, portid)

    def remove(self, sock: "NetlinkSocket") -> None:
        table = self.bound.get(sock.protocol, {})
        if sock.bound and table.get(sock.portid) is sock:
            del table[sock.portid]


_PORTS = weakref.WeakKeyDictionary()


def ports(netns) -> Ports:
    p = _PORTS.get(netns)
    if p is None:
        p = _PORTS[netns] = Ports()
    return p


KERNEL_CRED = (0, 0, 0)  # what the kernel's messages carry (NETLINK_CREDS: pid, uid, gid 0)


def _cred(t):
    """(pid, uid, gid) of a user sender, as netlink_sendmsg's scm_send records them."""
    return (t.tgid, t.uid, t.gid) if t is not None else KERNEL_CRED


class _Collect:
    """read(2)'s sink: the bytes go back to syscalls/io.py."""
    __slots__ = ("buf",)

    def __init__(self):
        self.buf = bytearray()

    def room(self, n):
        return n

    def put(self, data):
        self.buf += data


class NetlinkSocket(UnixSocket):
    """A netlink socket of one protocol in the network namespace it was made in."""

    def __init__(self, kernel, type_: int, protocol: int, flags: int, task, netns, lb):
        super().__init__(kernel, type_, flags, task)
        self.protocol = protocol
        self.lb = lb                   # the namespace's lo (sentry/net/inet.py): what NETLINK_ROUTE shows
        self.table = ports(netns)
        self.portid = 0
        self.bound = False
        self.groups = set()            # multicast groups joined (1-based, as nl_groups bits are)
        self.dst = (0, 0)              # connect's (port id, group)
        self.nl_flags = set()          # the SOL_NETLINK boolean options set
        self.rmem = 0                  # truesize of what is queued here
        self.dump = deque()            # the rest of a running dump: skb payloads
        self.max_recvmsg_len = 0
        self.congested = False         # NETLINK_S_CONGESTED: overrun, until the queue empties

    @property
    def ngroups(self) -> int:
        return NGROUPS.get(self.protocol, 32)

    # --- receiving -------------------------------------------------------------------------
    def deliver(self, data: bytes, sender: int = 0, group: int = 0, kernel: bool = True, cred=KERNEL_CRED) -> bool:
        """Queue one skb from port `sender` (0: the kernel). Over SO_RCVBUF it is dropped:
        from the kernel, the socket hears ENOBUFS (unless NETLINK_NO_ENOBUFS); a user
        sender is told (False) and waits or gets EAGAIN."""
        if self.dead:
            return kernel
        if self.rmem > self.rcvbuf or self.congested:
            if kernel and NETLINK_NO_ENOBUFS not in self.nl_flags and not self.congested:
                self.congested = True  # netlink_overrun: told once, then dropped until the queue is read empty
                self.set_err(E.ENOBUFS)
            return False
        truesize = dgram_truesize(len(data))
        self.rmem += truesize
        addr = SOCKADDR_NL.pack(AF_NETLINK, 0, sender & 0xFFFFFFFF, (1 << (group - 1)) if group else 0)
        self.enqueue(Skb(bytes(data), None, truesize, cred=cred, addr=addr))
        return True

    def start_dump(self, records, done: bytes) -> None:
        """netlink_dump: the records in skbs of at most the dump size, then `done` alone;
        the first skb now, the rest as the reader takes them."""
        limit = max(NLMSG_GOODSIZE, self.max_recvmsg_len)
        skbs, cur = [], b""
        for rec in records:
            if cur and len(cur) + len(rec) > limit:
                skbs.append(cur)
                cur = b""
            cur += rec
        if cur:
            skbs.append(cur)
        skbs.append(done)
        self.dump = deque(skbs)
        self.continue_dump()

    def continue_dump(self) -> None:
        """The next skb of a running dump, while the queue is under half the buffer (a
        dump waits for its reader: it never overruns)."""
        if self.dump and self.rmem <= self.rcvbuf // 2 and not self.congested:
            self.deliver(self.dump.popleft())

    def take(self, size: int, peek: bool, sink):
        """One skb into sink: (bytes copied, its length, the sender's credentials and
        sockaddr_nl), or None when the queue is empty. Taking one lets a dump go on."""
        if size > self.max_recvmsg_len:
            self.max_recvmsg_len = min(size, MAX_RECVMSG_LEN)
        got = self.dgram_take(size, peek, sink)
        if not self.queue:
            self.congested = False  # netlink_rcv_wake
        if got is None:
            return None
        self.continue_dump()
        n, whole, _, cred, addr = got
        return n, whole, cred, addr

    def dgram_take(self, size: int, peek: bool, sink):
        if self.queue and not peek:
            skb = self.queue[0]
            try:
                return super().dgram_take(size, peek, sink)
            finally:
                self.rmem -= skb.truesize  # read before _uncharge zeroes it (no owner: it stays)
                skb.truesize = 0
        return super().dgram_take(size, peek, sink)

    def poll_readiness(self) -> int:
        """datagram_poll: readable with a queued skb, always writable (the kernel takes a
        request at once), POLLERR with a pending error."""
        mask = POLLOUT | POLLWRNORM | POLLWRBAND
        if self.err:
            mask |= POLLERR
        if self.queue:
            mask |= POLLIN | POLLRDNORM
        return mask

    # --- closing -------------------------------------------------------------------------------
    def release(self, embryo: bool) -> None:
        self.dead = True
        self.table.remove(self)
        self.dump.clear()
        self.queue.clear()
        self.rmem = 0
        self._changed()

    # --- the data path (sentry/net/transfer.py hands a NetlinkSocket here) ---------------------
    def recvmsg(self, t, sink, size: int, flags: int):
        """netlink_recvmsg: one skb (transfer.recv's result: bytes, msg_flags, files,
        credentials, the sender's sockaddr_nl); a pending error (ENOBUFS) first."""
        from sentry.net import transfer
        if flags & MSG_OOB:
            raise Errno(E.EOPNOTSUPP)
        err = self.pop_err()
        if err:
            raise Errno(err)
        got = self.take(size, bool(flags & MSG_PEEK), sink)
        if got is None:
            if flags & MSG_DONTWAIT or self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise transfer.wait(t, transfer.progress(t, self, "recv", self.rcvtimeo), (self.rq,))
        n, whole, cred, addr = got  # (SO_PASSCRED shows the credentials, as netlink's scm_recv)
        return (whole if flags & MSG_TRUNC else n), (MSG_TRUNC if n < whole else 0), None, cred, addr

    # netlink_sendmsg decodes its destination on the ABI side, which registers it here
    # (syscalls/netlink.py): (task, socket, get, length, flags, destination) -> bytes sent
    sendmsg = staticmethod(lambda t, sock, get, length, flags, dest: length)

    def unicast(self, t, data: bytes, portid: int, group: int, nonblock: bool) -> None:
        """netlink_unicast / netlink_broadcast: to the group's members, then to the kernel
        (port 0: the protocol's kernel side answers now) or the socket bound to portid
        (ECONNREFUSED if none, a wait or EAGAIN while its buffer is full)."""
        if group:
            for other in list(self.table.bound.get(self.protocol, {}).values()):
                if other is not self and not other.dead and group in other.groups:
                    other.deliver(data, self.portid, group, False, _cred(t))
        if portid == 0:
            if self.protocol == NETLINK_KOBJECT_UEVENT:
                return  # the kernel takes it and answers nothing (no uevent is injected)
            if self.protocol != NETLINK_ROUTE:
                if group:
                    return
                raise Errno(E.ECONNREFUSED)  # NETLINK_USERSOCK has no kernel side
            from sentry.net import rtnetlink
            rtnetlink.receive(t, self, self.lb, data)
            return
        other = self.table.lookup(self.protocol, portid)
        if other is None or (other.dst[0] and other.dst[0] != self.portid):
            raise Errno(E.ECONNREFUSED)
        if not other.deliver(data, self.portid, 0, False, _cred(t)):
            if nonblock:
                raise Errno(E.EAGAIN)
            from sentry.net import transfer
            raise transfer.wait(t, transfer.progress(t, self, "send", self.sndtimeo), (other.peer_wait,))

    # --- the read/write/ioctl of an ordinary file descriptor ----------------------------------
    def read(self, size: int) -> bytes:
        if size == 0:
            return b""
        sink = _Collect()
        self.recvmsg(self.kernel.current, sink, size, 0)
        return bytes(sink.buf)

    def write(self, data) -> int:
        return self.sendmsg(self.kernel.current, self, lambda off, k: bytes(data[off:off + k]), len(data), 0, None)

    def unread(self, data: bytes) -> None:
        pass  # a message that could not be copied is lost, as Linux loses it

    def ioctl(self, task, request: int, arg: int) -> int:
        """No ioctls of its own (no FIONREAD): the interface requests every socket answers."""
        if self.interface_ioctl(task, request, arg):
            return 0
        raise Errno(E.ENOTTY)
