"""Namespaces inside the sandbox: what clone(CLONE_NEW*), unshare(2) and setns(2)
make and join, and what /proc/PID/ns shows.

The sandbox starts as one set of initial namespaces (its own: the host's are never
reached). A task holds an `NsProxy` (uts, ipc, mnt, pid_for_children, net, cgroup,
time, time_for_children: shared by reference, as Linux's nsproxy) and a user
namespace (`task.user_ns`, part of its credentials); its process keeps the pid
namespace it was born in (`Process.pid_ns`, Linux's task_active_pid_ns).

- user: a tree (32 levels); uid_map/gid_map/setgroups written once as Linux's
  map_write, with its permission rules; ids are kept as the sandbox's (kernel) ids and
  shown through the maps; a task's capabilities count in its own user namespace and,
  for an owner, in the namespaces it owns (`ns_capable`). The sandbox-wide privileges
  (sentry/caps.py `has`) need the initial one.
- pid: a tree (32 levels); a process has a number in its namespace and each one above
  (`vnr`, `find_task`); the first process of a new one is its 1 and the reaper of its
  orphans; when it ends the rest of its namespace is killed.
- uts: hostname and domain name; ipc: sentry/ipc's IpcNamespace (System V objects);
  mnt: the sandbox's one mount table (mount(2) changes it for every mount namespace);
  net: nothing but a loopback (the sandbox has no network); cgroup: the root;
  time: offsets for CLOCK_MONOTONIC and CLOCK_BOOTTIME (/proc/PID/timens_offsets),
  settable until a process enters it, over the sandbox's own clock (sentry/clock.py:
  the host's shifted to start near zero, never the host's uptime).
"""
import errno as E
import itertools

from sentry.errors import Errno

CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x80, 0x20000, 0x2000000, 0x4000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x8000000, 0x10000000, 0x20000000, 0x40000000
ALL_NEW = (CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
           | CLONE_NEWPID | CLONE_NEWNET)
CAP_SETGID, CAP_SETUID, CAP_SYS_CHROOT, CAP_SYS_PTRACE, CAP_SYS_ADMIN = 6, 7, 18, 19, 21
MAX_LEVEL = 32           # MAX_PID_NS_LEVEL, and user namespaces' depth
MAX_EXTENTS = 340        # UID_GID_MAP_MAX_EXTENTS
OVERFLOW_ID = 65534
NSFS_MAGIC = 0x6E736673
NOBODY = (1 << 32) - 1   # (uid_t)-1: an id no map gives

# Linux's fixed inode numbers of the initial namespaces (include/linux/proc_ns.h); the rest
# are allocated from PROC_DYNAMIC_FIRST, as proc_alloc_inum does.
INIT_INO = {"ipc": 0xEFFFFFFF, "uts": 0xEFFFFFFE, "user": 0xEFFFFFFD, "pid": 0xEFFFFFFC,
            "cgroup": 0xEFFFFFFB, "time": 0xEFFFFFFA}
_dynamic_inos = itertools.count(0xF0000000)

FLAG_OF = {"uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "mnt": CLONE_NEWNS, "pid": CLONE_NEWPID,
           "user": CLONE_NEWUSER, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME}


def _ino(kind: str, initial: bool) -> int:
    return INIT_INO[kind] if initial and kind in INIT_INO else next(_dynamic_inos)


class Namespace:
    """What every namespace has: its kind, the user namespace that owns it, and the
    inode number /proc/PID/ns shows."""
    kind = ""

    def __init__(self, owner, initial: bool = False):
        self.owner = owner
        self.ino = _ino(self.kind, initial)
        self.inode = None  # its nsfs inode, made when first opened

    @property
    def flag(self) -> int:
        return FLAG_OF[self.kind]

    @property
    def parent(self):
        return None  # only pid and user namespaces are hierarchical


# --- user namespaces ---------------------------------------------------------------------------
class UserNamespace(Namespace):
    kind = "user"

    def __init__(self, parent, owner_uid: int, owner_gid: int):
        super().__init__(parent, initial=parent is None)
        self._parent = parent
        self.level = 0 if parent is None else parent.level + 1
        self.owner_uid, self.owner_gid = owner_uid, owner_gid  # kernel ids of its creator
        self.uid_map = [(0, 0, (1 << 32) - 1)] if parent is None else []  # (first, lower kernel id, count)
        self.gid_map = list(self.uid_map)
        self.setgroups_allowed = True

    @property
    def parent(self):
        return self._parent

    def is_ancestor_of(self, other) -> bool:
        """self is other or one of its ancestors."""
        while other is not None:
            if other is self:
                return True
            other = other.parent
        return False


