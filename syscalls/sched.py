"""Scheduling as the sandbox shows it: sched_yield(2), sched_getaffinity(2),
sched_setaffinity(2), getcpu(2). The sandbox sees the host's CPU count; where
its tasks really run is the sentry's business (ptrace pins them)."""
import errno as E
import os

from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

MASK_BYTES = 8  # the kernel's cpumask for up to 64 CPUs, as sched_getaffinity returns it


def _cpus() -> int:
    return min(os.cpu_count() or 1, 64)


@syscall("sched_yield", note="the loop runs one task at a time: there is nobody to yield to yet")
def sched_yield(t):
    return 0


@syscall("sched_getaffinity", status=PARTIAL, note="every CPU of the sandbox's view (the host's count, at most 64)")
def sched_getaffinity(t, pid, size, mask):
    if s32(pid) not in (0, t.tid):
        raise Errno(E.ESRCH)
    if size < MASK_BYTES or size & 7:
        raise Errno(E.EINVAL)
    t.mm.write(mask, ((1 << _cpus()) - 1).to_bytes(MASK_BYTES, "little"))
    return MASK_BYTES


@syscall("sched_setaffinity", status=PARTIAL, note="checked and accepted; placement is the sentry's")
def sched_setaffinity(t, pid, size, mask):
    if s32(pid) not in (0, t.tid):
        raise Errno(E.ESRCH)
    wanted = int.from_bytes(t.mm.read(mask, min(size, MASK_BYTES)), "little")
    if not wanted & ((1 << _cpus()) - 1):
        raise Errno(E.EINVAL)
    return 0


@syscall("getcpu", status=PARTIAL, note="always CPU 0, node 0")
def getcpu(t, cpu, node, cache):
    if cpu:
        t.mm.write_u32(cpu, 0)
    if node:
        t.mm.write_u32(node, 0)
    return 0
