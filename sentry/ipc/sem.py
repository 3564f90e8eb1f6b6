"""System V semaphores (Linux's ipc/sem.c), as sentry objects.

A semop is all or nothing: its operations are tried in order and undone if one
would block. One that blocks parks as a `SemQueue` on its array; whoever changes
the values afterwards (semop, SETVAL, SETALL, an exit's undo) tries the waiting
operations again, in the order they came, and completes them on their sleepers'
behalf, as Linux's update_queue does: the sleeper then returns what was done for
it (0, ERANGE, EIDRM when the array is removed), so a semaphore released to a
waiter is that waiter's before anyone else runs. Interrupted by a signal: EINTR;
semtimedop's time out: EAGAIN.

SEM_UNDO adjustments live in a process's `SemUndoList` (shared by its threads and
by a clone with CLONE_SYSVSEM), one `SemUndo` per array; they are applied,
clamped to [0, SEMVMX], when the last task sharing the list ends.
"""
import errno as E

from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc.ids import IPC_NOWAIT, IpcPerm, now
from sentry.ipc.namespace import SEMMNS, SEMOPM
from sentry.sched import Wait, WaitQueue

SEMVMX = 32767
SEMAEM = SEMVMX
SEMUME, SEMMNU, SEMMAP, SEMUSZ = SEMOPM, SEMMNS, SEMMNS, 20
SEM_UNDO = 0x1000


class SemUndo:
    """One array's adjustments in one undo list."""
    __slots__ = ("array", "semadj")

    def __init__(self, array):
        self.array = array
        self.semadj = [0] * array.nsems


class SemUndoList:
    """sem_undo_list: the adjustments of the tasks that share it (refs of them)."""
    __slots__ = ("refs", "undos")

    def __init__(self):
        self.refs = 1
        self.undos: list[SemUndo] = []

    def lookup(self, array):
        for un in self.undos:
            if un.array is array:
                return un
        return None


class SemQueue:
    """A semop that waits (sem_queue)."""
    __slots__ = ("task", "sops", "undo", "pid", "alter", "blocking", "status", "wait", "array")

    def __init__(self, task, array, sops, undo, alter: bool):
        self.task, self.array, self.sops, self.undo = task, array, sops, undo
        self.pid = task.tgid
        self.alter = alter
        self.blocking = None
        self.status = None  # what the semop returns, once someone completed it
        self.wait = None

    def waiting(self) -> bool:
        return self.wait is not None and self.task.blocked is self.wait

    def finish(self, status: int) -> None:
        self.status = status
        self.task.kernel.wake(self.task)


class SemArray:
    """sem_array: values, the last operating pid and operation time of each."""

    def __init__(self, ns, key: int, nsems: int, mode: int):
        self.ns = ns
        self.perm = IpcPerm(key, mode)
        self.nsems = nsems
        self.vals = [0] * nsems
        self.pids = [0] * nsems
        self.otimes = [0] * nsems
        self.ctime = now()
        self.pending: list[SemQueue] = []  # waiting semops, in arrival order
        self.undos: list[SemUndo] = []      # every undo list's adjustments for this array

    @property
    def otime(self) -> int:
        return max(self.otimes)

    def set_otime(self, sops) -> None:
        self.otimes[sops[0][0] if sops else 0] = now()

    # --- operations ---------------------------------------------------------------------
    def perform(self, q) -> int:
        """perform_atomic_semop: 0 done, 1 must wait (q.blocking says on what), or -errno
        (EAGAIN for IPC_NOWAIT, ERANGE past SEMVMX or the undo range); nothing changes
        unless it is done."""
        vals, un = self.vals, q.undo
        done = []
        result = 0
        for sop in q.sops:
            num, op, flg = sop
            cur = vals[num]
            if op == 0 and cur or cur + op < 0:
                q.blocking = sop
                result = -E.EAGAIN if flg & IPC_NOWAIT else 1
                break
            if cur + op > SEMVMX:
                result = -E.ERANGE
                break
            if flg & SEM_UNDO:
                adj = un.semadj[num] - op
                if adj < -SEMAEM - 1 or adj > SEMAEM:
                    result = -E.ERANGE
                    break
                un.semadj[num] = adj
            vals[num] = cur + op
            done.append(sop)
        if result:
            for num, op, flg in reversed(done):
                vals[num] -= op
                if flg & SEM_UNDO:
                    un.semadj[num] += op
            return result
        for num, _, _ in q.sops:
            self.pids[num] = q.pid
        return 0

    def _wake_zero(self) -> bool:
        """Complete the waiting operations that alter nothing and can go now."""
        completed = False
        for q in list(self.pending):
            if q.alter:
                continue
            if not q.waiting():
                self.pending.remove(q)
                continue
            err = self.perform(q)
            if err > 0:
                continue
            self.pending.remove(q)
            q.finish(err)
            completed = completed or err == 0
        return completed

    def update(self, sops=None, otime: bool = False) -> None:
        """do_smart_update: after a change, complete what waited and can go now, oldest
        first; a completed change can let others go (looked at again)."""
        otime = self._wake_zero() or otime
        again = True
        while again:
            again = False
            for q in list(self.pending):
                if not q.alter:
                    continue
                if not q.waiting():
                    self.pending.remove(q)
                    continue
                err = self.perform(q)
                if err > 0:
                    continue
                self.pending.remove(q)
                q.finish(err)
                if err == 0:
                    otime = True
                    self._wake_zero()
                    again = True
                    break
        if otime:
            self.set_otime(sops)

    def count(self, num: int, zero: bool) -> int:
        """GETZCNT / GETNCNT: the waiting operations blocked on semaphore num (waiting for
        zero, or to decrease it)."""
        n = 0
        for q in self.pending:
            if not q.waiting() or q.blocking is None or q.blocking[0] != num:
                continue
            op = q.blocking[1]
            if zero and op == 0 or not zero and op < 0:
                n += 1
        return n

    def clear_undos(self, num=None) -> None:
        for un in self.undos:
            if num is None:
                un.semadj = [0] * self.nsems
            else:
                un.semadj[num] = 0

    def set_value(self, task, num: int, val: int) -> None:
        """SETVAL."""
        self.clear_undos(num)
        self.vals[num] = val
        self.pids[num] = task.tgid
        self.ctime = now()
        self.update()

    def set_all(self, task, vals) -> None:
        """SETALL."""
        self.vals = list(vals)
        self.pids = [task.tgid] * self.nsems
        self.clear_undos()
        self.ctime = now()
        self.update()

    def free(self) -> None:
        """freeary: IPC_RMID; every waiter gets EIDRM."""
        ns = self.ns
        for un in self.undos:
            un.array = None
        self.undos = []
        pending, self.pending = self.pending, []
        for q in pending:
            if q.waiting():
                q.finish(-E.EIDRM)
        ns.sem.remove(self)
        ns.used_sems -= self.nsems


