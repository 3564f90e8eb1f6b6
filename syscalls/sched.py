"""Scheduling as the sandbox shows it: sched_yield(2), sched_getaffinity(2),
sched_setaffinity(2), getcpu(2), the sched_*param/*scheduler family, sched_getattr(2),
sched_setattr(2), sched_get_priority_min/max(2), sched_rr_get_interval(2),
getpriority(2), setpriority(2), ioprio_get(2), ioprio_set(2) and membarrier(2).

The sandbox sees CPUs 0..n-1, n the host's count (at most 64: its cpumask is
8 bytes); where its tasks really run is the sentry's business. ptrace runs
every task as a host thread on the sentry's one host CPU; unicorn runs one
task at a time in the loop. Each task keeps its own affinity mask, policy
(SCHED_OTHER, SCHED_BATCH or SCHED_IDLE, priority 0), nice value and I/O
priority, which a new task inherits from its creator (sentry/kernel.py
_inherit_sched); they are bookkeeping: the sentry schedules every task alike.
Real-time and deadline policies are checked as Linux checks them (RLIMIT_RTPRIO,
CAP_SYS_NICE: the sandbox's root, euid 0) and kept with their priority and deadline
parameters, which sched_get* report and SCHED_RESET_ON_FORK drops in a child; the
sentry gives them no real-time or deadline treatment. What else needs CAP_SYS_NICE
on Linux (a lower nice value past RLIMIT_NICE, another user's task) is allowed to
the sandbox's root.
membarrier registrations belong to the address space (a fork's child starts
unregistered, unlike Linux's)."""
import errno as E
import os
import struct

from sentry.errors import Errno
from syscalls.abi import s32, write_timespec
from syscalls.registry import PARTIAL, syscall

MASK_BYTES = 8  # the sandbox's cpumask: up to 64 CPUs (cpumask_size() of a kernel with NR_CPUS=64)

SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE = 0, 1, 2, 3, 5, 6
SCHED_RESET_ON_FORK = 0x40000000
_POLICIES = (SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE)
_RT = (SCHED_FIFO, SCHED_RR)
MAX_RT_PRIO = 100
RLIMIT_NICE, RLIMIT_RTPRIO = 13, 14


def _cpus() -> int:
    return max(1, min(os.cpu_count() or 1, 64))


def _all_cpus() -> int:
    return (1 << _cpus()) - 1


def _target(t, pid: int):
    """The task pid names: 0 is the caller, else a live thread of the sandbox or a zombie
    process not yet reaped (its leader, as Linux keeps it until then); ESRCH."""
    if pid == 0:
        return t
    other = t.kernel.tasks.get(pid) if pid > 0 else None
    if other is None or other.exit_status is not None:
        proc = t.kernel.procs.get(pid) if pid > 0 else None
        if proc is not None and proc.zombie and proc.leader is not None:
            return proc.leader
        raise Errno(E.ESRCH)
    return other


def _affinity(task) -> int:
    return getattr(task, "sched_affinity", None) or _all_cpus()


def _policy(task) -> int:
    return getattr(task, "sched_policy", SCHED_OTHER)


def _rt_priority(task) -> int:
    return getattr(task, "sched_prio", 0)


@syscall("sched_yield", note="ends the caller's turn: on unicorn every syscall puts its task behind the other "
         "ready tasks, so they run first; on ptrace each task is a host thread on the sentry's host CPU, and "
         "the syscall stop itself hands that CPU over")
def sched_yield(t):
    return 0


@syscall("sched_getaffinity", status=PARTIAL,
         note="the task's mask in the sandbox's view: CPUs 0..n-1 (the host's count, at most 64, an 8-byte "
              "mask), or what sched_setaffinity left; pid 0 or a sandbox tid (else ESRCH); EINVAL for sizes "
              "too small or not a multiple of 8, as Linux; a new task starts with every CPU (not inherited)")
def sched_getaffinity(t, pid, size, mask):
    size &= 0xFFFFFFFF
    if size * 8 < _cpus() or size & 7:
        raise Errno(E.EINVAL)
    task = _target(t, s32(pid))
    n = min(size, MASK_BYTES)
    t.mm.write(mask, _affinity(task).to_bytes(MASK_BYTES, "little")[:n])
    return n


