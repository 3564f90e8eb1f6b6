"""Filesystem change events, as Linux's fsnotify: the VFS operations and the
file calls raise events on inodes, and marks on those inodes (inotify
watches, dnotify registrations, fanotify marks) hand them to their groups.

`marks` is the one table of marks, keyed by (device, inode number) as the
lock table is (a host inode object is made afresh at each lookup; device
numbers are never shared between sandboxes, so one table serves every
sandbox of a process). While it is empty, which is the usual case, every
hook in the VFS and the file calls is one test of it and nothing more.

Events come only from what the sandbox itself does: a host file that a host
process changes raises none; a filesystem whose last mount goes (umount2, syscalls/mount.py)
tells each mark on it IN_UNMOUNT, then the mark goes (`unmounted`).

Where Linux follows a dentry to a file's parent, an open file here keeps the
key of the directory it was opened in (`File.notify_parent`, set by
VFS.open) and its name is the last component of its path: a file renamed
into another directory while open still reports to the first one.

A group is any object with `handle(mark, mask, name, cookie)` (an event it
asked for) and `freeing(mark)` (the mark went: inotify's IN_IGNORED), and
maybe `file_closed(mark)` (an open file of the marked inode went).
"""
import os
import stat as S

from sentry.errors import Errno

# fsnotify's event bits; inotify's IN_* are the same values
ACCESS, MODIFY, ATTRIB = 0x1, 0x2, 0x4
CLOSE_WRITE, CLOSE_NOWRITE, OPEN = 0x8, 0x10, 0x20
MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
DELETE_SELF, MOVE_SELF, OPEN_EXEC = 0x400, 0x800, 0x1000
UNMOUNT, Q_OVERFLOW, IGNORED = 0x2000, 0x4000, 0x8000
OPEN_PERM, ACCESS_PERM, OPEN_EXEC_PERM = 0x10000, 0x20000, 0x40000
EVENT_ON_CHILD, RENAME, ISDIR = 0x08000000, 0x10000000, 0x40000000
ALL_EVENTS = 0x0007FFFF | RENAME  # what a mark's mask may select
CLOSE = CLOSE_WRITE | CLOSE_NOWRITE
MOVE = MOVED_FROM | MOVED_TO

# mark flags
EXCL_UNLINK = 0x1  # no events from a file once it has no name (through an open file)
ONESHOT = 0x2      # the mark goes after its first event

O_PATH, O_ACCMODE, O_RDONLY = 0o10000000, 3, 0

marks: dict = {}   # (dev, ino) -> [Mark], only keys that have marks
_cookie = [0]


def key_of(inode) -> tuple:
    return (inode.fs.dev, inode.ino)


class Mark:
    """One group's interest in one inode."""
    __slots__ = ("group", "key", "mask", "flags", "isdir", "alive", "inode", "data")

    def __init__(self, group, key, mask: int, flags: int, isdir: bool, inode=None):
        self.group, self.key, self.mask, self.flags, self.isdir = group, key, mask, flags, isdir
        self.alive = True
        self.inode = inode  # held while watched, as Linux pins a marked inode
        self.data = None    # the group's own (inotify: the watch descriptor)


def add_mark(mark: Mark) -> None:
    marks.setdefault(mark.key, []).append(mark)


def remove_mark(mark: Mark, tell: bool = True) -> None:
    """The mark goes (rm_watch, a one-shot mark's event, its inode deleted, its group
    closed): tell=True lets its group say so (IN_IGNORED)."""
    if not mark.alive:
        return
    mark.alive = False
    lst = marks.get(mark.key)
    if lst is not None:
        try:
            lst.remove(mark)
        except ValueError:
            pass
        if not lst:
            del marks[mark.key]
    if tell:
        mark.group.freeing(mark)


def new_cookie() -> int:
    _cookie[0] = (_cookie[0] + 1) & 0xFFFFFFFF or 1
    return _cookie[0]


