"""inotify(7): inotify_init(2), inotify_init1(2), inotify_add_watch(2),
inotify_rm_watch(2) over the sandbox's change events (sentry/vfs/notify.py,
the instance in sentry/vfs/inotify.py); and `changed_at`, the attribute
calls' hook (chmod, chown, utimes name the file by a path its directory's
watch hears)."""
import errno as E

from sentry.errors import Errno
from sentry.vfs import notify, perm
from sentry.vfs.file import O_CLOEXEC, O_NONBLOCK
from sentry.vfs.inotify import (IN_ALL_EVENTS, IN_DONT_FOLLOW, IN_EXCL_UNLINK, IN_IGNORED, IN_ISDIR,
                                IN_MASK_ADD, IN_MASK_CREATE, IN_ONESHOT, IN_ONLYDIR, IN_Q_OVERFLOW, IN_UNMOUNT,
                                InotifyFile, new_instance)
from syscalls.abi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, s32
from syscalls.registry import PARTIAL, syscall

IN_CLOEXEC, IN_NONBLOCK = O_CLOEXEC, O_NONBLOCK
ALL_INOTIFY_BITS = (IN_ALL_EVENTS | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED | IN_ONLYDIR | IN_DONT_FOLLOW
                    | IN_EXCL_UNLINK | IN_MASK_CREATE | IN_MASK_ADD | IN_ISDIR | IN_ONESHOT)
_NOTE = ("events from what the sandbox does (a host process's changes to a lent file are not seen); "
         "IN_UNMOUNT when the last mount of a watched file's filesystem goes; a file renamed into another "
         "directory while open reports "
         "to the directory it was opened in")


@syscall("inotify_init1", status=PARTIAL, note=_NOTE)
def inotify_init1(t, flags):
    flags = s32(flags)
    if flags & ~(IN_CLOEXEC | IN_NONBLOCK):
        raise Errno(E.EINVAL)
    f = new_instance(t.vfs.notify, t.uid, flags)  # EMFILE past max_user_instances
    try:
        return t.fds.install(f, cloexec=bool(flags & IN_CLOEXEC))
    except Errno:
        f.close()
        raise


@syscall("inotify_init", status=PARTIAL, note=_NOTE)
def inotify_init(t):
    return inotify_init1(t, 0)


def _instance(t, fd) -> InotifyFile:
    f = t.fds.get(s32(fd))
    if not isinstance(f, InotifyFile):
        raise Errno(E.EINVAL)
    return f


@syscall("inotify_add_watch", status=PARTIAL, note=_NOTE)
def inotify_add_watch(t, fd, path, mask):
    mask &= 0xFFFFFFFF
    if mask & IN_MASK_ADD and mask & IN_MASK_CREATE:
        raise Errno(E.EINVAL)
    if not mask & ALL_INOTIFY_BITS:
        raise Errno(E.EINVAL)
    f = _instance(t, fd)
    inode = t.vfs.lookup(t, AT_FDCWD, t.mm.read_cstring(path), follow=not mask & IN_DONT_FOLLOW)
    if mask & IN_ONLYDIR and not inode.is_dir():
        raise Errno(E.ENOTDIR)
    perm.permission(t, inode, perm.MAY_READ)  # only a file one may read is watched
    return f.add_watch(inode, mask)


@syscall("inotify_rm_watch", status=PARTIAL, note=_NOTE)
def inotify_rm_watch(t, fd, wd):
    _instance(t, fd).rm_watch(s32(wd))
    return 0


def changed_at(t, dirfd, path, flags, inode, mask: int) -> None:
    """notify.changed for a call that named inode by dirfd and path (or the dirfd
    itself, for an empty path): its directory's watch hears the name too."""
    try:
        name = t.mm.read_cstring(path) if path else b""
    except Errno:
        name = b""  # (read before the change; a thread may have unmapped it since)
    if not name:
        dirfd = s32(dirfd)
        if dirfd != AT_FDCWD and (flags & AT_EMPTY_PATH or not path):
            f = t.fds.files.get(dirfd)
            if f is not None:
                notify.file_changed(f, mask)
                return
        notify.changed(inode, mask)
        return
    parent, base = None, b""
    try:
        found = t.vfs.find(t, s32(dirfd), name, follow=not flags & AT_SYMLINK_NOFOLLOW)
        d = found.dir
        if found.loc is not None and len(found.loc) > 1 and d.fs is inode.fs:
            parent, base = notify.key_of(d), found.loc[-1][0]
    except Errno:
        pass
    notify.changed(inode, mask, parent, base)


def dnotify(t, f, fd: int, arg: int) -> int:
    """fcntl F_NOTIFY (fcntl_dirnotify): no events (DN_MULTISHOT aside) drops this file's
    registration; else directories only (ENOTDIR)."""
    from sentry.vfs import dnotify as dn
    if not arg & ~dn.DN_MULTISHOT:
        dn.flush(t, f)
        return 0
    if not f.inode.is_dir():
        raise Errno(E.ENOTDIR)
    dn.register(t, f, fd, arg)
    return 0