def _map_up(extents, kernel_id: int):
    for first, lower, count in extents:
        if lower <= kernel_id < lower + count:
            return first + kernel_id - lower
    return None


def _map_down(extents, ns_id: int):
    for first, lower, count in extents:
        if first <= ns_id < first + count:
            return lower + ns_id - first
    return None


def from_kuid(ns, kuid):
    """The id kernel id kuid has in ns, or None (from_kuid)."""
    if kuid is None:
        return None
    return kuid if ns.parent is None else _map_up(ns.uid_map, kuid)


def from_kgid(ns, kgid):
    if kgid is None:
        return None
    return kgid if ns.parent is None else _map_up(ns.gid_map, kgid)


def make_kuid(ns, uid: int):
    """The kernel id of uid in ns, or None (make_kuid)."""
    return uid if ns.parent is None else _map_down(ns.uid_map, uid)


def make_kgid(ns, gid: int):
    return gid if ns.parent is None else _map_down(ns.gid_map, gid)


def uid_seen(t, kuid) -> int:
    """from_kuid_munged: what task t sees of a kernel uid (65534 when unmapped)."""
    ns = t.user_ns
    if ns.parent is None:
        return kuid
    v = from_kuid(ns, kuid)
    return OVERFLOW_ID if v is None else v


def gid_seen(t, kgid) -> int:
    ns = t.user_ns
    if ns.parent is None:
        return kgid
    v = from_kgid(ns, kgid)
    return OVERFLOW_ID if v is None else v


def ns_capable(t, ns, cap: int) -> bool:
    """Linux's cap_capable: t has cap in ns if ns is its own user namespace and cap is
    in its effective set, or t's user namespace is ns's parent and t's euid owns ns
    (an owner has every capability in what it made), and so on up."""
    if _capable(t.user_ns, t.caps.effective, t.euid, ns, cap):
        from sentry.caps import used_privilege
        used_privilege(t)
        return True
    return False


def _capable(own, effective: int, euid: int, ns, cap: int) -> bool:
    if ns is None:
        return False
    while True:
        if ns is own:
            return bool(effective >> cap & 1)
        if ns.level <= own.level:
            return False
        if ns.parent is own and ns.owner_uid == euid:
            return True
        ns = ns.parent


def current_in_userns(t, ns) -> bool:
    """Is t's user namespace ns or one of its ancestors? (ns is in t's scope)"""
    return t.user_ns.is_ancestor_of(ns)


# --- the other kinds ---------------------------------------------------------------------------
class UtsNamespace(Namespace):
    kind = "uts"

    def __init__(self, owner, hostname: bytes, domainname: bytes, initial: bool = False):
        super().__init__(owner, initial)
        self.hostname, self.domainname = hostname, domainname


class KernelUts(UtsNamespace):
    """The sandbox's initial UTS namespace: its names are the kernel's (runner.py's
    HOSTNAME, /proc/sys/kernel/hostname)."""

    def __init__(self, owner, kernel):
        self.kernel = kernel
        Namespace.__init__(self, owner, initial=True)

    @property
    def hostname(self) -> bytes:
        return self.kernel.hostname

    @hostname.setter
    def hostname(self, name: bytes) -> None:
        self.kernel.hostname = name

    @property
    def domainname(self) -> bytes:
        return getattr(self.kernel, "domainname", b"(none)")

    @domainname.setter
    def domainname(self, name: bytes) -> None:
        self.kernel.domainname = name


class MountNamespace(Namespace):
    kind = "mnt"

    def __init__(self, owner, vfs, mounts=None, initial: bool = False):
        super().__init__(owner, initial)
        self.vfs = vfs
        # the sandbox's one mount table (syscalls/mount.py): a mount is seen by every namespace
        self.mounts = vfs.mounts


class PidNamespace(Namespace):
    kind = "pid"

    def __init__(self, owner, parent):
        super().__init__(owner, initial=parent is None)
        self._parent = parent
        self.level = 0 if parent is None else parent.level + 1
        self.by_nr = {}      # nr -> Task (a process's number is its first thread's)
        self.last = 0
        self.reaper = None   # the Process that is its 1 (child_reaper)
        self.dead = False    # its 1 has ended: no process may enter any more (ENOMEM)

    @property
    def parent(self):
        return self._parent

    def is_ancestor_of(self, other) -> bool:
        while other is not None:
            if other is self:
                return True
            other = other.parent
        return False

    def alloc(self, task) -> int:
        """The next free number after the last, wrapping at kernel/pid_max (sentry/sysctl.py)."""
        from sentry.sysctl import next_pid

        def taken(nr):
            other = self.by_nr.get(nr)
            return other is not None and _alive(other)
        nr = self.last = next_pid(self.last, task.kernel.sysctl.pid_max, taken)
        self.by_nr[nr] = task
        return nr




