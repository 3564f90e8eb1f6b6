"""dnotify (fcntl F_NOTIFY): a signal to the directory file's owner when an
entry of the directory is accessed, modified, created, deleted, renamed or has
its attributes changed, built on the same events as inotify
(sentry/vfs/notify.py). Linux's fs/notify/dnotify: one mark per directory
holding a registration per (open file, process's file table); a registration
without DN_MULTISHOT goes after its first signal, and closing the descriptor
it was made through ends it."""
from sentry import fasync
from sentry.vfs import notify

DN_ACCESS, DN_MODIFY, DN_CREATE, DN_DELETE, DN_RENAME, DN_ATTRIB = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
DN_MULTISHOT = 0x80000000


def events_of(arg: int) -> int:
    """convert_arg: the fsnotify events a DN_* mask asks for."""
    mask = 0
    if arg & DN_DELETE:
        mask |= notify.DELETE | notify.MOVED_FROM
    if arg & DN_MODIFY:
        mask |= notify.MODIFY
    if arg & DN_ACCESS:
        mask |= notify.ACCESS
    if arg & DN_ATTRIB:
        mask |= notify.ATTRIB
    if arg & DN_RENAME:
        mask |= notify.RENAME
    if arg & DN_CREATE:
        mask |= notify.CREATE | notify.MOVED_TO
    return mask


class Registration:
    __slots__ = ("file", "fds", "fd", "mask", "multishot", "kernel")

    def __init__(self, kernel, file, fds, fd: int, mask: int, multishot: bool):
        self.kernel, self.file, self.fds, self.fd, self.mask, self.multishot = \
            kernel, file, fds, fd, mask, multishot

    def current(self) -> bool:
        """Is the descriptor it was made through still that file (dnotify_flush at close)?"""
        return self.fds.files.get(self.fd) is self.file


class _Group:
    """The one dnotify group: a mark's `data` is its list of registrations."""

    def handle(self, mark, mask: int, name: bytes, cookie: int) -> None:
        test = mask & ~notify.EVENT_ON_CHILD
        for reg in list(mark.data):
            if not reg.current():
                mark.data.remove(reg)
                continue
            if not reg.mask & test:
                continue
            fasync.send_sigio(reg.kernel, reg.file, reg.fd, fasync.POLL_MSG)
            if not reg.multishot:
                mark.data.remove(reg)
        _recalc(mark)

    def freeing(self, mark) -> None:
        mark.data = []

    def file_closed(self, mark) -> None:
        _recalc(mark)  # (a registration whose descriptor is gone goes)


GROUP = _Group()


def _recalc(mark) -> None:
    regs = [r for r in mark.data if r.current()]
    mark.data = regs
    if not regs:
        notify.remove_mark(mark)
    else:
        mark.mask = notify.EVENT_ON_CHILD
        for r in regs:
            mark.mask |= r.mask


def _mark_of(key):
    for m in notify.marks.get(key, ()):
        if m.group is GROUP and m.alive:
            return m
    return None


def register(t, f, fd: int, arg: int) -> None:
    """F_NOTIFY with events: add (or widen) this file's registration on its directory."""
    key = notify.key_of(f.inode)
    mark = _mark_of(key)
    if mark is None:
        mark = notify.Mark(GROUP, key, notify.EVENT_ON_CHILD, 0, True)
        mark.data = []
        notify.add_mark(mark)
    fasync.set_owner(t, f, fasync.PIDTYPE_TGID, t.proc, force=False)
    mask = events_of(arg)
    for reg in mark.data:
        if reg.file is f and reg.fds is t.fds:
            reg.fd = fd
            reg.mask |= mask
            reg.multishot = reg.multishot or bool(arg & DN_MULTISHOT)
            break
    else:
        mark.data.append(Registration(t.kernel, f, t.fds, fd, mask, bool(arg & DN_MULTISHOT)))
    _recalc(mark)


def flush(t, f) -> None:
    """F_NOTIFY with no events: this file's registrations (in the caller's table) go."""
    mark = _mark_of(notify.key_of(f.inode))
    if mark is not None:
        mark.data = [r for r in mark.data if not (r.file is f and r.fds is t.fds)]
        _recalc(mark)
