"""AF_UNIX sockets (unix(7)), kept as Linux's net/unix/af_unix.c keeps them.

A UnixSocket is the open file and the socket at once. Each has a receive queue
of Skbs (a message, or for a stream a piece of one write; a listener's queue
holds connection requests); a sender is charged each Skb's `truesize` in its
`wmem` until the receiver consumes it, and may queue another only while `wmem`
is below its `sndbuf`: Linux's flow control, with Linux's skb sizes (a stream
write is cut into pieces of at most sndbuf/2 - 64 and 36544 bytes; a piece's
truesize is its head's kmalloc size plus its page fragments plus the sk_buff),
so how much a non-blocking write takes and when POLLOUT comes back
((wmem + 1) * 4 <= sndbuf) match Linux's.

Streams: a read takes bytes across pieces, returns 0 once the peer has gone or
shut down writing and the queue is empty, and ECONNRESET once if the peer
closed with data unread. A write with no reader left is EPIPE (the caller sends
SIGPIPE, for streams only). Datagrams and seqpackets keep message boundaries: a
short read truncates (MSG_TRUNC), the rest of the message is dropped.

Waiting: `rq` is notified when something arrives or the state changes, `wq`
when the socket may write again, `peer_wait` when a datagram leaves a queue
that was full (senders connected one-way wait there) or a connection request is
accepted; a sender that found such a queue full is also told through its own
`wq` (Linux's peer_wake relay), so rq and wq announce every rise of a socket's
readiness (`announces_changes`, for sentry/epoll.py). The syscall layer
(syscalls/net.py) turns "nothing now" into a Wait or EAGAIN. Readiness for
poll/select/epoll is `poll_readiness()`, Linux's unix_poll and unix_dgram_poll.

Names: abstract ones and socket files live in a table per kernel (`names()`);
a socket file is a VFS inode made by bind (mknod S_IFSOCK) and found again by
(dev, ino), so connect walks the sandbox's own view. Passed descriptors
(SCM_RIGHTS) are the sandbox's open files, each holding one reference while in
flight. Not done: the garbage collector of in-flight descriptor cycles (a socket
sent over itself and closed stays allocated until the sandbox ends),
MSG_OOB, SO_PEEK_OFF."""
import errno as E
import itertools
import stat as S
import weakref
from collections import deque

from sentry.errors import Errno
from sentry.sched import WaitQueue
from sentry.vfs import perm
from sentry.vfs.file import O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode

AF_UNSPEC, AF_UNIX = 0, 1
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK = 1, 2, 3
CLOSE, ESTABLISHED, LISTEN = 7, 1, 10  # Linux's TCP_* state numbers

POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
POLLRDNORM, POLLWRNORM, POLLWRBAND, POLLRDHUP = 0x40, 0x100, 0x200, 0x2000

# A fresh Linux network namespace's figures (net.core.*, net.unix.*)
WMEM_DEFAULT = RMEM_DEFAULT = 212992
WMEM_MAX = RMEM_MAX = 212992
SOCK_MIN_SNDBUF, SOCK_MIN_RCVBUF = 4608, 2304
MAX_DGRAM_QLEN = 10
SOMAXCONN = 4096
SCM_MAX_FD = 253
AT_FDCWD = -100
SUN_LEN_MAX = 110  # sizeof(struct sockaddr_un)
FIONREAD, TIOCOUTQ = 0x541B, 0x5411  # SIOCINQ, SIOCOUTQ

# skb sizes (x86-64 and aarch64 with 4 KiB pages, 64-byte cache lines)
PAGE = 4096
SHINFO = 320                      # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
SKB_STRUCT = 256                  # SKB_DATA_ALIGN(sizeof(struct sk_buff))
SKB_SMALL_HEAD = 512              # the small-head cache
SKB_MAX_HEAD0 = PAGE - SHINFO     # 3776: SKB_MAX_HEAD(0)
UNIX_SKB_FRAGS_SZ = 32768
STREAM_PIECE = SKB_MAX_HEAD0 + UNIX_SKB_FRAGS_SZ  # 36544
SKB_MAX_ALLOC = (PAGE << 3) - SHINFO              # 32448
MAX_SKB_FRAGS = 17


