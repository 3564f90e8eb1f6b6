"""Who the process is and how it ends: getpid(2) and friends, exit(2),
set_tid_address(2), set_robust_list(2), arch_prctl(2), prlimit64(2), rseq(2), reboot(2)."""
import errno as E
import struct

from sentry import namespaces as nsm
from sentry.errors import Errno
from sentry.sched import TaskExit
from syscalls import cpuctl, creds, seccomp
from syscalls.abi import s32
from syscalls.registry import PARTIAL, refuse, syscall

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004


def _nested(t) -> bool:
    """Is t in a pid namespace below the sandbox's? (its ids are then translated: sentry/namespaces.py)"""
    ns = getattr(t.proc, "pid_ns", None)
    return ns is not None and ns.level > 0


@syscall("getpid", note="as the caller's pid namespace numbers it")
def getpid(t):
    if _nested(t):
        return nsm.pid_vnr(t, t.proc)
    return t.tgid


@syscall("gettid")
def gettid(t):
    if _nested(t):
        return nsm.vnr(t, t)
    return t.tid


@syscall("getppid", note="0 for the sandbox's first process, as for init, and for a parent outside the caller's "
         "pid namespace")
def getppid(t):
    if _nested(t):
        parent = t.proc.parent
        return nsm.pid_vnr(t, parent) if parent is not None else 0
    return t.ppid


@syscall("getuid", note="as the caller's user namespace maps it (65534 unmapped)")
def getuid(t):
    return t.uid if t.user_ns.parent is None else nsm.uid_seen(t, t.uid)


@syscall("geteuid")
def geteuid(t):
    return t.euid if t.user_ns.parent is None else nsm.uid_seen(t, t.euid)


@syscall("getgid")
def getgid(t):
    return t.gid if t.user_ns.parent is None else nsm.gid_seen(t, t.gid)


@syscall("getegid")
def getegid(t):
    return t.egid if t.user_ns.parent is None else nsm.gid_seen(t, t.egid)


@syscall("exit_group")
def exit_group(t, status):
    if t.ptrace is not None:
        from sentry import ptrace_guest
        ptrace_guest.exiting(t, status)  # PTRACE_EVENT_EXIT first
    t.kernel.exit_group(t, status & 0xFF)
    raise TaskExit


@syscall("exit", note="ends the thread; the process with its last thread")
def exit_(t, status):
    if t.ptrace is not None:
        from sentry import ptrace_guest
        ptrace_guest.exiting(t, status)
    t.kernel.exit_thread(t, status & 0xFF)
    raise TaskExit


@syscall("set_tid_address")
def set_tid_address(t, tidptr):
    t.clear_child_tid = tidptr
    return t.tid


@syscall("set_robust_list", note="walked at the thread's death: owned futexes get OWNER_DIED and a wake (sentry/threads.py)")
def set_robust_list(t, head, length):
    if length != 24:
        raise Errno(E.EINVAL)
    t.robust_list = (head, length)
    return 0


@syscall("get_robust_list")
def get_robust_list(t, pid, head_ptr, len_ptr):
    pid = s32(pid)
    target = t if pid == 0 else t.kernel.tasks.get(pid)
    if target is None or pid < 0:
        raise Errno(E.ESRCH)
    if target.proc is not t.proc and t.euid != 0 and t.euid not in (target.uid, target.suid):
        raise Errno(E.EPERM)
    head = target.robust_list[0]
    t.mm.write_u64(head_ptr, head)
    t.mm.write_u64(len_ptr, 24)  # sizeof(struct robust_list_head), whatever was set, as Linux
    return 0


@syscall("arch_prctl", status=PARTIAL, note="FS and GS bases; CPUID faulting of the sandbox's virtual CPU "
         "(syscalls/cpuctl.py); CET and AMX controls answer EINVAL")
