"""Namespace files: /proc/PID/ns/* (magic links "kind:[inode]" to an nsfs inode per
namespace, which setns(2) and the NS_GET_* ioctls take) and the files that set up a
namespace: /proc/PID/uid_map, gid_map, setgroups and timens_offsets."""
import errno as E
import stat as S

from sentry import namespaces as nsm
from sentry.errors import Errno
from sentry.vfs.file import O_CLOEXEC, O_RDONLY, File
from sentry.vfs.inode import FileSystem, Inode
from sentry.vfs.procfs import GenInode, ProcDir, ProcLink

NSFS = FileSystem("nsfs", readonly=True, magic=nsm.NSFS_MAGIC)
NS_GET_USERNS, NS_GET_PARENT, NS_GET_NSTYPE, NS_GET_OWNER_UID = 0xB701, 0xB702, 0xB703, 0xB704
# /proc/PID/ns, in Linux's order (ns_entries)
ENTRIES = ((b"net", "net"), (b"uts", "uts"), (b"ipc", "ipc"), (b"pid", "pid"), (b"pid_for_children", "pid"),
           (b"user", "user"), (b"mnt", "mnt"), (b"cgroup", "cgroup"), (b"time", "time"),
           (b"time_for_children", "time"))
CAP_SYS_TIME = 25
KTIME_SEC_MAX = (1 << 63) // 1_000_000_000


class NsInode(Inode):
    """The nsfs inode of one namespace: its number is the namespace's."""

    def __init__(self, ns):
        super().__init__(S.S_IFREG | 0o444, NSFS)
        self.ino = nsm.ns_ino(ns)
        self.ns = ns

    def open(self, flags, path):
        return NsFile(self, flags, path)


def inode_of(ns) -> NsInode:
    inode = getattr(ns, "ns_inode", None) if hasattr(ns, "ns_kind") else ns.inode
    if inode is None:
        inode = NsInode(ns)
        if hasattr(ns, "ns_kind"):
            ns.ns_inode = inode
        else:
            ns.inode = inode
    return inode


class NsFile(File):
    """An open namespace file: setns(2) joins its namespace; ioctl asks about it."""

    def __init__(self, inode, flags, path):
        super().__init__(inode, flags, path)
        self.ns = inode.ns

    def ioctl(self, task, request: int, arg: int) -> int:
        ns = self.ns
        if request == NS_GET_NSTYPE:
            return nsm.FLAG_OF[nsm.ns_kind(ns)]
        if request == NS_GET_USERNS:
            owner = nsm.ns_owner(ns) if nsm.ns_kind(ns) != "user" else ns.parent
            if owner is None or not nsm.current_in_userns(task, owner):
                raise Errno(E.EPERM)
            return open_ns(task, owner)
        if request == NS_GET_PARENT:
            kind = nsm.ns_kind(ns)
            if kind not in ("pid", "user"):
                raise Errno(E.EINVAL)
            parent = ns.parent
            if parent is None:
                raise Errno(E.EPERM)
            if kind == "pid" and not nsm.pid_ns_of(task.proc).is_ancestor_of(parent):
                raise Errno(E.EPERM)
            if kind == "user" and not nsm.current_in_userns(task, parent):
                raise Errno(E.EPERM)
            return open_ns(task, parent)
        if request == NS_GET_OWNER_UID:
            if nsm.ns_kind(ns) != "user":
                raise Errno(E.EINVAL)
            task.mm.write_u32(arg, nsm.uid_seen(task, ns.owner_uid))
            return 0
        raise Errno(E.ENOTTY)


def open_ns(task, ns) -> int:
    """A new descriptor for ns (O_RDONLY, close-on-exec), as the ioctls give."""
    kind = nsm.ns_kind(ns)
    f = NsFile(inode_of(ns), O_RDONLY, "%s:[%d]" % (kind, nsm.ns_ino(ns)))
    return task.fds.install(f, cloexec=bool(O_CLOEXEC))


