"""unshare(2), setns(2), and the namespaces clone(2)/clone3(2) give a child.

Every kind Linux has is offered, as sandbox objects (sentry/namespaces.py): user (maps in
/proc/PID/uid_map, gid_map, setgroups), pid, uts, ipc, mnt (a copy of the mount table:
mount(2) stays refused), net (a loopback only: the sandbox has no network), cgroup and
time (offsets in /proc/PID/timens_offsets). Linux's rules and errors: CAP_SYS_ADMIN in
the user namespace that will own the new ones, the flags one implies or forbids with
another, a threaded caller's EINVAL."""
import errno as E

from sentry import namespaces as nsm
from sentry.errors import Errno
from sentry.task import FsContext
from syscalls.abi import s32
from syscalls.clone import (CLONE_FILES, CLONE_FS, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
                            CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, CLONE_SIGHAND,
                            CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM)
from syscalls.pidfd import PidFile
from syscalls.registry import PARTIAL, syscall

CLONE_NEWTIME = nsm.CLONE_NEWTIME
NEW_NAMESPACES = nsm.ALL_NEW
UNSHARE_FLAGS = (CLONE_THREAD | CLONE_FS | CLONE_SIGHAND | CLONE_VM | CLONE_FILES | CLONE_SYSVSEM
                 | NEW_NAMESPACES)
NS_NOTE = ("user (uid_map, gid_map, setgroups; capabilities in it), pid (a child's numbers from 1; getpid, "
           "getppid, gettid, kill, wait and pidfd_open see them), uts, ipc, mnt (a copy of the mount table), "
           "net (loopback only), cgroup and time (monotonic and boottime offsets)")


def _others(t):
    return [o for o in t.kernel.tasks.values() if o is not t and o.exit_status is None]


@syscall("unshare", status=PARTIAL,
         note="CLONE_FILES and CLONE_FS give the caller its own descriptor table and working directory; "
              "CLONE_THREAD, CLONE_SIGHAND, CLONE_VM and CLONE_SYSVSEM succeed where there is nothing to "
              "unshare (EINVAL for a threaded caller, as Linux); new namespaces: " + NS_NOTE)
