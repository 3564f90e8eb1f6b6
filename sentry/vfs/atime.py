"""When reading a file or a directory moves its access time: Linux's file_accessed /
touch_atime, for the sandbox's memory filesystems (tmpfs, the ext trees on loop devices);
a lent host file's atime is the host's.

A mount's options decide: noatime never, nodiratime never for a directory, a read-only
mount never, strictatime always, and relatime (the default) only when the access time is
not past the last change (mtime or ctime) or is a day old (relatime_need_update). An
O_NOATIME open and a file marked FS_NOATIME_FL never move it either.
"""
import time

from sentry.vfs import mounts
from sentry.vfs.file import O_NOATIME
from sentry.vfs.inode import FS_NOATIME_FL, DirInode, RegularInode

NEVER, RELATIME, STRICT = 0, 1, 2
DAY_NS = 24 * 3600 * 10**9


def _policy(vfs, f) -> int:
    inode = f.inode
    if f.flags & O_NOATIME or not isinstance(inode, (RegularInode, DirInode)) or inode.stat() is not inode:
        return NEVER
    from sentry.vfs import loc_path
    loc = getattr(f, "loc", None)
    place = loc_path(loc) if loc is not None else None
    m = mounts.mount_at(vfs, place) if place is not None else mounts.mount_of_file(vfs, f)
    flags = m.flags
    if m.readonly or flags & mounts.MS_NOATIME or flags & mounts.MS_NODIRATIME and inode.is_dir():
        return NEVER
    return RELATIME if flags & mounts.MS_RELATIME else STRICT


def file_accessed(vfs, f) -> None:
    """f was read (or its directory listed): its inode's atime moves as the mount says.
    The mount's rule is taken once per open file."""
    policy = f.__dict__.get("atime_policy")
    if policy is None:
        try:
            policy = _policy(vfs, f)
        except Exception:  # a file of no place in the tree (an unlinked O_TMPFILE's)
            policy = NEVER
        f.atime_policy = policy
    if policy == NEVER:
        return
    inode = f.inode
    if inode.iflags & FS_NOATIME_FL:
        return
    now = time.time_ns()
    atime = inode.atime
    if policy == RELATIME and atime > inode.mtime and atime > inode.ctime and now - atime < DAY_NS:
        return
    if atime != now:
        inode.atime = now
