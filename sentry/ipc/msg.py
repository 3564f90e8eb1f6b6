"""System V message queues (Linux's ipc/msg.c), as sentry objects.

A queue holds (type, bytes) messages in order, within its msg_qbytes limit (the
bytes and, as Linux counts them, the number of messages). Waiting is the loop's:
a sender that does not fit parks on the queue's `senders` WaitQueue and tries
again when woken; a receiver that finds nothing parks as a `Receiver` and a
sender hands it a message that matches straight away (pipelined_send), so the
receiver that waited first gets it, as on Linux, whatever other task calls
msgrcv meanwhile. IPC_RMID wakes every waiter with EIDRM, IPC_SET makes the
receivers look again (their permission may be gone).
"""
import errno as E

from sentry import caps
from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc.ids import IPC_NOWAIT, IpcPerm, now
from sentry.ipc.namespace import MSGMNB, MSGMNI
from sentry.sched import Wait, WaitQueue

MSGSSZ = 16
MSGPOOL = MSGMNI * MSGMNB // 1024
MSGTQL = MSGMAP = MSGMNB
MSGSEG = min((MSGPOOL * 1024) // MSGSSZ, 0xFFFF)
MSG_NOERROR, MSG_EXCEPT, MSG_COPY = 0o10000, 0o20000, 0o40000
SEARCH_ANY, SEARCH_EQUAL, SEARCH_NOTEQUAL, SEARCH_LESSEQUAL, SEARCH_NUMBER = 1, 2, 3, 4, 5
LONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1
ERESTARTNOHAND = 514


class Message:
    __slots__ = ("type", "data")

    def __init__(self, mtype: int, data: bytes):
        self.type, self.data = mtype, data


class Receiver:
    """A msgrcv that waits (msg_receiver): what it takes, and what it was given (a
    Message, or an errno) once a sender or msgctl dealt with it."""
    __slots__ = ("task", "msgtype", "mode", "maxsize", "result", "wait", "queue")

    def __init__(self, task, queue, msgtype: int, mode: int, maxsize: int):
        self.task, self.queue = task, queue
        self.msgtype, self.mode, self.maxsize = msgtype, mode, maxsize
        self.result = None
        self.wait = None

    def waiting(self) -> bool:
        return self.wait is not None and self.task.blocked is self.wait

    def give(self, result) -> None:
        self.result = result
        self.task.kernel.wake(self.task)


class MsgQueue:
    """msg_queue."""

    def __init__(self, ns, key: int, mode: int):
        self.ns = ns
        self.perm = IpcPerm(key, mode)
        self.messages: list[Message] = []
        self.cbytes = 0
        self.qbytes = ns.msg_ctlmnb
        self.stime = self.rtime = 0
        self.ctime = now()
        self.lspid = self.lrpid = 0
        self.receivers: list[Receiver] = []
        self.senders = WaitQueue()

    @property
    def qnum(self) -> int:
        return len(self.messages)

    def fits(self, size: int) -> bool:
        return size + self.cbytes <= self.qbytes and 1 + self.qnum <= self.qbytes

    def expunge(self, errno: int) -> None:
        """Every waiting receiver gets errno (EIDRM), or (EAGAIN) looks again."""
        receivers, self.receivers = self.receivers, []
        for r in receivers:
            if r.waiting():
                r.give(-errno if errno != E.EAGAIN else None)

    def free(self) -> None:
        """freeque: IPC_RMID."""
        ns = self.ns
        self.expunge(E.EIDRM)
        ns.msg.remove(self)
        self.senders.notify()  # they find the queue deleted: EIDRM
        ns.msg_bytes -= self.cbytes
        ns.msg_hdrs -= self.qnum
        self.messages.clear()
        self.cbytes = 0

    def set(self, task, uid: int, gid: int, mode: int, qbytes: int) -> None:
        """IPC_SET (msgctl_down)."""
        if qbytes > self.ns.msg_ctlmnb and not caps.has(task, ipc.CAP_SYS_RESOURCE):
            raise Errno(E.EPERM)
        ipc.update_perm(self.perm, uid, gid, mode)
        self.qbytes = qbytes & 0xFFFFFFFFFFFFFFFF
        self.ctime = now()
        self.expunge(E.EAGAIN)   # waiting receivers may have lost the right to read
        self.senders.notify()    # waiting senders may fit now

    def _pipelined_send(self, msg: Message) -> bool:
        """Hand msg to the first waiting receiver that wants it: True if one took it
        (one whose buffer is too small gets E2BIG, and the next is tried)."""
        for r in list(self.receivers):
            if not r.waiting():
                self.receivers.remove(r)
                continue
            if not _matches(msg, r.msgtype, r.mode):
                continue
            self.receivers.remove(r)
            if r.maxsize < len(msg.data):
                r.give(-E.E2BIG)
                continue
            self.lrpid = r.task.tid
            self.rtime = now()
            r.give(msg)
            return True
        return False

    def send(self, task, mtype: int, data: bytes, flags: int) -> None:
        """do_msgsnd once the message is read: wait for room (EAGAIN with IPC_NOWAIT),
        then hand it to a receiver or queue it."""
        while True:
            ipc.check(task, self.perm, ipc.S_IWUGO)
            if self.perm.deleted:
                raise Errno(E.EIDRM)
            if self.fits(len(data)):
                break
            if flags & IPC_NOWAIT:
                raise Errno(E.EAGAIN)
            task.restart_state = ("msgsnd", self)
            raise Wait(queues=(self.senders,), interrupt_result=-ERESTARTNOHAND)
        self.lspid = task.tgid
        self.stime = now()
        msg = Message(mtype, data)
        if not self._pipelined_send(msg):
            self.messages.append(msg)
            self.cbytes += len(data)
            self.ns.msg_bytes += len(data)
            self.ns.msg_hdrs += 1

    def receive(self, task, size: int, msgtype: int, flags: int) -> Message:
        """do_msgrcv: a message taken off the queue (or, MSG_COPY, a copy of the
        msgtype'th one); waits for one unless IPC_NOWAIT (ENOMSG)."""
        state = task.restart_state
        if isinstance(state, Receiver) and state.queue is self:
            task.restart_state = None
            result = state.result
            if isinstance(result, Message):
                return result
            if result is not None:
                raise Errno(-result)
        mode, msgtype = _mode(msgtype, flags)
        ipc.check(task, self.perm, ipc.S_IRUGO)
        if self.perm.deleted:
            raise Errno(E.EIDRM)
        msg = self._find(msgtype, mode)
        if msg is not None:
            if size < len(msg.data) and not flags & MSG_NOERROR:
                raise Errno(E.E2BIG)
            if flags & MSG_COPY:
                if len(msg.data) > min(size, self.ns.msg_ctlmax):
                    raise Errno(E.EINVAL)  # copy_msg: larger than the copy made for it
                return msg
            self.messages.remove(msg)
            self.rtime = now()
            self.lrpid = task.tgid
            self.cbytes -= len(msg.data)
            self.ns.msg_bytes -= len(msg.data)
            self.ns.msg_hdrs -= 1
            self.senders.notify()
            return msg
        if flags & IPC_NOWAIT:
            raise Errno(E.ENOMSG)
        r = Receiver(task, self, msgtype, mode, INT_MAX if flags & MSG_NOERROR else size)
        r.wait = Wait(queues=(WaitQueue(),), interrupt_result=-ERESTARTNOHAND)
        self.receivers.append(r)
        task.restart_state = r
        raise r.wait

    def _find(self, msgtype: int, mode: int):
        """find_msg: the first match; for a negative type the lowest type at most its
        magnitude; MSG_COPY the msgtype'th message."""
        found = None
        for count, msg in enumerate(self.messages):
            if mode == SEARCH_NUMBER:
                if count == msgtype:
                    return msg
                continue
            if not _matches(msg, msgtype, mode):
                continue
            if mode == SEARCH_LESSEQUAL and msg.type != 1:
                msgtype = msg.type - 1
                found = msg
                continue
            return msg
        return found


def _mode(msgtype: int, flags: int):
    """convert_mode: (how to search, the type to search with)."""
    if flags & MSG_COPY:
        return SEARCH_NUMBER, msgtype
    if msgtype == 0:
        return SEARCH_ANY, msgtype
    if msgtype < 0:
        return SEARCH_LESSEQUAL, LONG_MAX if msgtype == -(1 << 63) else -msgtype
    if flags & MSG_EXCEPT:
        return SEARCH_NOTEQUAL, msgtype
    return SEARCH_EQUAL, msgtype


def _matches(msg: Message, msgtype: int, mode: int) -> bool:
    if mode in (SEARCH_ANY, SEARCH_NUMBER):
        return True
    if mode == SEARCH_LESSEQUAL:
        return msg.type <= msgtype
    if mode == SEARCH_EQUAL:
        return msg.type == msgtype
    return msg.type != msgtype


def get(task, key: int, flags: int) -> int:
    """msgget."""
    ns = task.ipc_ns

    def create():
        q = MsgQueue(ns, key, flags & ipc.S_IRWXUGO)
        return ns.msg.add(task, q, ns.msg_ctlmni)

    return ipc.get(task, ns.msg, key, flags, create)


def waiting_queue(task, msqid: int):
    """The queue a woken msgsnd or msgrcv waited on, if it is this id's: a queue removed
    meanwhile answers EIDRM (its id may be another queue's by now)."""
    state = task.restart_state
    if isinstance(state, Receiver):
        q = state.queue
    elif isinstance(state, tuple) and state[0] == "msgsnd":
        q = state[1]
    else:
        return None
    if q.perm.deleted:
        if isinstance(state, Receiver) and isinstance(state.result, Message):
            return q  # it was given its message before the queue went
        task.restart_state = None
        raise Errno(E.EIDRM)
    return q if q.perm.id == msqid else None

