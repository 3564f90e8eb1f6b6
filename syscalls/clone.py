"""New processes and new images: fork(2), vfork(2), clone(2), clone3(2),
execve(2), execveat(2)."""
import errno as E
import struct

from sentry import exec as execmod
from sentry.errors import Errno
from sentry.sched import Wait
from syscalls.registry import PARTIAL, syscall

CSIGNAL = 0xFF
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_DETACHED = 0x100000, 0x200000, 0x400000
CLONE_UNTRACED, CLONE_CHILD_SETTID, CLONE_NEWCGROUP = 0x800000, 0x1000000, 0x2000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x4000000, 0x8000000, 0x10000000, 0x20000000
CLONE_NEWNET, CLONE_IO, CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP = 0x40000000, 0x80000000, 1 << 32, 1 << 33
CLONE_NEWTIME = 0x80  # clone3 only: clone(2) has CSIGNAL there
MAX_PID_NS_LEVEL, CAP_CHECKPOINT_RESTORE = 32, 40
NAMESPACES = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
              | CLONE_NEWPID | CLONE_NEWNET)
HONOURED = (CSIGNAL | CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_PIDFD
            | CLONE_PTRACE | CLONE_VFORK
            | CLONE_PARENT | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID
            | CLONE_DETACHED | CLONE_UNTRACED | CLONE_CHILD_SETTID | CLONE_IO | CLONE_CLEAR_SIGHAND)
SIGCHLD = 17
TASK_SIZE_MAX = (1 << 47) - 4096  # x86-64: the highest user address, plus one


def do_clone(t, flags: int, stack: int, parent_tid: int, child_tid: int, tls: int, exit_signal: int) -> int:
    if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
        raise Errno(E.EINVAL)
    if flags & CLONE_SIGHAND and not flags & CLONE_VM or flags & CLONE_CLEAR_SIGHAND and flags & CLONE_SIGHAND:
        raise Errno(E.EINVAL)
    if flags & CLONE_PIDFD and flags & CLONE_DETACHED:
        raise Errno(E.EINVAL)
    if flags & ~HONOURED & ~NAMESPACES:
        raise Errno(E.EINVAL)
    spaces = None  # the child's namespaces (syscalls/namespaces.py), when not simply the caller's
    proxy = t.nsproxy
    if flags & (NAMESPACES | CLONE_NEWTIME) or proxy.pid_for_children.level or proxy.time is not proxy.time_for_children:
        from syscalls.namespaces import for_clone
        spaces = for_clone(t, flags)
    if flags & CLONE_PARENT and t.proc.parent is None:
        raise Errno(E.EINVAL)  # as for a pid namespace's init
    if exit_signal > 64:
        raise Errno(E.EINVAL)
    if flags & CLONE_SETTLS and t.kernel.arch == "x86_64" and tls >= TASK_SIZE_MAX:
        raise Errno(E.EPERM)  # copy_thread's set_new_tls (do_arch_prctl_64), before any task is made
    if flags & CLONE_THREAD:
        return _new_thread(t, flags, stack, parent_tid, child_tid, tls, spaces)
    # CLONE_VM without CLONE_THREAD (vfork, posix_spawn): a process in the parent's memory.
    child = t.kernel.fork(t, flags=flags, exit_signal=exit_signal, stack=stack,
                          tls=tls if flags & CLONE_SETTLS else None, share_files=bool(flags & CLONE_FILES),
                          parent=t.proc.parent if flags & CLONE_PARENT else None)
    pid = child.tid
    if spaces is not None:
        pid = _enter(t, child, spaces, thread=False)
    if flags & CLONE_CLEAR_SIGHAND:
        child.sigactions = {s: raw for s, raw in child.sigactions.items() if int.from_bytes(raw[:8], "little") == 1}
    if flags & CLONE_CHILD_SETTID:  # its id as it sees itself (1 in a new pid namespace)
        child.mm.write_u32(child_tid, pid if spaces is None else _own_id(child))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    if flags & CLONE_PIDFD:
        from syscalls.pidfd import pidfd_of
        t.mm.write_u32(parent_tid, pidfd_of(t, child.proc))
    elif flags & CLONE_PARENT_SETTID:
        t.mm.write_u32(parent_tid, pid)
        if not flags & CLONE_VM:
            child.mm.write_u32(parent_tid, pid)
    if flags & CLONE_VFORK:
        child.vfork_parent = t.proc
    if t.ptrace is not None:  # a tracee's child may be traced too; its fork event stop
        from sentry import ptrace_guest
        ptrace_guest.forked(t, child, flags | exit_signal, pid)
    if flags & CLONE_VFORK:
        raise Wait(queues=(child.proc.vfork_done,), interruptible=False, wake_result=pid)
    return pid


