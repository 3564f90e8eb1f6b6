"""signalfd objects: reading pending signals from a file (signalfd(2)).

A signalfd holds only a mask. Like Linux's, it reads from whichever task reads
or polls it (`kernel.current`): a read dequeues that task's pending signals of
the mask (its own first, then its process's, as delivery would) and returns a
struct signalfd_siginfo (128 bytes) for each that fits; none pending, it waits
(or EAGAIN). It is readable while a signal of the mask is pending for the task.

Waking: sentry/signals.py notifies the process's `signalfd_wait` queue (made
here on first need, a WaitQueue that also counts, for edge-triggered epoll)
whenever a signal becomes pending in that process; changing a signalfd's mask
notifies it too."""
import errno as E
import struct

from sentry import signals
from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode

MASK64 = (1 << 64) - 1
SIGINFO_SIZE = 128
POLLIN, POLLRDNORM = 0x1, 0x40
UNTAKEABLE = (1 << (signals.SIGKILL - 1)) | (1 << (signals.SIGSTOP - 1))
SIGPOLL, SIGSYS = 29, 31
# (layout, highest si_code of it) of the kernel's own si_codes, as Linux's siginfo_layout
_KERNEL_LAYOUT = {signals.SIGILL: ("fault", 11), signals.SIGFPE: ("fault", 15), signals.SIGSEGV: ("fault", 10),
                  signals.SIGBUS: ("fault", 5), signals.SIGTRAP: ("fault", 6), signals.SIGCHLD: ("chld", 6),
                  SIGPOLL: ("poll", 6), SIGSYS: ("sys", 2)}
SI_TIMER, SI_SIGIO = -2, -5


class CountingQueue(WaitQueue):
    """The process's signalfd readers and pollers; `count` grows at each new signal."""
    __slots__ = ("count",)

    def __init__(self):
        super().__init__()
        self.count = 0

    def notify(self) -> None:
        self.count += 1
        WaitQueue.notify(self)


def queue_of(task) -> CountingQueue:
    shared = task.sigshared
    q = shared.signalfd_wait
    if q is None:
        q = shared.signalfd_wait = CountingQueue()
    return q


def _layout(signo: int, code: int) -> str:
    if signals.SI_USER < code < signals.SI_KERNEL:
        kind = _KERNEL_LAYOUT.get(signo)
        if kind is not None and code <= kind[1]:
            return kind[0]
        return "poll" if code <= 6 else "kill"
    if code == SI_TIMER:
        return "timer"
    if code == SI_SIGIO:
        return "poll"
    return "rt" if code < 0 else "kill"


def pack_siginfo(info) -> bytes:
    """struct signalfd_siginfo of one dequeued signal (Linux's signalfd_copyinfo)."""
    raw = info.pack()  # the siginfo_t the handler would get
    signo, errno, code = struct.unpack_from("<iii", raw, 0)
    out = bytearray(SIGINFO_SIZE)
    struct.pack_into("<Iii", out, 0, signo & 0xFFFFFFFF, errno, code)
    kind = _layout(signo, code)
    if kind == "kill":
        out[12:20] = raw[16:24]                                    # ssi_pid, ssi_uid
    elif kind == "rt":
        out[12:20] = raw[16:24]
        out[48:56] = raw[24:32]                                    # ssi_ptr
        out[44:48] = raw[24:28]                                    # ssi_int
    elif kind == "timer":
        out[24:28] = raw[16:20]                                    # ssi_tid
        out[32:36] = raw[20:24]                                    # ssi_overrun
        out[48:56] = raw[24:32]
        out[44:48] = raw[24:28]
    elif kind == "chld":
        out[12:20] = raw[16:24]
        out[40:44] = raw[24:28]                                    # ssi_status
        out[56:64] = raw[32:40]                                    # ssi_utime
        out[64:72] = raw[40:48]                                    # ssi_stime
    elif kind == "poll":
        out[28:32] = raw[16:20]                                    # ssi_band (truncated, as Linux)
        out[20:24] = raw[24:28]                                    # ssi_fd
    elif kind == "fault":
        out[72:80] = raw[16:24]                                    # ssi_addr
    elif kind == "sys":
        out[88:96] = raw[16:24]                                    # ssi_call_addr
        out[84:88] = raw[24:28]                                    # ssi_syscall
        out[96:100] = raw[28:32]                                   # ssi_arch
    return bytes(out)


class SignalFile(File):
    def __init__(self, owner, mask: int, flags: int):
        super().__init__(Inode(0o600), O_RDWR | (flags & O_NONBLOCK), "anon_inode:[signalfd]")
        self.kernel = owner.kernel
        self.owner = owner  # who reads when no syscall is being answered (never, in practice)
        self.mask = 0
        self.set_mask(mask)

    def seek(self, offset: int, whence: int) -> int:
        if not 0 <= whence <= 4:
            raise Errno(E.EINVAL)
        return 0  # Linux's noop_llseek: the position stays 0

    def set_mask(self, mask: int) -> None:
        self.mask = mask & MASK64 & ~UNTAKEABLE
        q = self._task().sigshared.signalfd_wait
        if q is not None:
            q.notify()  # readers of the old mask look again, as Linux's wake_up on an update

    def _task(self):
        t = self.kernel.current
        return t if t is not None else self.owner

    def read(self, size: int) -> bytes:
        if size < SIGINFO_SIZE:
            raise Errno(E.EINVAL)
        task = self._task()
        skip = ~self.mask & MASK64
        out = []
        for _ in range(min(size // SIGINFO_SIZE, 4096)):
            sig, info = signals.dequeue(task, skip)
            if not sig:
                break
            out.append(pack_siginfo(info))
        if not out:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            if signals.signal_ready(task):
                raise Errno(signals.ERESTARTSYS)  # a signal outside the mask is due: no wait, as Linux
            raise Wait(queues=(queue_of(task),))
        return b"".join(out)

    def poll_readiness(self) -> int:
        return POLLIN | POLLRDNORM if signals.pending_set(self._task()) & self.mask else 0

    def poll_wakers(self, events: int):
        return (queue_of(self._task()),)

    @property
    def events(self) -> int:
        q = self._task().sigshared.signalfd_wait
        return q.count if q is not None else 0