def _alive(task) -> bool:
    """Does the number task holds still name it (running, or a zombie not reaped)?"""
    proc = task.proc
    kernel = task.kernel
    if kernel.tasks.get(task.tid) is task:
        return True
    return proc is not None and kernel.procs.get(proc.pid) is proc and task is proc.leader


class NetNamespace(Namespace):
    kind = "net"  # the sandbox has no network: every one has only its loopback

    def __init__(self, owner, initial: bool = False):
        super().__init__(owner, initial)
        self.sysctl = {}  # its /proc/sys/net values written (sentry/vfs/procfs.py)


class CgroupNamespace(Namespace):
    kind = "cgroup"  # every task is in the root cgroup


class TimeNamespace(Namespace):
    kind = "time"

    def __init__(self, owner, monotonic=(0, 0), boottime=(0, 0), initial: bool = False, clock=None):
        super().__init__(owner, initial)
        self.monotonic, self.boottime = monotonic, boottime  # (seconds, nanoseconds)
        self.entered = initial  # offsets are fixed once a process is in it
        # the sandbox's clock (sentry/clock.py): its shift from the host's lies under the
        # offsets, which are relative to it, as Linux's are to its initial namespace
        self.clock = clock

    def offset_ns(self, clock: int) -> int:
        """What to add to the host's reading of clock for this namespace's."""
        sec, nsec = self.monotonic if clock in MONOTONIC_CLOCKS else self.boottime \
            if clock in BOOTTIME_CLOCKS else (0, 0)
        return sec * 1_000_000_000 + nsec + (self.clock.shift_ns(clock) if self.clock is not None else 0)


CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME = 1, 4, 6, 7
CLOCK_BOOTTIME_ALARM = 9
MONOTONIC_CLOCKS = (CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE)
BOOTTIME_CLOCKS = (CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM)


def _new_ipc(owner, initial_ipc: bool = False, kernel=None):
    ns = getattr(kernel, "ipc_ns", None)  # the sandbox's first one, made by the kernel
    if ns is None:
        try:
            from sentry.ipc.namespace import IpcNamespace
            ns = IpcNamespace()
        except ImportError:  # System V IPC not built: an empty namespace all the same
            ns = _Ipc()
    ns.ns_kind, ns.ns_owner, ns.ns_inode = "ipc", owner, None
    ns.ns_ino = INIT_INO["ipc"] if owner.parent is None and initial_ipc else next(_dynamic_inos)
    return ns


class _Ipc:
    pass


class NsProxy:
    """A task's namespaces but its user and active pid ones; shared until one changes."""
    __slots__ = ("uts", "ipc", "mnt", "pid_for_children", "net", "cgroup", "time", "time_for_children")

    def __init__(self, **kinds):
        for name in self.__slots__:
            setattr(self, name, kinds[name])

    def copy(self, **changes) -> "NsProxy":
        kinds = {name: getattr(self, name) for name in self.__slots__}
        kinds.update(changes)
        return NsProxy(**kinds)


def initial(kernel):
    """(NsProxy, UserNamespace) of the sandbox's first process: its initial namespaces."""
    init = getattr(kernel, "init_namespaces", None)
    if init is None:
        user = UserNamespace(None, 0, 0)
        ipc = _new_ipc(user, initial_ipc=True, kernel=kernel)
        from sentry.clock import SandboxClock
        time_ns = TimeNamespace(user, initial=True, clock=SandboxClock(kernel))
        proxy = NsProxy(uts=KernelUts(user, kernel), ipc=ipc, mnt=MountNamespace(user, kernel.vfs, initial=True),
                        pid_for_children=PidNamespace(user, None), net=NetNamespace(user),
                        cgroup=CgroupNamespace(user, initial=True), time=time_ns, time_for_children=time_ns)
        init = kernel.init_namespaces = (proxy, user)
    return init


# --- what a task is in ----------------------------------------------------------------------------
def pid_ns_of(proc):
    """The pid namespace proc was born in (task_active_pid_ns)."""
    ns = getattr(proc, "pid_ns", None)
    if ns is None:
        ns = proc.pid_ns = initial(proc.kernel)[0].pid_for_children
    return ns


def ns_of(t, kind: str):
    """t's namespace of kind (for /proc/PID/ns and setns)."""
    if kind == "user":
        return t.user_ns
    if kind == "pid":
        return pid_ns_of(t.proc)
    return getattr(t.nsproxy, kind)