@syscall("sched_setaffinity", status=PARTIAL,
         note="kept per task as the sandbox's view (CPUs outside it dropped, EINVAL when none is left, as "
              "Linux); where tasks run stays the sentry's; not inherited by new tasks")
def sched_setaffinity(t, pid, size, mask):
    size &= 0xFFFFFFFF
    wanted = int.from_bytes(t.mm.read(mask, min(size, MASK_BYTES)), "little") if size else 0
    task = _target(t, s32(pid))
    if not _same_owner(t, task):
        raise Errno(E.EPERM)
    wanted &= _all_cpus()
    if not wanted:
        raise Errno(E.EINVAL)
    task.sched_affinity = wanted
    return 0


@syscall("getcpu", status=PARTIAL, note="the lowest CPU of the caller's affinity mask, node 0")
def getcpu(t, cpu, node, cache):
    if cpu:
        mask = _affinity(t)
        t.mm.write_u32(cpu, (mask & -mask).bit_length() - 1)
    if node:
        t.mm.write_u32(node, 0)
    return 0


def _read_priority(t, param) -> int:
    """struct sched_param's sched_priority, as Linux reads it (an int taken as unsigned)."""
    return t.mm.read_u32(param)


def _nice(task) -> int:
    return getattr(task, "sched_nice", 0)


def _privileged(t) -> bool:
    return t.euid == 0  # CAP_SYS_NICE for what the sandbox can give: the sandbox's root


def _nice_allowed(t, task, nice: int) -> bool:
    """Linux's can_nice: a nice value below the task's own needs RLIMIT_NICE to allow it
    (20 - nice <= the limit) or CAP_SYS_NICE."""
    return 20 - nice <= task.rlimits.get(RLIMIT_NICE, (0, 0))[0] or _privileged(t)


def _same_owner(t, task) -> bool:
    return t.euid in (task.euid, task.uid) or _privileged(t)


def _set_scheduler(t, pid: int, policy: int, prio: int, *, nice=None, reset=None, clamp=False,
                   keep=False, deadline=None) -> int:
    """Linux's __sched_setscheduler from user space; policy -1 keeps the task's
    (sched_setparam); nice (sched_setattr) sets a fair policy's nice value; reset is
    SCHED_RESET_ON_FORK when not given in the policy; clamp: utilization clamps were
    asked for (EOPNOTSUPP once the rest is checked, as without CONFIG_UCLAMP_TASK);
    keep (SCHED_FLAG_KEEP_PARAMS): everything is checked, only the reset flag changes;
    deadline: SCHED_DEADLINE's (runtime, deadline, period), checked by sched_setattr."""
    task = _target(t, pid)
    current = _policy(task)
    if policy < 0:
        policy = current
        reset = getattr(task, "sched_reset_on_fork", False)
    else:
        if reset is None:
            reset = bool(policy & SCHED_RESET_ON_FORK)
            policy &= ~SCHED_RESET_ON_FORK
        if policy not in _POLICIES:
            raise Errno(E.EINVAL)
    if prio > MAX_RT_PRIO - 1:
        raise Errno(E.EINVAL)
    if policy == SCHED_DEADLINE and deadline is None or (policy in _RT) != (prio != 0):
        raise Errno(E.EINVAL)  # deadline parameters come only with sched_setattr
    if policy in _RT and not _privileged(t):
        limit = task.rlimits.get(RLIMIT_RTPRIO, (0, 0))[0]
        if policy != current and not limit or prio > _rt_priority(task) and prio > limit:
            raise Errno(E.EPERM)
    if policy == SCHED_DEADLINE and not _privileged(t):
        raise Errno(E.EPERM)
    if nice is not None and nice < _nice(task) and not _nice_allowed(t, task, nice):
        raise Errno(E.EPERM)
    if current == SCHED_IDLE and policy != SCHED_IDLE and not _nice_allowed(t, task, _nice(task)):
        raise Errno(E.EPERM)  # leaving SCHED_IDLE is a nice reduction
    if not _same_owner(t, task):
        raise Errno(E.EPERM)
    if getattr(task, "sched_reset_on_fork", False) and not reset and not _privileged(t):
        raise Errno(E.EPERM)
    if clamp:
        raise Errno(E.EOPNOTSUPP)
    task.sched_reset_on_fork = reset
    if not keep:
        task.sched_policy = policy
        task.sched_prio = prio if policy in _RT else 0
        task.sched_deadline = deadline if policy == SCHED_DEADLINE else None
        if nice is not None and policy not in _RT and policy != SCHED_DEADLINE:
            task.sched_nice = nice
    return 0


