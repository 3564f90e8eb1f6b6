"""NUMA memory policy: get_mempolicy(2), set_mempolicy(2), mbind(2), migrate_pages(2),
move_pages(2), set_mempolicy_home_node(2).

The sandbox is one NUMA node (node 0, as /proc/PID/status's Mems_allowed says) of a
kernel built with NUMA and MAX_NUMNODES 1024 (CONFIG_NODES_SHIFT=10, the distributions'
setting). A policy changes nothing about where pages go, so the calls keep and report
policies as Linux's mm/mempolicy.c does on such a machine: the thread's own policy
(kept by fork, clone and execve), and each area's from mbind (sentry/mm.py's
Vma.policy, split and kept with its area). "Privileged" is euid 0 (CAP_SYS_NICE).
"""
import errno as E
from typing import NamedTuple

from sentry.errors import Errno
from sentry.mm import PAGE, PROT_READ
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL = 0, 1, 2, 3, 4
MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE, MPOL_MAX = 5, 6, 7
MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES, MPOL_F_NUMA_BALANCING = 1 << 15, 1 << 14, 1 << 13
MPOL_MODE_FLAGS = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING
MPOL_F_NODE, MPOL_F_ADDR, MPOL_F_MEMS_ALLOWED = 1, 2, 4
MPOL_MF_STRICT, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL = 1, 2, 4
MPOL_MF_VALID = MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL
_INTERLEAVED = (MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE)

MAX_NUMNODES = 1024
NR_NODE_IDS = 1      # nodes the machine has: node 0
MEMS_ALLOWED = 0b1   # the nodes with memory a task may use
MASK64 = (1 << 64) - 1
BITS_PER_LONG = 64


class Policy(NamedTuple):
    mode: int
    flags: int       # the MPOL_F_* mode flags it was made with
    nodes: int       # its nodes (a bit per node), after the machine's nodes are applied
    user_nodes: int  # the nodes as given, kept for MPOL_F_STATIC_NODES / MPOL_F_RELATIVE_NODES
    home_node: int = -1


def _privileged(t) -> bool:
    return t.euid == 0  # CAP_SYS_NICE: the sandbox's root


def _read_bitmap(t, addr: int, nbits: int) -> int:
    """nbits bits from a user bitmap of longs (Linux's get_bitmap: the last long masked)."""
    nlongs = (nbits + BITS_PER_LONG - 1) // BITS_PER_LONG
    value = int.from_bytes(t.mm.read(addr, nlongs * 8), "little") if nlongs else 0
    return value & ((1 << nbits) - 1)