def _enter(t, child, spaces, thread: bool) -> int:
    """The child takes its namespaces; its id as the caller sees it (0 if outside its pid
    namespace: never, a child's is the caller's or one below)."""
    from sentry.namespaces import vnr
    from syscalls.namespaces import after_clone
    try:
        after_clone(t, child, spaces, thread)
    except Errno:
        t.kernel.exit_group(child, 0, 9) if not thread else t.kernel.exit_thread(child, 0)
        if not thread:
            t.kernel.ptable.reap(child.proc)
        raise
    return vnr(t, child)


def _own_id(task) -> int:
    from sentry.namespaces import vnr
    return vnr(task, task)


def _new_thread(t, flags: int, stack: int, parent_tid: int, child_tid: int, tls: int, spaces=None) -> int:
    if flags & (CLONE_PIDFD | CLONE_VFORK | CLONE_PARENT):
        # CLONE_PIDFD with a thread is EINVAL on Linux before 6.9; a vfork thread and a
        # thread with another parent are not offered.
        raise Errno(E.EINVAL)
    child = t.kernel.clone_thread(t, share_files=bool(flags & CLONE_FILES), share_fs=bool(flags & CLONE_FS),
                                  stack=stack, tls=tls if flags & CLONE_SETTLS else None)
    tid = child.tid
    if spaces is not None:
        tid = _enter(t, child, spaces, thread=True)
    if flags & CLONE_CHILD_SETTID:
        child.mm.write_u32(child_tid, tid if spaces is None else _own_id(child))
    if flags & CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    if flags & CLONE_PARENT_SETTID:
        t.mm.write_u32(parent_tid, tid)
    if t.ptrace is not None:
        from sentry import ptrace_guest
        ptrace_guest.forked(t, child, flags, tid)
    return tid


@syscall("fork")
def fork(t):
    return do_clone(t, SIGCHLD, 0, 0, 0, 0, SIGCHLD)


@syscall("vfork", note="the child runs in the parent's memory; the parent waits until it execs or exits")
def vfork(t):
    return do_clone(t, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0, SIGCHLD)


@syscall("clone", status=PARTIAL, note="processes (fork, vfork, posix_spawn forms, CLONE_PARENT, exit signals, SETTLS, *_SETTID, PIDFD) and threads (CLONE_THREAD with shared memory, handlers, files, fs); CLONE_VM processes share memory; CLONE_SIGHAND without CLONE_THREAD copies the handlers; new namespaces EPERM")
def clone(t, flags, stack, a2, a3, a4):
    # x86-64: (flags, stack, parent_tid, child_tid, tls); aarch64: (flags, stack, parent_tid, tls, child_tid)
    if t.kernel.arch == "aarch64":
        parent_tid, tls, child_tid = a2, a3, a4
    else:
        parent_tid, child_tid, tls = a2, a3, a4
    flags &= 0xFFFFFFFF
    return do_clone(t, flags & ~CSIGNAL, stack, parent_tid, child_tid, tls, flags & CSIGNAL)


_CLONE_ARGS = struct.Struct("<11Q")  # clone_args up to cgroup (CLONE_ARGS_SIZE_VER2 = 88)


@syscall("clone3", status=PARTIAL, note="as clone; set_tid in the sandbox's own pid namespace (nested: EINVAL past Linux's checks); "
         "cgroup placement EINVAL")
