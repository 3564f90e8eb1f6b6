"""System V shared memory (Linux's ipc/shm.c), as sentry objects.

A segment's pages are a memfd of the sentry's own (a `ShmBacking`, the kind of
Backing shared mappings use: sentry/vfs/backing.py), so shmat is a MAP_SHARED
mapping of it made by the MemoryManager, the same on both platforms: every
attachment, read() and write() of the program see the same pages, and a fork
keeps them shared. The areas it makes are named "/SYSV<key> (deleted)".

Attach counts are Linux's: one per area (Vma) of a live address space that maps
the segment (a fork adds its areas, mprotect splitting one adds one). They are
counted from the MemoryManagers when asked, never kept, so no way of unmapping
can leave a count wrong. What Linux does when an area closes (shm_close: the
last detach time and pid, and destruction of a segment marked IPC_RMID that no
area maps any more) is done by `closed()`, which shmdt, munmap, exit and exec
call; a segment marked for destruction is also looked at whenever its table is
(MAP_FIXED over it, mremap).
"""
import errno as E
import os

from sentry import caps
from sentry.errors import Errno
from sentry.ipc import ids as ipc
from sentry.ipc.ids import IpcPerm, now
from sentry.vfs.backing import Backing

PAGE = 4096
SHMLBA = PAGE                           # x86-64 and arm64 alike
SHMMIN = 1
MAX_LFS_FILESIZE = (1 << 63) - 1  # loff_t's largest
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000   # in perm.mode, above the permission bits
SHM_HUGETLB, SHM_NORESERVE = 0o4000, 0o10000
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_FIXED = 0x01, 0x10
RLIMIT_MEMLOCK = 8
RLIM_INFINITY = (1 << 64) - 1


def pages(size: int) -> int:
    return (size + PAGE - 1) // PAGE


class ShmBacking(Backing):
    """A segment's memfd; `segment` tells the areas that map it whose they are."""
    __slots__ = ("segment",)

    def vma_closed(self) -> None:
        """An area mapping it went (munmap, MAP_FIXED over it, the address space's end)."""
        self.segment.closed()

    def reopen(self, mm, start: int, end: int) -> None:
        """Mapped again over [start, end) of mm (remap_file_pages, a MAP_FIXED shmat): as
        Linux's shm_mmap, what was there goes first, and a segment gone by then (removed,
        or marked for removal with nothing else attached) cannot be mapped: EINVAL, the
        range left unmapped."""
        seg = self.segment
        if not seg.perm.deleted and seg.perm.mode & SHM_DEST:
            here = sum(1 for v in mm.vmas if v.backing is self and start <= v.start and v.end <= end)
            if here and seg.nattch() == here:
                mm.munmap(start, end - start)  # the last areas close: the segment goes
        if seg.perm.deleted:
            raise Errno(E.EINVAL)


class ShmSegment:
    """shmid_kernel."""

    def __init__(self, kernel, ns, key: int, size: int, mode: int, creator):
        self.kernel = kernel
        self.ns = ns
        self.perm = IpcPerm(key, mode)
        self.size = size
        self.atime = self.dtime = 0
        self.ctime = now()
        self.cpid = creator.tgid
        self.lpid = 0
        self.creator = creator  # the task that made it until that task ends (shm_rmid_forced)
        self.mlock_pages = 0    # pages charged to RLIMIT_MEMLOCK by SHM_LOCK
        self.name = "/SYSV%08x (deleted)" % (key & 0xFFFFFFFF)
        try:
            fd = os.memfd_create("SYSV%08x" % (key & 0xFFFFFFFF), os.MFD_CLOEXEC)
        except OSError as e:
            raise Errno(E.ENFILE if e.errno in (E.EMFILE, E.ENFILE) else E.ENOMEM) from None
        try:
            self.backing = ShmBacking(fd, True, True)
        except BaseException:
            os.close(fd)
            raise
        self.backing.segment = self
        self.backing.cover(pages(size) * PAGE)

    # --- attachments ------------------------------------------------------------------
    def nattch(self) -> int:
        """The areas of live address spaces that map it (each address space once, however
        many tasks share it)."""
        seen, count = set(), 0
        backing = self.backing
        for t in self.kernel.tasks.values():
            mm = t.mm
            if id(mm) in seen:
                continue
            seen.add(id(mm))
            for v in mm.vmas:
                if v.backing is backing:
                    count += 1
        return count

    def opened(self, pid: int) -> None:
        """__shm_open: a new area (shmat, a fork's copy)."""
        self.atime = now()
        self.lpid = pid

    def closed(self) -> None:
        """shm_close: an area went; a segment nothing maps any more goes too if it was
        marked for destruction (or shm_rmid_forced is set)."""
        task = self.kernel.current
        if task is not None:
            self.lpid = task.tgid
        self.dtime = now()
        if not self.perm.deleted and self.may_destroy():
            self.destroy()

    def may_destroy(self) -> bool:
        return (self.perm.mode & SHM_DEST or self.ns.shm_rmid_forced) and self.nattch() == 0

    def destroy(self) -> None:
        """shm_destroy: the id goes; the pages go with the last area or file that holds
        the backing."""
        ns = self.ns
        ns.shm.remove(self)
        ns.shm_tot -= pages(self.size)
        self.mlock_pages = 0

    def remove(self) -> None:
        """IPC_RMID (do_shm_rmid): at once if nothing maps it, else at the last detach; its
        key is free from now on."""
        if self.nattch():
            self.perm.mode |= SHM_DEST
            self.ns.shm.forget_key(self)
        else:
            self.destroy()