# --- delivery --------------------------------------------------------------------------------------
def _to_marks(key, mask: int, name: bytes, cookie: int, child: bool, unlinked: bool = False) -> None:
    """Hand the event to the marks on key that want it. child: the event is about an
    entry of that directory (fsnotify_parent): only marks watching children take it."""
    lst = marks.get(key)
    if not lst:
        return
    for m in list(lst):
        if not m.alive or not mask & m.mask & ALL_EVENTS:
            continue
        if child and not m.mask & EVENT_ON_CHILD:
            continue
        if unlinked and m.flags & EXCL_UNLINK:
            continue
        m.group.handle(m, mask, name, cookie)


def _isdir(inode) -> int:
    return ISDIR if S.S_ISDIR(inode.mode) else 0


def _file_event(f, mask: int) -> None:
    """An event on an open file (fsnotify_path): its directory's watch hears it with the
    file's name, then the file's own; a file with no name left is EXCL_UNLINK's."""
    inode = getattr(f, "inode", None)
    if inode is None or f.flags & O_PATH:
        return
    key, parent = key_of(inode), getattr(f, "notify_parent", None)
    to_parent = parent is not None and parent in marks
    if not to_parent and key not in marks:
        return
    mask |= _isdir(inode)
    try:
        unlinked = not inode.is_dir() and inode.stat().nlink == 0
    except Errno:
        unlinked = False  # (a host file the host removed under us)
    if to_parent:
        _to_marks(parent, mask, _basename(f.path), 0, True, unlinked)
    _to_marks(key, mask, b"", 0, False, unlinked)


def _basename(path: str) -> bytes:
    return os.fsencode(path).rstrip(b"/").rpartition(b"/")[2]


# --- the hooks (each caller tests `marks` first) -------------------------------------------------------
def opened(f) -> None:
    _file_event(f, OPEN)


def accessed(f) -> None:
    _file_event(f, ACCESS)


def modified(f) -> None:
    _file_event(f, MODIFY)


def closed(f) -> None:
    """The last reference to an open file went (__fput): IN_CLOSE_*, and the file's
    deletion if it was the last thing holding a name-less inode."""
    if getattr(f, "inode", None) is None:
        return
    if not f.flags & O_PATH:  # (an O_PATH file raises no event, but holds the inode as any)
        _file_event(f, CLOSE_WRITE if f.flags & O_ACCMODE != O_RDONLY else CLOSE_NOWRITE)
    key = key_of(f.inode)
    for m in list(marks.get(key, ())):
        file_closed = getattr(m.group, "file_closed", None)  # dnotify: registrations made through f go
        if file_closed is not None:
            file_closed(m)
    if key in _pending_delete:
        tasks = _pending_delete[key]
        if not _in_use(tasks, key, f):
            del _pending_delete[key]
            _inode_gone(f.inode, key)


def changed(inode, mask: int, parent_key=None, name: bytes = b"") -> None:
    """notify_change's events (fsnotify_change): mode, owner, times, size. Through a
    path or a file: the directory's watch first, with the name."""
    mask |= _isdir(inode)
    if parent_key is not None and parent_key in marks:
        _to_marks(parent_key, mask, name, 0, True)
    _to_marks(key_of(inode), mask, b"", 0, False)


def file_changed(f, mask: int) -> None:
    changed(f.inode, mask, getattr(f, "notify_parent", None), _basename(f.path))


def created(directory, name: bytes, inode) -> None:
    """A new name in directory (create, mkdir, mknod, symlink)."""
    _to_marks(key_of(directory), CREATE | _isdir(inode), name, 0, False)


def linked(directory, name: bytes, inode) -> None:
    """link(2): the file's link count, then the new name."""
    _to_marks(key_of(inode), ATTRIB | _isdir(inode), b"", 0, False)
    _to_marks(key_of(directory), CREATE | _isdir(inode), name, 0, False)


def removed(task, directory, name: bytes, inode, rmdir: bool) -> None:
    """unlink(2)/rmdir(2) done: the file's link count (unlink), its deletion once nothing
    holds it, then the name's removal in the directory."""
    key = key_of(inode)
    if not rmdir:
        _to_marks(key, ATTRIB, b"", 0, False)
    _maybe_gone(task, inode, key)
    _to_marks(key_of(directory), DELETE | (ISDIR if rmdir else 0), name, 0, False)