def unshare(t, flags):
    flags &= 0xFFFFFFFF
    # the flags that imply others, in Linux's order
    if flags & CLONE_NEWUSER:
        flags |= CLONE_THREAD | CLONE_FS
    if flags & CLONE_VM:
        flags |= CLONE_SIGHAND
    if flags & CLONE_SIGHAND:
        flags |= CLONE_THREAD
    if flags & CLONE_NEWNS:
        flags |= CLONE_FS
    if flags & ~UNSHARE_FLAGS:
        raise Errno(E.EINVAL)
    others = _others(t)
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) and any(o.proc is t.proc for o in others):
        raise Errno(E.EINVAL)  # a thread group cannot be split
    if flags & CLONE_VM and t.mm.users > 1:
        raise Errno(E.EINVAL)  # another process runs in this memory (vfork, CLONE_VM)
    user_ns = t.user_ns
    if flags & CLONE_NEWUSER:
        user_ns = nsm.new_user_ns(t)
    proxy = t.nsproxy
    if flags & NEW_NAMESPACES & ~CLONE_NEWUSER:
        if user_ns is t.user_ns and not nsm.ns_capable(t, user_ns, nsm.CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
        proxy = nsm.new_namespaces(t, flags & ~CLONE_SYSVSEM, user_ns, for_child=False)
    if flags & CLONE_FILES and t.fds.users > 1:
        t.fds.check_copy(t.kernel.sysctl.nr_open)  # EMFILE
    # nothing can fail from here on
    if flags & CLONE_FS and any(o.fs is t.fs for o in others):
        t.fs = FsContext(t.fs.cwd, t.fs.umask, t.fs.root)
    if flags & CLONE_FILES and t.fds.users > 1:
        shared, t.fds = t.fds, t.fds.copy()
        shared.release()
    if user_ns is not t.user_ns:
        nsm.enter_user_ns(t, user_ns)
    t.nsproxy = proxy
    return 0


# --- clone ----------------------------------------------------------------------------------------
def for_clone(t, flags: int):
    """Checked before the child exists: (NsProxy, user namespace, pid namespace) it will be
    in, with copy_process's and copy_namespaces' errors."""
    if flags & CLONE_NEWNS and flags & CLONE_FS or flags & CLONE_NEWUSER and flags & CLONE_FS:
        raise Errno(E.EINVAL)
    if flags & CLONE_THREAD and (flags & (CLONE_NEWUSER | CLONE_NEWPID)
                                 or t.nsproxy.pid_for_children is not nsm.pid_ns_of(t.proc)):
        raise Errno(E.EINVAL)
    if flags & CLONE_NEWTIME and flags & (CLONE_VM | CLONE_THREAD):
        raise Errno(E.EINVAL)
    user_ns = nsm.new_user_ns(t) if flags & CLONE_NEWUSER else t.user_ns
    if flags & CLONE_THREAD:
        return t.nsproxy, user_ns, nsm.pid_ns_of(t.proc)
    proxy = nsm.new_namespaces(t, flags, user_ns, for_child=not flags & CLONE_VM)
    pid_ns = proxy.pid_for_children
    if pid_ns.dead:
        raise Errno(E.ENOMEM)  # its init has ended
    return proxy, user_ns, pid_ns


def after_clone(t, child, prepared, thread: bool) -> None:
    """The new task takes its namespaces and its numbers in its pid namespaces."""
    proxy, user_ns, pid_ns = prepared
    child.nsproxy = proxy
    if user_ns is not t.user_ns:
        nsm.enter_user_ns(child, user_ns)
    nsm.attach(child, pid_ns, is_process=not thread)
    nsm.enter_time(proxy)


# --- setns ----------------------------------------------------------------------------------------
SETNS_TYPES = NEW_NAMESPACES


def _join(t, ns, proxy_changes: dict, new_user) -> None:
    """Checks for joining ns (Linux's ns->ops->install); adds what changes to proxy_changes
    (or sets new_user[0] for a user namespace)."""
    kind = nsm.ns_kind(ns)
    owner = nsm.ns_owner(ns)
    if kind == "user":
        if ns is t.user_ns:
            raise Errno(E.EINVAL)
        if nsm.chrooted(t) or not nsm.ns_capable(t, ns, nsm.CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
        if any(o.proc is t.proc for o in _others(t)) or any(o.fs is t.fs for o in _others(t)):
            raise Errno(E.EINVAL)
        new_user[0] = ns
        return
    if not nsm.ns_capable(t, owner, nsm.CAP_SYS_ADMIN) or not nsm.ns_capable(t, t.user_ns, nsm.CAP_SYS_ADMIN):
        raise Errno(E.EPERM)
    if kind == "pid":
        if not nsm.pid_ns_of(t.proc).is_ancestor_of(ns):
            raise Errno(E.EINVAL)  # only the caller's own pid namespace or one below it
        proxy_changes["pid_for_children"] = ns
    elif kind == "time":
        if any(o.proc is t.proc for o in _others(t)):
            raise Errno(E.EUSERS)
        proxy_changes["time_for_children"] = proxy_changes["time"] = ns  # the caller's clocks too (timens_install)
    elif kind == "mnt":
        if not nsm.ns_capable(t, t.user_ns, nsm.CAP_SYS_CHROOT):
            raise Errno(E.EPERM)
        if any(o.fs is t.fs for o in _others(t)):
            raise Errno(E.EINVAL)
        proxy_changes["mnt"] = ns
    else:
        proxy_changes[kind] = ns


@syscall("setns", status=PARTIAL,
         note="namespace files (/proc/PID/ns/*) and pidfds, with Linux's checks (CAP_SYS_ADMIN in the "
              "namespace's owner and the caller's, EINVAL for a mismatched type); joining a mount namespace "
              "moves the caller to its root")
def setns(t, fd, nstype):
    from sentry.vfs.nsfs import NsFile
    f = t.fds.get(s32(fd))  # EBADF
    nstype = s32(nstype) & 0xFFFFFFFF
    changes, new_user = {}, [None]
    if isinstance(f, NsFile):
        if nstype and nstype != nsm.FLAG_OF[nsm.ns_kind(f.ns)]:
            raise Errno(E.EINVAL)
        _join(t, f.ns, changes, new_user)
    elif isinstance(f, PidFile):
        if not nstype or nstype & ~SETNS_TYPES:
            raise Errno(E.EINVAL)
        target = f.proc.leader
        if f.proc.zombie or target is None or target.exit_status is not None:
            raise Errno(E.ESRCH)
        # the target's namespaces, the user one first (as Linux's setns with a pidfd)
        kinds = ["user"] if nstype & CLONE_NEWUSER else []
        kinds += [k for k, flag in (("mnt", CLONE_NEWNS), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC),
                                    ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("cgroup", CLONE_NEWCGROUP),
                                    ("time", CLONE_NEWTIME)) if nstype & flag]
        for kind in kinds:
            ns = nsm.ns_of(target, kind)
            if kind == "user" and ns is t.user_ns:
                continue
            _join(t, ns, changes, new_user)
    else:
        raise Errno(E.EINVAL)
    if new_user[0] is not None:
        nsm.enter_user_ns(t, new_user[0])
    if changes:
        t.nsproxy = t.nsproxy.copy(**changes)
        nsm.enter_time(t.nsproxy)
        if "mnt" in changes:
            t.fs.root = None
            t.fs.cwd = t.vfs.root_loc
    return 0