class ShmFile:
    """What shmat maps (Linux's clone of the segment's file for one attach): the
    MemoryManager maps its backing shared, as a memory file's."""

    class _Inode:
        seals = 0

    inode = _Inode()

    def __init__(self, segment: ShmSegment, writable: bool):
        self.segment = segment
        self.writable = writable
        self.shared_name = self.path = segment.name

    def backing(self) -> ShmBacking:
        return self.segment.backing


# --- the calls ---------------------------------------------------------------------------------
def reap(ns) -> None:
    """Segments marked for destruction that nothing maps any more go (an area that
    went without closed(): MAP_FIXED over it, mremap)."""
    for seg in [s for s in ns.shm.objects.values() if s.perm.mode & SHM_DEST]:
        if seg.nattch() == 0:
            seg.destroy()


def get(task, key: int, size: int, flags: int) -> int:
    """shmget."""
    ns = task.ipc_ns
    reap(ns)

    def create():
        if size < SHMMIN or size > ns.shm_ctlmax:
            raise Errno(E.EINVAL)
        npages = pages(size)
        if npages * PAGE < size:
            raise Errno(E.ENOSPC)
        if ns.shm_tot + npages > ns.shm_ctlall:
            raise Errno(E.ENOSPC)
        if flags & SHM_HUGETLB:
            _may_lock_huge(task, npages)
            raise Errno(E.ENOMEM)  # the sandbox has no huge pages (as a host with none reserved)
        if size > MAX_LFS_FILESIZE:
            raise Errno(E.EINVAL)  # __shmem_file_setup
        if npages * PAGE > MAX_LFS_FILESIZE:
            raise Errno(E.ENOMEM)  # Linux's memory accounting refuses it (a memfd cannot be that long)
        seg = ShmSegment(task.kernel, ns, key, size, flags & ipc.S_IRWXUGO, task)
        ident = ns.shm.add(task, seg, ns.shm_ctlmni)
        ns.shm_tot += npages
        return ident

    def more_checks(seg):
        if seg.size < size:
            raise Errno(E.EINVAL)

    return ipc.get(task, ns.shm, key, flags, create, more_checks)


def attach(task, shmid: int, addr: int, flags: int) -> int:
    """do_shmat: the address the segment is mapped at."""
    if shmid < 0:
        raise Errno(E.EINVAL)
    map_flags = MAP_SHARED
    if addr:
        if addr & (SHMLBA - 1):
            if not flags & SHM_RND:
                raise Errno(E.EINVAL)
            addr &= ~(SHMLBA - 1)
            if not addr and flags & SHM_REMAP:
                raise Errno(E.EINVAL)
        map_flags |= MAP_FIXED
    elif flags & SHM_REMAP:
        raise Errno(E.EINVAL)
    if flags & SHM_RDONLY:
        prot, want = PROT_READ, ipc.S_IRUGO
    else:
        prot, want = PROT_READ | PROT_WRITE, ipc.S_IRUGO | ipc.S_IWUGO
    if flags & SHM_EXEC:
        prot |= PROT_EXEC
        want |= ipc.S_IXUGO
    ns = task.ipc_ns
    seg = ns.shm.obtain_check(shmid)
    ipc.check(task, seg.perm, want)
    mm = task.mm
    if addr and not flags & SHM_REMAP:
        end = addr + seg.size
        if end >= 1 << 64 or any(v.start < end and addr < v.end for v in mm.vmas):
            raise Errno(E.EINVAL)
    where = mm.mmap(addr, seg.size, prot, map_flags, ShmFile(seg, not flags & SHM_RDONLY), 0)
    seg.opened(task.tgid)
    return where