def arch_prctl(t, code, addr):
    if code in (cpuctl.ARCH_GET_CPUID, cpuctl.ARCH_SET_CPUID):
        return cpuctl.cpuid_arch_prctl(t, code, addr)
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= 1 << 47:
            raise Errno(E.EPERM)
        (t.cpu.set_tls if code == ARCH_SET_FS else t.cpu.set_gs)(addr)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        t.mm.write_u64(addr, t.cpu.get_tls() if code == ARCH_GET_FS else t.cpu.get_gs())
        return 0
    raise Errno(E.EINVAL)


_RLIMIT = struct.Struct("<QQ")


RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_CPU = 9, 7, 0
_RLIMIT_NOTE = ("every limit is kept, per process, and a raised hard limit needs the effective uid 0; "
                "enforced: FSIZE (SIGXFSZ, EFBIG), AS (ENOMEM), NOFILE, NPROC, SIGPENDING, NICE, "
                "CPU (SIGXCPU, SIGKILL; sampled, up to a millisecond late), CORE (a core flag, no core file); "
                "kept but not enforced: DATA, STACK, RSS, MEMLOCK, "
                "MSGQUEUE, RTPRIO, RTTIME, LOCKS")


@syscall("prlimit64", status=PARTIAL, note=_RLIMIT_NOTE)
def prlimit64(t, pid, resource, new, old):
    pid, resource = s32(pid), s32(resource)
    if pid not in (0, t.tgid):
        raise Errno(E.ESRCH)
    if resource not in t.rlimits:
        raise Errno(E.EINVAL)
    current = t.rlimits[resource]
    wanted = _RLIMIT.unpack(t.mm.read(new, 16)) if new else None
    if wanted is not None:
        soft, hard = wanted
        if soft > hard:
            raise Errno(E.EINVAL)
        if hard > current[1] and t.euid != 0:  # CAP_SYS_RESOURCE: the sandbox's root only
            raise Errno(E.EPERM)
        if resource == RLIMIT_NOFILE and hard > t.kernel.sysctl.nr_open:
            raise Errno(E.EPERM)
        if hard > t.kernel.rlimit_ceilings.get(resource, hard):  # the sandbox's own limit (runner.show_limits)
            raise Errno(E.EPERM)
    if old:
        t.mm.write(old, _RLIMIT.pack(*current))
    if wanted is not None:
        t.rlimits[resource] = wanted
        if resource == RLIMIT_NOFILE:
            t.fds.limit = min(wanted[0], t.kernel.sysctl.nr_open)
        elif resource == RLIMIT_AS:
            t.mm.as_limit = t.as_limit()
        elif resource == RLIMIT_CPU:
            from sentry.timers import cpu_limit_changed
            cpu_limit_changed(t)  # SIGXCPU at the soft limit, SIGKILL at the hard
    return 0


@syscall("getrlimit")
def getrlimit(t, resource, rlim):
    return prlimit64(t, 0, resource, 0, rlim)


@syscall("setrlimit", status=PARTIAL, note="as prlimit64")
def setrlimit(t, resource, rlim):
    return prlimit64(t, 0, resource, rlim, 0)


refuse("rseq", E.ENOSYS, "restartable sequences need preemption notices the sentry does not give; glibc falls back")


PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_NAME, PR_GET_NAME, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 15, 16, 38, 39
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_GET_SECCOMP, PR_SET_SECCOMP = 21, 22
PR_GET_TIMERSLACK, PR_SET_TIMERSLACK, PR_GET_TID_ADDRESS = 30, 29, 40
DEFAULT_TIMER_SLACK_NS = 50_000


@syscall("prctl", status=PARTIAL, note="names, dumpable, no_new_privs, pdeathsig, child subreaper, timer slack "
         "(kept, not applied), the tid address, the TSC mode (syscalls/cpuctl.py); the bounding set, the ambient set, keepcaps and securebits "
         "(syscalls/creds.py: kept and checked as Linux; of the securebits only NO_CAP_AMBIENT_RAISE acts); "
         "PR_GET_SECCOMP 0 and PR_SET_SECCOMP EINVAL (syscalls/seccomp.py); other options EINVAL")