def ns_ino(ns) -> int:
    return ns.ns_ino if hasattr(ns, "ns_ino") else ns.ino


def ns_kind(ns) -> str:
    return ns.ns_kind if hasattr(ns, "ns_kind") else ns.kind


def ns_owner(ns):
    return ns.ns_owner if hasattr(ns, "ns_kind") else ns.owner


def ns_parent(ns):
    return getattr(ns, "parent", None) if not hasattr(ns, "ns_kind") else None


# --- pids ---------------------------------------------------------------------------------------
def vnr(t, task) -> int:
    """task's id as t sees it (task_pid_vnr): 0 when task is outside t's pid namespace."""
    return nr_in(pid_ns_of(t.proc), task)


def nr_in(ns, task) -> int:
    if ns.level == 0:
        return task.tid
    return getattr(task, "ns_nrs", {}).get(ns, 0)


def pid_vnr(t, proc) -> int:
    """A process's id (its first thread's) as t sees it."""
    ns = pid_ns_of(t.proc)
    if ns.level == 0:
        return proc.pid
    leader = proc.tasks[0] if proc.tasks else None
    return nr_in(ns, leader) if leader is not None else 0


def id_vnr(t, global_id: int) -> int:
    """A process group's or session's id (a sandbox-wide number) as t sees it: its leader's
    number in t's pid namespace, 0 when that is outside it."""
    ns = pid_ns_of(t.proc)
    if ns.level == 0:
        return global_id
    for nr, task in ns.by_nr.items():
        if task.tid == global_id and _alive(task):
            return nr
    return 0


def find_task(t, nr: int):
    """The task numbered nr in t's pid namespace, or None (find_task_by_vpid)."""
    ns = pid_ns_of(t.proc)
    if ns.level == 0:
        return t.kernel.tasks.get(nr)
    task = ns.by_nr.get(nr)
    return task if task is not None and t.kernel.tasks.get(task.tid) is task else None


def find_proc(t, nr: int):
    """The process numbered nr in t's pid namespace (zombies included), or None."""
    ns = pid_ns_of(t.proc)
    if ns.level == 0:
        return t.kernel.procs.get(nr)
    task = ns.by_nr.get(nr)
    if task is None or task.proc is None or task.proc.pid != task.tid:
        return None
    proc = task.proc
    return proc if t.kernel.procs.get(proc.pid) is proc else None


def global_pid(t, nr: int):
    """The sandbox-wide number of what t calls nr, or None (for calls that still look up
    the kernel's tables by number)."""
    ns = pid_ns_of(t.proc)
    if ns.level == 0:
        return nr
    task = ns.by_nr.get(nr)
    return task.tid if task is not None and _alive(task) else None


def visible(t, proc) -> bool:
    """Is proc in t's pid namespace or one below it?"""
    return pid_ns_of(t.proc).is_ancestor_of(pid_ns_of(proc))


def attach(task, ns, is_process: bool) -> None:
    """Number a new task in ns and every namespace above it (the initial one numbers it
    by its tid). The first process of a namespace becomes its reaper."""
    if is_process:
        task.proc.pid_ns = ns
    if ns.level == 0:
        return
    if ns.dead:
        raise Errno(E.ENOMEM)  # its init has ended (alloc_pid: PIDNS_ADDING off)
    nrs = {}
    level = ns
    while level.level > 0:
        nrs[level] = level.alloc(task)
        level = level.parent
    task.ns_nrs = nrs
    if is_process and ns.reaper is None:
        ns.reaper = task.proc


def child_reaper(proc):
    """Who adopts proc's orphans when no subreaper does: its pid namespace's 1, or None
    for the sandbox's own (pid 1)."""
    ns = getattr(proc, "pid_ns", None)
    if ns is None or ns.level == 0 or ns.reaper is proc:
        return None if ns is None or ns.level == 0 else _outer_reaper(ns, proc)
    return ns.reaper


def _outer_reaper(ns, proc):
    parent = ns.parent
    while parent is not None and parent.level > 0:
        if parent.reaper is not None and not parent.reaper.zombie:
            return parent.reaper
        parent = parent.parent
    return None


def process_ended(proc) -> None:
    """A pid namespace's 1 has ended: every other process in it is killed, and no process
    may enter it any more (zap_pid_ns_processes)."""
    ns = getattr(proc, "pid_ns", None)
    if ns is None or ns.level == 0 or ns.reaper is not proc:
        return
    ns.dead = True
    from sentry import signals
    for other in list(proc.kernel.procs.values()):
        if other is not proc and not other.zombie and ns.is_ancestor_of(pid_ns_of(other)):
            signals.send_process(other, 9)


