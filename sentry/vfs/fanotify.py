"""A fanotify group (fanotify(7)) as an unprivileged container has one.

Every task of the sandbox is, to fanotify, a user without CAP_SYS_ADMIN in the
host's initial user namespace (the capability Linux's fanotify_init asks
for): so only a group that reports file handles (FAN_REPORT_FID and its
kin) of the notification class may be made, marks may be on inodes only, and
every sandbox filesystem reports a zero f_fsid (statfs), for which Linux 6.1
refuses a file-handle mark with ENODEV, as on its tmpfs. The group is thus a
file whose queue stays empty: it reads as one with no event yet (EAGAIN, or a
wait), polls as not ready, answers FIONREAD 0 and refuses permission
responses as Linux does when none is pending."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs.file import O_NONBLOCK, O_RDWR, File
from sentry.vfs.inode import Inode

FIONREAD = 0x541B
FAN_ALLOW, FAN_DENY, FAN_AUDIT, FAN_INFO = 0x1, 0x2, 0x10, 0x20
RESPONSE = struct.Struct("<iI")  # struct fanotify_response: fd, response


class FanotifyFile(File):
    announces_changes = True

    def __init__(self, limits, uid: int, flags: int, event_flags: int):
        super().__init__(Inode(0o600), O_RDWR | (O_NONBLOCK if flags & 0x2 else 0), "anon_inode:[fanotify]")
        self.limits, self.uid = limits, uid
        self.group_flags, self.event_flags = flags, event_flags
        self.can_read = WaitQueue()  # never told: no mark can be added (see the module's doc)
        self.events = 0
        self.closed = False

    def read(self, size: int) -> bytes:
        if self.flags & O_NONBLOCK:
            raise Errno(E.EAGAIN)
        raise Wait(queues=(self.can_read,))

    def write(self, data) -> int:
        """A permission response: none can be pending in a notification-class group."""
        if len(data) < RESPONSE.size:
            raise Errno(E.EINVAL)
        fd, response = RESPONSE.unpack_from(bytes(data[:RESPONSE.size]))
        if response & ~(FAN_AUDIT | FAN_INFO) not in (FAN_ALLOW, FAN_DENY) or fd < 0:
            raise Errno(E.EINVAL)
        raise Errno(E.ENOENT)

    def seek(self, offset: int, whence: int) -> int:
        return 0  # noop_llseek

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            task.mm.write_u32(arg, 0)
            return 0
        raise Errno(E.ENOTTY)

    def poll_readiness(self) -> int:
        return 0

    def poll_wakers(self, events: int):
        return (self.can_read,)

    def fdinfo(self) -> bytes:
        return b"fanotify flags:%x event-flags:%x\n" % (self.group_flags, self.event_flags)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            groups = self.limits.fanotify_groups
            groups[self.uid] = max(0, groups.get(self.uid, 1) - 1)


def new_group(limits, uid: int, flags: int, event_flags: int) -> FanotifyFile:
    """fanotify_init's group: EMFILE past the user's max_user_groups."""
    groups = limits.fanotify_groups
    if groups.get(uid, 0) >= limits.fanotify_max_user_groups:
        raise Errno(E.EMFILE)
    groups[uid] = groups.get(uid, 0) + 1
    return FanotifyFile(limits, uid, flags, event_flags)