def prctl(t, option, arg2, arg3, arg4, arg5):
    option = s32(option)
    if option in (cpuctl.PR_GET_TSC, cpuctl.PR_SET_TSC):
        return cpuctl.tsc_prctl(t, option, arg2)
    if option in creds.CAP_OPTIONS:
        return creds.cap_prctl(t, option, arg2, arg3, arg4, arg5)
    if option == PR_GET_SECCOMP:
        return seccomp.seccomp_mode(t)
    if option == PR_SET_SECCOMP:
        if arg2 == seccomp.SECCOMP_MODE_STRICT:
            return seccomp.set_mode(t, seccomp.SECCOMP_SET_MODE_STRICT, 0, 0)
        if arg2 == seccomp.SECCOMP_MODE_FILTER:
            return seccomp.set_mode(t, seccomp.SECCOMP_SET_MODE_FILTER, 0, arg3)
        raise Errno(E.EINVAL)
    if option == PR_GET_TIMERSLACK:
        return getattr(t, "timer_slack_ns", DEFAULT_TIMER_SLACK_NS)
    if option == PR_SET_TIMERSLACK:
        t.timer_slack_ns = arg2 or getattr(t, "timer_slack_default", DEFAULT_TIMER_SLACK_NS)
        return 0
    if option == PR_GET_TID_ADDRESS:
        t.mm.write_u64(arg2, t.clear_child_tid)
        return 0
    if option == PR_SET_NAME:
        t.comm = t.mm.read_cstring(arg2, 1 << 20)[:15].decode(errors="replace") if arg2 else ""
        return 0
    if option == PR_GET_NAME:
        t.mm.write(arg2, t.comm.encode()[:15].ljust(16, b"\0"))
        return 0
    if option == PR_SET_PDEATHSIG:
        if not 0 <= arg2 <= 64:
            raise Errno(E.EINVAL)
        t.pdeathsig = arg2
        return 0
    if option == PR_GET_PDEATHSIG:
        t.mm.write_u32(arg2, t.pdeathsig)
        return 0
    if option == PR_GET_DUMPABLE:
        return t.dumpable
    if option == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise Errno(E.EINVAL)
        t.dumpable = arg2
        return 0
    if option == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or arg3 or arg4 or arg5:
            raise Errno(E.EINVAL)
        t.no_new_privs = True
        return 0
    if option == PR_GET_NO_NEW_PRIVS:
        if arg2 or arg3 or arg4 or arg5:
            raise Errno(E.EINVAL)
        return int(t.no_new_privs)
    if option == PR_SET_CHILD_SUBREAPER:
        t.proc.subreaper = bool(arg2)
        return 0
    if option == PR_GET_CHILD_SUBREAPER:
        t.mm.write_u32(arg2, int(t.proc.subreaper))
        return 0
    raise Errno(E.EINVAL)


