"""System V semaphores: semget(2), semop(2), semtimedop(2), semctl(2) (the arrays
are sentry/ipc/sem.py's)."""
import errno as E
import struct
import time

from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc import sem
from syscalls.abi import s32
from syscalls.registry import syscall
from syscalls.sysvipc import pack_perm, read_set_perm

GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL, SETALL = 11, 12, 13, 14, 15, 16, 17
SEM_STAT, SEM_INFO, SEM_STAT_ANY = 18, 19, 20
SEMBUF = struct.Struct("<HhH")  # sem_num, sem_op, sem_flg
TIMESPEC = struct.Struct("<qq")
# semid64_ds: x86-64 keeps a pad after each time; aarch64 (asm-generic) does not
SEMID64_DS = {"x86_64": struct.Struct("<48sq8xq8xQQQ"), "aarch64": struct.Struct("<48sqqQQQ")}
SEMINFO = struct.Struct("<10i")  # semmap, semmni, semmns, semmnu, semmsl, semopm, semume, semusz, semvmx, semaem


@syscall("semget")
def semget(t, key, nsems, flags):
    return sem.get(t, s32(key), s32(nsems), s32(flags))


@syscall("semop")
def semop(t, semid, sops, nsops):
    return semtimedop(t, semid, sops, nsops, 0)


@syscall("semtimedop", note="all or nothing; a blocked one waits in the loop and is completed by whoever makes "
         "it possible, first come first served (EINTR on a signal, EAGAIN at the timeout, EIDRM if the array "
         "goes); SEM_UNDO applied when the last task sharing the undo list ends")
def semtimedop(t, semid, usops, nsops, timeout):
    semid = s32(semid)
    nsops &= 0xFFFFFFFF
    ts = TIMESPEC.unpack(t.mm.read(timeout, TIMESPEC.size)) if timeout else None  # EFAULT comes first
    if nsops < 1 or semid < 0:
        raise Errno(E.EINVAL)
    if nsops > t.ipc_ns.sem_ctls[2]:
        raise Errno(E.E2BIG)
    raw = t.mm.read(usops, SEMBUF.size * nsops)
    sops = [(num, op, flg) for num, op, flg in SEMBUF.iter_unpack(raw)]
    deadline = None
    if ts is not None:
        sec, nsec = ts
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise Errno(E.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9
    return sem.semop(t, semid, sops, deadline)


@syscall("semctl", note="GETVAL, SETVAL, GETALL, SETALL, GETPID, GETNCNT, GETZCNT, IPC_STAT, SEM_STAT, "
         "SEM_STAT_ANY, IPC_SET, IPC_RMID (waiters get EIDRM), IPC_INFO, SEM_INFO")
def semctl(t, semid, semnum, cmd, arg):
    semid, semnum, cmd = s32(semid), s32(semnum), s32(cmd)
    if semid < 0:
        raise Errno(E.EINVAL)
    ns = t.ipc_ns
    ids = ns.sem
    if cmd in (ipc.IPC_INFO, SEM_INFO):
        semmsl, semmns, semopm, semmni = ns.sem_ctls
        usz, aem = (ids.in_use, ns.used_sems) if cmd == SEM_INFO else (sem.SEMUSZ, sem.SEMAEM)
        t.mm.write(arg, SEMINFO.pack(sem.SEMMAP, semmni, semmns, sem.SEMMNU, semmsl, semopm, sem.SEMUME, usz,
                                     sem.SEMVMX, aem))
        return max(ids.max_idx(), 0)
    if cmd in (ipc.IPC_STAT, SEM_STAT, SEM_STAT_ANY):
        arr = ids.obtain_check(semid) if cmd == ipc.IPC_STAT else ids.obtain(semid)
        if cmd != SEM_STAT_ANY:
            ipc.check(t, arr.perm, ipc.S_IRUGO)
        layout = SEMID64_DS[t.kernel.arch]
        t.mm.write(arg, layout.pack(pack_perm(arr.perm), arr.otime, arr.ctime, arr.nsems, 0, 0))
        return 0 if cmd == ipc.IPC_STAT else arr.perm.id
    if cmd in (GETALL, GETVAL, GETPID, GETNCNT, GETZCNT, SETALL):
        arr = ids.obtain_check(semid)
        ipc.check(t, arr.perm, ipc.S_IWUGO if cmd == SETALL else ipc.S_IRUGO)
        if cmd == GETALL:
            t.mm.write(arg, struct.pack(f"<{arr.nsems}H", *arr.vals))
            return 0
        if cmd == SETALL:
            vals = struct.unpack(f"<{arr.nsems}H", t.mm.read(arg, 2 * arr.nsems))
            if any(v > sem.SEMVMX for v in vals):
                raise Errno(E.ERANGE)
            arr.set_all(t, vals)
            return 0
        if not 0 <= semnum < arr.nsems:
            raise Errno(E.EINVAL)
        if cmd == GETVAL:
            return arr.vals[semnum]
        if cmd == GETPID:
            return arr.pids[semnum]
        return arr.count(semnum, cmd == GETZCNT)
    if cmd == SETVAL:
        val = s32(arg)
        if val > sem.SEMVMX or val < 0:
            raise Errno(E.ERANGE)
        arr = ids.obtain_check(semid)
        if not 0 <= semnum < arr.nsems:
            raise Errno(E.EINVAL)
        ipc.check(t, arr.perm, ipc.S_IWUGO)
        arr.set_value(t, semnum, val)
        return 0
    if cmd == ipc.IPC_SET:
        uid, gid, mode, _ = read_set_perm(t.mm, arg, SEMID64_DS[t.kernel.arch].size)
        arr = ids.obtain_check(semid)
        ipc.owner_or_admin(t, arr.perm)
        ipc.update_perm(arr.perm, uid, gid, mode)
        arr.ctime = ipc.now()
        return 0
    if cmd == ipc.IPC_RMID:
        arr = ids.obtain_check(semid)
        ipc.owner_or_admin(t, arr.perm)
        arr.free()
        return 0
    raise Errno(E.EINVAL)