@syscall("sched_setscheduler", status=PARTIAL,
         note="every policy and its priority kept per task, with Linux's EINVAL and EPERM checks "
              "(RLIMIT_RTPRIO; CAP_SYS_NICE: the sandbox's root); the sentry schedules all tasks alike")
def sched_setscheduler(t, pid, policy, param):
    policy, pid = s32(policy), s32(pid)
    if policy < 0 or not param or pid < 0:
        raise Errno(E.EINVAL)
    return _set_scheduler(t, pid, policy, _read_priority(t, param))


@syscall("sched_setparam", status=PARTIAL, note="priority 0 under the task's policy (any other EINVAL, as Linux)")
def sched_setparam(t, pid, param):
    pid = s32(pid)
    if not param or pid < 0:
        raise Errno(E.EINVAL)
    return _set_scheduler(t, pid, -1, _read_priority(t, param))


@syscall("sched_getscheduler", note="the task's policy (SCHED_OTHER unless set), with SCHED_RESET_ON_FORK")
def sched_getscheduler(t, pid):
    pid = s32(pid)
    if pid < 0:
        raise Errno(E.EINVAL)
    task = _target(t, pid)
    return _policy(task) | (SCHED_RESET_ON_FORK if getattr(task, "sched_reset_on_fork", False) else 0)


@syscall("sched_getparam", note="a real-time policy's priority, else 0")
def sched_getparam(t, pid, param):
    pid = s32(pid)
    if not param or pid < 0:
        raise Errno(E.EINVAL)
    task = _target(t, pid)
    t.mm.write(param, struct.pack("<i", _rt_priority(task)))
    return 0


@syscall("sched_get_priority_max", note="99 for SCHED_FIFO/RR, 0 for the others, EINVAL for unknown policies")
def sched_get_priority_max(t, policy):
    policy = s32(policy)
    if policy in _RT:
        return MAX_RT_PRIO - 1
    if policy in _POLICIES:
        return 0
    raise Errno(E.EINVAL)


@syscall("sched_get_priority_min", note="1 for SCHED_FIFO/RR, 0 for the others, EINVAL for unknown policies")
def sched_get_priority_min(t, policy):
    policy = s32(policy)
    if policy in _RT:
        return 1
    if policy in _POLICIES:
        return 0
    raise Errno(E.EINVAL)


@syscall("sched_rr_get_interval", status=PARTIAL,
         note="what the host gives the sentry's own thread under SCHED_OTHER (its fair-class slice, often 0)")
def sched_rr_get_interval(t, pid, tp):
    pid = s32(pid)
    if pid < 0:
        raise Errno(E.EINVAL)
    _target(t, pid)
    try:
        seconds = os.sched_rr_get_interval(0)
    except OSError:
        seconds = 0.0
    write_timespec(t.mm, tp, int(seconds * 1e9))
    return 0


# --- sched_attr ------------------------------------------------------------------------------
SCHED_ATTR = struct.Struct("<IIQiIQQQII")  # size, policy, flags, nice, priority, runtime, deadline, period, util
SCHED_ATTR_SIZE_VER0 = 48
SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_KEEP_POLICY, SCHED_FLAG_KEEP_PARAMS = 0x01, 0x08, 0x10
SCHED_FLAG_UTIL_CLAMP = 0x60
SCHED_FLAG_ALL = 0x7F
SCHED_FLAG_SUGOV = 0x10000000
DL_PERIOD_MIN_NS, DL_PERIOD_MAX_NS = 100_000, 4_194_304_000  # kernel.sched_deadline_period_{min,max}_us


