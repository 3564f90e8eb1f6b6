"""An inotify instance (inotify(7)): a group of watches (sentry/vfs/notify.py
marks) and the queue of their events, behind a file that reads as a stream of
struct inotify_event.

As Linux's: watch descriptors count up from 1 and are not reused while the
instance lives; an event identical to the last one queued (mask, wd, name) is
merged into it; past max_queued_events one IN_Q_OVERFLOW (wd -1) ends the
queue and later events are lost until it is read; a read takes whole events
(EINVAL when the first does not fit), waits while the queue is empty (EAGAIN
under O_NONBLOCK), and poll, select and epoll see POLLIN while it is not.
A watch that goes (inotify_rm_watch, IN_ONESHOT, its file deleted) queues
IN_IGNORED."""
import errno as E
import struct
from collections import deque

from sentry.errors import Errno
from sentry.sched import Wait, WaitQueue
from sentry.vfs import notify
from sentry.vfs.file import O_NONBLOCK, O_RDONLY, File
from sentry.vfs.inode import Inode

EVENT = struct.Struct("<iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
IN_ALL_EVENTS = 0xFFF
IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x2000, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_MASK_CREATE, IN_MASK_ADD, IN_ISDIR, IN_ONESHOT = 0x10000000, 0x20000000, 0x40000000, 0x80000000
USER_BITS = IN_ALL_EVENTS | IN_ISDIR | IN_UNMOUNT | IN_IGNORED | IN_Q_OVERFLOW  # what a read shows
FIONREAD = 0x541B
POLLIN, POLLRDNORM = 0x1, 0x40


def _size(name: bytes) -> int:
    """An event's size in a read: the header, and the name NUL-padded to a multiple of 16."""
    return EVENT.size + ((len(name) + 1 + EVENT.size - 1) // EVENT.size * EVENT.size if name else 0)


class InotifyFile(File):
    announces_changes = True  # can_read is notified at every event queued (sentry/epoll.py)

    def __init__(self, limits, uid: int, flags: int):
        super().__init__(Inode(0o600), O_RDONLY | (flags & O_NONBLOCK), "anon_inode:inotify")
        self.limits, self.uid = limits, uid
        self.max_events = limits.max_queued_events
        self.queue = deque()      # [wd, mask, cookie, name]
        self.overflow = None      # the queued IN_Q_OVERFLOW event, while it is queued
        self.can_read = WaitQueue()
        self.events = 0           # for edge-triggered epoll: every event queued
        self.watches: dict[int, notify.Mark] = {}  # wd -> mark
        self.by_key: dict[tuple, notify.Mark] = {}
        self.last_wd = 0
        self.closed = False

    # --- watches ---------------------------------------------------------------------------
    def add_watch(self, inode, arg: int) -> int:
        """inotify_add_watch on inode: a new watch, or the existing one changed (replaced,
        or IN_MASK_ADD'ed; EEXIST under IN_MASK_CREATE). The watch descriptor."""
        key = notify.key_of(inode)
        isdir = inode.is_dir()
        mask = notify.IGNORED | notify.UNMOUNT | (notify.EVENT_ON_CHILD if isdir else 0) | (arg & IN_ALL_EVENTS)
        flags = (notify.EXCL_UNLINK if arg & IN_EXCL_UNLINK else 0) | (notify.ONESHOT if arg & IN_ONESHOT else 0)
        mark = self.by_key.get(key)
        if mark is not None and mark.alive:
            if arg & IN_MASK_CREATE:
                raise Errno(E.EEXIST)
            if arg & IN_MASK_ADD:
                mark.mask |= mask
                mark.flags |= flags
            else:
                mark.mask, mark.flags = mask, flags
            return mark.data
        limits = self.limits
        if limits.watches.get(self.uid, 0) >= limits.max_user_watches:
            raise Errno(E.ENOSPC)
        limits.watches[self.uid] = limits.watches.get(self.uid, 0) + 1
        self.last_wd = self.last_wd + 1 if self.last_wd < 0x7FFFFFFF else 1
        while self.last_wd in self.watches:
            self.last_wd += 1
        mark = notify.Mark(self, key, mask, flags, isdir, inode)
        mark.data = self.last_wd
        self.watches[mark.data] = mark
        self.by_key[key] = mark
        notify.add_mark(mark)
        return mark.data

    def rm_watch(self, wd: int) -> None:
        mark = self.watches.get(wd)
        if mark is None:
            raise Errno(E.EINVAL)
        notify.remove_mark(mark)

    # --- the group's side of notify ----------------------------------------------------------
    def handle(self, mark, mask: int, name: bytes, cookie: int) -> None:
        if mask & (notify.MOVE_SELF | notify.DELETE_SELF):
            mask &= ~notify.ISDIR  # inotify never reported IN_ISDIR with these (Linux keeps it so)
        self._queue([mark.data, mask & USER_BITS, cookie, name])
        if mark.flags & notify.ONESHOT:
            notify.remove_mark(mark)

    def freeing(self, mark) -> None:
        wd = mark.data
        if self.watches.get(wd) is mark:
            del self.watches[wd]
        if self.by_key.get(mark.key) is mark:
            del self.by_key[mark.key]
        self.limits.watches[self.uid] = max(0, self.limits.watches.get(self.uid, 1) - 1)
        if not self.closed:
            self._queue([wd, IN_IGNORED, 0, b""])

    def _queue(self, event) -> None:
        """fsnotify_insert_event: the overflow event once at the limit, else merged with
        an identical last event, else queued."""
        q = self.queue
        if len(q) >= self.max_events:
            if self.overflow is not None:
                return
            event = self.overflow = [-1, IN_Q_OVERFLOW, 0, b""]
        elif q:
            last = q[-1]
            if last[1] == event[1] and last[0] == event[0] and last[3] == event[3] and last is not self.overflow:
                return
        q.append(event)
        self.events += 1
        self.can_read.notify()

    # --- the file ------------------------------------------------------------------------------
    def seek(self, offset: int, whence: int) -> int:
        if not 0 <= whence <= 4:
            raise Errno(E.EINVAL)
        return 0  # the position stays 0, as Linux's for an anonymous inode file
    def read(self, size: int) -> bytes:
        q = self.queue
        if not q:
            if self.flags & O_NONBLOCK:
                raise Errno(E.EAGAIN)
            raise Wait(queues=(self.can_read,))
        out = bytearray()
        while q:
            wd, mask, cookie, name = q[0]
            n = _size(name)
            if n > size - len(out):
                if not out:
                    raise Errno(E.EINVAL)
                break
            q.popleft()
            if self.overflow is not None and wd == -1 and mask == IN_Q_OVERFLOW:
                self.overflow = None
            out += EVENT.pack(wd, mask, cookie, n - EVENT.size) + name + bytes(n - EVENT.size - len(name))
        return bytes(out)

    def unread(self, data: bytes) -> None:
        """The program's buffer faulted: the events not delivered go back first in line."""
        events, pos = [], 0
        while pos + EVENT.size <= len(data):
            wd, mask, cookie, length = EVENT.unpack_from(data, pos)
            name = bytes(data[pos + EVENT.size:pos + EVENT.size + length]).rstrip(b"\0")
            events.append([wd, mask, cookie, name])
            pos += EVENT.size + length
        self.queue.extendleft(reversed(events))

    def ioctl(self, task, request: int, arg: int) -> int:
        if request == FIONREAD:
            task.mm.write_u32(arg, sum(_size(e[3]) for e in self.queue))
            return 0
        raise Errno(E.ENOTTY)

    def poll_readiness(self) -> int:
        return POLLIN | POLLRDNORM if self.queue else 0

    def poll_wakers(self, events: int):
        return (self.can_read,)

    def fdinfo(self) -> bytes:
        """/proc/PID/fdinfo's lines for the watches (fs/notify/fdinfo.c)."""
        out = []
        for wd, m in sorted(self.watches.items()):
            shown = m.mask & IN_ALL_EVENTS | (IN_EXCL_UNLINK if m.flags & notify.EXCL_UNLINK else 0) \
                | (IN_ONESHOT if m.flags & notify.ONESHOT else 0)
            dev, ino = m.key
            handle = struct.pack("<III", 0, ino & 0xFFFFFFFF, ino >> 32)
            out.append(b"inotify wd:%x ino:%x sdev:%x mask:%x ignored_mask:0 fhandle-bytes:%x fhandle-type:1 "
                       b"f_handle:%s\n" % (wd, ino, dev, shown, len(handle), handle.hex().encode()))
        return b"".join(out)

    def close(self) -> None:
        """The last descriptor went: every watch goes, with no IN_IGNORED (no one reads)."""
        if self.closed:
            return
        self.closed = True
        for mark in list(self.watches.values()):
            notify.remove_mark(mark)
        self.queue.clear()
        self.limits.instances[self.uid] = max(0, self.limits.instances.get(self.uid, 1) - 1)


def new_instance(limits, uid: int, flags: int) -> InotifyFile:
    """inotify_init1's instance: EMFILE past the user's max_user_instances."""
    if limits.instances.get(uid, 0) >= limits.max_user_instances:
        raise Errno(E.EMFILE)
    limits.instances[uid] = limits.instances.get(uid, 0) + 1
    return InotifyFile(limits, uid, flags)
