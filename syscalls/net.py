"""Sockets: AF_UNIX, the sandbox's own (sentry/net/unix.py): socketpair and
socket with bind/listen/connect/accept on abstract names or socket files of the
sandbox's VFS; send/recv and their msg/mmsg forms with iovecs and SCM_RIGHTS /
SCM_CREDENTIALS; shutdown; the SOL_SOCKET options. This is the ABI side:
it decodes the calls' structures and hands one receive or send to the
sockets' data path (sentry/net/transfer.py), which read(2), write(2) and
ioctl(2) reach through the socket's File methods.

AF_INET/AF_INET6 sockets (the sandbox's loopback, sentry/net/inet.py) take
the same paths, with what differs in syscalls/inet.py; AF_NETLINK sockets
(sentry/net/netlink.py) have theirs in syscalls/netlink.py. AF_PACKET is EPERM;
every other address family answers EAFNOSUPPORT; the host network is never
touched.

A call that cannot go on waits as the data path says (Progress and wait there:
the deadline of SO_RCVTIMEO/SO_SNDTIMEO, -ERESTARTSYS or EINTR on a signal)."""
import errno as E
import stat as S
import struct

from sentry.errors import Errno
from sentry.net.inet import InetSocket
from sentry.net.netlink import AF_NETLINK, NetlinkSocket
from sentry.net.transfer import (IovSink, IovSource, Progress, dgram_disconnected, drop_all, progress, recv,
                                 send as send_data, wait)
from sentry.net.unix import (AF_UNIX, AF_UNSPEC, CLOSE, ESTABLISHED, LISTEN, RCV_SHUTDOWN, RMEM_MAX, SCM_MAX_FD,
                             SOCK_DGRAM, SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM,
                             SOMAXCONN, UNNAMED, WMEM_MAX, UnixSocket, autobind, find_other, names, validate_addr)
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK, O_PATH, O_RDWR
from syscalls import inet, netlink
from syscalls.abi import MAX_RW_COUNT, read_iovec, s32
from syscalls.registry import PARTIAL, syscall

AT_FDCWD = -100
SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_TYPE_MASK, SOCK_MAX = O_NONBLOCK, O_CLOEXEC, 0xF, 11
AF_INET, AF_INET6, AF_PACKET, AF_MAX = 2, 10, 17, 46
PF_UNIX = 1
INT_MAX = 0x7FFFFFFF
UIO_MAXIOV = 1024
SOCKADDR_STORAGE = 128
OPTMEM_MAX = 131072

MSG_CTRUNC, MSG_DONTWAIT, MSG_WAITFORONE, MSG_CMSG_CLOEXEC = 0x8, 0x40, 0x10000, 0x40000000

SOL_SOCKET = 1
SCM_RIGHTS, SCM_CREDENTIALS = 1, 2
SO_DEBUG, SO_REUSEADDR, SO_TYPE, SO_ERROR, SO_DONTROUTE, SO_BROADCAST = 1, 2, 3, 4, 5, 6
SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK, SO_PRIORITY = 7, 8, 9, 10, 11, 12
SO_LINGER, SO_BSDCOMPAT, SO_REUSEPORT, SO_PASSCRED, SO_PEERCRED, SO_RCVLOWAT = 13, 14, 15, 16, 17, 18
SO_SNDLOWAT, SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD, SO_TIMESTAMP, SO_ACCEPTCONN = 19, 20, 21, 29, 30
SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_PASSSEC, SO_PROTOCOL, SO_DOMAIN = 32, 33, 34, 38, 39
SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW = 66, 67
# options kept as given (booleans as 0/1) and read back by getsockopt
BOOL_OPTIONS = {SO_DEBUG, SO_REUSEADDR, SO_DONTROUTE, SO_BROADCAST, SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK,
                SO_REUSEPORT, SO_TIMESTAMP, SO_PASSSEC}
INT_OPTIONS = {SO_PRIORITY}

PROT_WRITE = 2

