"""POSIX message queues (Linux's ipc/mqueue.c): the files of an IPC namespace's
own mqueue filesystem.

Each namespace has one `MqueueFS` whose root directory (01777, root's) holds the
queues by name; mq_open finds or makes one there and opens it. A queue keeps its
messages by priority (highest first, in order within one), within mq_maxmsg
messages of at most mq_msgsize bytes. As on Linux a sender that finds a receiver
waiting hands it the message (pipelined: no notification), and a receiver that
frees a slot moves the first waiting sender's message in, so waiters are served
in the order they came. A blocked call waits in the loop (ETIMEDOUT at its
CLOCK_REALTIME deadline, -ERESTARTSYS when a signal comes). mq_notify registers one
process per queue (SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD: its cookie written to the
netlink socket it named, NOTIFY_WOKENUP, or NOTIFY_REMOVED when it unregisters), told when a message arrives in an
empty queue that no one waits on, then unregistered; its end, or its closing the
queue, unregisters it too (Linux: its closing any descriptor of the queue; here the
last descriptor of that open queue). An open queue reads as its
status line and is pollable (sentry/poll.py): POLLIN with messages, POLLOUT with
room.

The bytes a user's queues may hold (RLIMIT_MSGQUEUE) are counted per namespace and
uid: Linux counts them per user across namespaces.
"""
import errno as E
import stat as S
import time

from sentry import caps
from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs import perm as vperm
from sentry.vfs.file import O_ACCMODE, File
from sentry.vfs.inode import FileSystem, Inode

MQUEUE_MAGIC = 0x19800202
FILENT_SIZE = 80
MQ_PRIO_MAX = 32768
HARD_MSGMAX, HARD_MSGSIZEMAX = 65536, 16 * 1024 * 1024
MIN_MSGMAX, MIN_MSGSIZEMAX = 1, 128
MSG_MSG_SIZE, TREE_NODE_SIZE = 48, 48  # sizeof(struct msg_msg), sizeof(posix_msg_tree_node)
ULONG_MAX = (1 << 64) - 1
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD = 0, 1, 2
NOTIFY_NONE, NOTIFY_WOKENUP, NOTIFY_REMOVED = 0, 1, 2  # a SIGEV_THREAD cookie's last byte
SI_MESGQ = -3
CAP_SYS_RESOURCE = 24
RLIMIT_MSGQUEUE = 12
POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM = 0x1, 0x4, 0x40, 0x100
O_NONBLOCK = 0o4000


class MqueueFS(FileSystem):
    """One per IPC namespace (its mq_mnt)."""

    def __init__(self, ns):
        super().__init__("mqueue", magic=MQUEUE_MAGIC)
        self.ns = ns
        self.root = MqueueDir(self)