def moved(task, old_dir, old_name: bytes, new_dir, new_name: bytes, inode, target) -> None:
    """rename(2) done (fsnotify_move): the two names with one cookie, the replaced
    file's link count, the file's own move, then the replaced file's deletion."""
    isdir = _isdir(inode)
    cookie = new_cookie()
    old_key, new_key = key_of(old_dir), key_of(new_dir)
    if old_key == new_key:  # FS_RENAME: only dnotify asks for it (DN_RENAME, within one directory)
        _to_marks(old_key, RENAME | isdir, old_name, 0, False)
    _to_marks(old_key, MOVED_FROM | isdir, old_name, cookie, False)
    _to_marks(new_key, MOVED_TO | isdir, new_name, cookie, False)
    if target is not None:
        _to_marks(key_of(target), ATTRIB | _isdir(target), b"", 0, False)
    _to_marks(key_of(inode), MOVE_SELF | isdir, b"", 0, False)
    if target is not None:
        _maybe_gone(task, target, key_of(target))


# --- deletion ------------------------------------------------------------------------------------------
# A name-less inode is deleted (IN_DELETE_SELF, then its marks go) when the last
# thing holding it lets go: at once when nothing does, else at the close of the last
# open file of it (Linux: the dentry's last reference).
_pending_delete: dict = {}  # key -> the kernel's tasks, where the open files are


def _maybe_gone(task, inode, key) -> None:
    if key not in marks:
        return
    try:
        if inode.stat().nlink:
            return
    except Exception:
        pass  # a host file already gone: its O_PATH descriptor still says 0, or fails
    tasks = task.kernel.tasks if task is not None and getattr(task, "kernel", None) is not None else {}
    if _in_use(tasks, key, None):
        _pending_delete[key] = tasks
        return
    _inode_gone(inode, key)


def _in_use(tasks, key, closing) -> bool:
    """Does any process still hold the inode through an open file other than `closing`?
    (A working directory holds it too in Linux, until the process leaves it; here its
    removal is told at once, leaving one being nothing that raises an event.)"""
    for t in list(tasks.values()):
        fds = getattr(t, "fds", None)
        if fds is not None:
            for f in fds.files.values():
                if f is not closing and getattr(f, "inode", None) is not None and key_of(f.inode) == key:
                    return True
    return False


def _inode_gone(inode, key) -> None:
    mask = DELETE_SELF | _isdir(inode)
    _to_marks(key, mask, b"", 0, False)
    for m in list(marks.get(key, ())):
        remove_mark(m)


def unmounted(fs) -> None:
    """fsnotify_unmount_inodes: the marks on fs's inodes hear IN_UNMOUNT and go (IN_IGNORED)."""
    for key in [k for k in marks if k[0] == fs.dev]:
        for m in list(marks.get(key, ())):
            if m.inode is not None and m.inode.fs is not fs:
                continue
            mask = UNMOUNT | (_isdir(m.inode) if m.inode is not None else 0)
            if m.alive:
                m.group.handle(m, mask, b"", 0)
            remove_mark(m)


# --- per-sandbox limits ----------------------------------------------------------------------------------
class Limits:
    """/proc/sys/fs/inotify's and /proc/sys/fs/fanotify's values for one sandbox, and what
    each user holds against them (Linux counts per user in the user namespace)."""

    def __init__(self):
        self.max_user_instances = 128
        self.max_user_watches = 8192
        self.max_queued_events = 16384
        self.instances: dict[int, int] = {}  # uid -> inotify instances
        self.watches: dict[int, int] = {}    # uid -> inotify watches
        # /proc/sys/fs/fanotify (sentry/vfs/fanotify.py)
        self.fanotify_max_user_groups = 128
        self.fanotify_max_user_marks = 8192
        self.fanotify_max_queued_events = 16384
        self.fanotify_groups: dict[int, int] = {}  # euid -> fanotify groups


def watched(f) -> bool:
    """Does a mark watch f's inode, or the directory it was opened in?"""
    inode = getattr(f, "inode", None)
    return inode is not None and (key_of(inode) in marks or getattr(f, "notify_parent", None) in marks)
