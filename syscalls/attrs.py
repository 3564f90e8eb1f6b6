"""A file's attributes: chmod(2), chown(2), utimensat(2) and the older utime(2),
utimes(2), futimesat(2) (extended attributes: syscalls/xattr.py).

Who may change what is Linux's rule (sentry/vfs/perm.py): the mode and
explicit times are the owner's or CAP_FOWNER's, the owner CAP_CHOWN's (an
owner may give the file to one of its groups), "now" needs the owner or write
permission. Memory filesystems record the new owner; a host mount keeps the
host's (EPERM unless nothing changes) and takes no set-user-ID or
set-group-ID bit."""
import errno as E
import stat as S
import time

from sentry.errors import Errno
from sentry.vfs import notify, perm
from syscalls.abi import (AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, read_timespec_pair,
                          read_timeval_pair, s32)
from syscalls.paths import CWD, file_of, inode_at
from syscalls.inotify import changed_at
from syscalls.registry import PARTIAL, syscall


# --- mode ------------------------------------------------------------------------------------
_CHMOD_NOTE = ("the owner's or CAP_FOWNER's (EPERM), S_ISGID dropped outside the file's group; a host file "
               "takes no set-user-ID or set-group-ID bit (EPERM)")


def _chmod(t, inode, mode: int) -> int:
    inode.fs.check_writable()
    if inode.is_symlink():
        raise Errno(E.EOPNOTSUPP)  # a link's mode never changes
    inode.chmod(perm.chmod_mode(t, inode, mode & 0o7777))
    return 0


@syscall("fchmodat2", status=PARTIAL, note=_CHMOD_NOTE)
def fchmodat2(t, dirfd, path, mode, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    inode = inode_at(t, dirfd, path, flags)
    _chmod(t, inode, mode)
    if notify.marks:
        changed_at(t, dirfd, path, flags, inode, notify.ATTRIB)
    return 0


@syscall("fchmodat", status=PARTIAL, note=_CHMOD_NOTE)
def fchmodat(t, dirfd, path, mode):
    return fchmodat2(t, dirfd, path, mode, 0)


@syscall("chmod", status=PARTIAL, note=_CHMOD_NOTE)
def chmod(t, path, mode):
    return fchmodat2(t, CWD, path, mode, 0)


@syscall("fchmod", status=PARTIAL, note=_CHMOD_NOTE)
def fchmod(t, fd, mode):
    f = file_of(t, fd)
    _chmod(t, f.stat_inode(), mode)
    if notify.marks:
        notify.file_changed(f, notify.ATTRIB)
    return 0


# --- owner -----------------------------------------------------------------------------------
def _chown(t, inode, uid: int, gid: int) -> int:
    inode.fs.check_writable()
    uid, gid = s32(uid), s32(gid)  # -1: leave it
    outsider = perm.may_chown(t, inode, uid, gid)
    inode.chown(uid, gid)  # drops set-user-ID, and set-group-ID where group-executable
    if outsider and inode.mode & S.S_ISGID and not inode.is_dir():
        inode.chmod(inode.mode & 0o7777 & ~S.S_ISGID)
    return 0


_CHOWN_NOTE = ("Linux's rules (CAP_CHOWN, or the owner giving the group to one of its groups; set-id bits "
               "dropped); memory files record the owner; host files keep the host's (EPERM unless unchanged)")


@syscall("fchownat", status=PARTIAL, note=_CHOWN_NOTE)
def fchownat(t, dirfd, path, uid, gid, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise Errno(E.EINVAL)
    inode = inode_at(t, dirfd, path, flags)
    _chown(t, inode, uid, gid)
    if notify.marks and (s32(uid) != -1 or s32(gid) != -1):
        changed_at(t, dirfd, path, flags, inode, notify.ATTRIB)
    return 0


@syscall("chown", status=PARTIAL, note=_CHOWN_NOTE)
def chown(t, path, uid, gid):
    return fchownat(t, CWD, path, uid, gid, 0)


@syscall("lchown", status=PARTIAL, note=_CHOWN_NOTE)
def lchown(t, path, uid, gid):
    return fchownat(t, CWD, path, uid, gid, AT_SYMLINK_NOFOLLOW)


@syscall("fchown", status=PARTIAL, note=_CHOWN_NOTE)
def fchown(t, fd, uid, gid):
    f = file_of(t, fd)
    _chown(t, f.stat_inode(), uid, gid)
    if notify.marks and (s32(uid) != -1 or s32(gid) != -1):
        notify.file_changed(f, notify.ATTRIB)
    return 0


# --- times -----------------------------------------------------------------------------------
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _set_times(t, dirfd, path, times, flags) -> int:
    """The one path of every utime call (Linux's do_utimes): times is None (both now)
    or two (sec, nsec) pairs whose nsec may be UTIME_NOW or UTIME_OMIT."""
    if path == 0 and s32(dirfd) != AT_FDCWD:  # futimens: the fd itself
        if flags:
            raise Errno(E.EINVAL)
        inode = file_of(t, dirfd).stat_inode()
    else:
        if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
            raise Errno(E.EINVAL)
        inode = inode_at(t, dirfd, path, flags)
    now = time.time_ns()
    values = [now, now]
    if times is not None:
        for i, (sec, nsec) in enumerate(times):
            if nsec == UTIME_OMIT:
                values[i] = None
            elif nsec != UTIME_NOW:
                if not 0 <= nsec < 1_000_000_000:
                    raise Errno(E.EINVAL)
                values[i] = sec * 1_000_000_000 + nsec
    inode.fs.check_writable()
    # both "now" is a touch (the owner, or write permission); anything else sets times
    perm.may_set_times(t, inode, explicit=times is not None and any(n != UTIME_NOW for _, n in times))
    inode.set_times(*values)
    if notify.marks:  # both times: IN_ATTRIB; one: IN_ACCESS or IN_MODIFY (fsnotify_change)
        mask = notify.ATTRIB if None not in values else notify.ACCESS if values[0] is not None else notify.MODIFY
        changed_at(t, dirfd, path, flags, inode, mask)
    return 0


@syscall("utimensat")
def utimensat(t, dirfd, path, times_addr, flags):
    times = None
    if times_addr:
        times = read_timespec_pair(t.mm, times_addr)
        if times[0][1] == UTIME_OMIT and times[1][1] == UTIME_OMIT:
            return 0  # nothing to do: the path is not even looked at
    return _set_times(t, dirfd, path, times, flags & 0xFFFFFFFF)


@syscall("futimesat")
def futimesat(t, dirfd, path, tv_addr):
    times = None
    if tv_addr:
        times = [divmod(ns, 1_000_000_000) for ns in read_timeval_pair(t.mm, tv_addr)]
    return _set_times(t, dirfd, path, times, 0)


@syscall("utimes")
def utimes(t, path, tv_addr):
    return futimesat(t, CWD, path, tv_addr)


@syscall("utime")
def utime(t, path, buf):
    times = None
    if buf:
        actime, modtime = t.mm.read_u64(buf), t.mm.read_u64(buf + 8)
        times = [(actime - (1 << 64) if actime >> 63 else actime, 0),
                 (modtime - (1 << 64) if modtime >> 63 else modtime, 0)]
    return _set_times(t, CWD, path, times, 0)