class MqueueDir(Inode):
    """The root: queues by name; O_CREAT through a mount of it makes one with the
    default attributes."""
    __slots__ = ("children",)

    def __init__(self, fs):
        super().__init__(S.S_IFDIR | S.S_ISVTX | 0o777, fs)
        self.nlink = 2
        self.children: dict[bytes, "MqueueInode"] = {}

    @property
    def size(self) -> int:
        return 0

    def lookup(self, name):
        return self.children.get(name)

    def create(self, name, mode):
        if name in self.children:
            raise Errno(E.EEXIST)
        return self.make(None, name, S.S_IFREG | mode & 0o7777, None)

    def make(self, task, name: bytes, mode: int, attr):
        """mqueue_create_attr: a new queue; ENOSPC past queues_max (unless
        CAP_SYS_RESOURCE), EINVAL or EOVERFLOW for bad attributes, EMFILE past the
        user's RLIMIT_MSGQUEUE."""
        ns = self.fs.ns
        privileged = task is None or caps.has(task, CAP_SYS_RESOURCE)
        if ns.mq_queues_count >= ns.mq_queues_max and not privileged:
            raise Errno(E.ENOSPC)
        maxmsg = min(ns.mq_msg_max, ns.mq_msg_default)
        msgsize = min(ns.mq_msgsize_max, ns.mq_msgsize_default)
        if attr is not None:
            maxmsg, msgsize = attr
        if maxmsg <= 0 or msgsize <= 0:
            raise Errno(E.EINVAL)
        if privileged:
            if maxmsg > HARD_MSGMAX or msgsize > HARD_MSGSIZEMAX:
                raise Errno(E.EINVAL)
        elif maxmsg > ns.mq_msg_max or msgsize > ns.mq_msgsize_max:
            raise Errno(E.EINVAL)
        if msgsize > ULONG_MAX // maxmsg:
            raise Errno(E.EOVERFLOW)
        charge = maxmsg * msgsize + maxmsg * MSG_MSG_SIZE + min(maxmsg, MQ_PRIO_MAX) * TREE_NODE_SIZE
        if charge > ULONG_MAX:
            raise Errno(E.EOVERFLOW)
        uid = task.uid if task is not None else 0
        if task is not None:
            used = ns.mq_user_bytes.get(uid, 0) + charge
            if used > task.rlimits[RLIMIT_MSGQUEUE][0]:
                raise Errno(E.EMFILE)
        inode = MqueueInode(self.fs, mode, maxmsg, msgsize, uid, charge)
        if task is not None:
            inode.uid, inode.gid = task.fsuid, task.fsgid
        ns.mq_user_bytes[uid] = ns.mq_user_bytes.get(uid, 0) + charge
        ns.mq_queues_count += 1
        self.children[name] = inode
        self.touch()
        return inode

    def unlink(self, name):
        inode = self.children.pop(name, None)
        if inode is None:
            raise Errno(E.ENOENT)
        inode.nlink = 0
        inode.ctime = time.time_ns()
        self.touch()
        inode.maybe_gone()

    def entries(self):
        return [(name, i.ino, S.S_IFREG) for name, i in self.children.items()]

    def mkdir(self, name, mode):
        raise Errno(E.EPERM)

    def symlink(self, name, target):
        raise Errno(E.EPERM)

    def mknod(self, name, mode):
        raise Errno(E.EPERM)

    def link(self, name, inode):
        raise Errno(E.EPERM)

    def rmdir(self, name):
        raise Errno(E.ENOTDIR if name in self.children else E.ENOENT)


class Waiter:
    """A blocked mq_timedsend (with its message) or mq_timedreceive."""
    __slots__ = ("task", "wait", "message", "done")

    def __init__(self, task, message=None):
        self.task, self.message = task, message
        self.wait = None
        self.done = False

    def waiting(self) -> bool:
        return self.wait is not None and self.task.blocked is self.wait

    def finish(self, message=None) -> None:
        self.done = True
        self.message = message
        self.task.kernel.wake(self.task)