def get(task, key: int, nsems: int, flags: int) -> int:
    """semget."""
    ns = task.ipc_ns
    if nsems < 0 or nsems > ns.sem_ctls[0]:
        raise Errno(E.EINVAL)

    def create():
        if not nsems:
            raise Errno(E.EINVAL)
        if ns.used_sems + nsems > ns.sem_ctls[1]:
            raise Errno(E.ENOSPC)
        arr = SemArray(ns, key, nsems, flags & ipc.S_IRWXUGO)
        ident = ns.sem.add(task, arr, ns.sem_ctls[3])
        ns.used_sems += nsems
        return ident

    def more_checks(arr):
        if nsems > arr.nsems:
            raise Errno(E.EINVAL)

    return ipc.get(task, ns.sem, key, flags, create, more_checks)


def _undo_list(task) -> SemUndoList:
    ulp = getattr(task, "sem_undo", None)
    if ulp is None:
        ulp = task.sem_undo = SemUndoList()
    return ulp


def semop(task, semid: int, sops, deadline):
    """do_semtimedop once the operations are read and checked: sops are (num, op, flags)
    triples; deadline a time.monotonic() time or None."""
    state = task.restart_state
    if isinstance(state, SemQueue):  # woken: a waker completed it, or the array went
        task.restart_state = None
        if state.status is not None:
            if state.status < 0:
                raise Errno(-state.status)
            return 0
    ns = task.ipc_ns
    undos = any(flg & SEM_UNDO for _, _, flg in sops)
    alter = any(op for _, op, _ in sops)
    un = None
    if undos:
        arr = ns.sem.obtain_check(semid)
        ulp = _undo_list(task)
        un = ulp.lookup(arr)
        if un is None:
            un = SemUndo(arr)
            ulp.undos.insert(0, un)
            arr.undos.append(un)
    arr = ns.sem.obtain_check(semid)
    if max(num for num, _, _ in sops) >= arr.nsems:
        raise Errno(E.EFBIG)
    ipc.check(task, arr.perm, ipc.S_IWUGO if alter else ipc.S_IRUGO)
    q = SemQueue(task, arr, sops, un, alter)
    err = arr.perform(q)
    if err == 0:
        if alter:
            arr.update(sops, otime=True)
        else:
            arr.set_otime(sops)
        return 0
    if err < 0:
        raise Errno(-err)
    q.wait = Wait(queues=(WaitQueue(),), deadline=deadline, timeout_result=-E.EAGAIN,
                  interrupt_result=-E.EINTR)
    arr.pending.append(q)
    task.restart_state = q
    raise q.wait


# --- the undo lists' life ------------------------------------------------------------------
def share_undo(parent, child) -> None:
    """copy_semundo with CLONE_SYSVSEM: the child shares the parent's list."""
    ulp = _undo_list(parent)
    ulp.refs += 1
    child.sem_undo = ulp


def exit_sem(task) -> None:
    """The task lets go of its undo list; the last one applies it."""
    ulp = getattr(task, "sem_undo", None)
    if ulp is None:
        return
    task.sem_undo = None
    ulp.refs -= 1
    if ulp.refs:
        return
    for un in ulp.undos:
        arr = un.array
        if arr is None or arr.perm.deleted:
            continue
        arr.undos.remove(un)
        for num, adj in enumerate(un.semadj):
            if adj:
                arr.vals[num] = min(max(arr.vals[num] + adj, 0), SEMVMX)
                arr.pids[num] = task.tgid
        arr.update(None, otime=True)
    ulp.undos = []