def _page_align(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _head_truesize(n: int) -> int:
    """truesize of an skb whose linear part holds n bytes: its kmalloc'ed head + the sk_buff."""
    need = ((n + 63) & ~63) + SHINFO
    if need <= SKB_SMALL_HEAD:
        size = SKB_SMALL_HEAD
    elif need <= 8192:
        size = 1 << (need - 1).bit_length()          # kmalloc-1k .. 8k
    else:
        size = PAGE << ((need + PAGE - 1) // PAGE - 1).bit_length()  # kmalloc_large: page order
    return size + SKB_STRUCT


def _frags_truesize(n: int, max_order: int = 3) -> int:
    """The pages alloc_skb_with_frags takes for n bytes of fragments."""
    total = 0
    while n > 0:
        order, aligned = max_order, _page_align(n)
        while order and aligned < (PAGE << order):
            order -= 1
        total += PAGE << order
        n -= min(n, PAGE << order)
    return total


def stream_piece(left: int, sndbuf: int) -> tuple[int, int]:
    """(bytes, truesize) of the next skb of a stream write with `left` bytes to go."""
    size = min(left, (sndbuf >> 1) - 64, STREAM_PIECE)
    truesize = _PIECE_TRUESIZE.get(size)
    if truesize is None:
        data_len = min(size, _page_align(max(0, size - SKB_MAX_HEAD0)))
        truesize = _head_truesize(size - data_len) + _frags_truesize(data_len)
        if len(_PIECE_TRUESIZE) < 4096:
            _PIECE_TRUESIZE[size] = truesize
    return size, truesize


_PIECE_TRUESIZE: dict[int, int] = {}  # a piece's truesize by its size (every write reckons it)


def stream_plan(left: int, sndbuf: int):
    """The pieces a stream write of `left` bytes makes when the send buffer has room for
    them all: ((end offset, truesize) each, their truesize together, the truesize before
    the last), reckoned once per (left, sndbuf): a 64 KiB write loop asks it every time."""
    plan = _STREAM_PLANS.get((left, sndbuf))
    if plan is None:
        pieces, sent, charged, before_last = [], 0, 0, 0
        while sent < left:
            size, truesize = stream_piece(left - sent, sndbuf)
            sent += size
            before_last, charged = charged, charged + truesize
            pieces.append((sent, truesize))
        plan = (tuple(pieces), charged, before_last)
        if len(_STREAM_PLANS) < 4096:
            _STREAM_PLANS[(left, sndbuf)] = plan
    return plan


_STREAM_PLANS: dict[tuple[int, int], tuple] = {}


def dgram_truesize(n: int) -> int:
    data_len = 0
    if n > SKB_MAX_ALLOC:
        data_len = _page_align(min(n - SKB_MAX_ALLOC, MAX_SKB_FRAGS * PAGE))
    return _head_truesize(n - data_len) + _frags_truesize(data_len)


# --- passed descriptors ------------------------------------------------------------------
def hold_file(f) -> None:
    """One more reference to an open file that is in flight (SCM_RIGHTS)."""
    f.fd_refs = getattr(f, "fd_refs", 0) + 1


def drop_file(f) -> None:
    """An in-flight reference goes; the last reference closes the file (as FDTable does)."""
    f.fd_refs -= 1
    if f.fd_refs <= 0:
        if getattr(f, "lock_table", None) is not None:
            f.lock_table.release_file(f)
        f.close()


class Skb:
    """One queued message or stream piece. `used` counts what a stream reader has
    consumed; `owner` is the socket charged `truesize`; `fds` the passed files
    (one reference each), `cred` (pid, uid, gid) when credentials travel; `addr`
    the sender's address; `embryo` the server-side socket of a connection request.

    One stream write's consecutive pieces share one Skb (one buffer, no copy per
    piece): `pieces` then lists each piece's (end offset, truesize) still charged,
    and each is uncharged when the reader has consumed it, as Linux frees its skb."""
    __slots__ = ("data", "used", "fds", "cred", "owner", "truesize", "addr", "embryo", "pieces")

    def __init__(self, data, owner=None, truesize=0, fds=None, cred=None, addr=None, embryo=None, pieces=None):
        self.data, self.used, self.fds, self.cred = data, 0, fds, cred
        self.owner, self.truesize, self.addr, self.embryo = owner, truesize, addr, embryo
        self.pieces = pieces

    def __len__(self):
        return len(self.data) - self.used


class Names:
    """A sandbox's bound names: abstract (by type and address bytes) and socket files
    (by the inode's (dev, ino))."""

    def __init__(self):
        self.abstract: dict[tuple[int, bytes], "UnixSocket"] = {}
        self.files: dict[tuple[int, int], "UnixSocket"] = {}
        self.autobind = itertools.count(0)


_NAMES = weakref.WeakKeyDictionary()


def names(kernel) -> Names:
    n = _NAMES.get(kernel)
    if n is None:
        n = _NAMES[kernel] = Names()
    return n


UNNAMED = AF_UNIX.to_bytes(2, "little")


def validate_addr(raw) -> None:
    if raw is None or len(raw) <= 2 or len(raw) > SUN_LEN_MAX or int.from_bytes(raw[:2], "little") != AF_UNIX:
        raise Errno(E.EINVAL)


def find_other(t, type_: int, raw: bytes) -> "UnixSocket":
    """unix_find_other: the socket bound to a socket file (walked in the sandbox's view)
    or to an abstract name."""
    ns = names(t.kernel)
    if raw[2] != 0:
        path = raw[2:].split(b"\0", 1)[0]
        inode = t.vfs.lookup(t, AT_FDCWD, path, True)
        perm.permission(t, inode, perm.MAY_WRITE)  # connecting writes to the socket file
        st = inode.stat()
        if not S.S_ISSOCK(st.mode):
            raise Errno(E.ECONNREFUSED)
        other = ns.files.get((st.dev, st.ino))
        if other is None or other.dead:
            raise Errno(E.ECONNREFUSED)
        if other.type != type_:
            raise Errno(E.EPROTOTYPE)
        return other
    other = ns.abstract.get((type_, bytes(raw)))
    if other is None or other.dead:
        raise Errno(E.ECONNREFUSED)
    return other


def autobind(t, sock: "UnixSocket") -> None:
    """An abstract name of five hex digits, as Linux's unix_autobind."""
    if sock.addr is not None:
        return
    ns = names(t.kernel)
    for _ in range(0x100000):
        raw = UNNAMED + b"\0" + b"%05x" % (next(ns.autobind) & 0xFFFFF)
        if (sock.type, raw) not in ns.abstract:
            ns.abstract[(sock.type, raw)] = sock
            sock.addr = raw
            return
    raise Errno(E.ENOSPC)


def _cred_of(task):
    """(pid, uid, gid) as Linux's SO_PEERCRED and SCM_CREDENTIALS give them."""
    if task is None:
        return None
    return (task.tgid, task.euid, task.egid)


class UnixSocket(File):
    waits_for_room = False  # set per instance for streams: write(2) then goes through pipe_write
    inet = False  # an AF_INET/AF_INET6 socket (sentry/net/inet.py), where the data path differs
    announces_changes = True  # rq/wq are notified whenever its readiness may have risen (sentry/epoll.py)
    atime_on_read = False  # sock_read_iter, unlike pipe_read, never calls file_accessed

    def __init__(self, kernel, type_: int, flags: int = 0, task=None):
        uid, gid = (task.euid, task.egid) if task is not None else (0, 0)
        inode = Inode(S.S_IFSOCK | 0o777, uid=uid, gid=gid)
        super().__init__(inode, O_RDWR | (flags & O_NONBLOCK), f"socket:[{inode.ino}]")
        self.kernel = kernel
        self.type = type_
        self.waits_for_room = type_ == SOCK_STREAM
        self.sigpipe = type_ == SOCK_STREAM  # Linux's EPIPE comes with SIGPIPE only for streams
        self.state = CLOSE
        self.peer = None
        self.queue: deque[Skb] = deque()
        self.inq = 0                 # stream bytes queued and not consumed
        self.wmem = 0                # truesize of what this socket sent and is still queued
        self.sndbuf, self.rcvbuf = WMEM_DEFAULT, RMEM_DEFAULT
        self.shutdown = 0
        self.err = 0
        self.dead = False
        self.addr = None             # bound address: sockaddr_un bytes as getsockname gives them
        self.file_key = None         # (dev, ino) of the socket file it is bound to
        self.peercred = None         # (pid, uid, gid)
        self.passcred = False
        self.rcvtimeo = self.sndtimeo = 0  # ns; 0 waits forever
        self.rcvlowat = 1
        self.backlog = MAX_DGRAM_QLEN  # sk_max_ack_backlog: listen's backlog, a datagram queue's length
        self.options: dict[int, int] = {}  # boolean and integer options kept for getsockopt
        self.linger = (0, 0)
        self.rq = WaitQueue()        # readers, accepters, pollers for input
        self.wq = WaitQueue()        # writers waiting for their own room
        self.peer_wait = WaitQueue()  # senders and connecters waiting for room in this queue
        self.peer_wakers = None      # senders that found this queue full (Linux's peer_wake relay)
        self.events = 0              # changes edge-triggered epoll hears
        self.orphan = False          # a connection's server side until accept() takes it
        self.listener = None

    # --- state changes ---------------------------------------------------------------------
    def _changed(self) -> None:
        self.events += 1
        self.rq.notify()
        self.wq.notify()

    def writable_now(self) -> bool:
        return self.state != LISTEN and (self.wmem + 1) * 4 <= self.sndbuf

    def recvq_full(self) -> bool:
        return len(self.queue) > self.backlog

    def full_for(self, sender) -> bool:
        """A datagram sender connected one-way finds this queue full: it is told (its wq
        notified) when a message leaves the queue."""
        if len(self.queue) > self.backlog and not self.dead:
            if self.peer_wakers is None:
                self.peer_wakers = set()
            self.peer_wakers.add(sender)
            return True
        return False

    def _relay_room(self) -> None:
        self.peer_wait.notify()
        wakers, self.peer_wakers = self.peer_wakers, None
        for s in wakers or ():
            s.events += 1
            s.wq.notify()

    def _uncharge(self, skb: Skb) -> None:
        """The skb left a queue: its sender's room comes back, its passed files go."""
        owner = skb.owner
        if owner is not None and skb.truesize:
            owner.wmem -= skb.truesize
            skb.truesize = 0
            if owner.writable_now():
                owner.events += 1
                owner.wq.notify()
        if skb.fds:
            fds, skb.fds = skb.fds, None
            for f in fds:
                drop_file(f)

    def _consumed_pieces(self, skb: Skb) -> None:
        """A reader consumed part of a multi-piece Skb: the pieces wholly read are
        uncharged from their sender (its room comes back, as each skb's free)."""
        pieces, used, freed = skb.pieces, skb.used, 0
        while pieces and pieces[0][0] <= used:
            freed += pieces.popleft()[1]
        owner = skb.owner
        if freed and owner is not None and skb.truesize:
            owner.wmem -= freed
            skb.truesize -= freed
            if owner.writable_now():
                owner.events += 1
                owner.wq.notify()

    def enqueue(self, skb: Skb) -> None:
        if skb.owner is not None:
            skb.owner.wmem += skb.truesize
        self.queue.append(skb)
        if self.type == SOCK_STREAM and skb.embryo is None:
            self.inq += len(skb.data)
        self.events += 1
        self.rq.notify()

    def pop_err(self) -> int:
        err, self.err = self.err, 0
        return err

    def set_err(self, err: int) -> None:
        self.err = err
        self._changed()

    # --- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        if not self.dead:
            self.release(embryo=False)

    def release(self, embryo: bool) -> None:
        """unix_release_sock: the socket dies; a connected stream or seqpacket peer sees
        both directions shut (and ECONNRESET when data or a connection was left unread)."""
        self.dead = True
        ns = names(self.kernel)
        if self.addr is not None:
            if self.file_key is not None:
                if ns.files.get(self.file_key) is self:
                    del ns.files[self.file_key]
            elif ns.abstract.get((self.type, self.addr)) is self:
                del ns.abstract[(self.type, self.addr)]
        self.shutdown = SHUTDOWN_MASK
        state, self.state = self.state, CLOSE
        peer, self.peer = self.peer, None
        self._relay_room()
        if peer is not None and self.type in (SOCK_STREAM, SOCK_SEQPACKET):
            peer.shutdown = SHUTDOWN_MASK
            if self.queue or embryo:
                peer.err = E.ECONNRESET
            peer._changed()
        while self.queue:
            skb = self.queue.popleft()
            if state == LISTEN and skb.embryo is not None:
                skb.embryo.release(embryo=True)
            self._uncharge(skb)
        self.inq = 0
        self._changed()

    def shut(self, how: int) -> None:
        """shutdown(2): SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2; a stream or seqpacket peer gets
        the mirror image (our SHUT_WR is its end of input)."""
        mode = how + 1
        self.shutdown |= mode
        self._changed()
        peer = self.peer
        if peer is not None and self.type in (SOCK_STREAM, SOCK_SEQPACKET):
            peer_mode = (SEND_SHUTDOWN if mode & RCV_SHUTDOWN else 0) | (RCV_SHUTDOWN if mode & SEND_SHUTDOWN else 0)
            peer.shutdown |= peer_mode
            peer._changed()

    # --- readiness (sentry/poll.py) --------------------------------------------------------
    def poll_readiness(self) -> int:
        mask = 0
        shutdown = self.shutdown
        if self.err:
            mask |= POLLERR
        if shutdown == SHUTDOWN_MASK:
            mask |= POLLHUP
        if shutdown & RCV_SHUTDOWN:
            mask |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.queue:
            mask |= POLLIN | POLLRDNORM
        if self.type != SOCK_DGRAM and self.state == CLOSE:
            mask |= POLLHUP
        writable = self.writable_now()
        if writable and self.type != SOCK_STREAM:
            other = self.peer
            if other is not None and other.peer is not self and other.full_for(self):
                writable = False
        if writable:
            mask |= POLLOUT | POLLWRNORM | POLLWRBAND
        return mask

    def poll_wakers(self, events: int):
        return (self.rq, self.wq)

    # --- receiving ---------------------------------------------------------------------------
    def stream_take(self, size: int, peek: bool, sink, copied: int, target: int):
        """unix_stream_read_generic's pass over the queue: copy into sink (sink.room(n)
        says how much of n the program's buffers take, sink.put(bytes) copies).
        Returns (copied, fds, cred, addr, status): status None when done, "empty" when the
        queue ran dry before `target` (the caller looks at errors, EOF, waiting)."""
        if self.state != ESTABLISHED:
            raise Errno(E.EINVAL)
        fds = cred = addr = None
        check_creds = False
        queue = self.queue
        i = 0
        while True:
            if i >= len(queue):  # (a peek that copied something never waits for more)
                done = copied >= target or (peek and copied)
                return copied, fds, cred, addr, (None if done else "empty")
            skb = queue[i]
            if check_creds:
                if skb.cred != cred:
                    break
            elif self.passcred:
                cred, check_creds = skb.cred, True
            if addr is None:
                addr = skb.addr
            chunk = min(len(skb), size)
            room = sink.room(chunk)
            faulted = room < chunk
            if faulted:
                chunk = self._whole_pieces(skb, room)  # Linux copies skb by skb: those that fit go
                if not chunk:
                    if copied == 0:
                        raise Errno(E.EFAULT)
                    break
            sink.put(skb.data[skb.used:skb.used + chunk])
            copied += chunk
            size -= chunk
            if not peek:
                skb.used += chunk
                self.inq -= chunk
                if skb.fds:
                    fds, skb.fds = skb.fds, None
                if len(skb):
                    if skb.pieces:
                        self._consumed_pieces(skb)
                    break
                queue.popleft()
                self._uncharge(skb)
                if fds:
                    break
            else:
                if skb.fds:
                    fds = list(skb.fds)
                    for f in fds:
                        hold_file(f)
                    break
                i += 1
            if not size or faulted:
                break
        return copied, fds, cred, addr, None

    @staticmethod
    def _whole_pieces(skb: Skb, room: int) -> int:
        """How many of skb's bytes from `used` on end at a piece's end within room (the
        pieces of one write share an Skb; a copy that faults loses only the piece it hit)."""
        ok = 0
        for end, _ in skb.pieces or ():
            if end - skb.used > room:
                break
            if end > skb.used:
                ok = end - skb.used
        return ok

    def dgram_take(self, size: int, peek: bool, sink):
        """One message (or None if the queue is empty): (bytes copied, its full length,
        fds, cred, addr). A fault loses the message, as Linux's does."""
        if not self.queue:
            return None
        skb = self.queue[0] if peek else self.queue.popleft()
        whole = len(skb.data)
        n = min(size, whole)
        fault = sink.room(n) < n
        if not fault:
            sink.put(skb.data[:n])
        fds = None
        if peek:
            if skb.fds and not fault:
                fds = list(skb.fds)
                for f in fds:
                    hold_file(f)
        else:
            if not fault:
                fds, skb.fds = skb.fds, None
            self._uncharge(skb)
            self._relay_room()
        if fault:
            raise Errno(E.EFAULT)
        return n, whole, fds, skb.cred, skb.addr

    # --- sending -----------------------------------------------------------------------------
    def stream_check(self) -> "UnixSocket":
        """The peer a stream write goes to, or the errno it fails with (EPIPE: SIGPIPE too)."""
        other = self.peer
        if other is None:
            raise Errno(E.ENOTCONN)
        if self.shutdown & SEND_SHUTDOWN or other.dead or other.shutdown & RCV_SHUTDOWN:
            raise Errno(E.EPIPE)
        return other

    def stream_push(self, other, get, start: int, length: int, fds=None, cred=None) -> int:
        """Queue pieces of bytes [start, length) (get(offset, n) reads them) while this
        socket has room; the passed files go with the first piece. Returns bytes queued.
        The pieces Linux would make are reckoned first, then their bytes read at once and
        queued as one Skb (the first alone when it carries files: a reader stops there)."""
        sndbuf, room = self.sndbuf, self.sndbuf - self.wmem
        if room <= 0 or start >= length:
            return 0
        pieces, charged, before_last = stream_plan(length - start, sndbuf)
        if len(pieces) == 1:  # one piece holds it all (small writes: the usual case)
            other.enqueue(Skb(get(start, length - start), self, charged, fds, cred, self.addr))
            return length - start
        if before_last < room:  # every piece goes (the send buffer has room before each)
            sent = length
        else:
            sent, charged, fit = start, 0, []
            for end, truesize in pieces:
                if charged >= room:
                    break
                sent = start + end
                charged += truesize
                fit.append((end, truesize))
            pieces = fit
        try:
            data = get(start, sent - start)
        except Errno:
            return self._push_each(other, get, start, pieces, fds, cred)  # find where the fault lies
        if fds and len(pieces) > 1:
            end, truesize = pieces[0]
            other.enqueue(Skb(data[:end], self, truesize, fds, cred, self.addr))
            fds, charged, data = None, charged - truesize, data[end:]
            pieces = [(e - end, t) for e, t in pieces[1:]]
        other.enqueue(Skb(data, self, charged, fds, cred, self.addr, None,
                          deque(pieces) if len(pieces) > 1 else None))
        return sent - start

    def _push_each(self, other, get, start: int, pieces, fds, cred) -> int:
        """stream_push piece by piece, when the program's buffer faults part-way: the
        pieces before the fault go and are the result (EFAULT if none)."""
        done = 0
        for end, truesize in pieces:
            try:
                data = get(start + done, end - done)
            except Errno:
                if done:
                    break
                raise
            other.enqueue(Skb(data, self, truesize, fds, cred, self.addr))
            fds, done = None, end
        return done

    def stream_read(self, size: int):
        """read(2) of a connected stream with bytes queued: up to size bytes across
        the queue, taken at once (one whole Skb is handed over as it is, no copy).
        None when a piece carries files or credentials are asked for (stream_take's
        rules then); the caller checks the state first."""
        if self.passcred:
            return None
        queue = self.queue
        skb = queue[0]
        if skb.used == 0 and len(skb.data) <= size and (len(queue) == 1 or len(skb.data) == size) and not skb.fds:
            queue.popleft()  # one whole Skb is the answer (a round trip's message, a reader keeping up)
            self.inq -= len(skb.data)
            self._uncharge(skb)
            data = skb.data
            return data if data.__class__ is bytes else bytes(data)
        take, n = [], 0
        for skb in queue:
            if skb.fds:
                return None
            k = len(skb.data) - skb.used
            if k > size - n:
                k = size - n
            take.append(k)
            n += k
            if n == size:
                break
        parts = []
        for k in take:
            skb = queue[0]
            used = skb.used
            if used == 0 and k == len(skb.data):
                parts.append(skb.data)
                queue.popleft()
                self._uncharge(skb)
                continue
            parts.append(skb.data[used:used + k])
            skb.used = used + k
            if skb.used == len(skb.data):
                queue.popleft()
                self._uncharge(skb)
            elif skb.pieces:
                self._consumed_pieces(skb)
        self.inq -= n
        if len(parts) == 1:
            data = parts[0]
            return data if data.__class__ is bytes else bytes(data)
        return b"".join(parts)

    def dgram_push(self, other, data, fds=None, cred=None) -> None:
        other.enqueue(Skb(data, self, dgram_truesize(len(data)), fds, cred, self.addr))

    # --- the read/write/ioctl of an ordinary file descriptor ----------------------------------
    def read(self, size: int) -> bytes:
        return _transfer_read(self.kernel.current, self, size)

    def write(self, data) -> int:
        return _transfer_write(self.kernel.current, self, data)

    def unread(self, data: bytes) -> None:
        """A read's buffer faulted part-way: a stream keeps the rest at its head (a
        message's rest is lost, as Linux loses a datagram that could not be copied)."""
        if self.type == SOCK_STREAM and data:
            self.queue.appendleft(Skb(bytes(data)))
            self.inq += len(data)
            self.events += 1
            self.rq.notify()

    # dev_ioctl: the interface requests (SIOCGIF*) every socket answers, decoded by the ABI
    # side, which registers them here (syscalls/inet.py): (task, request, arg) -> handled
    interface_ioctl = staticmethod(lambda task, request, arg: False)

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            if self.state == LISTEN:
                raise Errno(E.EINVAL)
            if self.type == SOCK_STREAM:
                n = self.inq
            elif self.type == SOCK_SEQPACKET:
                n = sum(len(skb) for skb in self.queue)
            else:
                n = len(self.queue[0].data) if self.queue else 0
            task.mm.write_u32(arg, n)
            return 0
        if request == TIOCOUTQ:
            task.mm.write_u32(arg, self.wmem)
            return 0
        if self.interface_ioctl(task, request, arg):
            return 0
        raise Errno(E.ENOTTY)


from sentry.net import transfer  # noqa: E402 (the data path builds on this module: imported once it is whole)
_transfer_read, _transfer_write = transfer.read, transfer.write  # (bound once: every socket read and write)
