"""Memory: brk(2), mmap(2), munmap(2), mprotect(2), mremap(2), madvise(2), msync(2),
mincore(2), readahead(2), the mlock(2) family, and the protection-key calls
pkey_alloc(2), pkey_free(2), pkey_mprotect(2)."""
import errno as E
import os
import stat as S

from sentry import caps
from sentry.errors import Errno
from sentry.mm import (MAP_ANONYMOUS, MAP_LOCKED, MAP_SHARED, PAGE, PROT_EXEC, PROT_WRITE, TASK_SIZE,
                       VM_LOCKED, VM_LOCKONFAULT)
from sentry.vfs.file import O_PATH
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall


@syscall("brk")
def brk(t, addr):
    return t.mm.set_brk(addr)


@syscall("mmap", status=PARTIAL, note="MAP_SHARED maps the file's own pages (a host file's, or a memory "
         "file's memfd): coherent between mappers and with read()/write(). Gaps: MAP_PRIVATE file mappings are "
         "copies made at mmap time (later writes to the file are not seen: POSIX leaves it open); under "
         "unicorn pages wholly past the end of a shared mapping's file read as zero where Linux raises SIGBUS; "
         "MAP_HUGETLB answers ENOMEM (no huge pages). MAP_GROWSDOWN areas grow down on a fault below them, "
         "not within stack_guard_gap of the area below nor past RLIMIT_STACK")
def mmap(t, addr, length, prot, flags, fd, offset):
    flags &= 0xFFFFFFFF
    file = None
    if not flags & MAP_ANONYMOUS:
        file = t.fds.get(s32(fd))
        if file.flags & O_PATH:
            raise Errno(E.EBADF)  # fget never finds an O_PATH file
    if not length or not flags & 3:
        raise Errno(E.EINVAL)  # do_mmap's own checks come before the file's access mode
    pages_len = (length + PAGE - 1) & ~(PAGE - 1)
    if file is not None and not offset & (PAGE - 1) and 0 < pages_len < TASK_SIZE:
        _check_file_range(file, offset, pages_len)
    if flags & MAP_LOCKED or t.mm.def_flags & VM_LOCKED:
        limit = _lock_limit(t) if flags & MAP_LOCKED else t.rlimits[RLIMIT_MEMLOCK][0] // PAGE
        if (t.mm.locked_bytes() + length + PAGE - 1) // PAGE > limit and not _lock_exempt(t):
            raise Errno(E.EAGAIN)  # mlock_future_ok
    if file is not None:
        if file.flags & O_PATH or not file.readable:
            raise Errno(E.EACCES)
        if flags & MAP_SHARED and prot & PROT_WRITE and not file.writable:  # MAP_SHARED(_VALIDATE)
            raise Errno(E.EACCES)
        if prot & PROT_EXEC and file.path:
            from sentry.vfs import mounts
            if mounts.flags_at(t.vfs, os.fsencode(file.path)) & mounts.MS_NOEXEC:
                raise Errno(E.EPERM)  # path_noexec
    return t.mm.mmap(addr, length, prot, flags, file, offset)


def _check_file_range(file, offset: int, length: int) -> None:
    """EOVERFLOW where a file's pages [offset, offset+length) pass the largest offset the
    file has (file_mmap_ok): 2^63-1 for a regular file, block device or socket, 2^64-1
    for others; a negative offset is a huge unsigned one."""
    kind = getattr(file.inode, "mode", 0) & 0o170000
    largest = (1 << 63) - 1 if kind in (0o100000, 0o060000, 0o140000) else (1 << 64) - 1
    if offset >> 12 > (largest - length) >> 12:
        raise Errno(E.EOVERFLOW)


@syscall("munmap")
def munmap(t, addr, length):
    t.mm.munmap(addr, length)
    return 0


@syscall("mprotect")
def mprotect(t, addr, length, prot):
    t.mm.mprotect(addr, length, prot)
    return 0


@syscall("mremap", note="shared areas are mapped again at the new place (never copied); MREMAP_DONTUNMAP "
         "leaves the old range mapped and empty")
def mremap(t, old, old_len, new_len, flags, new):
    return t.mm.mremap(old, old_len, new_len, flags, new)