# --- /proc/PID -------------------------------------------------------------------------------------
def proc_files(procfs, task) -> dict:
    """The namespace entries of /proc/PID: ns/, uid_map, gid_map, setgroups, timens_offsets."""
    fs = procfs.fs
    kernel = procfs.kernel

    def writer(fn):
        return lambda data: fn(kernel.current if kernel is not None else None, task, data)

    return {
        b"ns": NsDir(procfs, task),
        b"uid_map": GenInode(fs, lambda: show_map(kernel, task, "uid"), 0o644, writer(lambda w, t, d: write_map(w, t, d, "uid"))),
        b"gid_map": GenInode(fs, lambda: show_map(kernel, task, "gid"), 0o644, writer(lambda w, t, d: write_map(w, t, d, "gid"))),
        b"setgroups": GenInode(fs, lambda: b"allow\n" if task.user_ns.setgroups_allowed else b"deny\n", 0o644,
                               writer(write_setgroups)),
        b"timens_offsets": GenInode(fs, lambda: show_offsets(task), 0o644, writer(write_offsets)),
    }


class NsDir(ProcDir):
    """/proc/PID/ns: one magic link per namespace kind, to what the task is in now."""

    def __init__(self, procfs, task):
        super().__init__(procfs.fs, 0o511)
        self.task = task
        self.links = {}
        for name, kind in ENTRIES:
            link = ProcLink(self.fs, (lambda n, k: lambda t: self._text(n, k))(name, kind),
                            jump=(lambda n, k: lambda t, here: here + ((n, inode_of(self._ns(n, k))),))(name, kind),
                            magic=True)
            link.task = task
            self.links[name] = link

    def _ns(self, name: bytes, kind: str):
        t = self.task
        if name == b"pid_for_children":
            return t.nsproxy.pid_for_children
        if name == b"time_for_children":
            return t.nsproxy.time_for_children
        return nsm.ns_of(t, kind)

    def _text(self, name: bytes, kind: str) -> bytes:
        return b"%s:[%d]" % (kind.encode(), nsm.ns_ino(self._ns(name, kind)))

    def children(self):
        return self.links


# --- uid_map, gid_map, setgroups ------------------------------------------------------------------
def show_map(kernel, task, kind: str) -> bytes:
    """The target's map, its lower ids as the reader sees them (uid_m_show)."""
    ns = task.user_ns
    reader = kernel.current if kernel is not None and kernel.current is not None else task
    lower_ns = reader.user_ns
    if lower_ns is ns and lower_ns.parent is not None:
        lower_ns = lower_ns.parent
    extents = ns.uid_map if kind == "uid" else ns.gid_map
    up = nsm.from_kuid if kind == "uid" else nsm.from_kgid
    out = []
    for first, lower, count in extents:
        seen = up(lower_ns, lower)
        out.append(b"%10u %10u %10u\n" % (first, nsm.NOBODY if seen is None else seen, count))
    return b"".join(out)


def write_map(writer, task, data: bytes, kind: str) -> int:
    """map_write: one write only, lines "first lower count" (at most 340, no overlaps),
    lower ids in the parent namespace, and new_idmap_permitted's rules."""
    if writer is None:
        raise Errno(E.EPERM)
    ns = task.user_ns
    if len(data) >= 4096:
        raise Errno(E.EINVAL)
    if writer.user_ns is not ns and writer.user_ns is not ns.parent:
        raise Errno(E.EPERM)
    if ns.parent is None:
        raise Errno(E.EPERM)  # the initial namespace's maps are set
    extents = ns.uid_map if kind == "uid" else ns.gid_map
    if extents:
        raise Errno(E.EPERM)
    cap = nsm.CAP_SETUID if kind == "uid" else nsm.CAP_SETGID
    if not nsm.ns_capable(writer, ns, nsm.CAP_SYS_ADMIN):
        raise Errno(E.EPERM)
    new = []
    text = data.decode("ascii", "replace")
    for line in text.split("\n"):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise Errno(E.EINVAL)
        first, lower, count = (int(p) for p in parts)
        if count == 0 or first > nsm.NOBODY or lower > nsm.NOBODY or count > nsm.NOBODY:
            raise Errno(E.EINVAL)
        if first + count - 1 >= nsm.NOBODY or lower + count - 1 >= nsm.NOBODY:
            raise Errno(E.EINVAL)  # the ranges may not wrap nor reach (u32)-1
        for f, lo, c in new:
            if first < f + c and f < first + count or lower < lo + c and lo < lower + count:
                raise Errno(E.EINVAL)
        new.append((first, lower, count))
        if len(new) > nsm.MAX_EXTENTS:
            raise Errno(E.EINVAL)
    if not new:
        raise Errno(E.EINVAL)
    if not _idmap_permitted(writer, ns, kind, cap, new):
        raise Errno(E.EPERM)
    down = nsm.make_kuid if kind == "uid" else nsm.make_kgid
    kernel_extents = []
    for first, lower, count in new:
        low = down(ns.parent, lower)
        high = down(ns.parent, lower + count - 1)
        if low is None or high is None or high - low != count - 1:
            raise Errno(E.EPERM)  # map_id_range_down: every lower id must be mapped above
        kernel_extents.append((first, low, count))
    if kind == "uid":
        ns.uid_map = kernel_extents
    else:
        ns.gid_map = kernel_extents
    return len(data)


