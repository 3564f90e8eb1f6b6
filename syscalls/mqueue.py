"""POSIX message queues: mq_open(2), mq_unlink(2), mq_timedsend(2),
mq_timedreceive(2), mq_notify(2), mq_getsetattr(2) (the queues are the files of
sentry/ipc/mqueue.py's filesystem)."""
import errno as E
import struct
import time

from sentry.errors import Errno
from sentry.ipc import mqueue
from sentry.net.netlink import NetlinkSocket
from sentry.net.unix import UnixSocket
from sentry.vfs.file import O_NONBLOCK
from syscalls.abi import open_flags_in, s32
from syscalls.registry import PARTIAL, syscall

MQ_ATTR = struct.Struct("<8q")         # mq_flags, mq_maxmsg, mq_msgsize, mq_curmsgs, reserved x4
SIGEVENT = struct.Struct("<qii48x")    # sigev_value, sigev_signo, sigev_notify, the rest
TIMESPEC = struct.Struct("<qq")
NSIG = 64
PATH_MAX = 4096
NOTIFY_COOKIE_LEN = 32


def _queue(t, mqdes):
    f = t.fds.get(s32(mqdes))
    if not isinstance(f, mqueue.MqueueFile):
        raise Errno(E.EBADF)
    return f


def _name(t, uname) -> bytes:
    """getname: EFAULT, ENAMETOOLONG, and ENOENT for an empty name."""
    name = t.mm.read_cstring(uname, PATH_MAX)
    if not name:
        raise Errno(E.ENOENT)
    return name


def _deadline(t, addr):
    """An absolute CLOCK_REALTIME timeout as a time.monotonic() deadline (EFAULT, EINVAL
    as prepare_timeout), or None for none."""
    if not addr:
        return None
    sec, nsec = TIMESPEC.unpack(t.mm.read(addr, TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise Errno(E.EINVAL)
    return time.monotonic() + (sec + nsec / 1e9 - time.time())


@syscall("mq_open", note="queues of the IPC namespace's own mqueue filesystem (not mounted at /dev/mqueue); "
         "descriptors are close-on-exec as Linux's")
def mq_open(t, uname, oflag, mode, uattr):
    oflag = open_flags_in(t.kernel.arch, s32(oflag))
    attr = None
    if uattr:
        _, maxmsg, msgsize, _, _, _, _, _ = MQ_ATTR.unpack(t.mm.read(uattr, MQ_ATTR.size))
        attr = (maxmsg, msgsize)
    name = _name(t, uname)
    fds = t.fds
    if len(fds.files) >= fds.limit and all(fd in fds.files for fd in range(fds.limit)):
        raise Errno(E.EMFILE)  # no descriptor free: before anything is made
    f = mqueue.open_queue(t, name, oflag, mode & 0xFFFF, attr)
    try:
        return fds.install(f, cloexec=True)
    except Errno:
        f.close()
        raise


@syscall("mq_unlink")
def mq_unlink(t, uname):
    mqueue.unlink_queue(t, _name(t, uname))
    return 0


@syscall("mq_timedsend", note="waits in the loop (ETIMEDOUT at the deadline; a signal: EINTR or a restart); "
         "a waiting receiver is handed the message")
def mq_timedsend(t, mqdes, msg_ptr, msg_len, msg_prio, abs_timeout):
    deadline = _deadline(t, abs_timeout)
    msg_prio &= 0xFFFFFFFF
    if msg_prio >= mqueue.MQ_PRIO_MAX:
        raise Errno(E.EINVAL)
    f = _queue(t, mqdes)
    if not f.writable:
        raise Errno(E.EBADF)
    inode = f.inode
    if msg_len > inode.msgsize:
        raise Errno(E.EMSGSIZE)
    data = t.mm.read(msg_ptr, msg_len)
    return inode.send(t, data, msg_prio, bool(f.flags & O_NONBLOCK), deadline)


@syscall("mq_timedreceive", note="as mq_timedsend; the oldest message of the highest priority")
def mq_timedreceive(t, mqdes, msg_ptr, msg_len, msg_prio, abs_timeout):
    deadline = _deadline(t, abs_timeout)
    f = _queue(t, mqdes)
    if not f.readable:
        raise Errno(E.EBADF)
    inode = f.inode
    if msg_len < inode.msgsize:
        raise Errno(E.EMSGSIZE)
    prio, data = inode.receive(t, bool(f.flags & O_NONBLOCK), deadline)
    if msg_prio:
        t.mm.write_u32(msg_prio, prio)
    t.mm.write(msg_ptr, data)
    return len(data)


@syscall("mq_notify", note="SIGEV_SIGNAL, SIGEV_NONE and SIGEV_THREAD (the 32-byte cookie written to the "
         "AF_NETLINK socket given, as glibc's helper thread reads it; EBADF, ENOTSOCK or EINVAL for another "
         "descriptor, as netlink_getsockbyfilp)")
def mq_notify(t, mqdes, unotification):
    how = None
    if unotification:
        value, signo, how = SIGEVENT.unpack(t.mm.read(unotification, SIGEVENT.size))
        if how not in (mqueue.SIGEV_NONE, mqueue.SIGEV_SIGNAL, mqueue.SIGEV_THREAD):
            raise Errno(E.EINVAL)
        if how == mqueue.SIGEV_SIGNAL and not 0 <= signo <= NSIG:
            raise Errno(E.EINVAL)
        if how == mqueue.SIGEV_THREAD:
            cookie = t.mm.read(value, NOTIFY_COOKIE_LEN)
            sock = t.fds.get(s32(signo))  # EBADF
            if not isinstance(sock, UnixSocket):
                raise Errno(E.ENOTSOCK)
            if not isinstance(sock, NetlinkSocket):
                raise Errno(E.EINVAL)  # netlink_getsockbyfilp
            value = (sock, cookie)  # written to the socket when a message comes (or the registration goes)
    f = _queue(t, mqdes)
    if how is None:
        f.inode.set_notify(t, None)
    else:
        f.inode.set_notify(t, how, signo, value)
    return 0


@syscall("mq_getsetattr")
def mq_getsetattr(t, mqdes, unew, uold):
    new = MQ_ATTR.unpack(t.mm.read(unew, MQ_ATTR.size)) if unew else None
    if new is not None and new[0] & ~O_NONBLOCK:
        raise Errno(E.EINVAL)
    f = _queue(t, mqdes)
    inode = f.inode
    old = MQ_ATTR.pack(f.flags & O_NONBLOCK, inode.maxmsg, inode.msgsize, inode.curmsgs, 0, 0, 0, 0)
    if new is not None:
        f.flags = f.flags & ~O_NONBLOCK | new[0] & O_NONBLOCK
        inode.atime = inode.ctime = time.time_ns()
    if uold:
        t.mm.write(uold, old)
    return 0

