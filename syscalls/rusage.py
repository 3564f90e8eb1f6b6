"""Resource usage: getrusage(2), times(2), and the struct rusage wait4/waitid give.

User time is what the platform measures for a task (ptrace: the host thread's
run time; unicorn: time inside the emulator); system time is the sentry's CPU
time answering its syscalls plus, on ptrace, the host kernel's in its thread
(sentry/sched.py task_system_ns). RUSAGE_THREAD is
the calling thread's own CPU time; RUSAGE_SELF (and times(), and what wait4
reports of a child) is the process's: its live threads' so far plus what its
ended threads used (Process.cpu_ns, added as each one is released). A
process's children times grow when it reaps one, as on Linux. ru_maxrss is the
peak resident set (sentry/rss.py): RUSAGE_SELF the process's, RUSAGE_CHILDREN the
largest of its reaped children's. The other rusage fields (page faults, context
switches) are zero."""
import errno as E
import struct
import time

from sentry import rss
from sentry.errors import Errno
from sentry.sched import process_system_ns, task_system_ns
from sentry.timers import process_cpu_ns
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

RUSAGE_SELF, RUSAGE_CHILDREN, RUSAGE_THREAD = 0, -1, 1
CLK_TCK = 100
_TIMEVALS = struct.Struct("<qqqq")
RUSAGE_SIZE = 144


def pack_rusage(user_ns: int, system_ns: int = 0, maxrss_kb: int = 0) -> bytes:
    return (_TIMEVALS.pack(user_ns // 10**9, user_ns % 10**9 // 1000,
                           system_ns // 10**9, system_ns % 10**9 // 1000)
            + maxrss_kb.to_bytes(8, "little")).ljust(RUSAGE_SIZE, b"\0")


@syscall("getrusage", status=PARTIAL,
         note="user and system times (system: the sentry's time answering the calls, and the host's in a "
              "ptrace thread): RUSAGE_THREAD the caller's, RUSAGE_SELF its live threads' "
              "plus its ended ones', RUSAGE_CHILDREN the reaped children's; ru_maxrss the peak resident set "
              "(the host's count on ptrace, accessible mappings on unicorn); EINVAL for others (RUSAGE_BOTH "
              "too, as Linux); faults and context switches zero")
def getrusage(t, who, usage):
    who = s32(who)
    if who == RUSAGE_SELF:
        ns, sys_ns, maxrss = process_cpu_ns(t.proc), process_system_ns(t.proc), rss.self_kb(t.proc)
    elif who == RUSAGE_CHILDREN:
        ns, sys_ns, maxrss = t.proc.children_cpu_ns, getattr(t.proc, "children_sys_ns", 0), t.proc.children_maxrss_kb
    elif who == RUSAGE_THREAD:
        ns, sys_ns, maxrss = t.cpu.cpu_time_ns(), task_system_ns(t), rss.self_kb(t.proc)
    else:
        raise Errno(E.EINVAL)
    t.mm.write(usage, pack_rusage(ns, sys_ns, maxrss))
    return 0


@syscall("times", status=PARTIAL, note="user and system times in clock ticks (as getrusage); returns ticks since the sandbox started")
def times(t, buf):
    if buf:
        tick = 10**9 // CLK_TCK
        t.mm.write(buf, struct.pack("<qqqq", process_cpu_ns(t.proc) // tick, process_system_ns(t.proc) // tick,
                                    t.proc.children_cpu_ns // tick, getattr(t.proc, "children_sys_ns", 0) // tick))
    return int((time.monotonic() - t.kernel.boot_time) * CLK_TCK) + 1
