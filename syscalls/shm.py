"""System V shared memory: shmget(2), shmat(2), shmdt(2), shmctl(2) (the segments
are sentry/ipc/shm.py's)."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc import shm
from syscalls.abi import s32
from syscalls.registry import syscall
from syscalls.sysvipc import pack_perm, read_set_perm

SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
SHMID64_DS = struct.Struct("<48sQqqqiiQQQ")  # perm, segsz, atime, dtime, ctime, cpid, lpid, nattch
SHMINFO64 = struct.Struct("<9Q")              # shmmax, shmmin, shmmni, shmseg, shmall, unused x4
SHM_INFO_S = struct.Struct("<i4xQQQQQ")       # used_ids, shm_tot, shm_rss, shm_swp, swap attempts/successes


@syscall("shmget", note="segments are the sandbox's own, in memfds; SHM_HUGETLB answers ENOMEM (no huge "
         "pages)")
def shmget(t, key, size, flags):
    return shm.get(t, s32(key), size, s32(flags))


@syscall("shmat", note="a MAP_SHARED mapping of the segment's memfd made by the MemoryManager: SHM_RDONLY, "
         "SHM_RND, SHM_REMAP, SHM_EXEC; attachments survive fork, go at exit and exec")
def shmat(t, shmid, addr, flags):
    return shm.attach(t, s32(shmid), addr, s32(flags))


@syscall("shmdt")
def shmdt(t, addr):
    shm.detach(t, addr)
    return 0


@syscall("shmctl", note="IPC_STAT, SHM_STAT, SHM_STAT_ANY, IPC_SET, IPC_RMID, IPC_INFO, SHM_INFO, SHM_LOCK "
         "and SHM_UNLOCK (a flag: the pages are never swapped anyway)")
def shmctl(t, shmid, cmd, buf):
    shmid, cmd = s32(shmid), s32(cmd)
    if cmd < 0 or shmid < 0:
        raise Errno(E.EINVAL)
    ns = t.ipc_ns
    shm.reap(ns)
    ids = ns.shm
    if cmd == ipc.IPC_INFO:
        t.mm.write(buf, SHMINFO64.pack(ns.shm_ctlmax, shm.SHMMIN, ns.shm_ctlmni, ns.shm_ctlmni, ns.shm_ctlall,
                                       0, 0, 0, 0))
        return max(ids.max_idx(), 0)
    if cmd == SHM_INFO:
        rss = sum(shm.rss(s) for s in ids.objects.values()) // shm.PAGE
        t.mm.write(buf, SHM_INFO_S.pack(ids.in_use, ns.shm_tot, rss, 0, 0, 0))
        return max(ids.max_idx(), 0)
    if cmd in (ipc.IPC_STAT, SHM_STAT, SHM_STAT_ANY):
        seg = ids.obtain_check(shmid) if cmd == ipc.IPC_STAT else ids.obtain(shmid)
        if cmd != SHM_STAT_ANY:
            ipc.check(t, seg.perm, ipc.S_IRUGO)
        t.mm.write(buf, SHMID64_DS.pack(pack_perm(seg.perm), seg.size, seg.atime, seg.dtime, seg.ctime,
                                        seg.cpid, seg.lpid, seg.nattch(), 0, 0))
        return 0 if cmd == ipc.IPC_STAT else seg.perm.id
    if cmd == ipc.IPC_SET:
        uid, gid, mode, _ = read_set_perm(t.mm, buf, SHMID64_DS.size)
        seg = ids.obtain_check(shmid)
        ipc.owner_or_admin(t, seg.perm)
        ipc.update_perm(seg.perm, uid, gid, mode)
        seg.ctime = ipc.now()
        return 0
    if cmd == ipc.IPC_RMID:
        seg = ids.obtain_check(shmid)
        ipc.owner_or_admin(t, seg.perm)
        seg.remove()
        return 0
    if cmd in (SHM_LOCK, SHM_UNLOCK):
        shm.lock(t, shmid, cmd == SHM_LOCK)
        return 0
    raise Errno(E.EINVAL)