def _deadline_params_ok(runtime: int, deadline: int, period: int) -> bool:
    """Linux's __checkparam_dl."""
    if deadline == 0 or runtime < 1 << 10 or deadline >> 63 or period >> 63:
        return False
    period = period or deadline
    if period < deadline or deadline < runtime:
        return False
    return DL_PERIOD_MIN_NS <= period <= DL_PERIOD_MAX_NS


@syscall("sched_getattr", status=PARTIAL,
         note="policy, SCHED_FLAG_RESET_ON_FORK, nice, real-time priority and the deadline parameters as "
              "set; no utilization clamps (a kernel without CONFIG_UCLAMP_TASK); the size handshake as Linux")
def sched_getattr(t, pid, attr, size, flags):
    pid, size, flags = s32(pid), size & 0xFFFFFFFF, flags & 0xFFFFFFFF
    if not attr or pid < 0 or size > 4096 or size < SCHED_ATTR_SIZE_VER0 or flags:
        raise Errno(E.EINVAL)
    task = _target(t, pid)
    reset = SCHED_FLAG_RESET_ON_FORK if getattr(task, "sched_reset_on_fork", False) else 0
    policy = _policy(task)
    nice = _nice(task) if policy not in _RT and policy != SCHED_DEADLINE else 0
    runtime, deadline, period = getattr(task, "sched_deadline", None) or (0, 0, 0)
    wrote = min(size, SCHED_ATTR.size)
    t.mm.write(attr, SCHED_ATTR.pack(wrote, policy, reset, nice, _rt_priority(task), runtime, deadline, period,
                                     0, 0)[:wrote])
    return 0


@syscall("sched_setattr", status=PARTIAL,
         note="as sched_setscheduler, with the nice value of a fair policy and SCHED_FLAG_KEEP_*; "
              "SCHED_DEADLINE's parameters checked as Linux and kept for the sandbox's root (no deadline "
              "scheduling: the sentry runs the task as any other), utilization clamps EOPNOTSUPP; the size "
              "handshake (E2BIG with the kernel's size written back) as Linux")
def sched_setattr(t, pid, attr, flags):
    pid = s32(pid)
    if not attr or pid < 0 or flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    size = t.mm.read_u32(attr) or SCHED_ATTR_SIZE_VER0
    if size < SCHED_ATTR_SIZE_VER0 or size > 4096:
        t.mm.write_u32(attr, SCHED_ATTR.size)
        raise Errno(E.E2BIG)
    raw = t.mm.read(attr, size)
    if any(raw[SCHED_ATTR.size:]):  # copy_struct_from_user: what the kernel does not know must be zero
        t.mm.write_u32(attr, SCHED_ATTR.size)
        raise Errno(E.E2BIG)
    (_, policy, sflags, nice, prio, runtime, deadline, period,
     _, _) = SCHED_ATTR.unpack(raw[:SCHED_ATTR.size].ljust(SCHED_ATTR.size, b"\0"))
    if sflags & SCHED_FLAG_UTIL_CLAMP and size < SCHED_ATTR.size:
        raise Errno(E.EINVAL)
    nice = max(-20, min(19, nice))
    if policy & 0x80000000:
        raise Errno(E.EINVAL)
    if sflags & SCHED_FLAG_KEEP_POLICY:
        policy = -1
    task = _target(t, pid)
    if sflags & SCHED_FLAG_KEEP_PARAMS:  # the task's own, checked as if given
        nice, prio = _nice(task), _rt_priority(task)
        runtime, deadline, period = getattr(task, "sched_deadline", None) or (0, 0, 0)
    if policy >= 0 and policy not in _POLICIES:
        raise Errno(E.EINVAL)
    if sflags & ~(SCHED_FLAG_ALL | SCHED_FLAG_SUGOV):
        raise Errno(E.EINVAL)
    dl = None
    if policy == SCHED_DEADLINE:
        if prio > MAX_RT_PRIO - 1 or not (sflags & SCHED_FLAG_SUGOV or _deadline_params_ok(runtime, deadline, period)):
            raise Errno(E.EINVAL)
        if sflags & SCHED_FLAG_SUGOV:
            raise Errno(E.EPERM)  # only the kernel's cpufreq threads
        dl = (runtime, deadline, period or deadline)
    if sflags & SCHED_FLAG_SUGOV:
        raise Errno(E.EINVAL)
    return _set_scheduler(t, pid, policy, prio, nice=nice, reset=bool(sflags & SCHED_FLAG_RESET_ON_FORK),
                          clamp=bool(sflags & SCHED_FLAG_UTIL_CLAMP), keep=bool(sflags & SCHED_FLAG_KEEP_PARAMS),
                          deadline=dl)


