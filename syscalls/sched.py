"""Scheduling as the sandbox shows it: sched_yield(2), sched_getaffinity(2),
sched_setaffinity(2), getcpu(2), the sched_*param/*scheduler family,
sched_get_priority_min/max(2), sched_rr_get_interval(2) and membarrier(2).

The sandbox sees CPUs 0..n-1, n the host's count (at most 64: its cpumask is
8 bytes); where its tasks really run is the sentry's business. ptrace runs
every task as a host thread on the sentry's one host CPU; unicorn runs one
task at a time in the loop. Each task keeps its own affinity mask and policy
(SCHED_OTHER, SCHED_BATCH or SCHED_IDLE, priority 0); a new task starts with
every CPU and SCHED_OTHER (not inherited: the kernel's fork and clone_thread
copy no scheduling state yet). Real-time and deadline policies are refused as
Linux refuses them to a task without CAP_SYS_NICE; membarrier registrations
belong to the address space (a fork's child starts unregistered, unlike
Linux's)."""
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
RLIMIT_NICE = 13


def _cpus() -> int:
    return max(1, min(os.cpu_count() or 1, 64))


def _all_cpus() -> int:
    return (1 << _cpus()) - 1


def _target(t, pid: int):
    """The task pid names: 0 is the caller, else a live thread of the sandbox (ESRCH)."""
    if pid == 0:
        return t
    other = t.kernel.tasks.get(pid) if pid > 0 else None
    if other is None or other.exit_status is not None:
        raise Errno(E.ESRCH)
    return other


def _affinity(task) -> int:
    return getattr(task, "sched_affinity", None) or _all_cpus()


def _policy(task) -> int:
    return getattr(task, "sched_policy", SCHED_OTHER)


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


def _set_scheduler(t, pid: int, policy: int, param) -> int:
    """Linux's do_sched_setscheduler and __sched_setscheduler for a task without
    CAP_SYS_NICE; policy -1 keeps the task's (sched_setparam)."""
    if not param or pid < 0:
        raise Errno(E.EINVAL)
    prio = _read_priority(t, param)
    task = _target(t, pid)
    current = _policy(task)
    reset = getattr(task, "sched_reset_on_fork", False)
    if policy < 0:
        policy = current
    else:
        reset = bool(policy & SCHED_RESET_ON_FORK)
        policy &= ~SCHED_RESET_ON_FORK
        if policy not in _POLICIES:
            raise Errno(E.EINVAL)
    if prio > MAX_RT_PRIO - 1:
        raise Errno(E.EINVAL)
    if policy == SCHED_DEADLINE or (policy in _RT) != (prio != 0):
        raise Errno(E.EINVAL)  # a deadline policy needs sched_setattr's parameters
    # What Linux allows a task without CAP_SYS_NICE (the sandbox has no real-time scheduling to give):
    if policy in _RT:
        raise Errno(E.EPERM)  # as with RLIMIT_RTPRIO 0
    if current == SCHED_IDLE and policy != SCHED_IDLE and 20 > task.rlimits.get(RLIMIT_NICE, (0, 0))[0]:
        raise Errno(E.EPERM)  # leaving SCHED_IDLE needs RLIMIT_NICE to allow nice 0
    if getattr(task, "sched_reset_on_fork", False) and not reset:
        raise Errno(E.EPERM)
    task.sched_policy = policy
    task.sched_reset_on_fork = reset
    return 0


@syscall("sched_setscheduler", status=PARTIAL,
         note="SCHED_OTHER, SCHED_BATCH and SCHED_IDLE kept per task (priority 0; the sentry schedules them "
              "alike); SCHED_FIFO/RR EPERM as without CAP_SYS_NICE; EINVAL and EPERM checks as Linux's")
def sched_setscheduler(t, pid, policy, param):
    policy = s32(policy)
    if policy < 0:
        raise Errno(E.EINVAL)
    return _set_scheduler(t, s32(pid), policy, param)


@syscall("sched_setparam", status=PARTIAL, note="priority 0 under the task's policy (any other EINVAL, as Linux)")
def sched_setparam(t, pid, param):
    return _set_scheduler(t, s32(pid), -1, param)


@syscall("sched_getscheduler", note="the task's policy (SCHED_OTHER unless set), with SCHED_RESET_ON_FORK")
def sched_getscheduler(t, pid):
    pid = s32(pid)
    if pid < 0:
        raise Errno(E.EINVAL)
    task = _target(t, pid)
    return _policy(task) | (SCHED_RESET_ON_FORK if getattr(task, "sched_reset_on_fork", False) else 0)


@syscall("sched_getparam", note="priority 0: no task of the sandbox has a real-time policy")
def sched_getparam(t, pid, param):
    pid = s32(pid)
    if not param or pid < 0:
        raise Errno(E.EINVAL)
    _target(t, pid)
    t.mm.write(param, struct.pack("<i", 0))
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
