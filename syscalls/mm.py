"""Memory: brk(2), mmap(2), munmap(2), mprotect(2), mremap(2), madvise(2), msync(2),
mincore(2), readahead(2), the mlock(2) family, and the protection-key calls
pkey_alloc(2), pkey_free(2), pkey_mprotect(2)."""
import errno as E
import os
import stat as S

from sentry.errors import Errno
from sentry.mm import MAP_ANONYMOUS, MAP_SHARED, PAGE, PROT_EXEC, PROT_WRITE, TASK_SIZE
from sentry.vfs.file import O_PATH
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall


@syscall("brk")
def brk(t, addr):
    return t.mm.set_brk(addr)


@syscall("mmap", status=PARTIAL, note="MAP_SHARED maps the file's own pages (a host file's, or a memory "
         "file's memfd): coherent between mappers and with read()/write(). Gaps: MAP_PRIVATE file mappings are "
         "copies made at mmap time (later writes to the file are not seen: POSIX leaves it open); pages wholly "
         "past the end of a memory file, or of a host file under unicorn, read as zero where Linux raises "
         "SIGBUS; MAP_HUGETLB answers ENOMEM (no huge pages)")
def mmap(t, addr, length, prot, flags, fd, offset):
    flags &= 0xFFFFFFFF
    file = None
    if not flags & MAP_ANONYMOUS:
        file = t.fds.get(s32(fd))
        if file.flags & O_PATH:
            raise Errno(E.EBADF)  # fget never finds an O_PATH file
        if file.flags & O_PATH or not file.readable:
            raise Errno(E.EACCES)
        if flags & MAP_SHARED and prot & PROT_WRITE and not file.writable:  # MAP_SHARED(_VALIDATE)
            raise Errno(E.EACCES)
        if prot & PROT_EXEC and file.path:
            from sentry.vfs import mounts
            if mounts.flags_at(t.vfs, os.fsencode(file.path)) & mounts.MS_NOEXEC:
                raise Errno(E.EPERM)  # path_noexec
    return t.mm.mmap(addr, length, prot, flags, file, offset)


@syscall("munmap")
def munmap(t, addr, length):
    t.mm.munmap(addr, length)
    return 0


@syscall("mprotect")
def mprotect(t, addr, length, prot):
    t.mm.mprotect(addr, length, prot)
    return 0


@syscall("mremap", status=PARTIAL, note="MREMAP_DONTUNMAP answers EINVAL")
def mremap(t, old, old_len, new_len, flags, new):
    return t.mm.mremap(old, old_len, new_len, flags, new)


@syscall("madvise", status=PARTIAL, note="MADV_DONTNEED zeroes private pages (shared ones read back from "
         "their file), MADV_REMOVE punches the file of a shared mapping; other advice is accepted and ignored")
def madvise(t, addr, length, advice):
    t.mm.madvise(addr, length, s32(advice))
    return 0


@syscall("msync", note="shared mappings are the file's own pages, so read() and write() see stores at once; "
         "MS_SYNC fsyncs a host file")
def msync(t, addr, length, flags):
    t.mm.msync(addr, length, s32(flags))
    return 0


# --- residency and locking ------------------------------------------------------------------------
# The sandbox's pages are never swapped out by the sentry, and it does not ask the host which
# ones are resident: every mapped page counts as resident and locked pages are not recorded.

MASK64 = (1 << 64) - 1


def _page_range(start: int, length: int) -> tuple[int, int]:
    """mlock's range: start down to its page, the length up to whole pages in 64 bits (a
    length that wraps to 0 is an empty range, as on Linux; EINVAL if the end wraps)."""
    length = (length + (start & (PAGE - 1)) + PAGE - 1) & ~(PAGE - 1) & MASK64
    start &= ~(PAGE - 1)
    if start + length > MASK64:
        raise Errno(E.EINVAL)
    return start, start + length


def _all_mapped(t, start: int, end: int) -> None:
    """ENOMEM unless every page of [start, end) is mapped (Linux's apply_vma_lock_flags)."""
    if end > start and not t.mm.covered(start, end):
        raise Errno(E.ENOMEM)


RLIMIT_MEMLOCK = 8


def _may_lock(t, nbytes: int) -> None:
    """can_do_mlock and the RLIMIT_MEMLOCK check of one call (the sandbox's root has
    CAP_IPC_LOCK): EPERM with a zero limit, ENOMEM past it."""
    if t.euid == 0:
        return
    limit = t.rlimits[RLIMIT_MEMLOCK][0]
    if limit == 0:
        raise Errno(E.EPERM)
    if nbytes // PAGE > limit // PAGE:
        raise Errno(E.ENOMEM)


_LOCK_NOTE = ("the sandbox's pages are never swapped out: the range is checked as Linux (ENOMEM for unmapped "
              "pages), and RLIMIT_MEMLOCK for one call unless root; what is locked is not recorded "
              "(VmLck 0, no count across calls)")


@syscall("mlock", status=PARTIAL, note=_LOCK_NOTE)
def mlock(t, start, length):
    start, end = _page_range(start, length)
    _may_lock(t, end - start)
    _all_mapped(t, start, end)
    return 0


MLOCK_ONFAULT = 1


@syscall("mlock2", status=PARTIAL, note="as mlock; MLOCK_ONFAULT accepted")
def mlock2(t, start, length, flags):
    if flags & 0xFFFFFFFF & ~MLOCK_ONFAULT:
        raise Errno(E.EINVAL)
    return mlock(t, start, length)


@syscall("munlock", status=PARTIAL, note="the range is checked as Linux (ENOMEM for unmapped pages)")
def munlock(t, start, length):
    start, end = _page_range(start, length)
    _all_mapped(t, start, end)
    return 0


MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


@syscall("mlockall", status=PARTIAL, note="flags checked as Linux; EPERM with a zero RLIMIT_MEMLOCK and ENOMEM "
         "for MCL_CURRENT past it unless root; nothing is recorded")
def mlockall(t, flags):
    flags = s32(flags)
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise Errno(E.EINVAL)
    _may_lock(t, sum(v.end - v.start for v in t.mm.vmas) if flags & MCL_CURRENT else 0)
    return 0


@syscall("munlockall")
def munlockall(t):
    return 0


@syscall("mincore", status=PARTIAL, note="every mapped page reads as resident (1): the sentry does not ask the "
         "host which pages were touched; EINVAL, ENOMEM and EFAULT as Linux")
def mincore(t, start, length, vec):
    if start & (PAGE - 1):
        raise Errno(E.EINVAL)
    if start + length > TASK_SIZE:
        raise Errno(E.ENOMEM)
    pages = (length + PAGE - 1) // PAGE
    if vec + pages > TASK_SIZE:
        raise Errno(E.EFAULT)
    while pages:
        vma = next((v for v in t.mm.vmas if v.start <= start < v.end), None)
        if vma is None:
            raise Errno(E.ENOMEM)
        n = min(pages, (vma.end - start) // PAGE)
        t.mm.write(vec, b"\x01" * n)
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