# --- nice values ------------------------------------------------------------------------------
PRIO_PROCESS, PRIO_PGRP, PRIO_USER = 0, 1, 2


def _tasks_of(t, which: int, who: int) -> list:
    """The live tasks a getpriority/setpriority/ioprio_* (which, who) names, as Linux: a thread for
    PRIO_PROCESS, every thread of the process group's processes, every thread of the user's."""
    live = [task for task in t.kernel.tasks.values() if task.exit_status is None]
    if which == PRIO_PROCESS:
        return [t] if who == 0 else [task for task in live if task.tid == who]
    if which == PRIO_PGRP:
        pgid = who or t.proc.pgid
        return [task for task in live if task.proc.pgid == pgid]
    uid = who if who else t.uid
    return [task for task in live if task.uid == uid]


@syscall("getpriority", note="the highest priority (20 - nice) among the named tasks, as Linux's raw syscall")
def getpriority(t, which, who):
    which, who = s32(which), s32(who)
    if not PRIO_PROCESS <= which <= PRIO_USER:
        raise Errno(E.EINVAL)
    tasks = _tasks_of(t, which, who)
    if not tasks:
        raise Errno(E.ESRCH)
    return max(20 - _nice(task) for task in tasks)


@syscall("setpriority", note="nice values kept per task (inherited, shown in /proc/PID/stat) and clamped to "
         "-20..19; EPERM for another user's task, EACCES for a reduction past RLIMIT_NICE, as Linux (the "
         "sandbox's root may); the sentry schedules every task alike")
def setpriority(t, which, who, niceval):
    which, who, niceval = s32(which), s32(who), s32(niceval)
    if not PRIO_PROCESS <= which <= PRIO_USER:
        raise Errno(E.EINVAL)
    niceval = max(-20, min(19, niceval))
    error = E.ESRCH
    for task in _tasks_of(t, which, who):
        if not (t.euid in (task.uid, task.euid) or _privileged(t)):
            error = E.EPERM
        elif niceval < _nice(task) and not _nice_allowed(t, task, niceval):
            error = E.EACCES
        else:
            task.sched_nice = niceval
            if error == E.ESRCH:
                error = 0
    if error:
        raise Errno(error)
    return 0


# --- I/O priorities ---------------------------------------------------------------------------
IOPRIO_CLASS_NONE, IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE = 0, 1, 2, 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER = 1, 2, 3


def _effective_ioprio(task) -> int:
    """What a task's I/O is served at: its own priority, or without one its nice value's
    level in the class its scheduling policy gives (Linux's __get_task_ioprio)."""
    prio = getattr(task, "ioprio", 0)
    if prio >> IOPRIO_CLASS_SHIFT & 7 != IOPRIO_CLASS_NONE:
        return prio
    klass = IOPRIO_CLASS_IDLE if _policy(task) == SCHED_IDLE else IOPRIO_CLASS_BE
    return klass << IOPRIO_CLASS_SHIFT | (_nice(task) + 20) // 5


def _best(a: int, b: int) -> int:
    norm = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 4
    a = a if a >> IOPRIO_CLASS_SHIFT & 7 else norm
    b = b if b >> IOPRIO_CLASS_SHIFT & 7 else norm
    return min(a, b)


@syscall("ioprio_get", note="a thread's own I/O priority (IOPRIO_CLASS_NONE until set); for a process group or a "
         "user the best effective one, from nice values where none was set, as Linux")
def ioprio_get(t, which, who):
    which, who = s32(which), s32(who)
    if not IOPRIO_WHO_PROCESS <= which <= IOPRIO_WHO_USER:
        raise Errno(E.EINVAL)
    tasks = _tasks_of(t, which - 1, who)
    if not tasks:
        raise Errno(E.ESRCH)
    if which == IOPRIO_WHO_PROCESS:
        return getattr(tasks[0], "ioprio", 0)
    best = _effective_ioprio(tasks[0])
    for task in tasks[1:]:
        best = _best(best, _effective_ioprio(task))
    return best