def _idmap_permitted(writer, ns, kind: str, cap: int, new) -> bool:
    """new_idmap_permitted: the owner may map its own id alone (its gid only once
    setgroups is denied); otherwise CAP_SETUID/CAP_SETGID over the parent namespace."""
    if len(new) == 1 and new[0][2] == 1 and ns.owner_uid == writer.euid:
        lower = new[0][1]
        if kind == "uid" and nsm.make_kuid(ns.parent, lower) == writer.euid:
            return True
        if kind == "gid" and not ns.setgroups_allowed and nsm.make_kgid(ns.parent, lower) == writer.egid:
            return True
    return nsm.ns_capable(writer, ns.parent, cap)


def write_setgroups(writer, task, data: bytes) -> int:
    ns = task.user_ns
    if writer is None or not nsm.ns_capable(writer, ns, nsm.CAP_SYS_ADMIN):
        raise Errno(E.EPERM)
    word = data.decode("ascii", "replace").strip()
    if word not in ("allow", "deny"):
        raise Errno(E.EINVAL)
    if word == "allow":
        if not ns.setgroups_allowed:
            raise Errno(E.EPERM)  # once denied, for good
    else:
        if ns.gid_map and ns.setgroups_allowed:
            raise Errno(E.EPERM)  # gid_map written while allowed: it stays allowed
        if ns.parent is None:
            raise Errno(E.EPERM)
        ns.setgroups_allowed = False
    return len(data)


# --- timens_offsets ---------------------------------------------------------------------------------
def show_offsets(task) -> bytes:
    ns = task.nsproxy.time_for_children
    return b"".join(b"%-10s %10d %9d\n" % (name, sec, nsec)
                    for name, (sec, nsec) in ((b"monotonic", ns.monotonic), (b"boottime", ns.boottime)))


def write_offsets(writer, task, data: bytes) -> int:
    """proc_timens_set_offset: lines "clock seconds nanoseconds" (clock: 1 or monotonic, 7
    or boottime), CAP_SYS_TIME in the namespace's owner, EACCES once a process is in it,
    ERANGE for a clock that would go negative."""
    ns = task.nsproxy.time_for_children
    offsets = []
    for line in data.decode("ascii", "replace").split("\n"):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise Errno(E.EINVAL)
        clock, sec, nsec = parts
        try:
            sec, nsec = int(sec), int(nsec)
        except ValueError:
            raise Errno(E.EINVAL) from None
        if clock in ("monotonic", "1"):
            clock = nsm.CLOCK_MONOTONIC
        elif clock in ("boottime", "7"):
            clock = nsm.CLOCK_BOOTTIME
        else:
            raise Errno(E.EINVAL)
        if not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
        offsets.append((clock, sec, nsec))
    if writer is None or not nsm.ns_capable(writer, ns.owner, CAP_SYS_TIME):
        raise Errno(E.EPERM)
    for clock, sec, nsec in offsets:
        now = ns.clock.now_ns(clock)  # the sandbox's clock, which the offsets are over (sentry/clock.py)
        total = now + sec * 1_000_000_000 + nsec
        if total < 0 or abs(sec) > KTIME_SEC_MAX // 2:
            raise Errno(E.ERANGE)
    if ns.entered:
        raise Errno(E.EACCES)
    for clock, sec, nsec in offsets:
        if clock == nsm.CLOCK_MONOTONIC:
            ns.monotonic = (sec, nsec)
        else:
            ns.boottime = (sec, nsec)
    return len(data)