def clone3(t, uargs, size):
    if size < 64 or size > 4096:
        raise Errno(E.EINVAL)
    raw = t.mm.read(uargs, size)
    if size > 88 and any(raw[88:]):
        raise Errno(E.E2BIG)
    (flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
     cgroup) = _CLONE_ARGS.unpack(raw[:88].ljust(88, b"\0"))
    if exit_signal & ~CSIGNAL or flags & CLONE_INTO_CGROUP:
        raise Errno(E.EINVAL)
    if set_tid_size > MAX_PID_NS_LEVEL or bool(set_tid) != bool(set_tid_size):
        raise Errno(E.EINVAL)
    if exit_signal and flags & (CLONE_THREAD | CLONE_PARENT):
        raise Errno(E.EINVAL)  # only clone(2) ignores an exit signal there
    if (stack == 0) != (stack_size == 0):
        raise Errno(E.EINVAL)
    if flags & CLONE_PIDFD:
        parent_tid = pidfd
    if set_tid_size:
        _choose_pid(t, flags, set_tid, set_tid_size)
    return do_clone(t, flags, stack + stack_size if stack else 0, parent_tid, child_tid, tls, exit_signal)


def _choose_pid(t, flags: int, set_tid: int, size: int) -> None:
    """clone3's set_tid (checkpoint/restore): Linux's alloc_pid checks, then the pid allocator
    is set to hand out the asked-for pid next."""
    from sentry.namespaces import CAP_SYS_ADMIN, ns_capable, ns_owner
    ns = t.nsproxy.pid_for_children
    if size > ns.level + 1 + bool(flags & CLONE_NEWPID):
        raise Errno(E.EINVAL)
    tids = struct.unpack(f"<{size}i", t.mm.read(set_tid, 4 * size))
    if any(tid < 1 or tid >= t.kernel.sysctl.pid_max for tid in tids):
        raise Errno(E.EINVAL)
    if flags & CLONE_NEWPID and tids[0] != 1:
        raise Errno(E.EINVAL)  # a new namespace's first process is its 1
    owner = ns_owner(ns)
    if not (ns_capable(t, owner, CAP_SYS_ADMIN) or ns_capable(t, owner, CAP_CHECKPOINT_RESTORE)):
        raise Errno(E.EPERM)
    if ns.level or flags & CLONE_NEWPID:
        raise Errno(E.EINVAL)  # a chosen pid inside a nested pid namespace is not offered
    table = t.kernel.ptable
    if tids[0] in table.procs or tids[0] in t.kernel.tasks:
        raise Errno(E.EEXIST)
    table.last_pid = tids[0] - 1


def _strings(t, addr: int) -> list:
    """A NULL-terminated array of C strings (argv, envp); NULL itself is empty."""
    out = []
    if not addr:
        return out
    total = 0
    while True:
        p = t.mm.read_u64(addr + 8 * len(out))
        if not p:
            return out
        s = t.mm.read_cstring(p, execmod.MAX_ARG_STRLEN)
        total += len(s) + 1
        if total > execmod.ARG_MAX or len(out) > execmod.ARG_MAX // 8:
            raise Errno(E.E2BIG)
        out.append(s)


@syscall("execve", status=PARTIAL, note="ELF through our loader (interpreter from the sandbox's view), `#!` scripts; set-id bits ignored")
def execve(t, path, argv, envp):
    return execveat(t, -100, path, argv, envp, 0)


@syscall("execveat", status=PARTIAL, note="as execve; AT_EMPTY_PATH and AT_SYMLINK_NOFOLLOW")
def execveat(t, dirfd, path, argv, envp, flags):
    from syscalls.abi import s32
    if flags & ~(execmod.AT_EMPTY_PATH | execmod.AT_SYMLINK_NOFOLLOW):
        raise Errno(E.EINVAL)
    name = t.mm.read_cstring(path)
    args, env = _strings(t, argv), _strings(t, envp)
    prepared = execmod.prepare(t, s32(dirfd), name, args, env, flags)
    execmod.commit(t, prepared)
    if t.ptrace is not None:  # PTRACE_EVENT_EXEC, or the SIGTRAP of a traced exec
        from sentry import ptrace_guest
        ptrace_guest.execed(t)
    return 0
