"""Who may do what to a file: Linux's discretionary access control (DAC), with
the sandbox's own credentials.

Every check of the file calls comes here, in Linux's order and with its
errnos: `permission` is inode_permission (EROFS for a write on a read-only
filesystem, then generic_permission on the mode bits, no ACLs), `may_create`
and `may_delete` are namei's, `owns` is inode_owner_or_capable, the rest are
the setattr and link rules.

Credentials are the thread's: fsuid, fsgid, supplementary groups
(sentry/task.py, syscalls/creds.py) and its effective capabilities
(sentry/caps.py: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER,
CAP_CHOWN, CAP_FSETID), which Linux's setuid and setfsuid fix-ups keep while
the fsuid is 0 unless capset drops them.

A file's owner and group are what its inode's `owner()` says, as the sandbox
sees them: memory and overlay files carry sandbox ids; a host file's are
the sandbox's root where the host user who runs the sentry owns it in a
directory the user lent, else None (nobody in the sandbox: only the "other"
bits apply, and no privilege overrides them), as in a rootless container
(sentry/vfs/hostfs.py). Privilege over a file needs both of its ids to exist
in the sandbox (Linux's capable_wrt_inode_uidgid).

A task of None is the sentry itself (setting up the view): never refused.
"""
import errno as E
import stat as S
from contextlib import contextmanager

from sentry import caps
from sentry.caps import CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID
from sentry.errors import Errno
from sentry.vfs.inode import is_append_only, is_immutable, may_set_attributes

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4
_RO_KINDS = (S.S_IFREG, S.S_IFDIR, S.S_IFLNK)  # what a read-only filesystem refuses to write


def in_group(task, gid) -> bool:
    """in_group_p: the thread's fsgid or one of its supplementary groups (until setgroups,
    its gid alone: what getgroups shows)."""
    if gid is None:
        return False
    return gid == task.fsgid or gid in (task.groups if task.groups is not None else (task.gid,))


def capable(task, inode, cap: int) -> bool:
    """capable_wrt_inode_uidgid: cap in the effective set, and the file's owner and
    group are ids of the sandbox."""
    if not caps.has(task, cap):
        return False
    uid, gid = inode.owner()
    return uid is not None and gid is not None


def _allowed(task, inode, want: int) -> bool:
    """generic_permission without ACLs: the owner, group or other bits, then privilege
    (directories: any search or read, writes too; files: reads and writes, and
    execution where some execute bit is set)."""
    mode = inode.mode
    uid, gid = inode.owner()
    if uid is not None and task.fsuid == uid:
        bits = mode >> 6
    elif in_group(task, gid):
        bits = mode >> 3
    else:
        bits = mode
    if not want & ~bits & 7:
        return True
    if S.S_ISDIR(mode):
        return (not want & MAY_WRITE and capable(task, inode, CAP_DAC_READ_SEARCH)
                or capable(task, inode, CAP_DAC_OVERRIDE))
    if want & 7 == MAY_READ and capable(task, inode, CAP_DAC_READ_SEARCH):
        return True
    return (not want & MAY_EXEC or bool(mode & 0o111)) and capable(task, inode, CAP_DAC_OVERRIDE)


def permission(task, inode, want: int) -> None:
    """inode_permission: want is MAY_READ|MAY_WRITE|MAY_EXEC. A write to a file,
    directory or link of a read-only filesystem is EROFS before any bit is looked at."""
    if want & MAY_WRITE and inode.fs.readonly and S.S_IFMT(inode.mode) in _RO_KINDS:
        raise Errno(E.EROFS)
    if want & MAY_WRITE and is_immutable(inode):
        raise Errno(E.EPERM)  # FS_IMMUTABLE_FL: no write, whoever asks
    if task is not None and not _allowed(task, inode, want):
        raise Errno(E.EACCES)


def may_search(task, directory) -> None:
    """may_lookup: crossing a directory in a walk needs its search bit."""
    if task is not None and not _allowed(task, directory, MAY_EXEC):
        raise Errno(E.EACCES)


def owns(task, inode) -> bool:
    """inode_owner_or_capable: the caller is the file's owner, or holds CAP_FOWNER over it."""
    if task is None:
        return True
    uid, _ = inode.owner()
    return (uid is not None and task.fsuid == uid) or capable(task, inode, CAP_FOWNER)


def may_create(task, directory) -> None:
    """A new name in directory: write and search on it."""
    permission(task, directory, MAY_WRITE | MAY_EXEC)


def may_delete(task, directory, victim, isdir: bool) -> None:
    """Removing (or renaming away, or replacing) victim's name in directory: write and
    search on the directory; in a sticky one, only the owner of the file or of the
    directory, or CAP_FOWNER (EPERM); then the kind (ENOTDIR, EISDIR)."""
    permission(task, directory, MAY_WRITE | MAY_EXEC)
    if is_append_only(directory):
        raise Errno(E.EPERM)
    if task is not None and directory.mode & S.S_ISVTX:
        fsuid = task.fsuid
        if fsuid not in (victim.owner()[0], directory.owner()[0]) and not capable(task, victim, CAP_FOWNER):
            raise Errno(E.EPERM)
    if is_immutable(victim) or is_append_only(victim):
        raise Errno(E.EPERM)
    if isdir and not victim.is_dir():
        raise Errno(E.ENOTDIR)
    if not isdir and victim.is_dir():
        raise Errno(E.EISDIR)