@syscall("ioprio_set", note="kept per thread (inherited) and reported; the sentry's I/O has no priorities. The "
         "real-time class answers EPERM (no real-time scheduling to give); other checks as Linux's")
def ioprio_set(t, which, who, ioprio):
    which, who, ioprio = s32(which), s32(who), s32(ioprio)
    klass = ioprio >> IOPRIO_CLASS_SHIFT & 7
    if klass == IOPRIO_CLASS_RT:
        raise Errno(E.EPERM)
    if klass > IOPRIO_CLASS_IDLE or klass == IOPRIO_CLASS_NONE and ioprio & 7:
        raise Errno(E.EINVAL)
    if not IOPRIO_WHO_PROCESS <= which <= IOPRIO_WHO_USER:
        raise Errno(E.EINVAL)
    tasks = _tasks_of(t, which - 1, who)
    if not tasks:
        raise Errno(E.ESRCH)
    for task in tasks:
        if not (t.euid == task.uid or t.uid == task.uid or _privileged(t)):
            raise Errno(E.EPERM)
        task.ioprio = ioprio & 0xFFFF
    return 0


# --- membarrier ------------------------------------------------------------------------------
MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 2
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 8
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 16
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 32
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 64
MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ = 128
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ = 256
MEMBARRIER_CMD_GET_REGISTRATIONS = 512
MEMBARRIER_CMD_FLAG_CPU = 1
# Offered: everything but the rseq commands (rseq itself is ENOSYS here), as a kernel without CONFIG_RSEQ.
MEMBARRIER_CMDS = (MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
                   | MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
                   | MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE
                   | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_CMD_GET_REGISTRATIONS)

# An address space's registrations, as Linux's mm->membarrier_state: a registration's "ready"
# state allows its barrier; registering SYNC_CORE also marks (not readies) PRIVATE_EXPEDITED.
_READY = {MEMBARRIER_CMD_PRIVATE_EXPEDITED: "private-ready",
          MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: "sync-core-ready"}
_REGISTER = {MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: ("global", "global-ready"),
             MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: ("private", "private-ready"),
             MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: ("private", "sync-core", "sync-core-ready")}
_REPORTED = ((MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, ("global", "global-ready")),
             (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, ("private", "private-ready")),
             (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, ("sync-core", "sync-core-ready")))


@syscall("membarrier", status=PARTIAL,
         note="QUERY, GLOBAL, GLOBAL_EXPEDITED, the PRIVATE_EXPEDITED (and SYNC_CORE) commands with their "
              "registrations (EPERM unregistered, as Linux), GET_REGISTRATIONS. A barrier is trivially "
              "satisfied: ptrace runs all the sandbox's threads on the sentry's one host CPU, so while the "
              "caller is stopped in the sentry every other thread has been switched out (a full barrier, "
              "and one core sees its own code changes); unicorn runs one task at a time with the loop between "
              "them. The RSEQ commands are EINVAL (no rseq); registrations are kept by a fork, dropped by execve")
def membarrier(t, cmd, flags, cpu_id):
    cmd, flags = s32(cmd), flags & 0xFFFFFFFF
    if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ:
        if flags not in (0, MEMBARRIER_CMD_FLAG_CPU):
            raise Errno(E.EINVAL)
    elif flags:
        raise Errno(E.EINVAL)
    if cmd == MEMBARRIER_CMD_QUERY:
        return MEMBARRIER_CMDS
    if cmd in (MEMBARRIER_CMD_GLOBAL, MEMBARRIER_CMD_GLOBAL_EXPEDITED):
        return 0
    state = t.mm.membarrier  # the address space's registrations (a set of the states above)
    if cmd in _READY:
        if _READY[cmd] not in state:
            raise Errno(E.EPERM)
        return 0
    if cmd in _REGISTER:
        state.update(_REGISTER[cmd])
        return 0
    if cmd == MEMBARRIER_CMD_GET_REGISTRATIONS:
        return sum(bit for bit, states in _REPORTED if state.intersection(states))
    raise Errno(E.EINVAL)  # the RSEQ commands and anything unknown
