"""What a thread leaves behind when it ends: the futex words it promised to
clear (set_tid_address, CLONE_CHILD_CLEARTID) and the robust futexes it held
(set_robust_list), each with a wake for whoever waits on them."""
from sentry.errors import Errno

FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF
ROBUST_LIST_LIMIT = 2048  # entries walked at most, as Linux (a looped list cannot hold us)


def release_futexes(task, others: bool) -> None:
    """At task's end: mark the robust futexes it owns OWNER_DIED (waking a waiter of
    each), then, while its memory has other users (others: live threads), zero its
    clear_child_tid word and wake one waiter there (pthread_join). A fault in the walk
    ends it quietly, as in Linux."""
    futexes = task.kernel.futexes
    try:
        if task.robust_list[0]:
            _walk_robust_list(task, futexes)
        addr = task.clear_child_tid
        if addr and others:
            task.clear_child_tid = 0
            task.mm.write_u32(addr, 0)
            futexes.wake(futexes.key(task, addr, private=False), 1)
    except Errno:
        pass


def _walk_robust_list(task, futexes) -> None:
    head, _ = task.robust_list
    task.robust_list = (0, 0)
    mm = task.mm
    offset = mm.read_u64(head + 8)
    offset -= (offset >> 63) << 64  # a signed long
    pending = mm.read_u64(head + 16)
    entry = mm.read_u64(head)
    for _ in range(ROBUST_LIST_LIMIT):
        if entry & ~1 == head:
            break
        nxt = mm.read_u64(entry & ~1)
        if entry != pending:
            _owner_died(task, futexes, (entry & ~1) + offset)
        entry = nxt
    if pending:
        _owner_died(task, futexes, (pending & ~1) + offset, pending_op=True)


def _owner_died(task, futexes, addr: int, pending_op: bool = False) -> None:
    """Linux's handle_futex_death: a word owned by the dying thread gets OWNER_DIED."""
    mm = task.mm
    value = mm.read_u32(addr)
    if pending_op and value == 0:  # died between taking the lock and owning it: pass it on
        futexes.wake(futexes.key(task, addr, private=False), 1)
        return
    if value & FUTEX_TID_MASK != task.tid:
        return
    mm.write_u32(addr, (value & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
    if value & FUTEX_WAITERS:
        futexes.wake(futexes.key(task, addr, private=False), 1)