def detach(task, addr: int) -> None:
    """shmdt: the attachment that starts at addr, and the pieces of it that mprotect or
    munmap left within the segment's size (areas whose offset in the segment is their
    distance from addr)."""
    if addr & (PAGE - 1):
        raise Errno(E.EINVAL)
    mm = task.mm
    areas = [v for v in mm.vmas if v.end > addr]
    for i, v in enumerate(areas):
        if isinstance(v.backing, ShmBacking) and v.start >= addr and \
                (v.start - addr) // PAGE == (v.offset or 0) // PAGE:
            backing = v.backing
            mm.munmap(v.start, v.end - v.start)
            break
    else:
        raise Errno(E.EINVAL)
    size = pages(backing.segment.size) * PAGE
    for v in areas[i + 1:]:
        if v.end - addr > size:
            break
        if v.backing is backing and (v.start - addr) // PAGE == (v.offset or 0) // PAGE:
            mm.munmap(v.start, v.end - v.start)


def _may_lock_huge(task, npages: int) -> None:
    """hugetlb_file_setup's check: without CAP_IPC_LOCK or membership of
    vm.hugetlb_shm_group (0), the segment must fit the caller's RLIMIT_MEMLOCK (EPERM)."""
    from sentry.vfs.perm import in_group
    if caps.has(task, ipc.CAP_IPC_LOCK) or in_group(task, 0):
        return
    limit = task.rlimits[RLIMIT_MEMLOCK][0]
    if limit != RLIM_INFINITY and npages > limit // PAGE:
        raise Errno(E.EPERM)


def lock(task, shmid: int, locking: bool) -> None:
    """SHM_LOCK / SHM_UNLOCK: a flag and the caller's RLIMIT_MEMLOCK (pages stay
    resident either way here)."""
    seg = task.ipc_ns.shm.obtain_check(shmid)
    perm = seg.perm
    if not caps.has(task, ipc.CAP_IPC_LOCK):
        if task.euid not in (perm.uid, perm.cuid):
            raise Errno(E.EPERM)
        if locking and task.rlimits[RLIMIT_MEMLOCK][0] == 0:
            raise Errno(E.EPERM)
    if locking:
        if perm.mode & SHM_LOCKED:
            return
        need = pages(seg.size)
        limit = task.rlimits[RLIMIT_MEMLOCK][0]
        if limit != RLIM_INFINITY and not caps.has(task, ipc.CAP_IPC_LOCK):
            used = sum(s.mlock_pages for s in task.ipc_ns.shm.objects.values())
            if used + need > limit // PAGE:
                raise Errno(E.ENOMEM)
        seg.mlock_pages = need
        perm.mode |= SHM_LOCKED
    else:
        seg.mlock_pages = 0
        perm.mode &= ~SHM_LOCKED


def task_exited(task, ns) -> None:
    """exit_shm: the segments the task made are orphans; with shm_rmid_forced those
    nothing maps go."""
    for seg in [s for s in ns.shm.objects.values() if s.creator is task]:
        seg.creator = None
        if ns.shm_rmid_forced and seg.may_destroy():
            seg.destroy()


def destroy_orphans(ns) -> None:
    """Writing 1 to shm_rmid_forced: the orphans nothing maps go at once."""
    for seg in [s for s in ns.shm.objects.values() if s.creator is None]:
        if seg.may_destroy():
            seg.destroy()


def rss(seg) -> int:
    """The segment's resident bytes (the memfd's allocated blocks)."""
    try:
        return min(os.fstat(seg.backing.fd).st_blocks * 512, pages(seg.size) * PAGE)
    except (OSError, TypeError):
        return 0
