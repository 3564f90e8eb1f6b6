"""Waiting for children: wait4(2), waitid(2)."""
import errno as E
import struct

from sentry import ptrace_guest
from sentry.errors import Errno
from sentry.process import CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_STOPPED
from sentry.sched import Wait
from sentry.vfs.file import O_NONBLOCK
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

WNOHANG, WUNTRACED, WSTOPPED, WEXITED, WCONTINUED, WNOWAIT = 1, 2, 2, 4, 8, 0x01000000
__WNOTHREAD, __WALL, __WCLONE = 0x20000000, 0x40000000, 0x80000000
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
SIGCHLD, SIGCONT = 17, 18


def _matches(t, child, which: str, ident: int, options: int) -> bool:
    if which == "pid" and child.pid != ident or which == "pgid" and child.pgid != ident:
        return False
    # __WCLONE: only children that signal their parent with something other than SIGCHLD
    if not options & __WALL and bool(options & __WCLONE) != (child.exit_signal != SIGCHLD):
        return False
    if options & __WNOTHREAD and child.creator is not t:
        return False  # a child another thread of the process made
    return True


def _find(t, which: str, ident: int, options: int, exited: bool, stopped: bool, continued: bool,
          consume: bool):
    """(child, cld_code, status) of the first child with something to report, or
    None if there are candidates but none has anything yet; ECHILD if there are none."""
    candidates = [c for c in t.proc.children if _matches(t, c, which, ident, options)]
    traced = ptrace_guest.wait_candidates(t) if any(x.traces for x in t.proc.tasks) else ()
    if traced:  # tracees: their ptrace stops, whatever WUNTRACED says (__WALL implied)
        def match(c):
            return _matches(t, c, which, ident, options | __WALL)
        found = ptrace_guest.wait_report(t, match, consume)
        if found is not None:
            return found
        if not candidates and any(match(ptrace_guest.Reported(x)) for x in traced):
            return None
    if not candidates:
        raise Errno(E.ECHILD)
    for child in candidates:
        if child.zombie and exited:
            code, signo, core = child.exited
            cld = CLD_DUMPED if core else CLD_KILLED if signo else CLD_EXITED
            result = (child, cld, signo or code, child.status)
            if consume:
                # as Linux: a parent's children times grow when it reaps one (not at auto-reap)
                t.proc.children_cpu_ns += child.cpu_ns + child.children_cpu_ns
                t.proc.children_sys_ns = (getattr(t.proc, "children_sys_ns", 0) + getattr(child, "sys_ns", 0)
                                          + getattr(child, "children_sys_ns", 0))
                from sentry import rss
                rss.reaped(t.proc, child)
                t.kernel.ptable.reap(child)
            return result
        if child.stop_report and stopped:
            sig = child.stop_report
            if consume:
                child.stop_report = None
            return child, CLD_STOPPED, sig, (sig << 8) | 0x7F
        if child.cont_report and continued:
            if consume:
                child.cont_report = False
            return child, CLD_CONTINUED, SIGCONT, 0xFFFF  # waitid's si_status: SIGCONT, as Linux
    return None


def _target(t, pid: int):
    if pid < -1:
        return "pgid", _global(t, -pid)
    if pid == -1:
        return "all", 0
    if pid == 0:
        return "pgid", t.proc.pgid
    return "pid", _global(t, pid)


def _global(t, nr: int) -> int:
    """The sandbox-wide number of what t calls nr (in a pid namespace of its own: -1 for none)."""
    ns = getattr(t.proc, "pid_ns", None)
    if ns is None or not ns.level:
        return nr
    from sentry.namespaces import global_pid
    found = global_pid(t, nr)
    return -1 if found is None else found


def _seen(t, child) -> int:
    """child's pid as t's pid namespace numbers it."""
    ns = getattr(t.proc, "pid_ns", None)
    if ns is None or not ns.level:
        return child.pid
    from sentry.namespaces import pid_vnr
    return pid_vnr(t, child)


def _child_rusage(child) -> bytes:
    """What wait reports of a child: its own CPU time and its reaped children's."""
    from syscalls.rusage import pack_rusage, process_cpu_ns
    from sentry.sched import process_system_ns
    return pack_rusage(process_cpu_ns(child) + child.children_cpu_ns,
                       process_system_ns(child) + getattr(child, "children_sys_ns", 0),
                       max(child.maxrss_kb, child.children_maxrss_kb))


@syscall("wait4", status=PARTIAL, note="rusage: CPU times only (as getrusage)")
def wait4(t, pid, wstatus, options, rusage):
    pid = s32(pid)
    if options & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE):
        raise Errno(E.EINVAL)
    if pid == -(1 << 31):
        raise Errno(E.ESRCH)
    which, ident = _target(t, pid)
    found = _find(t, which, ident, options, True, bool(options & WUNTRACED), bool(options & WCONTINUED),
                  consume=True)
    if found is None:
        if options & WNOHANG:
            return 0
        raise Wait(queues=(t.proc.child_events,))
    child, _, _, status = found
    if wstatus:
        t.mm.write_u32(wstatus, status)
    if rusage:
        t.mm.write(rusage, _child_rusage(child))
    return _seen(t, child)


_SIGINFO_CHLD = struct.Struct("<iii4xiii")  # si_signo, si_errno, si_code, si_pid, si_uid, si_status


@syscall("waitid", status=PARTIAL, note="P_ALL, P_PID, P_PGID, P_PIDFD; rusage: CPU times only (as getrusage)")
def waitid(t, idtype, ident, infop, options, rusage):
    idtype, ident = s32(idtype), s32(ident)
    if options & ~(WNOHANG | WSTOPPED | WEXITED | WCONTINUED | WNOWAIT | __WNOTHREAD | __WALL | __WCLONE):
        raise Errno(E.EINVAL)
    if not options & (WEXITED | WSTOPPED | WCONTINUED):
        raise Errno(E.EINVAL)
    nonblock = False
    if idtype == P_ALL:
        which, ident = "all", 0
    elif idtype == P_PID:
        if ident <= 0:
            raise Errno(E.EINVAL)
        which, ident = "pid", _global(t, ident)
    elif idtype == P_PGID:
        if ident < 0:
            raise Errno(E.EINVAL)
        which, ident = "pgid", _global(t, ident) if ident else t.proc.pgid
    elif idtype == P_PIDFD:
        from syscalls.pidfd import process_of_fd
        if ident < 0:
            raise Errno(E.EINVAL)
        proc = process_of_fd(t, ident)
        if t.fds.get(ident).flags & O_NONBLOCK:
            nonblock = True  # a PIDFD_NONBLOCK pidfd: EAGAIN rather than a wait, as Linux
        which, ident = "pid", proc.pid
        if proc.parent is not t.proc:
            raise Errno(E.ECHILD)
    else:
        raise Errno(E.EINVAL)
    found = _find(t, which, ident, options, bool(options & WEXITED), bool(options & WSTOPPED),
                  bool(options & WCONTINUED), consume=not options & WNOWAIT)
    if found is None:
        if nonblock and not options & WNOHANG:
            raise Errno(E.EAGAIN)
        if options & WNOHANG:
            if infop:
                t.mm.write(infop, bytes(128))
            return 0
        raise Wait(queues=(t.proc.child_events,))
    child, code, status, _ = found
    if infop:
        t.mm.write(infop, _SIGINFO_CHLD.pack(SIGCHLD, 0, code, _seen(t, child), 0, status).ljust(128, b"\0"))
    if rusage:
        t.mm.write(rusage, _child_rusage(child))
    return 0
