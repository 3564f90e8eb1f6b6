"""Warm starts' guest processes (sentry/warm.py, sentry/warmserver.py).

A prepared program is one guest process stopped at the point where calls start. The
sentry process that prepared it (the warm server) keeps it parked; each call runs in
a fork of that sentry process, which takes a copy of the parked guest process for
itself:

- ptrace: the guest is a host process, traced by one thread only. The server parks it
  untraced in a group-stop (SIGSTOP, then PTRACE_DETACH; nothing of it runs). A call's
  sentry seizes it, injects a host fork (the host kernel gives the copy-on-write copy,
  traced by the call's sentry from birth, exactly as Kernel.fork makes a child) and
  detaches it again: Linux puts a process whose group is stopped back into its stop
  when its tracer lets go (__ptrace_unlink). The copy gets none of the host fds passed
  into the parked process (their offsets are shared host state): the call's sentry
  passes its own again on demand.
- unicorn: the guest's memory and registers live in the sentry's own memory, so the
  call's sentry, a fork, has its copy already.
"""
import ctypes
import os
import signal
import time

from sentry.errors import SentryError
from sentry.platform import hostcalls as hc

PTRACE_DETACH = 17
NR_CLOSE = 3
# _spawn_stub's options but PTRACE_O_EXITKILL: the parked process outlives each call's
# sentry. The copy, traced from birth with these, gets EXITKILL of its own.
SEIZE_OPTIONS = (hc.PTRACE_O_TRACESYSGOOD | hc.PTRACE_O_TRACEEXEC | hc.PTRACE_O_TRACEFORK
                 | hc.PTRACE_O_TRACECLONE | hc.PTRACE_O_TRACESECCOMP)
PARK_TIMEOUT = 5.0


def park(platform, space, cpu):
    """In the warm server, once: leave the guest process (stopped at a syscall, or before
    its first instruction) stopped and untraced, for the calls to copy. Returns what copy()
    needs to know of it."""
    if platform.name != "ptrace":
        return None
    tid = cpu.tid
    # the host fds passed into it (never its socket's end): a copy closes its own
    passed = [int(n) for n in os.listdir(f"/proc/{tid}/fd") if int(n) != space._guest_sock]
    hc.tgkill(space.pid, tid, signal.SIGSTOP)  # pending before it may run: it stops at once
    _ptrace(PTRACE_DETACH, tid, 0, 0)
    platform.cpus.pop(tid, None)
    deadline = time.monotonic() + PARK_TIMEOUT
    while _state(tid) != "T":
        if time.monotonic() > deadline:
            raise SentryError("warm start: the prepared process did not stop")
        time.sleep(0.0002)
    return passed


def copy(platform, space, cpu, parked):
    """In a call's sentry process (a fork of the warm server): (space, cpu) of a copy of
    the parked guest process that this process drives, with the registers it was parked
    with."""
    if platform.name != "ptrace":
        cpu._run_ns = 0  # its CPU time counts from the call's start, as a fresh process's
        return space, cpu
    from sentry.platform.ptrace import MASK64
    tid = cpu.tid
    _ptrace(hc.PTRACE_SEIZE, tid, 0, SEIZE_OPTIONS)
    try:
        _ptrace(hc.PTRACE_INTERRUPT, tid, 0, 0)
        _, status = os.waitpid(tid, hc.WALL)
        if not os.WIFSTOPPED(status):
            raise SentryError("warm start: the prepared process is gone")
        platform.cpus[tid] = cpu
        cpu.running = cpu.live = cpu.traced = cpu.trace_next = cpu.passing = False
        child = space.fork(cpu)
    finally:
        platform.cpus.pop(tid, None)
        try:
            _ptrace(PTRACE_DETACH, tid, 0, 0)  # back into its group-stop
        except OSError:
            pass
    _ptrace(hc.PTRACE_SETOPTIONS, child.pid, 0, SEIZE_OPTIONS | hc.PTRACE_O_EXITKILL)
    # Host fds inherited from the parked process share their open files (and offsets)
    # with it: closed, the call's sentry passes its own on demand (HostProcess._guest_fd).
    for n in parked:
        child.inject(NR_CLOSE, n)
    child._passed.clear()
    child._mirrors.clear()
    child._closing.clear()
    child._drain()  # what an earlier call's sentry left queued for the process (killed mid-pass)
    ccpu = child.cpu
    _ptrace(hc.PTRACE_GETREGS, ccpu.tid, 0, ccpu._regs_addr)  # the registers of the stop, as decode reads them
    ccpu.regs.orig_rax = MASK64
    return child, ccpu


def _state(tid: int) -> str:
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "?"


def _ptrace(request: int, pid: int, addr: int, data: int) -> None:
    if hc.raw_ptrace(request, pid, addr, data) == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace {request:#x} on {pid}: {os.strerror(e)}")
