"""/proc/PID/mounts and mountinfo as poll(2) sees them (Linux's mounts_poll): always
readable, and EPOLLERR|EPOLLPRI once after each change of the mount table since the open
file last reported one, so that a program (systemd, udisks, LTP's epoll_wait10) can wait
for mounts and unmounts. sentry/vfs/mounts.py's `changed` notifies the queue."""
from sentry.sched import WaitQueue
from sentry.vfs import mounts
from sentry.vfs.procfs import GenInode, ProcFile

POLLIN, POLLPRI, POLLERR, POLLRDNORM = 0x1, 0x2, 0x8, 0x40


def queue(vfs) -> WaitQueue:
    """What a change of vfs's mount table wakes."""
    st = mounts.state(vfs)
    q = getattr(st, "poll", None)
    if q is None:
        q = st.poll = WaitQueue()
    return q


class MountsFile(ProcFile):
    announces_changes = True  # the queue hears every change (sentry/epoll.py)

    def __init__(self, inode, flags, path, data, vfs):
        super().__init__(inode, flags, path, data)
        self.vfs = vfs
        self.seen = mounts.state(vfs).version  # the table it was opened on

    def poll_readiness(self) -> int:
        mask = POLLIN | POLLRDNORM
        version = mounts.state(self.vfs).version
        if version != self.seen:
            self.seen = version  # reported once, as the seq_file's poll_event
            mask |= POLLERR | POLLPRI
        return mask

    def poll_wakers(self, events: int):
        return (queue(self.vfs),)


class MountsInode(GenInode):
    def __init__(self, fs, gen, vfs):
        super().__init__(fs, gen)
        self.vfs = vfs

    def open(self, flags, path):
        return MountsFile(self, flags, path, self.gen(), self.vfs)