@syscall("madvise", status=PARTIAL, note="MADV_DONTNEED zeroes private pages (shared ones read back from "
         "their file), MADV_REMOVE punches the file of a shared mapping, MADV_DONTFORK/WIPEONFORK act at fork, "
         "MADV_POPULATE_* and WILLNEED fault pages in; errors per area as Linux; no KSM (MADV_MERGEABLE "
         "EINVAL); other advice is recorded (VmFlags) or accepted and ignored")
def madvise(t, addr, length, advice):
    t.mm.madvise(addr, length, s32(advice))
    return 0


@syscall("msync", note="shared mappings are the file's own pages, so read() and write() see stores at once; "
         "MS_SYNC fsyncs a host file")
def msync(t, addr, length, flags):
    t.mm.msync(addr, length, s32(flags))
    return 0


# --- residency and locking ------------------------------------------------------------------------
# Locks are the MemoryManager's VM_LOCKED/VM_LOCKONFAULT per area (split and merged with the areas):
# VmLck and /proc/PID/smaps show them, MADV_DONTNEED and MS_INVALIDATE refuse them. Locked pages
# are faulted in by the platform; the host may still swap them (the sentry does not pin them).
# Residency (mincore, smaps' Rss) is the platform's: which host pages behind the guest's are in memory.

MASK64 = (1 << 64) - 1
RLIMIT_MEMLOCK = 8
CAP_IPC_LOCK = 14


def _page_range(start: int, length: int) -> tuple[int, int]:
    """mlock's range: start down to its page, the length up to whole pages in 64 bits (a
    length that wraps to 0 is an empty range, as on Linux; EINVAL if the end wraps)."""
    length = (length + (start & (PAGE - 1)) + PAGE - 1) & ~(PAGE - 1) & MASK64
    start &= ~(PAGE - 1)
    if start + length > MASK64:
        raise Errno(E.EINVAL)
    return start, start + length


def _lock_exempt(t) -> bool:
    return caps.has(t, CAP_IPC_LOCK)


def _lock_limit(t) -> int:
    """RLIMIT_MEMLOCK in pages; EPERM when it is 0 and the task may not lock without it
    (can_do_mlock)."""
    limit = t.rlimits[RLIMIT_MEMLOCK][0]
    if limit == 0 and not _lock_exempt(t):
        raise Errno(E.EPERM)
    return limit // PAGE


def _mlock(t, start, length, flags: int) -> int:
    """do_mlock: the range locked unless the pages it would add to the locked ones pass
    RLIMIT_MEMLOCK (what is locked there already is not counted twice)."""
    limit = _lock_limit(t)
    start, end = _page_range(start, length)
    locked = (end - start) // PAGE + t.mm.locked_bytes() // PAGE
    if locked > limit and not _lock_exempt(t):
        locked -= t.mm.locked_bytes(start, end) // PAGE
        if locked > limit:
            raise Errno(E.ENOMEM)
    t.mm.lock(start, end, flags)
    return 0


@syscall("mlock", status=PARTIAL, note="VM_LOCKED per area (VmLck, smaps' Locked), the pages faulted in; "
         "RLIMIT_MEMLOCK as Linux unless CAP_IPC_LOCK; the host may still swap the pages out")
def mlock(t, start, length):
    return _mlock(t, start, length, VM_LOCKED)


MLOCK_ONFAULT = 1


@syscall("mlock2", status=PARTIAL, note="as mlock; MLOCK_ONFAULT locks pages as they are touched")
def mlock2(t, start, length, flags):
    if flags & 0xFFFFFFFF & ~MLOCK_ONFAULT:
        raise Errno(E.EINVAL)
    return _mlock(t, start, length, VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0))


@syscall("munlock")
def munlock(t, start, length):
    start, end = _page_range(start, length)
    t.mm.lock(start, end, 0)
    return 0


MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


@syscall("mlockall", status=PARTIAL, note="every area locked (MCL_CURRENT) and/or new ones (MCL_FUTURE, "
         "MCL_ONFAULT) as Linux: EPERM with a zero RLIMIT_MEMLOCK, ENOMEM for MCL_CURRENT past it unless "
         "CAP_IPC_LOCK; the host may still swap the pages out")