class MqueueInode(Inode):
    """mqueue_inode_info: a queue."""
    __slots__ = ("maxmsg", "msgsize", "messages", "qsize", "notify", "senders", "receivers",
                 "changed", "events", "opens", "owner_uid", "charge")

    def __init__(self, fs, mode: int, maxmsg: int, msgsize: int, owner_uid: int, charge: int):
        super().__init__(S.S_IFREG | mode & 0o7777, fs)
        self.maxmsg, self.msgsize = maxmsg, msgsize
        self.messages: list[tuple[int, bytes]] = []  # (priority, bytes), highest priority first
        self.qsize = 0
        self.notify = None  # (process, sigev_notify, signo, value) of the registered process
        self.senders: list[Waiter] = []
        self.receivers: list[Waiter] = []
        self.changed = WaitQueue()  # pollers: any change of the queue
        self.events = 0
        self.opens = 0
        self.owner_uid, self.charge = owner_uid, charge

    @property
    def size(self) -> int:
        return FILENT_SIZE

    @property
    def curmsgs(self) -> int:
        return len(self.messages)

    def open(self, flags, path):
        return MqueueFile(self, flags, path)

    def truncate(self, length: int) -> None:
        pass  # O_TRUNC of a queue through a mount changes nothing

    def maybe_gone(self) -> None:
        """mqueue_evict_inode: unlinked and closed by all, it stops counting."""
        if self.nlink == 0 and self.opens == 0 and self.charge:
            ns = self.fs.ns
            ns.mq_queues_count -= 1
            ns.mq_user_bytes[self.owner_uid] = ns.mq_user_bytes.get(self.owner_uid, 0) - self.charge
            self.charge = 0

    def status(self) -> bytes:
        owner = self._owner()
        how = self.notify[1] if owner is not None else 0
        signo = self.notify[2] if owner is not None and how == SIGEV_SIGNAL else 0
        return b"QSIZE:%-10d NOTIFY:%-5d SIGNO:%-5d NOTIFY_PID:%-6d\n" % (
            self.qsize, how, signo, owner.pid if owner is not None else 0)

    def _owner(self):
        """The registered process, while it lives (its end unregisters it)."""
        if self.notify is None:
            return None
        proc = self.notify[0]
        if proc.zombie or proc.exiting or proc.kernel.procs.get(proc.pid) is not proc:
            self.notify = None
            return None
        return proc

    def _changed(self) -> None:
        self.events += 1
        self.changed.notify()
        self.mtime = self.ctime = self.atime = time.time_ns()

    def _insert(self, prio: int, data: bytes) -> None:
        msgs = self.messages
        i = len(msgs)
        while i > 0 and msgs[i - 1][0] < prio:
            i -= 1
        msgs.insert(i, (prio, data))
        self.qsize += len(data)

    @staticmethod
    def _first(waiters):
        while waiters:
            w = waiters.pop(0)
            if w.waiting():
                return w
        return None

    # --- the calls ----------------------------------------------------------------------
    def send(self, task, data: bytes, prio: int, nonblock: bool, deadline) -> int:
        """do_mq_timedsend once the message is read."""
        state = task.restart_state
        if isinstance(state, Waiter) and state.done:
            task.restart_state = None
            return 0
        if self.curmsgs >= self.maxmsg:
            if nonblock:
                raise Errno(E.EAGAIN)
            w = Waiter(task, (prio, data))
            w.wait = Wait(queues=(WaitQueue(),), deadline=deadline, timeout_result=-E.ETIMEDOUT)
            self.senders.append(w)
            task.restart_state = w
            raise w.wait
        receiver = self._first(self.receivers)
        if receiver is not None:
            receiver.finish((prio, data))
        else:
            self._insert(prio, data)
            self._notify(task)
        self._changed()
        return 0

    def receive(self, task, nonblock: bool, deadline):
        """do_mq_timedreceive: (priority, bytes) of the oldest message of the highest
        priority."""
        state = task.restart_state
        if isinstance(state, Waiter) and state.done:
            task.restart_state = None
            return state.message
        if not self.messages:
            if nonblock:
                raise Errno(E.EAGAIN)
            w = Waiter(task)
            w.wait = Wait(queues=(WaitQueue(),), deadline=deadline, timeout_result=-E.ETIMEDOUT)
            self.receivers.append(w)
            task.restart_state = w
            raise w.wait
        prio, data = self.messages.pop(0)
        self.qsize -= len(data)
        sender = self._first(self.senders)
        if sender is not None:  # pipelined_receive: its message takes the free slot
            self._insert(*sender.message)
            sender.finish()
        self._changed()
        return prio, data

    def _notify(self, sender) -> None:
        """__do_notify: a message arrived in an empty queue that no one waited on."""
        owner = self._owner()
        if owner is None or self.curmsgs != 1:
            return
        _, how, signo, value = self.notify
        self.notify = None
        if how == SIGEV_SIGNAL and signo:
            from sentry import signals
            signals.send_process(owner, signo, signals.SigInfo(signo, SI_MESGQ, pid=sender.tgid,
                                                               uid=sender.uid, value=value))
        elif how == SIGEV_THREAD:
            _cookie(value, NOTIFY_WOKENUP)

    def set_notify(self, task, how, signo=0, value=0) -> None:
        """mq_notify: register the caller's process (EBUSY if another is), or with how None
        unregister it if it is the one registered."""
        owner = self._owner()
        if how is None:
            if owner is task.proc:
                self.remove_notification()
        elif owner is not None:
            raise Errno(E.EBUSY)
        else:
            self.notify = (task.proc, how, signo, value)
        self.atime = self.ctime = time.time_ns()

    def remove_notification(self) -> None:
        """The registration ends unused: a SIGEV_THREAD one tells its socket so (glibc's
        helper thread then frees what the cookie points to)."""
        if self.notify is not None and self.notify[1] == SIGEV_THREAD:
            _cookie(self.notify[3], NOTIFY_REMOVED)
        self.notify = None

    def readiness(self) -> int:
        mask = POLLIN | POLLRDNORM if self.messages else 0
        if self.curmsgs < self.maxmsg:
            mask |= POLLOUT | POLLWRNORM
        return mask