_MSGHDR = struct.Struct("<Qi4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_CMSGHDR = struct.Struct("<QiI")        # len, level, type
MMSGHDR = 64
CMSG_HDR = _CMSGHDR.size


def _cmsg_align(n: int) -> int:
    return (n + 7) & ~7


# --- helpers ---------------------------------------------------------------------------------
def sock_of(t, fd) -> UnixSocket:
    fd = s32(fd)
    f = t.held(fd) if t.held_files is not None else None  # a call that waited goes on with its file
    if f is None:
        f = t.fds.get(fd)
    if getattr(f, "flags", 0) & O_PATH:
        raise Errno(E.EBADF)  # fdget never finds an O_PATH file
    if not isinstance(f, UnixSocket):
        raise Errno(E.ENOTSOCK)
    t.using = (fd, f, t.syscall_args)  # this call's socket: held should it wait (Kernel._park)
    return f


def _peercred(t):
    """SO_PEERCRED's (pid, euid, egid) of the task connecting, listening or pairing."""
    return (t.tgid, t.euid, t.egid)


def _addr_in(t, addr: int, addrlen: int):
    """move_addr_to_kernel: the sockaddr bytes (None for a zero length)."""
    n = s32(addrlen)
    if n < 0 or n > SOCKADDR_STORAGE:
        raise Errno(E.EINVAL)
    if n == 0:
        return None
    return t.mm.read(addr, n)


def _addr_out(t, kaddr: bytes, uaddr: int, ulen_ptr: int) -> None:
    """move_addr_to_user: copy what fits, then the full length into *ulen_ptr."""
    n = s32(t.mm.read_u32(ulen_ptr))
    n = min(n, len(kaddr))
    if n < 0:
        raise Errno(E.EINVAL)
    if n:
        t.mm.write(uaddr, kaddr[:n])
    t.mm.write_u32(ulen_ptr, len(kaddr))


# --- control messages --------------------------------------------------------------------------
def _scm_send(t, control: int, controllen: int):
    """__scm_send: the files of SCM_RIGHTS and the credentials of SCM_CREDENTIALS."""
    files, cred = [], None
    if not controllen:
        return files, cred
    if controllen >= OPTMEM_MAX:
        raise Errno(E.ENOBUFS)
    buf = t.mm.read(control, controllen)
    pos = 0
    while pos + CMSG_HDR <= controllen:
        clen, level, typ = _CMSGHDR.unpack_from(buf, pos)
        if clen < CMSG_HDR or clen > controllen - pos:
            raise Errno(E.EINVAL)
        if level == SOL_SOCKET:
            if typ == SCM_RIGHTS:
                num = (clen - CMSG_HDR) // 4
                if num > 0:
                    if len(files) + num > SCM_MAX_FD:
                        raise Errno(E.EINVAL)
                    for (fd,) in struct.iter_unpack("<i", buf[pos + CMSG_HDR:pos + CMSG_HDR + 4 * num]):
                        files.append(t.fds.get(fd))
            elif typ == SCM_CREDENTIALS:
                if clen != CMSG_HDR + 12:
                    raise Errno(E.EINVAL)
                pid, uid, gid = struct.unpack_from("<iII", buf, pos + CMSG_HDR)
                if uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
                    raise Errno(E.EINVAL)
                root = t.euid == 0
                if not ((pid == t.tgid or root) and (uid in (t.uid, t.euid) or root)
                        and (gid in (t.gid, t.egid) or root)):
                    raise Errno(E.EPERM)
                cred = (pid, uid, gid)
            else:
                raise Errno(E.EINVAL)
        pos += _cmsg_align(clen)
    return files, cred


class _CmsgOut:
    """The receiver's control buffer, filled as put_cmsg and scm_detach_fds fill it."""
    __slots__ = ("t", "pos", "left", "size", "flags")

    def __init__(self, t, control: int, controllen: int):
        self.t, self.pos, self.left, self.size, self.flags = t, control, controllen, controllen, 0

    def used(self) -> int:
        return self.size - self.left

    def put(self, level: int, typ: int, data: bytes) -> None:
        if self.left < CMSG_HDR:
            self.flags |= MSG_CTRUNC
            return
        cmlen = CMSG_HDR + len(data)
        if self.left < cmlen:
            self.flags |= MSG_CTRUNC
            cmlen = self.left
        self.t.mm.write(self.pos, (_CMSGHDR.pack(cmlen, level, typ) + data)[:cmlen])
        step = min(_cmsg_align(CMSG_HDR + len(data)), self.left)
        self.pos += step
        self.left -= step

    def put_fds(self, files, cloexec: bool) -> None:
        """scm_detach_fds: as many descriptors as the buffer holds (and the program can
        be written), installed in the receiver's table; MSG_CTRUNC for the rest."""
        fdmax = 0 if self.left <= CMSG_HDR else (self.left - CMSG_HDR) // 4
        fdmax = min(fdmax, len(files))
        if fdmax:
            room = self.t.mm.writable_prefix(self.pos, CMSG_HDR + 4 * fdmax)
            fdmax = max(0, min(fdmax, (room - CMSG_HDR) // 4))
        got = []
        for f in files[:fdmax]:
            try:
                got.append(self.t.fds.install(f, cloexec))
            except Errno:
                break  # EMFILE: the rest are dropped
        if got:
            cmlen = CMSG_HDR + 4 * len(got)
            self.t.mm.write(self.pos, _CMSGHDR.pack(cmlen, SOL_SOCKET, SCM_RIGHTS) + struct.pack(f"<{len(got)}i", *got))
            step = min(_cmsg_align(cmlen), self.left)
            self.pos += step
            self.left -= step
        if len(got) < len(files) or (files and fdmax <= 0):
            self.flags |= MSG_CTRUNC
        drop_all(files)  # each installed file holds its descriptor now; the in-flight references go


def _scm_recv(t, sock: UnixSocket, out, fds, cred, flags: int) -> None:
    if out is None:
        if sock.passcred or fds:
            out_flags = MSG_CTRUNC
        else:
            out_flags = 0
        drop_all(fds)
        return out_flags
    if sock.passcred:
        pid, uid, gid = cred if cred is not None else (0, 65534, 65534)
        out.put(SOL_SOCKET, SCM_CREDENTIALS, struct.pack("<iII", pid, uid, gid))
    if fds:
        out.put_fds(fds, bool(flags & MSG_CMSG_CLOEXEC))
    return out.flags


# --- the calls ---------------------------------------------------------------------------------
def _new_type(family: int, type_: int, protocol: int):
    """__sock_create's checks, in Linux's order: (kind, SOCK_NONBLOCK|SOCK_CLOEXEC bits)."""
    if (type_ & ~SOCK_TYPE_MASK) & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise Errno(E.EINVAL)
    kind = type_ & SOCK_TYPE_MASK
    if family < 0 or family >= AF_MAX:
        raise Errno(E.EAFNOSUPPORT)
    if kind >= SOCK_MAX:
        raise Errno(E.EINVAL)
    return kind, type_ & (SOCK_CLOEXEC | SOCK_NONBLOCK)


def _unix_kind(kind: int, protocol: int) -> int:
    if protocol and protocol != PF_UNIX:
        raise Errno(E.EPROTONOSUPPORT)
    if kind == SOCK_RAW:
        return SOCK_DGRAM
    if kind not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        raise Errno(E.ESOCKTNOSUPPORT)
    return kind


@syscall("socket", status=PARTIAL, note="AF_UNIX (stream, dgram, seqpacket) and AF_INET/AF_INET6 TCP and UDP over "
         "the sandbox's own loopback (SOCK_NONBLOCK, SOCK_CLOEXEC); raw sockets and AF_PACKET EPERM (no CAP_NET_RAW, "
         "as an unprivileged container), ping sockets EACCES; AF_NETLINK: NETLINK_ROUTE (lo's links, addresses and "
         "routes, lo up/down and MTU with CAP_NET_ADMIN), NETLINK_USERSOCK, NETLINK_KOBJECT_UEVENT (no uevent ever "
         "comes), other netlink protocols EPROTONOSUPPORT (a kernel without them: audit, generic, netfilter, "
         "sock_diag, xfrm, ...); other "
         "families EAFNOSUPPORT; the host network is never used")
def socket(t, family, type_, protocol):
    family, type_, protocol = s32(family), s32(type_), s32(protocol)
    kind, flags = _new_type(family, type_, protocol)
    if family in (AF_INET, AF_INET6):
        sock = inet.create(t, family, kind, protocol, flags)
        return t.fds.install(sock, cloexec=bool(flags & SOCK_CLOEXEC))
    if family == AF_NETLINK:
        return t.fds.install(netlink.create(t, kind, protocol, flags), cloexec=bool(flags & SOCK_CLOEXEC))
    if family == AF_PACKET:
        raise Errno(E.EPERM)  # no CAP_NET_RAW in the sandbox's network
    if family != AF_UNIX:
        raise Errno(E.EAFNOSUPPORT)
    sock = UnixSocket(t.kernel, _unix_kind(kind, protocol), flags, t)
    return t.fds.install(sock, cloexec=bool(flags & SOCK_CLOEXEC))


@syscall("socketpair", status=PARTIAL, note="AF_UNIX stream, dgram and seqpacket pairs with SOCK_NONBLOCK/CLOEXEC; "
         "AF_INET/AF_INET6 EOPNOTSUPP (as Linux), other families EAFNOSUPPORT")
def socketpair(t, family, type_, protocol, sv):
    family, type_, protocol = s32(family), s32(type_), s32(protocol)
    kind, flags = _new_type(family, type_, protocol)
    if family in (AF_INET, AF_INET6):
        inet.create(t, family, kind, protocol, flags).close()  # the protocol's errors come first
        raise Errno(E.EOPNOTSUPP)  # Linux makes the two sockets, then inet has no socketpair
    if family == AF_NETLINK:
        netlink.create(t, kind, protocol, flags).close()
        raise Errno(E.EOPNOTSUPP)  # as inet: no socketpair
    if family != AF_UNIX:
        raise Errno(E.EAFNOSUPPORT)
    kind = _unix_kind(kind, protocol)
    t.mm.check(sv, 8, PROT_WRITE)
    a = UnixSocket(t.kernel, kind, flags, t)
    b = UnixSocket(t.kernel, kind, flags, t)
    a.peer, b.peer = b, a
    a.state = b.state = ESTABLISHED
    a.peercred = b.peercred = _peercred(t)
    cloexec = bool(flags & SOCK_CLOEXEC)
    fa = t.fds.install(a, cloexec)
    try:
        fb = t.fds.install(b, cloexec)
    except Errno:
        t.fds.close(fa)
        raise
    t.mm.write(sv, struct.pack("<ii", fa, fb))
    return 0


@syscall("bind", status=PARTIAL, note="AF_UNIX: abstract names, socket files made in the sandbox's VFS (EADDRINUSE "
         "if the name exists), autobind for a bare family; inet: 127.0.0.0/8, ::1, the wildcards and v4-mapped "
         "addresses (others EADDRNOTAVAIL), ephemeral ports, SO_REUSEADDR/SO_REUSEPORT, IPV6_V6ONLY, TIME_WAIT; "
         "netlink: a port id (EADDRINUSE) or an automatic one, multicast groups")
def bind(t, fd, addr, addrlen):
    sock = sock_of(t, fd)
    raw = _addr_in(t, addr, addrlen)
    if isinstance(sock, InetSocket):
        return inet.bind(t, sock, raw)
    if isinstance(sock, NetlinkSocket):
        return netlink.bind(t, sock, raw)
    if raw is not None and len(raw) == 2 and int.from_bytes(raw, "little") == AF_UNIX:
        autobind(t, sock)
        return 0
    validate_addr(raw)
    ns = names(t.kernel)
    if raw[2] != 0:
        path = raw[2:].split(b"\0", 1)[0]
        try:
            t.vfs.mknod(t, AT_FDCWD, path, S.S_IFSOCK | 0o777)
        except Errno as e:
            raise Errno(E.EADDRINUSE if e.errno == E.EEXIST else e.errno) from None
        if sock.addr is not None:
            t.vfs.unlink(t, AT_FDCWD, path, False)
            raise Errno(E.EINVAL)
        st = t.vfs.lookup(t, AT_FDCWD, path, False).stat()
        key = (st.dev, st.ino)
        ns.files[key] = sock
        sock.addr, sock.file_key = UNNAMED + path + b"\0", key
        return 0
    if sock.addr is not None:
        raise Errno(E.EINVAL)
    key = (sock.type, bytes(raw))
    if key in ns.abstract and not ns.abstract[key].dead:
        raise Errno(E.EADDRINUSE)
    ns.abstract[key] = sock
    sock.addr = bytes(raw)
    return 0


@syscall("listen")
def listen(t, fd, backlog):
    sock = sock_of(t, fd)
    backlog = s32(backlog)
    if backlog & 0xFFFFFFFF > SOMAXCONN:
        backlog = SOMAXCONN
    if isinstance(sock, InetSocket):
        return inet.listen(t, sock, backlog)
    if sock.type not in (SOCK_STREAM, SOCK_SEQPACKET):
        raise Errno(E.EOPNOTSUPP)
    if sock.addr is None or sock.state not in (CLOSE, LISTEN):
        raise Errno(E.EINVAL)
    if backlog > sock.backlog:
        sock.peer_wait.notify()
    sock.backlog = backlog
    sock.state = LISTEN
    sock.peercred = _peercred(t)
    sock._changed()
    return 0


@syscall("connect", status=PARTIAL, note="AF_UNIX: stream/seqpacket to a listener (waits while its backlog is full, "
         "EAGAIN non-blocking), dgram peers and AF_UNSPEC disconnect; a connection completes at once (no EINPROGRESS); "
         "inet: the loopback only (elsewhere ENETUNREACH), ECONNREFUSED, non-blocking EINPROGRESS then SO_ERROR, "
         "SYN_SENT while the accept queue is full; netlink: the default destination (port, group)")
def connect(t, fd, addr, addrlen):
    sock = sock_of(t, fd)
    raw = _addr_in(t, addr, addrlen)
    if isinstance(sock, InetSocket):
        rs = t.restart_state
        waited = rs if rs.__class__ is Progress and rs.sock is sock and rs.kind == "connect" else None
        return inet.connect(t, sock, raw, waited,
                            lambda queues: wait(t, progress(t, sock, "connect", sock.sndtimeo), queues))
    if isinstance(sock, NetlinkSocket):
        return netlink.connect(t, sock, raw)
    if sock.type == SOCK_DGRAM:
        if raw is None or len(raw) < 2:
            raise Errno(E.EINVAL)
        other = None
        if int.from_bytes(raw[:2], "little") != AF_UNSPEC:
            validate_addr(raw)
            if sock.passcred and sock.addr is None:
                autobind(t, sock)
            other = find_other(t, SOCK_DGRAM, raw)
            if other.peer is not None and other.peer is not sock:
                raise Errno(E.EPERM)
            sock.state = other.state = ESTABLISHED
        old = sock.peer
        sock.peer = other
        if old is not None:
            if other is None:
                sock.state = CLOSE
            sock._changed()
            if other is not old:
                dgram_disconnected(sock, old)
                if old.peer is None:
                    old.state = CLOSE
        return 0
    validate_addr(raw)
    if sock.passcred and sock.addr is None:
        autobind(t, sock)
    other = find_other(t, sock.type, raw)
    if other.state != LISTEN or other.shutdown & RCV_SHUTDOWN:
        raise Errno(E.ECONNREFUSED)
    if other.recvq_full():
        if sock.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise wait(t, progress(t, sock, "connect", sock.sndtimeo), (other.peer_wait,))
    if sock.state != CLOSE:
        raise Errno(E.EISCONN if sock.state == ESTABLISHED else E.EINVAL)
    embryo = UnixSocket(t.kernel, sock.type, 0, t)
    embryo.orphan = True  # not accepted yet: what reaches it carries credentials, as Linux's
    embryo.peer, embryo.state = sock, ESTABLISHED
    embryo.peercred = _peercred(t)
    embryo.addr = other.addr
    embryo.listener = other
    sock.peercred = other.peercred
    sock.peer, sock.state = embryo, ESTABLISHED
    sock._changed()
    from sentry.net.unix import Skb
    other.enqueue(Skb(b"", embryo=embryo))
    return 0


def _accept(t, fd, addr, addrlen, flags):
    flags = s32(flags)
    if flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK):
        raise Errno(E.EINVAL)
    sock = sock_of(t, fd)
    lowest = 0
    while lowest in t.fds.files:
        lowest += 1
    if lowest >= t.fds.limit:
        raise Errno(E.EMFILE)
    if isinstance(sock, InetSocket):
        new, peer_addr = inet.accept(t, sock, flags, lambda queues: wait(
            t, progress(t, sock, "accept", sock.rcvtimeo), queues))
        if addr:
            try:
                _addr_out(t, peer_addr, addr, addrlen)
            except Errno:
                new.close()
                raise
        return t.fds.install(new, cloexec=bool(flags & SOCK_CLOEXEC))
    if sock.type not in (SOCK_STREAM, SOCK_SEQPACKET):
        raise Errno(E.EOPNOTSUPP)
    if sock.state != LISTEN:
        raise Errno(E.EINVAL)
    if not sock.queue:
        err = sock.pop_err()
        if err:
            raise Errno(err)
        if sock.shutdown & RCV_SHUTDOWN:
            raise Errno(E.EINVAL)
        if sock.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise wait(t, progress(t, sock, "accept", sock.rcvtimeo), (sock.rq,))
    skb = sock.queue.popleft()
    sock._relay_room()
    new = skb.embryo
    new.orphan = False
    new.flags = O_RDWR | (flags & SOCK_NONBLOCK)
    if addr:
        peer = new.peer
        try:
            _addr_out(t, (peer.addr if peer is not None and peer.addr else UNNAMED), addr, addrlen)
        except Errno:
            new.close()
            raise
    return t.fds.install(new, cloexec=bool(flags & SOCK_CLOEXEC))


@syscall("accept4", status=PARTIAL, note="AF_UNIX stream/seqpacket and TCP listeners; SOCK_NONBLOCK, SOCK_CLOEXEC")
def accept4(t, fd, addr, addrlen, flags):
    return _accept(t, fd, addr, addrlen, flags)


@syscall("accept", status=PARTIAL, note="as accept4")
def accept(t, fd, addr, addrlen):
    return _accept(t, fd, addr, addrlen, 0)


@syscall("getsockname", status=PARTIAL, note="AF_UNIX: the bound name, or the family alone; inet: sockaddr_in/in6; "
         "netlink: sockaddr_nl (port id, groups)")
def getsockname(t, fd, addr, addrlen):
    sock = sock_of(t, fd)
    if isinstance(sock, InetSocket):
        _addr_out(t, inet.sockname(sock), addr, addrlen)
        return 0
    if isinstance(sock, NetlinkSocket):
        _addr_out(t, netlink.sockname(sock), addr, addrlen)
        return 0
    _addr_out(t, sock.addr or UNNAMED, addr, addrlen)
    return 0


@syscall("getpeername", status=PARTIAL, note="AF_UNIX: the peer's bound name, or the family alone; ENOTCONN")
def getpeername(t, fd, addr, addrlen):
    sock = sock_of(t, fd)
    if isinstance(sock, InetSocket):
        _addr_out(t, inet.peername(sock), addr, addrlen)
        return 0
    if isinstance(sock, NetlinkSocket):
        _addr_out(t, netlink.peername(sock), addr, addrlen)
        return 0
    peer = sock.peer
    if peer is None:
        raise Errno(E.ENOTCONN)
    _addr_out(t, peer.addr or UNNAMED, addr, addrlen)
    return 0


@syscall("shutdown", status=PARTIAL, note="AF_UNIX: SHUT_RD/WR/RDWR; a stream or seqpacket peer sees the mirror "
         "image (end of input, EPIPE)")
def shutdown(t, fd, how):
    sock = sock_of(t, fd)
    if isinstance(sock, NetlinkSocket):
        raise Errno(E.EOPNOTSUPP)  # sock_no_shutdown
    how = s32(how)
    if how < 0 or how > 2:
        raise Errno(E.EINVAL)
    if isinstance(sock, InetSocket):
        return inet.shutdown(sock, how)
    sock.shut(how)
    return 0


@syscall("sendto", status=PARTIAL, note="AF_UNIX; MSG_DONTWAIT, MSG_NOSIGNAL (else SIGPIPE on a stream's EPIPE), "
         "MSG_EOR/MORE ignored, MSG_OOB EOPNOTSUPP; a destination for datagrams; SO_SNDTIMEO; netlink: requests "
         "to the kernel answered at once (NETLINK_ROUTE), other ports and groups")
def sendto(t, fd, buf, length, flags, addr, addrlen):
    sock = sock_of(t, fd)
    length = min(length, INT_MAX)
    dest = _addr_in(t, addr, addrlen) if addr else None
    src = IovSource(t.mm, [(buf, length)])
    return send_data(t, sock, src.get, length, s32(flags), (), None, dest)


@syscall("recvfrom", status=PARTIAL, note="AF_UNIX; MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL, MSG_TRUNC; the sender's "
         "name; SO_RCVTIMEO; MSG_OOB: EINVAL (streams) / EOPNOTSUPP; netlink: one skb, MSG_TRUNC its length")
def recvfrom(t, fd, buf, length, flags, addr, addrlen):
    sock = sock_of(t, fd)
    size = min(length, INT_MAX)
    n, _, fds, _, from_addr = recv(t, sock, IovSink(t.mm, [(buf, size)]), size, s32(flags))
    drop_all(fds)
    if addr:
        _addr_out(t, from_addr or b"", addr, addrlen)
    return n


def _read_msghdr(t, msg: int):
    name, namelen, iov_addr, iovlen, control, controllen, _ = _MSGHDR.unpack(t.mm.read(msg, _MSGHDR.size))
    if not name:
        namelen = 0
    if namelen < 0:
        raise Errno(E.EINVAL)
    namelen = min(namelen, SOCKADDR_STORAGE)
    if iovlen > UIO_MAXIOV:
        raise Errno(E.EMSGSIZE)
    iov = read_iovec(t.mm, iov_addr, iovlen)
    return name, namelen, iov, control, controllen


def _sendmsg(t, sock: UnixSocket, msg: int, flags: int) -> int:
    name, namelen, iov, control, controllen = _read_msghdr(t, msg)
    dest = t.mm.read(name, namelen) if namelen else None
    if controllen > INT_MAX:
        raise Errno(E.ENOBUFS)
    files, cred = _scm_send(t, control, controllen)
    length = min(sum(n for _, n in iov), MAX_RW_COUNT)
    src = IovSource(t.mm, iov)
    return send_data(t, sock, src.get, length, flags, files, cred, dest)


@syscall("sendmsg", status=PARTIAL, note="as sendto, with iovecs; SCM_RIGHTS passes the sandbox's open files, "
         "SCM_CREDENTIALS checked as Linux (no ESRCH check of the pid)")
def sendmsg(t, fd, msg, flags):
    return _sendmsg(t, sock_of(t, fd), msg, s32(flags))


def _recvmsg(t, sock: UnixSocket, msg: int, flags: int) -> int:
    name, namelen, iov, control, controllen = _read_msghdr(t, msg)
    size = min(sum(n for _, n in iov), MAX_RW_COUNT)
    n, mflags, fds, cred, from_addr = recv(t, sock, IovSink(t.mm, iov), size, flags)
    out = _CmsgOut(t, control, controllen) if control else None
    mflags |= _scm_recv(t, sock, out, fds, cred, flags)
    if name:
        _addr_out(t, from_addr or b"", name, msg + 8)
    t.mm.write_u32(msg + 48, mflags | (flags & MSG_CMSG_CLOEXEC))
    t.mm.write_u64(msg + 40, out.used() if out is not None else 0)
    return n


@syscall("recvmsg", status=PARTIAL, note="as recvfrom, with iovecs; SCM_RIGHTS installs the passed files "
         "(MSG_CMSG_CLOEXEC; MSG_CTRUNC when they do not fit), SCM_CREDENTIALS with SO_PASSCRED")
def recvmsg(t, fd, msg, flags):
    return _recvmsg(t, sock_of(t, fd), msg, s32(flags))


@syscall("sendmmsg", status=PARTIAL, note="sendmsg for each message; a message after the first that would wait "
         "ends the call with the count sent so far")
def sendmmsg(t, fd, msgvec, vlen, flags):
    sock = sock_of(t, fd)
    flags = s32(flags)
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    done = 0
    while done < vlen:
        entry = msgvec + done * MMSGHDR
        try:
            n = _sendmsg(t, sock, entry, flags if done == 0 else flags | MSG_DONTWAIT)
        except Errno:
            if done:
                return done
            raise
        t.mm.write_u32(entry + 56, n)
        done += 1
    return done


@syscall("recvmmsg", status=PARTIAL, note="recvmsg for each message; only the first may wait (MSG_WAITFORONE's "
         "behaviour whatever the flags); the timeout is checked, not used")
def recvmmsg(t, fd, msgvec, vlen, flags, timeout):
    sock = sock_of(t, fd)
    flags = s32(flags)
    if timeout:
        sec, nsec = struct.unpack("<qq", t.mm.read(timeout, 16))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
    vlen = min(vlen & 0xFFFFFFFF, UIO_MAXIOV)
    done = 0
    while done < vlen:
        entry = msgvec + done * MMSGHDR
        try:
            n = _recvmsg(t, sock, entry, (flags & ~MSG_WAITFORONE) | (MSG_DONTWAIT if done else 0))
        except Errno:
            if done:
                return done
            raise
        t.mm.write_u32(entry + 56, n)
        done += 1
    return done


# --- options -------------------------------------------------------------------------------------
def _timeval_ns(t, optval: int, optlen: int) -> int:
    if optlen < 16:
        raise Errno(E.EINVAL)
    sec, usec = struct.unpack("<qq", t.mm.read(optval, 16))
    if usec < 0 or usec >= 1_000_000:
        raise Errno(E.EDOM)
    if sec < 0:
        return 0
    return sec * 1_000_000_000 + usec * 1000


@syscall("getsockopt", status=PARTIAL, note="SOL_SOCKET: SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ERROR, SO_SNDBUF, "
         "SO_RCVBUF, SO_PEERCRED, SO_PASSCRED, SO_ACCEPTCONN, SO_RCVLOWAT, SO_SNDLOWAT, SO_RCVTIMEO/SNDTIMEO, "
         "SO_LINGER and the plain flags; others ENOPROTOOPT; other levels EOPNOTSUPP; SOL_NETLINK's flags and "
         "NETLINK_LIST_MEMBERSHIPS")
def getsockopt(t, fd, level, optname, optval, optlen):
    sock = sock_of(t, fd)
    level, optname = s32(level), s32(optname)
    if isinstance(sock, NetlinkSocket) and netlink.getsockopt(t, sock, level, optname, optval, optlen):
        return 0
    n = s32(t.mm.read_u32(optlen))
    if isinstance(sock, InetSocket):
        data, small = inet.getsockopt(t, sock, level, optname)
        if data is not None:
            if n < 0:
                raise Errno(E.EINVAL)
            if small and 0 < n < 4 and 0 <= struct.unpack("<i", data)[0] <= 255:
                data = data[:1]  # ip_getsockopt gives a small value as one byte
            n = min(n, len(data))
            if n:
                t.mm.write(optval, data[:n])
            t.mm.write_u32(optlen, n)
            return 0
    if level != SOL_SOCKET:
        raise Errno(E.EOPNOTSUPP)
    if n < 0:
        raise Errno(E.EINVAL)
    value = None
    if optname == SO_TYPE:
        value = sock.type
    elif optname == SO_PROTOCOL:
        value = 0
    elif optname == SO_DOMAIN:
        value = AF_UNIX
    elif optname == SO_ERROR:
        value = sock.pop_err()
    elif optname == SO_SNDBUF:
        value = sock.sndbuf
    elif optname == SO_RCVBUF:
        value = sock.rcvbuf
    elif optname == SO_ACCEPTCONN:
        value = int(sock.state == LISTEN)
    elif optname == SO_PASSCRED:
        value = int(sock.passcred)
    elif optname == SO_RCVLOWAT:
        value = sock.rcvlowat
    elif optname == SO_SNDLOWAT:
        value = 1
    elif optname in BOOL_OPTIONS or optname in INT_OPTIONS:
        value = sock.options.get(optname, 0)
    elif optname == SO_BSDCOMPAT:
        value = 0
    if value is not None:
        data = struct.pack("<i", value)
    elif optname == SO_PEERCRED:
        pid, uid, gid = sock.peercred if sock.peercred is not None else (0, 0xFFFFFFFF, 0xFFFFFFFF)
        data = struct.pack("<iII", pid, uid, gid)
    elif optname == SO_LINGER:
        data = struct.pack("<ii", *sock.linger)
    elif optname in (SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW):
        ns = sock.rcvtimeo if optname in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW) else sock.sndtimeo
        data = struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000 // 1000)
    else:
        raise Errno(E.ENOPROTOOPT)
    n = min(n, len(data))
    if n:
        t.mm.write(optval, data[:n])
    t.mm.write_u32(optlen, n)
    return 0


@syscall("setsockopt", status=PARTIAL, note="SOL_SOCKET: SO_SNDBUF/RCVBUF(FORCE) (doubled, Linux's bounds), "
         "SO_PASSCRED, SO_RCVLOWAT, SO_RCVTIMEO/SNDTIMEO, SO_LINGER and the plain flags (kept, no effect); "
         "others ENOPROTOOPT; other levels EOPNOTSUPP; SOL_NETLINK: NETLINK_ADD/DROP_MEMBERSHIP (joined, nothing "
         "is announced), NETLINK_EXT_ACK, GET_STRICT_CHK, CAP_ACK, NO_ENOBUFS and the other flags")
def setsockopt(t, fd, level, optname, optval, optlen):
    sock = sock_of(t, fd)
    level, optname, optlen = s32(level), s32(optname), s32(optlen)
    if isinstance(sock, InetSocket) and inet.setsockopt(t, sock, level, optname, optval, optlen):
        return 0
    if isinstance(sock, NetlinkSocket) and netlink.setsockopt(t, sock, level, optname, optval, optlen):
        return 0
    if level != SOL_SOCKET:
        raise Errno(E.EOPNOTSUPP)
    if optlen < 4:
        raise Errno(E.EINVAL)
    if optname in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
        sock.rcvtimeo = _timeval_ns(t, optval, optlen)
        return 0
    if optname in (SO_SNDTIMEO_OLD, SO_SNDTIMEO_NEW):
        sock.sndtimeo = _timeval_ns(t, optval, optlen)
        return 0
    if optname == SO_LINGER:
        if optlen < 8:
            raise Errno(E.EINVAL)
        onoff, secs = struct.unpack("<ii", t.mm.read(optval, 8))
        sock.linger = (1 if onoff else 0, secs if onoff else sock.linger[1])
        return 0
    val = s32(t.mm.read_u32(optval))
    if optname in (SO_SNDBUFFORCE, SO_RCVBUFFORCE) and t.euid != 0:
        raise Errno(E.EPERM)  # CAP_NET_ADMIN
    if optname in (SO_SNDBUF, SO_SNDBUFFORCE):
        v = val & 0xFFFFFFFF
        v = min(v, WMEM_MAX) if optname == SO_SNDBUF else max(val, 0)
        sock.sndbuf = max(min(v, INT_MAX // 2) * 2, SOCK_MIN_SNDBUF)
        if sock.writable_now():
            sock.events += 1
            sock.wq.notify()
    elif optname in (SO_RCVBUF, SO_RCVBUFFORCE):
        v = val & 0xFFFFFFFF
        v = min(v, RMEM_MAX) if optname == SO_RCVBUF else max(val, 0)
        sock.rcvbuf = max(min(v, INT_MAX // 2) * 2, SOCK_MIN_RCVBUF)
    elif optname == SO_PASSCRED:
        sock.passcred = bool(val)
    elif optname == SO_RCVLOWAT:
        sock.rcvlowat = (INT_MAX if val < 0 else val) or 1
    elif optname in BOOL_OPTIONS:
        sock.options[optname] = int(bool(val))
    elif optname in INT_OPTIONS:
        sock.options[optname] = val
    else:
        raise Errno(E.ENOPROTOOPT)
    return 0
