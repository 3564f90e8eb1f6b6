"""System V message queues: msgget(2), msgsnd(2), msgrcv(2), msgctl(2) (the queues
are sentry/ipc/msg.py's)."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc import msg as ipcmsg
from syscalls.abi import s32, s64
from syscalls.registry import syscall
from syscalls.sysvipc import pack_perm, read_set_perm

MSG_STAT, MSG_INFO, MSG_STAT_ANY = 11, 12, 13
# perm, stime, rtime, ctime, cbytes, qnum, qbytes, lspid, lrpid, unused x2
MSQID64_DS = struct.Struct("<48sqqqQQQiiQQ")
MSGINFO = struct.Struct("<7iH2x")  # msgpool, msgmap, msgmax, msgmnb, msgmni, msgssz, msgtql, msgseg


@syscall("msgget")
def msgget(t, key, flags):
    return ipcmsg.get(t, s32(key), s32(flags))


@syscall("msgsnd", note="waits for room in the loop (EAGAIN with IPC_NOWAIT; EIDRM if the queue goes; a signal "
         "ends it with EINTR, or a restart when no handler ran); a waiting receiver is handed the message")
def msgsnd(t, msqid, msgp, msgsz, flags):
    msqid, flags = s32(msqid), s32(flags)
    mtype = s64(t.mm.read_u64(msgp))
    ns = t.ipc_ns
    if msgsz > ns.msg_ctlmax or msgsz >= 1 << 63 or msqid < 0:
        raise Errno(E.EINVAL)
    if mtype < 1:
        raise Errno(E.EINVAL)
    data = t.mm.read(msgp + 8, msgsz)
    q = ipcmsg.waiting_queue(t, msqid) or ns.msg.obtain_check(msqid)
    q.send(t, mtype, data, flags)
    return 0


@syscall("msgrcv", note="message types, MSG_NOERROR, MSG_EXCEPT, MSG_COPY, IPC_NOWAIT; waits in the loop as "
         "msgsnd")
def msgrcv(t, msqid, msgp, msgsz, msgtyp, flags):
    msqid, flags, msgtyp = s32(msqid), s32(flags), s64(msgtyp)
    if msqid < 0 or msgsz >= 1 << 63:
        raise Errno(E.EINVAL)
    if flags & ipcmsg.MSG_COPY and (flags & ipcmsg.MSG_EXCEPT or not flags & ipc.IPC_NOWAIT):
        raise Errno(E.EINVAL)
    q = ipcmsg.waiting_queue(t, msqid) or t.ipc_ns.msg.obtain_check(msqid)
    msg = q.receive(t, msgsz, msgtyp, flags)
    n = min(msgsz, len(msg.data))
    t.mm.write_u64(msgp, msg.type)
    t.mm.write(msgp + 8, msg.data[:n])
    return n


@syscall("msgctl", note="IPC_STAT, MSG_STAT, MSG_STAT_ANY, IPC_SET (msg_qbytes past msgmnb needs "
         "CAP_SYS_RESOURCE), IPC_RMID, IPC_INFO, MSG_INFO")
def msgctl(t, msqid, cmd, buf):
    msqid, cmd = s32(msqid), s32(cmd)
    if msqid < 0 or cmd < 0:
        raise Errno(E.EINVAL)
    ns = t.ipc_ns
    ids = ns.msg
    if cmd in (ipc.IPC_INFO, MSG_INFO):
        if cmd == MSG_INFO:
            info = (ids.in_use, min(ns.msg_hdrs, 0x7FFFFFFF), min(ns.msg_bytes, 0x7FFFFFFF))
        else:
            info = (ipcmsg.MSGPOOL, ipcmsg.MSGMAP, ipcmsg.MSGTQL)
        pool, hdrs, tql = info
        t.mm.write(buf, MSGINFO.pack(pool, hdrs, ns.msg_ctlmax, ns.msg_ctlmnb, ns.msg_ctlmni, ipcmsg.MSGSSZ,
                                     tql, ipcmsg.MSGSEG))
        return max(ids.max_idx(), 0)
    if cmd in (ipc.IPC_STAT, MSG_STAT, MSG_STAT_ANY):
        q = ids.obtain_check(msqid) if cmd == ipc.IPC_STAT else ids.obtain(msqid)
        if cmd != MSG_STAT_ANY:
            ipc.check(t, q.perm, ipc.S_IRUGO)
        t.mm.write(buf, MSQID64_DS.pack(pack_perm(q.perm), q.stime, q.rtime, q.ctime, q.cbytes, q.qnum, q.qbytes,
                                        q.lspid, q.lrpid, 0, 0))
        return 0 if cmd == ipc.IPC_STAT else q.perm.id
    if cmd == ipc.IPC_SET:
        uid, gid, mode, raw = read_set_perm(t.mm, buf, MSQID64_DS.size)
        qbytes = s32(MSQID64_DS.unpack(raw)[6])  # msgctl_down takes it as an int
        q = ids.obtain_check(msqid)
        ipc.owner_or_admin(t, q.perm)
        q.set(t, uid, gid, mode, qbytes)
        return 0
    if cmd == ipc.IPC_RMID:
        q = ids.obtain_check(msqid)
        ipc.owner_or_admin(t, q.perm)
        q.free()
        return 0
    raise Errno(E.EINVAL)