def _cookie(target, code: int) -> None:
    """SIGEV_THREAD: the registration's (netlink socket, 32-byte cookie) gets the cookie
    with its last byte set to `code`, from the kernel (netlink_sendskb)."""
    sock, cookie = target
    sock.deliver(cookie[:-1] + bytes((code,)))


class MqueueFile(File):
    """An open queue (a message queue descriptor): reads as its status line."""
    announces_changes = True

    def __init__(self, inode: MqueueInode, flags: int, path: str):
        super().__init__(inode, flags, path)
        self.offset = 0
        inode.opens += 1

    @property
    def events(self) -> int:
        return self.inode.events

    def read(self, size: int) -> bytes:
        data = self.inode.status()[self.offset:self.offset + size]
        self.offset += len(data)
        self.inode.atime = time.time_ns()
        return data

    def pread(self, size: int, offset: int) -> bytes:
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.inode.status()[offset:offset + size]

    def unread(self, data) -> None:
        self.offset -= len(data)

    def seek(self, offset: int, whence: int) -> int:
        pos = {0: offset, 1: self.offset + offset, 2: FILENT_SIZE + offset}.get(whence)
        if pos is None or pos < 0:
            raise Errno(E.EINVAL)
        self.offset = pos
        return pos

    def poll_readiness(self) -> int:
        return self.inode.readiness()

    def poll_wakers(self, events: int):
        return (self.inode.changed,)

    def close(self) -> None:
        inode = self.inode
        owner = inode._owner()
        if owner is not None:  # mqueue_flush_file: the registered process closing it unregisters
            closer = owner.kernel.current
            if closer is not None and closer.proc is owner:
                inode.remove_notification()
        inode.opens -= 1
        inode.maybe_gone()


# --- names ---------------------------------------------------------------------------------------
def check_name(name: bytes) -> None:
    """lookup_one_len's rules for a queue's name (glibc has taken its leading '/')."""
    if not name or name in (b".", b"..") or b"/" in name:
        raise Errno(E.EACCES)
    if len(name) > 255:
        raise Errno(E.ENAMETOOLONG)


def open_queue(task, name: bytes, oflag: int, mode: int, attr):
    """do_mq_open: the open file of the queue name (made with O_CREAT)."""
    root = task.ipc_ns.mqueue.root
    check_name(name)
    inode = root.children.get(name)
    if inode is None:
        if not oflag & 0o100:  # O_CREAT
            raise Errno(E.ENOENT)
        vperm.may_create(task, root)
        inode = root.make(task, name, S.S_IFREG | mode & ~task.umask & 0o7777, attr)
    else:
        if oflag & 0o300 == 0o300:  # O_CREAT | O_EXCL
            raise Errno(E.EEXIST)
        acc = oflag & O_ACCMODE
        if acc == 3:
            raise Errno(E.EINVAL)
        vperm.permission(task, inode, (vperm.MAY_READ, vperm.MAY_WRITE, vperm.MAY_READ | vperm.MAY_WRITE)[acc])
    return MqueueFile(inode, oflag & ~0o300, "/" + name.decode(errors="surrogateescape"))


def unlink_queue(task, name: bytes) -> None:
    """mq_unlink: vfs_unlink's rules in the sticky root."""
    root = task.ipc_ns.mqueue.root
    check_name(name)
    inode = root.children.get(name)
    if inode is None:
        raise Errno(E.ENOENT)
    vperm.may_delete(task, root, inode, False)
    root.unlink(name)
