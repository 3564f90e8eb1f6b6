"""fanotify_init(2), fanotify_mark(2) as Linux 6.1 answers a caller without
CAP_SYS_ADMIN in the initial user namespace, which every sandbox task is (a
container's root included): the privileged classes and flags are EPERM, a
file-handle group of the notification class is made, and its marks get
Linux's argument checks in Linux's order, then ENODEV, the answer for a
filesystem whose f_fsid is zero, which every sandbox filesystem's is
(sentry/vfs/fanotify.py)."""
import errno as E

from sentry.errors import Errno
from sentry.vfs import perm
from sentry.vfs.fanotify import FanotifyFile, new_group
from sentry.vfs.file import O_ACCMODE, O_CLOEXEC
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

FAN_CLOEXEC, FAN_NONBLOCK = 0x1, 0x2
FAN_CLASS_NOTIF, FAN_CLASS_CONTENT, FAN_CLASS_PRE_CONTENT = 0x0, 0x4, 0x8
FAN_UNLIMITED_QUEUE, FAN_UNLIMITED_MARKS, FAN_ENABLE_AUDIT = 0x10, 0x20, 0x40
FAN_REPORT_PIDFD, FAN_REPORT_TID, FAN_REPORT_FID = 0x80, 0x100, 0x200
FAN_REPORT_DIR_FID, FAN_REPORT_NAME, FAN_REPORT_TARGET_FID = 0x400, 0x800, 0x1000
CLASS_BITS = FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT
FID_BITS = FAN_REPORT_FID | FAN_REPORT_DIR_FID | FAN_REPORT_NAME | FAN_REPORT_TARGET_FID
ADMIN_INIT_FLAGS = CLASS_BITS | FAN_REPORT_TID | FAN_REPORT_PIDFD | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS
INIT_FLAGS = ADMIN_INIT_FLAGS | FID_BITS | FAN_CLOEXEC | FAN_NONBLOCK
# O_ACCMODE O_APPEND O_NONBLOCK __O_SYNC O_DSYNC O_CLOEXEC O_LARGEFILE O_NOATIME
EVENT_F_BITS = 0o3 | 0o2000 | 0o4000 | 0o4000000 | 0o10000 | 0o2000000 | 0o100000 | 0o1000000

FAN_MARK_ADD, FAN_MARK_REMOVE, FAN_MARK_DONT_FOLLOW, FAN_MARK_ONLYDIR = 0x1, 0x2, 0x4, 0x8
FAN_MARK_MOUNT, FAN_MARK_IGNORED_MASK, FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_FLUSH = 0x10, 0x20, 0x40, 0x80
FAN_MARK_FILESYSTEM, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE = 0x100, 0x200, 0x400
FAN_MARK_INODE = 0
TYPE_BITS = FAN_MARK_MOUNT | FAN_MARK_FILESYSTEM
CMD_BITS = FAN_MARK_ADD | FAN_MARK_REMOVE | FAN_MARK_FLUSH
IGNORE_BITS = FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORE
MARK_FLAGS = (CMD_BITS | TYPE_BITS | IGNORE_BITS | FAN_MARK_DONT_FOLLOW | FAN_MARK_ONLYDIR
              | FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE)
# event bits
FAN_ACCESS, FAN_MODIFY, FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CLOSE_NOWRITE, FAN_OPEN = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
FAN_MOVED_FROM, FAN_MOVED_TO, FAN_CREATE, FAN_DELETE = 0x40, 0x80, 0x100, 0x200
FAN_DELETE_SELF, FAN_MOVE_SELF, FAN_OPEN_EXEC, FAN_FS_ERROR = 0x400, 0x800, 0x1000, 0x8000
FAN_OPEN_PERM, FAN_ACCESS_PERM, FAN_OPEN_EXEC_PERM = 0x10000, 0x20000, 0x40000
FAN_RENAME, FAN_EVENT_ON_CHILD, FAN_ONDIR = 0x10000000, 0x08000000, 0x40000000
PATH_EVENTS = FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE | FAN_OPEN | FAN_OPEN_EXEC
DIRENT_EVENTS = FAN_MOVED_FROM | FAN_MOVED_TO | FAN_CREATE | FAN_DELETE | FAN_RENAME
INODE_EVENTS = DIRENT_EVENTS | FAN_ATTRIB | FAN_MOVE_SELF | FAN_DELETE_SELF
PERM_EVENTS = FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_OPEN_EXEC_PERM
EVENT_FLAGS = FAN_EVENT_ON_CHILD | FAN_ONDIR
FD_EVENTS = PATH_EVENTS | PERM_EVENTS
DIRONLY_EVENTS = DIRENT_EVENTS | FAN_EVENT_ON_CHILD | FAN_ONDIR
VALID_MASK = PATH_EVENTS | INODE_EVENTS | FAN_FS_ERROR | EVENT_FLAGS | PERM_EVENTS