def _get_nodes(t, addr: int, maxnode: int) -> int:
    """A node mask from the user (Linux's get_nodes): maxnode - 1 bits, of which those past
    MAX_NUMNODES must be clear (EINVAL), checked a long at a time from the end as Linux does."""
    maxnode = (maxnode - 1) & MASK64
    if maxnode == 0 or not addr:
        return 0
    if maxnode > PAGE * 8:
        raise Errno(E.EINVAL)
    while maxnode > MAX_NUMNODES:
        bits = min(maxnode, BITS_PER_LONG)
        word = int.from_bytes(t.mm.read(addr + (maxnode - 1) // BITS_PER_LONG * 8, 8), "little")
        if bits % BITS_PER_LONG:
            word &= (1 << bits) - 1
        if maxnode - bits >= MAX_NUMNODES:
            maxnode -= bits
        else:
            maxnode = MAX_NUMNODES
            word &= ~((1 << (MAX_NUMNODES % BITS_PER_LONG)) - 1) & MASK64
        if word:
            raise Errno(E.EINVAL)
    return _read_bitmap(t, addr, maxnode)


def _put_nodes(t, addr: int, maxnode: int, nodes: int) -> None:
    """copy_nodes_to_user: maxnode - 1 bits rounded up to longs; past the machine's one
    long, zeros (EINVAL past a page)."""
    copy = (((maxnode - 1) & MASK64) + 63 & ~63 & MASK64) // 8
    nbytes = 8  # BITS_TO_LONGS(nr_node_ids) longs
    if copy > nbytes:
        if copy > PAGE:
            raise Errno(E.EINVAL)
        t.mm.write(addr + nbytes, bytes(copy - nbytes))
        copy = nbytes
    t.mm.write(addr, (nodes & MASK64).to_bytes(8, "little")[:copy])


def _mode_and_flags(mode: int) -> tuple[int, int]:
    """sanitize_mpol_flags: a mode and its MPOL_F_* flags from the int the caller passed."""
    mode = s32(mode)
    flags = mode & MPOL_MODE_FLAGS
    mode &= ~MPOL_MODE_FLAGS
    if mode & 0xFFFFFFFF >= MPOL_MAX:
        raise Errno(E.EINVAL)
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        raise Errno(E.EINVAL)
    if flags & MPOL_F_NUMA_BALANCING and mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
        raise Errno(E.EINVAL)
    return mode, flags


def _new_policy(mode: int, flags: int, nodes: int) -> Policy | None:
    """mpol_new then mpol_set_nodemask: None for the default policy, EINVAL for node sets
    the mode cannot take or that leave no node of the machine."""
    if mode == MPOL_DEFAULT:
        if nodes:
            raise Errno(E.EINVAL)
        return None
    if mode == MPOL_PREFERRED and not nodes:
        if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise Errno(E.EINVAL)
        mode = MPOL_LOCAL  # preferred with no node is local allocation
    elif mode == MPOL_LOCAL:
        if nodes or flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise Errno(E.EINVAL)
    elif not nodes:
        raise Errno(E.EINVAL)
    if mode == MPOL_LOCAL:
        return Policy(mode, flags, 0, 0)
    if flags & MPOL_F_RELATIVE_NODES:
        usable = MEMS_ALLOWED if nodes else 0  # folded onto the one allowed node
    else:
        usable = nodes & MEMS_ALLOWED
    if not usable:
        raise Errno(E.EINVAL)
    if mode == MPOL_PREFERRED:
        usable &= -usable  # its first node
    return Policy(mode, flags, usable, nodes if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) else 0)


def _reported(policy: Policy | None) -> tuple[int, int]:
    """What get_mempolicy shows of a policy: its mode with flags, and its node mask."""
    if policy is None:
        return MPOL_DEFAULT, 0
    mode = policy.mode | policy.flags
    if policy.flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
        return mode, policy.user_nodes
    return mode, 0 if policy.mode == MPOL_LOCAL else policy.nodes


def _vma_at(mm, addr: int):
    for v in mm.vmas:
        if v.start <= addr < v.end:
            return v
    return None


@syscall("get_mempolicy", status=PARTIAL,
         note="one node: the thread's policy or an area's (MPOL_F_ADDR), MPOL_F_NODE (node 0), "
              "MPOL_F_MEMS_ALLOWED, node masks copied and checked as Linux (EINVAL below one node)")
def get_mempolicy(t, policy_ptr, nmask, maxnode, addr, flags):
    if nmask and maxnode < NR_NODE_IDS:
        raise Errno(E.EINVAL)
    if flags & ~(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED):
        raise Errno(E.EINVAL)
    if flags & MPOL_F_MEMS_ALLOWED:
        if flags & (MPOL_F_NODE | MPOL_F_ADDR):
            raise Errno(E.EINVAL)
        value, nodes = 0, MEMS_ALLOWED
    else:
        own = getattr(t, "mempolicy", None)
        pol = own
        if flags & MPOL_F_ADDR:
            vma = _vma_at(t.mm, addr)
            if vma is None:
                raise Errno(E.EFAULT)
            pol = vma.policy  # an area without one answers the default, not the thread's
        elif addr:
            raise Errno(E.EINVAL)
        if flags & MPOL_F_NODE:
            if flags & MPOL_F_ADDR:
                if not vma.prot & PROT_READ:
                    raise Errno(E.EFAULT)  # the page cannot be faulted in to look at it
                value = 0
            elif pol is not None and pol is own and pol.mode in _INTERLEAVED:
                value = 0  # the next node of the interleave
            else:
                raise Errno(E.EINVAL)
            nodes = _reported(pol)[1]
        else:
            value, nodes = _reported(pol)
    if policy_ptr:
        t.mm.write_u32(policy_ptr, value & 0xFFFFFFFF)
    if nmask:
        _put_nodes(t, nmask, maxnode, nodes)
    return 0


@syscall("set_mempolicy", note="the thread's policy, checked as Linux's for a one-node machine; kept by fork, "
         "clone and execve; it places nothing (one node)")
def set_mempolicy(t, mode, nmask, maxnode):
    mode, flags = _mode_and_flags(mode)
    nodes = _get_nodes(t, nmask, maxnode)
    t.mempolicy = _new_policy(mode, flags, nodes)
    return 0


@syscall("mbind", status=PARTIAL,
         note="the policy of the areas in a range, checked as Linux (EFAULT for holes, EPERM for "
              "MPOL_MF_MOVE_ALL unprivileged); no page is ever misplaced on one node, so MPOL_MF_STRICT "
              "never answers EIO")
def mbind(t, start, length, mode, nmask, maxnode, flags):
    mode, mode_flags = _mode_and_flags(mode)
    nodes = _get_nodes(t, nmask, maxnode)
    flags &= 0xFFFFFFFF
    if flags & ~MPOL_MF_VALID:
        raise Errno(E.EINVAL)
    if flags & MPOL_MF_MOVE_ALL and not _privileged(t):
        raise Errno(E.EPERM)
    if start & (PAGE - 1):
        raise Errno(E.EINVAL)
    end = start + ((length + PAGE - 1) & ~(PAGE - 1) & MASK64)
    if end > MASK64 or end < start:
        raise Errno(E.EINVAL)
    if end == start:
        return 0
    policy = _new_policy(mode, mode_flags, nodes)
    _check_range(t.mm, start, end, holes_ok=policy is None)
    t.mm.set_policy(start, end, policy)
    return 0


def _check_range(mm, start: int, end: int, holes_ok: bool) -> None:
    """queue_pages_range's walk: EFAULT when no area meets the range, or (unless the new
    policy is the default) when any page of it is unmapped."""
    pos, met = start, False
    for v in mm.vmas:
        if v.end <= start or v.start >= end:
            continue
        if v.start > pos and not holes_ok:
            raise Errno(E.EFAULT)
        met = True
        pos = v.end
    if not met or pos < end and not holes_ok:
        raise Errno(E.EFAULT)


@syscall("set_mempolicy_home_node", note="node 0 only (else EINVAL); EOPNOTSUPP for an area whose policy is "
         "not MPOL_BIND or MPOL_PREFERRED_MANY, as Linux")
def set_mempolicy_home_node(t, start, length, home_node, flags):
    if start & (PAGE - 1) or flags:
        raise Errno(E.EINVAL)
    if home_node >= NR_NODE_IDS:
        raise Errno(E.EINVAL)
    end = start + ((length + PAGE - 1) & ~(PAGE - 1) & MASK64)
    if end > MASK64 or end < start:
        raise Errno(E.EINVAL)
    if end == start:
        return 0
    result = -E.ENOENT  # no area with a policy in the range
    for v in [v for v in t.mm.vmas if v.start < end and v.end > start]:
        if v.policy is None:
            continue
        if v.policy.mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
            raise Errno(E.EOPNOTSUPP)
        t.mm.set_policy(max(start, v.start), min(end, v.end), v.policy._replace(home_node=home_node))
        result = 0
    if result:
        raise Errno(-result)
    return 0


def _target(t, pid: int):
    pid = s32(pid)
    other = t if pid == 0 else t.kernel.tasks.get(pid) if pid > 0 else None
    if other is None or other.exit_status is not None:
        raise Errno(E.ESRCH)
    return other


@syscall("migrate_pages", note="one node: nothing ever moves (0 pages left behind); checks as Linux "
         "(ESRCH, EPERM for nodes outside the target's unless privileged, EINVAL when no allowed node is left)")
def migrate_pages(t, pid, maxnode, old_nodes, new_nodes):
    _get_nodes(t, old_nodes, maxnode)
    new = _get_nodes(t, new_nodes, maxnode)
    target = _target(t, pid)
    if target.proc is not t.proc and not _privileged(t) and t.uid not in (target.uid, target.suid):
        raise Errno(E.EPERM)  # ptrace_may_access
    if new & ~MEMS_ALLOWED and not _privileged(t):
        raise Errno(E.EPERM)
    if not new & MEMS_ALLOWED:
        raise Errno(E.EINVAL)
    return 0


@syscall("move_pages", status=PARTIAL,
         note="one node: every mapped page counts as present on node 0 (Linux says ENOENT for a page never "
              "touched), unmapped ones EFAULT in the status array; moving to node 0 moves nothing, other "
              "nodes ENODEV")
def move_pages(t, pid, count, pages, nodes, status, flags):
    flags = s32(flags)
    if flags & ~(MPOL_MF_MOVE | MPOL_MF_MOVE_ALL):
        raise Errno(E.EINVAL)
    if flags & MPOL_MF_MOVE_ALL and not _privileged(t):
        raise Errno(E.EPERM)
    target = _target(t, pid)
    if target.proc is not t.proc and not _privileged(t) and t.uid not in (target.uid, target.suid):
        raise Errno(E.EPERM)  # ptrace_may_access
    for i in range(count & MASK64):
        addr = t.mm.read_u64(pages + 8 * i)
        if nodes:
            node = s32(t.mm.read_u32(nodes + 4 * i))
            if not 0 <= node < NR_NODE_IDS:
                raise Errno(E.ENODEV)  # past MAX_NUMNODES, or a node without memory
        vma = _vma_at(target.mm, addr)
        t.mm.write_u32(status + 4 * i, 0 if vma is not None else -E.EFAULT & 0xFFFFFFFF)
    return 0