def mlockall(t, flags):
    flags = s32(flags)
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise Errno(E.EINVAL)
    limit = _lock_limit(t)
    if flags & MCL_CURRENT and t.mm.total // PAGE > limit and not _lock_exempt(t):
        raise Errno(E.ENOMEM)
    t.mm.lock_all(bool(flags & MCL_CURRENT), bool(flags & MCL_FUTURE), bool(flags & MCL_ONFAULT))
    return 0


@syscall("munlockall")
def munlockall(t):
    t.mm.lock_all(False, False, False)
    return 0


@syscall("mincore", status=PARTIAL, note="residency is the host's for the pages behind the guest's (ptrace: "
         "the traced process's pagemap; unicorn: the sentry's own): a shared page another process touched "
         "counts only where it is mapped; EINVAL, ENOMEM and EFAULT as Linux")
def mincore(t, start, length, vec):
    if start & (PAGE - 1):
        raise Errno(E.EINVAL)
    if start + length > TASK_SIZE:
        raise Errno(E.ENOMEM)
    pages = (length + PAGE - 1) // PAGE
    if vec + pages > TASK_SIZE:
        raise Errno(E.EFAULT)
    while pages:
        i = t.mm._find(start)
        if i < 0:
            raise Errno(E.ENOMEM)
        n = min(pages, (t.mm.vmas[i].end - start) // PAGE, 4096)
        t.mm.write(vec, t.mm.resident(start, start + n * PAGE))
        pages -= n
        vec += n
        start += n * PAGE
    return 0


@syscall("readahead", note="a hint: the sandbox's files are read from memory or the host's page cache; EBADF "
         "for a descriptor not open for reading, EINVAL for anything but a regular file, as Linux")
def readahead(t, fd, offset, count):
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH or not f.readable:
        raise Errno(E.EBADF)
    if not S.S_ISREG(f.inode.mode):
        raise Errno(E.EINVAL)
    return 0


# --- protection keys ------------------------------------------------------------------------------
# The sandbox's CPU has no protection keys (unicorn's has none; on ptrace the sentry could not give
# a key's pages to the host's page tables), so the calls answer as Linux does on such a CPU. On x86
# the first pkey_alloc of an address space takes key 0 into its map and fails setting its rights
# (EINVAL), leaving the map full: later ones are ENOSPC. On aarch64 without POE: ENOSPC.
PKEY_DISABLE_ACCESS, PKEY_DISABLE_WRITE = 1, 2
PKEY_ACCESS_MASK = PKEY_DISABLE_ACCESS | PKEY_DISABLE_WRITE
PROT_SEM, PROT_GROWSDOWN, PROT_GROWSUP = 0x8, 0x01000000, 0x02000000


@syscall("pkey_alloc", status=PARTIAL, note="a CPU without protection keys, as Linux answers there: x86 EINVAL "
         "for an address space's first call, then ENOSPC; aarch64 ENOSPC; EINVAL for bad flags or rights")
def pkey_alloc(t, flags, access_rights):
    if flags or access_rights & ~PKEY_ACCESS_MASK:
        raise Errno(E.EINVAL)
    if t.kernel.arch == "x86_64" and not t.mm.pkey_map:
        t.mm.pkey_map = 1
        raise Errno(E.EINVAL)
    raise Errno(E.ENOSPC)


@syscall("pkey_free", status=PARTIAL, note="no key is ever allocated: EINVAL, as Linux on a CPU without them")
def pkey_free(t, pkey):
    raise Errno(E.EINVAL)


@syscall("pkey_mprotect", status=PARTIAL, note="key -1 is mprotect; any other key EINVAL (none is allocated), "
         "after mprotect's own argument checks, as Linux")
def pkey_mprotect(t, start, length, prot, pkey):
    pkey, prot = s32(pkey), prot & 0xFFFFFFFF
    if prot & PROT_GROWSDOWN and prot & PROT_GROWSUP or start & (PAGE - 1):
        raise Errno(E.EINVAL)
    if not length:
        return 0
    if start + ((length + PAGE - 1) & ~(PAGE - 1)) > (1 << 64) - 1:
        raise Errno(E.ENOMEM)
    if prot & ~(PROT_GROWSDOWN | PROT_GROWSUP) & ~(7 | PROT_SEM):
        raise Errno(E.EINVAL)
    if pkey != -1:
        raise Errno(E.EINVAL)
    return mprotect(t, start, length, prot)