def nspid_line(task, kind: str = "tid") -> str:
    """/proc/PID/status's NStgid/NSpid: the number in each namespace from the sandbox's down."""
    proc = task.proc if kind == "tgid" else None
    target = proc.tasks[0] if proc is not None and proc.tasks else task
    ns = pid_ns_of(task.proc) if task.proc is not None else None
    nrs = [target.tid if proc is None else proc.pid]
    levels = []
    while ns is not None and ns.level > 0:
        levels.append(ns)
        ns = ns.parent
    for level in reversed(levels):
        nrs.append(getattr(target, "ns_nrs", {}).get(level, 0))
    return "\t".join(str(n) for n in nrs)


# --- making new ones ------------------------------------------------------------------------------
def chrooted(t) -> bool:
    """Has t a root of its own (chroot)? (current_chrooted)"""
    root = getattr(t.fs, "root", None)
    return root is not None and root != t.vfs.root_loc


def new_user_ns(t):
    """create_user_ns for t's credentials: EUSERS past 32 levels, EPERM when t's euid or
    egid has no id in its own namespace or t is chrooted."""
    parent = t.user_ns
    if parent.level >= MAX_LEVEL:
        raise Errno(E.EUSERS)
    if from_kuid(parent, t.euid) is None or from_kgid(parent, t.egid) is None or chrooted(t):
        raise Errno(E.EPERM)
    return UserNamespace(parent, t.euid, t.egid)


def enter_user_ns(t, ns) -> None:
    """t's credentials in ns: every capability there (set_cred_user_ns), none inherited."""
    from sentry import caps
    t.user_ns = ns
    t.caps = caps.Caps(caps.CAP_FULL, caps.CAP_FULL, 0)


def new_namespaces(t, flags: int, user_ns, for_child: bool):
    """The NsProxy that t (unshare) or its child (clone) gets for the CLONE_NEW* flags,
    user_ns being the user namespace it will be in (a new one for CLONE_NEWUSER), with
    Linux's checks: CAP_SYS_ADMIN in that namespace (EPERM), CLONE_NEWIPC with
    CLONE_SYSVSEM (EINVAL), CLONE_NEWPID after an unshare(CLONE_NEWPID) that no child has
    entered yet (EINVAL), 32 levels of pid namespaces (ENOSPC)."""
    old = t.nsproxy
    others = flags & ALL_NEW & ~CLONE_NEWUSER
    if not others:
        if for_child and old.time is not old.time_for_children:
            return old.copy(time=old.time_for_children)  # timens_on_fork (not for CLONE_VM: the caller's)
        return old
    if user_ns is t.user_ns:
        allowed = ns_capable(t, user_ns, CAP_SYS_ADMIN)
    else:  # a new user namespace: its creator has every capability in it
        allowed = True
    if not allowed:
        raise Errno(E.EPERM)
    if flags & (CLONE_NEWIPC | 0x40000) == CLONE_NEWIPC | 0x40000:  # CLONE_SYSVSEM
        raise Errno(E.EINVAL)
    changes = {}
    if flags & CLONE_NEWPID:
        parent = old.pid_for_children
        if parent is not pid_ns_of(t.proc):
            raise Errno(E.EINVAL)
        if parent.level >= MAX_LEVEL:
            raise Errno(E.ENOSPC)
        changes["pid_for_children"] = PidNamespace(user_ns, parent)
    if flags & CLONE_NEWUTS:
        changes["uts"] = UtsNamespace(user_ns, old.uts.hostname, old.uts.domainname)
    if flags & CLONE_NEWIPC:
        changes["ipc"] = _new_ipc(user_ns)
    if flags & CLONE_NEWNS:
        changes["mnt"] = MountNamespace(user_ns, old.mnt.vfs, old.mnt.mounts)
    if flags & CLONE_NEWNET:
        changes["net"] = NetNamespace(user_ns)
    if flags & CLONE_NEWCGROUP:
        changes["cgroup"] = CgroupNamespace(user_ns)
    if flags & CLONE_NEWTIME:
        base = old.time_for_children
        changes["time_for_children"] = TimeNamespace(user_ns, base.monotonic, base.boottime, clock=base.clock)
    proxy = old.copy(**changes)
    if for_child:
        proxy.time = proxy.time_for_children
    return proxy


def enter_time(proxy) -> None:
    """A process enters proxy's time namespace: its offsets are fixed from now on."""
    proxy.time.entered = True