@syscall("getgroups", note="the thread's supplementary groups (setgroups); at first one, its own gid")
def getgroups(t, size, lst):
    size = s32(size)
    groups = [t.gid] if t.groups is None else list(t.groups)
    if size < 0:
        raise Errno(E.EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise Errno(E.EINVAL)
    t.mm.write(lst, b"".join(g.to_bytes(4, "little") for g in groups))
    return len(groups)


# --- process groups and sessions --------------------------------------------------------------
def _proc_of(t, pid: int):
    pid = s32(pid)
    if pid == 0:
        return t.proc
    proc = nsm.find_proc(t, pid) if _nested(t) else t.kernel.procs.get(pid)  # a negative pid: ESRCH, as Linux
    if proc is None or proc.zombie and not proc.tasks:
        raise Errno(E.ESRCH)
    return proc


@syscall("getpgid")
def getpgid(t, pid):
    pgid = _proc_of(t, pid).pgid
    return nsm.id_vnr(t, pgid) if _nested(t) else pgid


@syscall("getpgrp")
def getpgrp(t):
    return nsm.id_vnr(t, t.proc.pgid) if _nested(t) else t.proc.pgid


@syscall("getsid")
def getsid(t, pid):
    sid = _proc_of(t, pid).sid
    return nsm.id_vnr(t, sid) if _nested(t) else sid


@syscall("setpgid")
def setpgid(t, pid, pgid):
    pid, pgid = s32(pid), s32(pgid)
    if pgid < 0:
        raise Errno(E.EINVAL)
    me = t.proc
    proc = me if pid in (0, me.pid) else t.kernel.procs.get(pid)
    if proc is None or proc is not me and proc.parent is not me:
        raise Errno(E.ESRCH)
    if proc is not me and proc.sid != me.sid:
        raise Errno(E.EPERM)   # a child in another session (before EACCES, as Linux)
    if proc is not me and proc.execed:
        raise Errno(E.EACCES)  # a child that has exec'd is out of reach
    if proc.pid == proc.sid:
        raise Errno(E.EPERM)   # a session leader
    pgid = pgid or proc.pid
    if pgid != proc.pid and not any(p.pgid == pgid and p.sid == me.sid for p in t.kernel.procs.values()):
        raise Errno(E.EPERM)
    proc.pgid = pgid
    return 0


@syscall("setsid")
def setsid(t):
    me = t.proc
    if any(p.pgid == me.pid for p in t.kernel.procs.values()):
        raise Errno(E.EPERM)  # already a group leader
    me.sid = me.pgid = me.pid
    me.tty = None  # a new session has no controlling terminal
    return me.pid


# --- reboot ---------------------------------------------------------------------------------------
LINUX_REBOOT_MAGIC1 = 0xFEE1DEAD
LINUX_REBOOT_MAGIC2 = (672274793, 85072278, 369367448, 537993216)
CMD_RESTART, CMD_HALT, CMD_CAD_ON, CMD_CAD_OFF = 0x01234567, 0xCDEF0123, 0x89ABCDEF, 0x00000000
CMD_POWER_OFF, CMD_RESTART2, CMD_SW_SUSPEND, CMD_KEXEC = 0x4321FEDC, 0xA1B2C3D4, 0xD000FCE2, 0x45584543
CAP_SYS_BOOT = 22


@syscall("reboot", status=PARTIAL, note="Ctrl-Alt-Del's setting (CAD_ON, CAD_OFF) kept; Linux's checks "
         "(CAP_SYS_BOOT over the pid namespace, the magic numbers, the command: EPERM, EINVAL); restarting, "
         "halting, powering off, suspending and kexec are refused EPERM: the sandbox is not a machine that "
         "stops; in a nested pid namespace every command EINVAL")
def reboot(t, magic1, magic2, cmd, arg):
    ns = nsm.pid_ns_of(t.proc)
    if not nsm.ns_capable(t, nsm.ns_owner(ns), CAP_SYS_BOOT):
        raise Errno(E.EPERM)
    if magic1 & 0xFFFFFFFF != LINUX_REBOOT_MAGIC1 or magic2 & 0xFFFFFFFF not in LINUX_REBOOT_MAGIC2:
        raise Errno(E.EINVAL)
    cmd &= 0xFFFFFFFF
    if ns.level:
        raise Errno(E.EINVAL)  # reboot_pid_ns: only the commands that end the namespace, not offered
    if cmd in (CMD_CAD_ON, CMD_CAD_OFF):
        t.kernel.ctrl_alt_del = cmd == CMD_CAD_ON  # what the keyboard's salute would do: no keyboard here
        return 0
    if cmd in (CMD_RESTART, CMD_HALT, CMD_POWER_OFF, CMD_RESTART2, CMD_SW_SUSPEND, CMD_KEXEC):
        raise Errno(E.EPERM)
    raise Errno(E.EINVAL)