def may_link(task, inode) -> None:
    """fs.protected_hardlinks=1 (Debian's default): a hard link to a file the caller
    does not own needs a regular file, not set-user-ID nor executable set-group-ID,
    that it may read and write (EPERM), unless it holds CAP_FOWNER."""
    if is_immutable(inode) or is_append_only(inode):
        raise Errno(E.EPERM)  # vfs_link's check
    if task is None or owns(task, inode):
        return
    mode = inode.mode
    safe = (S.S_ISREG(mode) and not mode & S.S_ISUID
            and mode & (S.S_ISGID | S.S_IXGRP) != (S.S_ISGID | S.S_IXGRP))
    if safe:
        try:
            permission(task, inode, MAY_READ | MAY_WRITE)
        except Errno:
            safe = False
    if not safe:
        raise Errno(E.EPERM)


def new_owner(task, directory, mode: int, umask: int = 0):
    """(uid, gid, mode) of a file about to be made in directory with mode (its type
    included) less umask: vfs_prepare_mode and inode_init_owner. Owned by the fsuid; the
    group is the directory's when it is set-group-ID (a new directory inherits the
    bit), else the fsgid. A set-group-ID request for an executable file made there by
    someone outside that group without CAP_FSETID loses the bit (mode_strip_sgid, which
    looks at the mode asked for, before the umask takes S_IXGRP away)."""
    if task is None:
        return 0, 0, mode & ~(umask & 0o777)
    if directory.mode & S.S_ISGID:
        _, gid = directory.owner()
        if (not S.S_ISDIR(mode) and mode & (S.S_ISGID | S.S_IXGRP) == (S.S_ISGID | S.S_IXGRP)
                and not in_group(task, gid) and not capable(task, directory, CAP_FSETID)):
            mode &= ~S.S_ISGID
        mode &= ~(umask & 0o777)
        if S.S_ISDIR(mode):
            mode |= S.S_ISGID
        return task.fsuid, directory.gid, mode
    return task.fsuid, task.fsgid, mode & ~(umask & 0o777)


def chmod_mode(task, inode, mode: int) -> int:
    """The mode chmod may set (setattr_prepare): the owner's or CAP_FOWNER's call
    (EPERM), S_ISGID dropped unless the caller is in the file's group or holds
    CAP_FSETID."""
    may_set_attributes(inode)
    if not owns(task, inode):
        raise Errno(E.EPERM)
    if task is not None and mode & S.S_ISGID and not in_group(task, inode.owner()[1]) \
            and not capable(task, inode, CAP_FSETID):
        mode &= ~S.S_ISGID
    return mode


def may_chown(task, inode, uid: int, gid: int) -> bool:
    """chown_ok and chgrp_ok (EPERM); uid and gid are -1 to leave them. True when the
    caller is neither in the file's group nor holds CAP_FSETID: a set-group-ID bit
    then goes too (setattr_should_drop_sgid; Inode.chown drops the rest)."""
    may_set_attributes(inode)
    if task is None:
        return False
    owner, group = inode.owner()
    is_owner = owner is not None and task.fsuid == owner
    if uid != -1 and not (is_owner and uid == owner) and not capable(task, inode, CAP_CHOWN):
        raise Errno(E.EPERM)
    if gid != -1 and not (is_owner and (gid == group or in_group(task, gid))) and not capable(task, inode, CAP_CHOWN):
        raise Errno(E.EPERM)
    return not in_group(task, group) and not capable(task, inode, CAP_FSETID)


def may_set_times(task, inode, explicit: bool) -> None:
    """utimensat and its family (may_setattr, setattr_prepare): explicit times need
    the owner or CAP_FOWNER (EPERM); "now" also the write permission (EACCES). An
    immutable file's times stay (EPERM), an append-only file's explicit ones too."""
    if explicit:
        may_set_attributes(inode)
    elif is_immutable(inode):
        raise Errno(E.EPERM)
    if owns(task, inode):
        return
    if explicit:
        raise Errno(E.EPERM)
    permission(task, inode, MAY_WRITE)


@contextmanager
def real_ids(task):
    """access(2) without AT_EACCESS checks, its walk included, with the real uid and
    gid as the fs ids, and root's capabilities only for a real uid 0 (Linux's
    access_override_creds)."""
    saved = task.fsuid, task.fsgid, task.caps
    task.fsuid, task.fsgid, task.caps = task.uid, task.gid, caps.for_access(task)
    try:
        yield
    finally:
        task.fsuid, task.fsgid, task.caps = saved