_NOTE = ("as for a caller without CAP_SYS_ADMIN in the host's user namespace (a container's root): the "
         "privileged classes and flags answer EPERM; a file-handle group (FAN_REPORT_FID...) of the "
         "notification class is made, mount and filesystem marks EPERM, inode marks ENODEV after Linux's "
         "checks (every sandbox filesystem's f_fsid is zero, as Linux 6.1's tmpfs): no event is ever queued")


@syscall("fanotify_init", status=PARTIAL, note=_NOTE)
def fanotify_init(t, flags, event_f_flags):
    flags, event_f_flags = flags & 0xFFFFFFFF, event_f_flags & 0xFFFFFFFF
    fid_mode = flags & FID_BITS
    if flags & ADMIN_INIT_FLAGS or not fid_mode:
        raise Errno(E.EPERM)  # (no CAP_SYS_ADMIN in the initial user namespace)
    if flags & ~INIT_FLAGS:
        raise Errno(E.EINVAL)
    if event_f_flags & ~EVENT_F_BITS or event_f_flags & O_ACCMODE == O_ACCMODE:
        raise Errno(E.EINVAL)
    if flags & CLASS_BITS != FAN_CLASS_NOTIF:
        raise Errno(E.EINVAL)
    if fid_mode & FAN_REPORT_NAME and not fid_mode & FAN_REPORT_DIR_FID:
        raise Errno(E.EINVAL)
    if fid_mode & FAN_REPORT_TARGET_FID and (not fid_mode & FAN_REPORT_NAME or not fid_mode & FAN_REPORT_FID):
        raise Errno(E.EINVAL)
    f = new_group(t.vfs.notify, t.euid, flags, event_f_flags | 0o100000)  # (force_o_largefile)
    try:
        return t.fds.install(f, cloexec=bool(flags & FAN_CLOEXEC))
    except Errno:
        f.close()
        raise


@syscall("fanotify_mark", status=PARTIAL, note=_NOTE)
def fanotify_mark(t, fanotify_fd, flags, mask, dirfd, pathname):
    flags = flags & 0xFFFFFFFF
    if mask >> 32:
        raise Errno(E.EINVAL)
    if flags & ~MARK_FLAGS:
        raise Errno(E.EINVAL)
    mark_type, cmd, ignore = flags & TYPE_BITS, flags & CMD_BITS, flags & IGNORE_BITS
    if mark_type not in (FAN_MARK_INODE, FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM):
        raise Errno(E.EINVAL)
    if cmd in (FAN_MARK_ADD, FAN_MARK_REMOVE):
        if not mask:
            raise Errno(E.EINVAL)
    elif cmd == FAN_MARK_FLUSH:
        if flags & ~(TYPE_BITS | FAN_MARK_FLUSH):
            raise Errno(E.EINVAL)
    else:
        raise Errno(E.EINVAL)
    if mask & ~VALID_MASK:
        raise Errno(E.EINVAL)
    if ignore == IGNORE_BITS:
        raise Errno(E.EINVAL)
    if ignore == FAN_MARK_IGNORED_MASK:
        mask &= ~EVENT_FLAGS
    group = t.fds.get(s32(fanotify_fd))
    if not isinstance(group, FanotifyFile):
        raise Errno(E.EINVAL)
    if mark_type != FAN_MARK_INODE:
        raise Errno(E.EPERM)  # an unprivileged group: inode marks only
    if mask & PERM_EVENTS:
        raise Errno(E.EINVAL)  # permission events need a content class
    if mask & FAN_FS_ERROR:
        raise Errno(E.EINVAL)  # filesystem marks only
    fid_mode = group.group_flags & FID_BITS
    if mask & FAN_RENAME and not fid_mode & FAN_REPORT_NAME:
        raise Errno(E.EINVAL)
    if cmd == FAN_MARK_FLUSH:
        return 0  # (the group has no marks)
    if pathname:
        inode = t.vfs.lookup(t, s32(dirfd), t.mm.read_cstring(pathname), follow=not flags & FAN_MARK_DONT_FOLLOW)
        if flags & FAN_MARK_ONLYDIR and not inode.is_dir():
            raise Errno(E.ENOTDIR)
    else:
        f = t.fds.get(s32(dirfd))
        inode = f.stat_inode()
        if flags & FAN_MARK_ONLYDIR and not inode.is_dir():
            raise Errno(E.ENOTDIR)
    perm.permission(t, inode, perm.MAY_READ)
    if cmd == FAN_MARK_ADD:
        strict = fid_mode & FAN_REPORT_TARGET_FID or mask & FAN_RENAME or ignore == FAN_MARK_IGNORE
        if strict and not inode.is_dir() and mask & DIRONLY_EVENTS:
            raise Errno(E.ENOTDIR)
    raise Errno(E.ENODEV)  # fanotify_test_fsid: the filesystem's f_fsid is zero
