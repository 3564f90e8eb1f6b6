"""MemoryManager: the sentry's own record of a process's mappings, and every
change to them; guest memory is read and written only through it.

The platform's address space holds the pages; this keeps what Linux's
mm_struct keeps (areas with protections and names, brk, the mmap area) and
checks guest pointers against it, so a bad pointer is EFAULT on every
platform. Addresses here are always guest (mapped) addresses.
"""
import bisect
import errno as E

from sentry.errors import Errno

PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
PROT_ALL = 7
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT, MAP_GROWSDOWN = 0x10, 0x20, 0x40, 0x100
MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED, MAP_NORESERVE = 0x800, 0x1000, 0x2000, 0x4000
# vm.overcommit_memory=0 (Linux's default heuristic) refuses one private writable allocation
# larger than RAM and swap: the sandbox's RAM as sysinfo and /proc/meminfo report it, no swap.
COMMIT_LIMIT = 4 << 30
MAP_POPULATE, MAP_NONBLOCK, MAP_STACK, MAP_HUGETLB = 0x8000, 0x10000, 0x20000, 0x40000
MAP_SYNC, MAP_FIXED_NOREPLACE = 0x80000, 0x100000
MAP_KNOWN = (0x03 | MAP_FIXED | MAP_ANONYMOUS | MAP_32BIT | MAP_GROWSDOWN | MAP_DENYWRITE
             | MAP_EXECUTABLE | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK
             | MAP_STACK | MAP_FIXED_NOREPLACE)
# What MAP_SHARED_VALIDATE accepts of a file mapping (Linux's LEGACY_MAP_MASK; MAP_SYNC
# needs DAX): anything else is EOPNOTSUPP there, and ignored with MAP_SHARED or MAP_PRIVATE.
LEGACY_MAP_MASK = ((MAP_KNOWN & ~MAP_FIXED_NOREPLACE) | MAP_HUGETLB | 0x80 | 0x4000000
                   | (21 << 26) | (30 << 26))
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK = 8, 9, 10, 11
MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK, MADV_KEEPONFORK = 16, 17, 18, 19
MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_DONTNEED_LOCKED = 20, 21, 22, 23, 24
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4
# Linux's advice without CONFIG_KSM (the sandbox has no /sys/kernel/mm/ksm): MADV_MERGEABLE and
# MADV_UNMERGEABLE (12, 13) are EINVAL.
MADV_KNOWN = set(range(0, 5)) | set(range(8, 12)) | set(range(14, 26)) | {100, 101}
# Linux's vm_flags bits that the record keeps per area (what /proc/PID/smaps' VmFlags shows).
VM_LOCKED, VM_SEQ_READ, VM_RAND_READ, VM_DONTCOPY = 0x2000, 0x8000, 0x10000, 0x20000
VM_LOCKONFAULT, VM_WIPEONFORK, VM_DONTDUMP = 0x80000, 0x2000000, 0x4000000
VM_GROWSDOWN = 0x100
STACK_GUARD_GAP = 256 * 4096  # Linux's stack_guard_gap: a stack grows no nearer another area
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
MAX_MAP_COUNT = 65530  # vm.max_map_count's default (DEFAULT_MAX_MAP_COUNT)
COREDUMP_FILTER = 0x33  # MMF_DUMP_FILTER_DEFAULT: anonymous private and shared, ELF headers, huge pages
TASK_SIZE = 1 << 47
FILE_PIECE = 16 << 20  # the most of a mapped file held in the sentry at once
MMAP_MIN_ADDR = 0x10000


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class Vma:
    """One area of the address space: [start, end) with its protection.

    A shared mapping of a file (or shared anonymous memory) has a `backing`: the
    host descriptor holding the pages (sentry/vfs/backing.py), which the platform
    mapped there from file offset `offset`; `maywrite` is whether it may ever be
    made writable (the file was open for writing: Linux's VM_MAYWRITE); `policy` is
    its NUMA memory policy from mbind(2) (syscalls/mempolicy.py), None for none; `flags`
    the VM_* bits of mlock(2) and madvise(2) (VM_LOCKED, VM_WIPEONFORK, ...)."""
    __slots__ = ("start", "end", "prot", "name", "shared", "backing", "offset", "maywrite", "policy", "flags")

    def __init__(self, start: int, end: int, prot: int, name: str = "", shared: bool = False,
                 backing=None, offset=None, maywrite: bool = True, flags: int = 0):
        self.start, self.end, self.prot = start, end, prot
        self.name = name      # what /proc/self/maps shows
        self.shared = shared
        self.backing = backing
        self.offset = offset  # the file offset of start (file mappings made by mmap), or None
        self.maywrite = maywrite
        self.policy = None
        self.flags = flags

    def mergeable(self, other: "Vma") -> bool:
        """Would Linux merge other, which starts where this ends, into this area? Only
        anonymous private memory is merged here (as /proc/PID/maps shows it)."""
        return (self.end == other.start and self.backing is None and other.backing is None
                and self.offset is None and other.offset is None and not self.name.startswith("/")
                and self.name == other.name and self.prot == other.prot and self.shared == other.shared
                and self.flags == other.flags and self.policy is None and other.policy is None)

    def part(self, start: int, end: int) -> "Vma":
        """The same area cut to [start, end) (within it)."""
        offset = None if self.offset is None else self.offset + (start - self.start)
        piece = Vma(start, end, self.prot, self.name, self.shared, self.backing, offset, self.maywrite,
                    self.flags)
        piece.policy = self.policy
        return piece

    def __repr__(self):
        return f"Vma({self.start:#x}-{self.end:#x} prot={self.prot} {self.name!r})"


class MemoryManager:
    def __init__(self, space, *, mmap_base: int, brk: int, limit: int | None = None, sysctl=None):
        self.space = space
        self.vmas: list[Vma] = []   # sorted, non-overlapping
        self.starts: list[int] = [] # vma starts, for bisect
        self.mmap_base = mmap_base
        self.brk_start = self.brk = brk
        self.reserved = list(space.reserved)
        self.limit = limit          # bytes of address space the process may map (--memory), or None
        self.total = 0              # bytes mapped now
        self.peak = 0
        self.limit_refused = False  # an allocation failed because of the limit
        self.as_limit = None        # the program's own RLIMIT_AS (soft), or None for none
        self.users = 1              # tasks running in it (threads, CLONE_VM children)
        self.membarrier = set()     # membarrier(2) registrations (syscalls/sched.py); a fork keeps them
        self.pkey_map = 0           # protection keys taken (syscalls/mm.py); a fork keeps them
        self.sysctl = sysctl        # the sandbox's knobs (sentry/sysctl.py): vm.max_map_count
        self.def_flags = 0          # VM_LOCKED(|VM_LOCKONFAULT) for new areas: mlockall(MCL_FUTURE)
        self.coredump_filter = COREDUMP_FILTER  # /proc/PID/coredump_filter: kept by fork and exec

    def forked(self, space) -> "MemoryManager":
        """The record of a forked child whose address space (space) is a copy of this one."""
        child = MemoryManager(space, mmap_base=self.mmap_base, brk=self.brk_start, limit=self.limit,
                              sysctl=self.sysctl)
        child.brk = self.brk
        child.vmas = [v.part(v.start, v.end) for v in self.vmas]  # shared areas keep their backing
        child.starts = list(self.starts)
        child.total = child.peak = self.total
        child.as_limit = self.as_limit
        child.membarrier = set(self.membarrier)
        child.pkey_map = self.pkey_map
        child.coredump_filter = self.coredump_filter
        # dup_mmap: memory locks are not inherited; MADV_DONTFORK areas are left out of the
        # child and MADV_WIPEONFORK ones are fresh zero pages there.
        for v in list(child.vmas):
            v.flags &= ~VM_LOCKED_MASK
            if v.flags & VM_DONTCOPY:
                child.munmap(v.start, v.end - v.start)
            elif v.flags & VM_WIPEONFORK:
                space.map(v.start, v.end - v.start, v.prot)
        child._remerge()
        return child

    def _remerge(self) -> None:
        """Merge neighbouring areas that have come to agree (after flags changed in place)."""
        out = []
        for v in self.vmas:
            if out and out[-1].mergeable(v):
                out[-1].end = v.end
            else:
                out.append(v)
        self.vmas = out
        self.starts = [v.start for v in out]

    def areas(self) -> list:
        """(start, end, prot) of every area: what a fork copies."""
        return [(v.start, v.end, v.prot) for v in self.vmas]

    # --- the record -------------------------------------------------------------------
    def _find(self, addr: int) -> int:
        """Index of the vma containing addr, or -1."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return i
        return -1

    def _carve(self, start: int, end: int) -> list[Vma]:
        """Remove [start, end) from the record (splitting areas); return what was there."""
        vmas = self.vmas
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0 or vmas[i].end <= start:
            i += 1
        j = i
        while j < len(vmas) and vmas[j].start < end:
            j += 1
        if i == j:
            return []
        out, keep = [], []
        for v in vmas[i:j]:
            if v.start < start:
                keep.append(v.part(v.start, start))
            if v.end > end:
                keep.append(v.part(end, v.end))
            out.append(v.part(max(v.start, start), min(v.end, end)))
        vmas[i:j] = keep
        self.starts[i:j] = [v.start for v in keep]
        self.total -= sum(v.end - v.start for v in out)
        return out

    def _grown(self, nbytes: int) -> None:
        self.total += nbytes
        if self.total > self.peak:
            self.peak = self.total

    def _charge(self, start: int, end: int) -> None:
        """ENOMEM if mapping [start, end) would take the process past its limit
        (what it replaces there does not count twice), as RLIMIT_AS does."""
        if self.limit is None and self.as_limit is None:
            return
        replaced = sum(min(v.end, end) - max(v.start, start) for v in self._within(start, end))
        self._check_total(self.total - replaced + (end - start))

    def _check_total(self, total: int) -> None:
        """ENOMEM if the process would map `total` bytes: past its own RLIMIT_AS, or past
        the sandbox's --memory (which the run's outcome then reports)."""
        own = self.as_limit is not None and (self.limit is None or self.as_limit < self.limit)
        if own and total > self.as_limit:  # (an RLIMIT_AS equal to --memory is --memory shown inside)
            raise Errno(E.ENOMEM)
        if self.limit is not None and total > self.limit:
            self.limit_refused = True
            raise Errno(E.ENOMEM)

    def _insert(self, vma: Vma) -> None:
        """Put vma in the record, merged with neighbours that agree with it (as Linux's
        vma_merge: the area count is what vm.max_map_count limits)."""
        self._grown(vma.end - vma.start)
        vmas, starts = self.vmas, self.starts
        i = bisect.bisect_left(starts, vma.start)
        if i > 0 and vmas[i - 1].mergeable(vma):
            prev = vmas[i - 1]
            prev.end = vma.end
            if i < len(vmas) and prev.mergeable(vmas[i]):
                prev.end = vmas[i].end
                del vmas[i], starts[i]
            return
        if i < len(vmas) and vma.mergeable(vmas[i]):
            vmas[i].start = vma.start
            starts[i] = vma.start
            return
        vmas.insert(i, vma)
        starts.insert(i, vma.start)

    def map_count(self) -> int:
        return len(self.vmas)

    def max_map_count(self) -> int:
        return getattr(self.sysctl, "max_map_count", MAX_MAP_COUNT)

    def _may_split(self, start: int, end: int) -> None:
        """ENOMEM if cutting [start, end) out of the middle of one area would pass
        vm.max_map_count (Linux's split_vma check)."""
        i = self._find(start)
        if i >= 0 and self.vmas[i].start < start and end < self.vmas[i].end \
                and len(self.vmas) >= self.max_map_count():
            raise Errno(E.ENOMEM)

    def _meets_reserved(self, start: int, end: int) -> bool:
        """Does [start, end) meet a range the platform keeps for itself (the ptrace stub)?
        Such a range answers as addresses past TASK_SIZE do: mmap there (MAP_FIXED_NOREPLACE
        too) ENOMEM, munmap and mremap's target EINVAL, mprotect and madvise ENOMEM."""
        return any(lo < end and start < hi for lo, hi in self.reserved)

    def is_free(self, start: int, end: int) -> bool:
        if start < MMAP_MIN_ADDR or end > TASK_SIZE or start >= end:
            return False
        if any(lo < end and start < hi for lo, hi in self.reserved):
            return False
        i = bisect.bisect_left(self.starts, end) - 1
        return i < 0 or self.vmas[i].end <= start

    def _find_free(self, length: int, below: int) -> int:
        """Highest free range of `length` ending at or below `below` (top-down, as Linux)."""
        top = below
        taken = sorted([(v.start, v.end) for v in self.vmas] + self.reserved, reverse=True)
        for lo, hi in taken:
            if lo >= top:
                continue
            if top - hi >= length:
                return top - length
            top = lo
        if top - MMAP_MIN_ADDR >= length:
            return top - length
        raise Errno(E.ENOMEM)

    # --- building and changing the address space ----------------------------------------
    def map_fixed(self, start: int, length: int, prot: int, name: str = "", shared=False, flags: int = 0) -> None:
        """Fresh zeroed pages at exactly [start, start+length), replacing what was there."""
        end = start + length
        self._may_map()
        if any(lo < end and start < hi for lo, hi in self.reserved):
            raise Errno(E.ENOMEM)
        self._charge(start, end)
        self.space.map(start, length, prot)
        self._carve(start, end)
        self._insert(Vma(start, end, prot, name, shared, flags=flags))

    def map_shared(self, start: int, length: int, prot: int, backing, offset: int, name: str = "",
                   maywrite: bool = True, flags: int = 0, file_size: int | None = None) -> None:
        """backing's pages from offset at exactly [start, start+length), shared with every
        other mapping of them, replacing what was there."""
        end = start + length
        if prot & PROT_WRITE and not maywrite:
            raise Errno(E.EACCES)
        if any(lo < end and start < hi for lo, hi in self.reserved):
            raise Errno(E.ENOMEM)
        self._may_map()
        reopen = getattr(backing, "reopen", None)  # System V shared memory (sentry/ipc/shm.py)
        if reopen is not None:
            reopen(self, start, end)
        self._charge(start, end)
        # A memory file's memfd reaches its last page, so that pages wholly past the file's
        # end raise SIGBUS, as Linux's shmem (ptrace; unicorn puts zero pages there); memory
        # of no file (shared anonymous, System V) covers the whole mapping.
        backing.cover(offset + length if file_size is None else min(offset + length, page_up(file_size)))
        self.space.map_file(start, length, prot, backing, offset)
        self._carve(start, end)
        self._insert(Vma(start, end, prot, name, True, backing, offset, maywrite, flags))

    def _may_map(self) -> None:
        """do_mmap's check: ENOMEM once the process has more areas than vm.max_map_count."""
        if len(self.vmas) > self.max_map_count():
            raise Errno(E.ENOMEM)

    def load(self, plan) -> None:
        """Carry out a loader plan's mappings."""
        for m in plan.mappings:
            self.map_fixed(m.start, m.length, m.prot, m.name)
            for offset, data in m.contents:
                if data:
                    self.space.write(m.start + offset, data)

    def mmap(self, addr: int, length: int, prot: int, flags: int, file=None, offset: int = 0) -> int:
        if length == 0 or addr & (PAGE - 1) and flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            raise Errno(E.EINVAL)
        kind = flags & 3
        if offset & (PAGE - 1) or kind == 0:
            raise Errno(E.EINVAL)
        if flags & MAP_HUGETLB:  # the sandbox has no huge pages (a file is not on hugetlbfs)
            raise Errno(E.EINVAL if file is not None else E.ENOMEM)
        if file is None and kind != MAP_PRIVATE and (kind == MAP_SHARED_VALIDATE or flags & MAP_GROWSDOWN):
            raise Errno(E.EINVAL)
        length = page_up(length)
        if length == 0 or length >= TASK_SIZE:
            raise Errno(E.ENOMEM)
        if kind == MAP_PRIVATE and prot & PROT_WRITE and not flags & MAP_NORESERVE and length > COMMIT_LIMIT:
            raise Errno(E.ENOMEM)  # an obvious overcommit, as Linux's heuristic mode refuses
        if flags & MAP_FIXED_NOREPLACE:
            if addr + length > TASK_SIZE or self._meets_reserved(addr, addr + length):
                raise Errno(E.ENOMEM)  # get_unmapped_area's, before any overlap is looked for
            if not self.is_free(addr, addr + length):
                raise Errno(E.EEXIST)
        elif flags & MAP_FIXED:
            if addr < MMAP_MIN_ADDR or addr + length > TASK_SIZE:
                raise Errno(E.EPERM if addr < MMAP_MIN_ADDR else E.ENOMEM)
        else:
            hint = addr & ~(PAGE - 1)
            if hint and self.is_free(hint, hint + length):
                addr = hint
            else:
                addr = self._find_free(length, 1 << 31 if flags & MAP_32BIT else self.mmap_base)
        if kind == MAP_SHARED_VALIDATE and flags & ~LEGACY_MAP_MASK:
            raise Errno(E.EOPNOTSUPP)
        shared = bool(flags & MAP_SHARED)
        if shared:
            # Shared pages live in a host descriptor (a file's own, or a memfd) that the
            # platform maps there: every mapper and read()/write() see the same pages.
            from sentry.vfs.backing import new_memory
            if file is not None:
                # A memory file sealed against writing maps read-only, for good (EPERM for
                # PROT_WRITE, as Linux's seal_check_write).
                sealed = getattr(file.inode, "seals", 0) & 0x18  # F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
                if sealed and prot & PROT_WRITE:
                    raise Errno(E.EPERM)
                backing, maywrite = file.backing(), file.writable and not sealed
                name = getattr(file, "shared_name", None) or file.path
                regular = getattr(file.inode, "mode", 0) & 0o170000 == 0o100000  # not /dev/zero
                file_size = file.inode.size if backing.memory and regular else None
            else:
                backing, name, maywrite, offset = new_memory("dev/zero"), "/dev/zero (deleted)", True, 0
                file_size = None
            self.map_shared(addr, length, prot, backing, offset, name, maywrite, self._new_flags(flags),
                            file_size if isinstance(file_size, int) else None)
            self._populate_new(addr, length, flags)
            return addr
        first = None
        if file is not None:  # errors (ENODEV, EACCES) before anything is mapped
            first = file.mmap_bytes(offset, min(length, FILE_PIECE), prot, shared)
        self.map_fixed(addr, length, prot, file.path if file is not None else "", shared=shared,
                       flags=self._new_flags(flags))
        if file is not None:
            self.vmas[self._find(addr)].offset = offset
        if first:
            # The file's pages are copied in, a piece at a time (never the whole file at once).
            piece, done = first, 0
            while piece:
                self.space.write(addr + done, piece)
                done += len(piece)
                if len(piece) < FILE_PIECE or done >= length:
                    break  # the end of the file or of the mapping
                piece = file.mmap_bytes(offset + done, min(length - done, FILE_PIECE), prot, shared)
        self._populate_new(addr, length, flags)
        return addr

    def _new_flags(self, map_flags: int) -> int:
        """A new area's VM_* bits: MAP_LOCKED, or mlockall(MCL_FUTURE)'s default."""
        flags = self.def_flags
        if map_flags & MAP_LOCKED:
            flags |= VM_LOCKED
        if map_flags & MAP_GROWSDOWN:
            flags |= VM_GROWSDOWN
        return flags

    def expand_stack(self, addr: int, stack_limit: int) -> bool:
        """A fault at addr, below a MAP_GROWSDOWN area with nothing between: the area grows
        down to addr's page, as Linux's expand_downwards (unless that would come nearer than
        stack_guard_gap to the area below, or make it larger than RLIMIT_STACK); False when
        it does not grow (the fault stands)."""
        i = bisect.bisect_right(self.starts, addr)
        if i >= len(self.vmas) or self._find(addr) >= 0:
            return False
        v = self.vmas[i]
        if not v.flags & VM_GROWSDOWN or v.backing is not None:
            return False
        start = addr & ~(PAGE - 1)
        if start < MMAP_MIN_ADDR or v.end - start > stack_limit or self._meets_reserved(start, v.start):
            return False
        if i > 0:
            prev = self.vmas[i - 1]
            if not prev.flags & VM_GROWSDOWN and prev.prot and start - prev.end < STACK_GUARD_GAP:
                return False
        try:
            self.map_fixed(start, v.start - start, v.prot, v.name, flags=v.flags)
        except Errno:
            return False
        return True

    def _populate_new(self, addr: int, length: int, map_flags: int) -> None:
        """A new area's pages are faulted in for MAP_POPULATE or a lock (not on fault)."""
        flags = self._new_flags(map_flags)
        if map_flags & MAP_POPULATE and not map_flags & MAP_NONBLOCK or \
                flags & VM_LOCKED and not flags & VM_LOCKONFAULT:
            self.populate(addr, addr + length)

    def munmap(self, addr: int, length: int) -> None:
        if addr & (PAGE - 1) or length == 0 or addr + length > TASK_SIZE:
            raise Errno(E.EINVAL)
        length = page_up(length)
        if self._meets_reserved(addr, addr + length):
            raise Errno(E.EINVAL)  # as past TASK_SIZE: the platform's pages are not the process's
        self._may_split(addr, addr + length)
        for v in self._carve(addr, addr + length):
            self.space.unmap(v.start, v.end - v.start)
            if v.backing is not None:  # a System V shared memory attachment closes (sentry/ipc/shm.py)
                closed = getattr(v.backing, "vma_closed", None)
                if closed is not None:
                    closed()

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & (PAGE - 1) or prot & ~(PROT_ALL | 0x03000000):
            raise Errno(E.EINVAL)
        end = addr + page_up(length)
        if not self.covered(addr, end):
            raise Errno(E.ENOMEM)
        prot &= PROT_ALL
        i = self._find(addr)
        if i >= 0 and self.vmas[i].prot != prot:
            self._may_split(addr, end)
        if prot & PROT_WRITE:
            i = self._find(addr)
            while i >= 0 and i < len(self.vmas) and self.vmas[i].start < end:
                if self.vmas[i].backing is not None and not self.vmas[i].maywrite:
                    raise Errno(E.EACCES)  # a shared mapping of a file not open for writing
                i += 1
        for v in self._carve(addr, end):
            v.prot = prot
            self._insert(v)
        if end > addr:
            self.space.protect(addr, end - addr, prot)

    def set_policy(self, start: int, end: int, policy) -> None:
        """Give every mapped page of [start, end) the memory policy `policy` (mbind(2)),
        splitting areas at the ends as Linux's mbind_range."""
        for v in self._carve(start, end):
            v.policy = policy
            self._insert(v)

    def covered(self, start: int, end: int) -> bool:
        """Is every page of [start, end) mapped?"""
        while start < end:
            i = self._find(start)
            if i < 0:
                return False
            start = self.vmas[i].end
        return True

    def mremap(self, old: int, old_len: int, new_len: int, flags: int, new: int) -> int:
        if old & (PAGE - 1) or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
            raise Errno(E.EINVAL)
        if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
            raise Errno(E.EINVAL)
        if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or page_up(old_len) != page_up(new_len)):
            raise Errno(E.EINVAL)
        old_len, new_len = page_up(old_len), page_up(new_len)
        if new_len == 0 or old_len == 0:
            raise Errno(E.EINVAL)
        i = self._find(old)
        if i < 0 or self.vmas[i].end < old + old_len:
            raise Errno(E.EFAULT)
        vma = self.vmas[i]
        dontunmap = bool(flags & MREMAP_DONTUNMAP)
        if not flags & MREMAP_FIXED and not dontunmap:
            if new_len <= old_len:
                if new_len < old_len:
                    self.munmap(old + new_len, old_len - new_len)
                return old
            if self.is_free(old + old_len, old + new_len):
                self._charge(old + old_len, old + new_len)
                grown = vma.part(old + old_len, old + new_len)
                if vma.backing is not None:  # shared: the file's next pages
                    vma.backing.cover(grown.offset + new_len - old_len)
                    self.space.map_file(grown.start, new_len - old_len, vma.prot, vma.backing, grown.offset)
                else:
                    self.space.map(old + old_len, new_len - old_len, vma.prot)
                vma_at = self._find(old)
                v = self.vmas[vma_at]
                if v.end == old + old_len:
                    v.end = old + new_len
                    self._grown(new_len - old_len)
                else:
                    self._insert(grown)
                if vma.flags & VM_LOCKED and not vma.flags & VM_LOCKONFAULT:
                    self.populate(old + old_len, old + new_len)
                return old
            if not flags & MREMAP_MAYMOVE:
                raise Errno(E.ENOMEM)
        if not flags & MREMAP_FIXED:
            if len(self.vmas) >= self.max_map_count() - 3:
                raise Errno(E.ENOMEM)  # move_vma's headroom
            new = self._find_free(new_len, self.mmap_base)
        else:
            if new & (PAGE - 1) or new < old + old_len and old < new + new_len:
                raise Errno(E.EINVAL)
            if self._meets_reserved(new, new + new_len):
                raise Errno(E.EINVAL)  # mremap_to's answer for a target past TASK_SIZE
            self.munmap(new, new_len)
        if new_len > old_len:
            self._check_total(self.total + new_len - old_len)
        moved = vma.part(old, old + new_len)
        moved.start, moved.end = new, new + new_len
        if vma.backing is not None:
            # Shared pages are not moved but mapped again at the new place (the host's
            # mremap would copy them where it cannot move them: they must stay shared).
            vma.backing.cover(moved.offset + new_len)
            self.space.map_file(new, new_len, vma.prot, vma.backing, moved.offset)
            self.space.unmap(old, old_len)
        else:
            self.space.move(old, old_len, new, new_len)
        left = self._carve(old, old + old_len)
        self._carve(new, new + new_len)
        self._insert(moved)
        if dontunmap:
            # The old range stays mapped, empty: fresh zero pages, or the file's pages again;
            # it is no longer locked (move_vma clears VM_LOCKED on the old area).
            for v in left:
                v.flags &= ~VM_LOCKED_MASK
                if v.backing is not None:
                    self.space.map_file(v.start, v.end - v.start, v.prot, v.backing, v.offset)
                else:
                    self.space.map(v.start, v.end - v.start, v.prot)
                self._insert(v)
        if moved.flags & VM_LOCKED and not moved.flags & VM_LOCKONFAULT and new_len > old_len:
            self.populate(new + old_len, new + new_len)
        return new

    def set_brk(self, addr: int) -> int:
        """brk(2): returns the new break, or the old one when the request is refused."""
        if addr < self.brk_start:
            return self.brk
        old_top, new_top = page_up(self.brk), page_up(addr)
        if new_top > old_top:
            if not self.is_free(old_top, new_top) or new_top - old_top > COMMIT_LIMIT:
                return self.brk
            try:
                self.map_fixed(old_top, new_top - old_top, PROT_READ | PROT_WRITE, "[heap]",
                               flags=self.def_flags)
            except Errno:
                return self.brk  # over the memory limit: brk fails by not moving
            if self.def_flags & VM_LOCKED and not self.def_flags & VM_LOCKONFAULT:
                self.populate(old_top, new_top)
        elif new_top < old_top:
            self.munmap(new_top, old_top - new_top)
        self.brk = addr
        return addr

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """madvise(2) as mm/madvise.c: each area's own error first (in address order), then
        ENOMEM if part of the range is not mapped (the mapped parts are advised)."""
        if addr & (PAGE - 1) or advice not in MADV_KNOWN:
            raise Errno(E.EINVAL)
        end = addr + page_up(length)
        if end < addr:
            raise Errno(E.EINVAL)
        if end == addr:
            return
        areas = self._within(addr, end)
        if not areas:
            raise Errno(E.ENOMEM)
        for v in areas:
            anon = v.backing is None and not v.name.startswith("/")
            if advice in (MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_REMOVE) \
                    and v.flags & VM_LOCKED:
                raise Errno(E.EINVAL)  # can_madv_lru_vma, madvise_remove
            if advice == MADV_FREE and (not anon or v.shared):
                raise Errno(E.EINVAL)  # only private anonymous pages can be freed lazily
            if advice == MADV_WIPEONFORK and (not anon or v.shared):
                raise Errno(E.EINVAL)
            if advice == MADV_REMOVE:  # shared mappings that may write only: it punches the file
                if v.backing is None and not v.name.startswith("/"):
                    raise Errno(E.EINVAL)
                if v.backing is None or not v.maywrite:
                    raise Errno(E.EACCES)
            if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE) and not v.prot:
                raise Errno(E.ENOMEM)  # faultin_page_range: no access to fault in
        setting = {MADV_DONTFORK: (VM_DONTCOPY, VM_DONTCOPY), MADV_DOFORK: (VM_DONTCOPY, 0),
                   MADV_WIPEONFORK: (VM_WIPEONFORK, VM_WIPEONFORK), MADV_KEEPONFORK: (VM_WIPEONFORK, 0),
                   MADV_DONTDUMP: (VM_DONTDUMP, VM_DONTDUMP), MADV_DODUMP: (VM_DONTDUMP, 0),
                   MADV_NORMAL: (VM_SEQ_READ | VM_RAND_READ, 0),
                   MADV_SEQUENTIAL: (VM_SEQ_READ | VM_RAND_READ, VM_SEQ_READ),
                   MADV_RANDOM: (VM_SEQ_READ | VM_RAND_READ, VM_RAND_READ)}.get(advice)
        if setting is not None:
            self.set_flags(addr, end, *setting)
        elif advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE, MADV_REMOVE):
            # Private pages read back as zero afterwards (fresh pages give exactly that);
            # shared pages read back from their file, which only MADV_REMOVE changes.
            for v in self._carve(addr, end):
                if v.backing is None:
                    self.space.map(v.start, v.end - v.start, v.prot)
                elif advice == MADV_REMOVE:
                    v.backing.punch(v.offset, v.end - v.start)
                self._insert(v)
        elif advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_WILLNEED):
            self.populate(addr, end, write=advice == MADV_POPULATE_WRITE)
        if not self.covered(addr, end):
            raise Errno(E.ENOMEM)

    def _within(self, start: int, end: int) -> list:
        """The areas that meet [start, end), in order."""
        i = bisect.bisect_right(self.starts, start) - 1
        if i < 0 or self.vmas[i].end <= start:
            i += 1
        out = []
        while i < len(self.vmas) and self.vmas[i].start < end:
            out.append(self.vmas[i])
            i += 1
        return out

    def set_flags(self, start: int, end: int, mask: int, value: int) -> None:
        """Set the VM_* bits `mask` to `value` on the mapped pages of [start, end),
        splitting areas at the ends only where they change (and merging where they agree)."""
        for v in self._within(start, end):
            if v.flags & mask == value:
                continue
            lo, hi = max(v.start, start), min(v.end, end)
            if v.start < lo and hi < v.end:
                self._may_split(lo, hi)
            for piece in self._carve(lo, hi):
                piece.flags = piece.flags & ~mask | value
                self._insert(piece)

    # --- memory locks (mm/mlock.c) --------------------------------------------------------
    def locked_bytes(self, start: int = 0, end: int = TASK_SIZE) -> int:
        """Bytes of [start, end) in locked areas (VmLck; count_mm_mlocked_page_nr)."""
        return sum(min(v.end, end) - max(v.start, start) for v in self._within(start, end)
                   if v.flags & VM_LOCKED)

    def lock(self, start: int, end: int, flags: int) -> None:
        """mlock/mlock2/munlock on [start, end): VM_LOCKED(|VM_LOCKONFAULT) as flags says
        (0 unlocks), up to the first hole, which is ENOMEM (apply_vma_lock_flags); pages
        locked (not on fault) are faulted in."""
        if end < start:
            raise Errno(E.EINVAL)
        if end == start:
            return
        pos = start
        while pos < end:
            i = self._find(pos)
            if i < 0:
                break
            pos = self.vmas[i].end
        stop = min(pos, end)
        if stop > start:
            self.set_flags(start, stop, VM_LOCKED_MASK, flags)
            if flags & VM_LOCKED and not flags & VM_LOCKONFAULT:
                self.populate(start, stop)
        if stop < end:
            raise Errno(E.ENOMEM)

    def lock_all(self, current: bool, future: bool, onfault: bool) -> None:
        """mlockall/munlockall (apply_mlockall_flags): the default for new areas, and with
        current every area now."""
        lock = VM_LOCKED | (VM_LOCKONFAULT if onfault else 0)
        self.def_flags = lock if future else 0
        if not current and future:
            return
        lock = lock if current else 0
        for v in self.vmas:
            v.flags = v.flags & ~VM_LOCKED_MASK | lock
        self._remerge()
        if lock and not onfault:
            self.populate(0, TASK_SIZE)

    # --- residency --------------------------------------------------------------------------
    def populate(self, start: int, end: int, write: bool | None = None) -> None:
        """Fault in the accessible pages of [start, end) (__mm_populate): private writable
        ones for writing, others for reading, unless `write` says."""
        populate = getattr(self.space, "populate", None)
        if populate is None:
            return
        for v in self._within(start, end):
            if not v.prot or v.flags & VM_LOCKONFAULT:
                continue
            # Private writable pages are faulted in for writing, as Linux; so are shared ones
            # without PROT_READ (the host would refuse to read-fault them).
            w = write if write is not None else bool(v.prot & PROT_WRITE and (not v.shared or not v.prot & PROT_READ))
            lo, hi = max(v.start, start), min(v.end, end)
            try:
                populate(lo, hi - lo, w)
            except (Errno, OSError):
                pass  # like Linux, a page that cannot be faulted in is left out

    def resident(self, start: int, end: int) -> bytes:
        """One byte per page of [start, end) (mapped), 1 where the page is in memory, as
        mincore(2) reports; every page when the platform cannot tell."""
        resident = getattr(self.space, "resident", None)
        n = (end - start) // PAGE
        if resident is None:
            return b"\x01" * n
        try:
            return bytes(resident(start, end - start))
        except (Errno, OSError):
            return b"\x01" * n

    def msync(self, addr: int, length: int, flags: int) -> None:
        """msync(2): shared mappings are the file's own pages already (read() and
        write() see them at once); MS_SYNC also flushes a host file to its disk."""
        if addr & (PAGE - 1) or flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
            raise Errno(E.EINVAL)
        if flags & MS_ASYNC and flags & MS_SYNC:
            raise Errno(E.EINVAL)
        end = addr + page_up(length)
        if end < addr or end > TASK_SIZE:
            raise Errno(E.ENOMEM)
        hole = False
        pos = addr
        while pos < end:
            i = self._find(pos)
            if i < 0:  # Linux goes on past a hole and reports it at the end
                if flags == MS_SYNC:
                    raise Errno(E.ENOMEM)
                hole = True
                j = bisect.bisect_right(self.starts, pos)
                if j >= len(self.vmas):
                    break
                pos = self.vmas[j].start
                continue
            v = self.vmas[i]
            if flags & MS_INVALIDATE and v.flags & VM_LOCKED:
                raise Errno(E.EBUSY)  # locked pages cannot be invalidated
            if flags & MS_SYNC and v.backing is not None:
                v.backing.sync()
            pos = v.end
        if hole:
            raise Errno(E.ENOMEM)

    # --- guest memory -----------------------------------------------------------------
    def check(self, addr: int, size: int, prot: int) -> None:
        """EFAULT unless every byte of [addr, addr+size) is mapped with `prot`."""
        end = addr + size
        vmas = self.vmas
        i = bisect.bisect_right(self.starts, addr) - 1
        while True:
            if i < 0 or i >= len(vmas):
                raise Errno(E.EFAULT)
            v = vmas[i]
            if addr >= v.end or addr < v.start or v.prot & prot != prot:
                raise Errno(E.EFAULT)
            if end <= v.end:
                return
            addr = v.end
            i += 1

    def writable_prefix(self, addr: int, size: int, prot: int = PROT_WRITE) -> int:
        """How many bytes from addr (up to size) the program could write, as a
        copy to user memory that stops at the first fault."""
        done, vmas, starts = 0, self.vmas, self.starts
        while done < size:
            at = addr + done
            i = bisect.bisect_right(starts, at) - 1  # (_find, inline: every read and write asks)
            if i < 0:
                break
            v = vmas[i]
            if at >= v.end or not v.prot & prot:
                break
            done = min(size, v.end - addr)
        return done

    def readable_prefix(self, addr: int, size: int) -> int:
        """How many bytes from addr (up to size) a copy from user memory could read."""
        return self.writable_prefix(addr, size, PROT_READ)

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        self.check(addr, size, PROT_READ)
        return self.space.read(addr, size)

    def read_into(self, addr: int, buf) -> None:
        """Fill a writable buffer with the program's bytes from addr (no bytes object
        in between: a large write(2) to a memory file lands in the file's own buffer)."""
        if len(buf):
            self.check(addr, len(buf), PROT_READ)
            self.space.read_into(addr, buf)

    def write(self, addr: int, data) -> None:
        if not data:
            return
        self.check(addr, len(data), PROT_WRITE)
        self.space.write(addr, data)

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past `limit` bytes (PATH_MAX)."""
        out = b""
        while len(out) < limit:
            chunk = min(PAGE - (addr & (PAGE - 1)), limit - len(out))
            self.check(addr, 1, PROT_READ)
            i = self.vmas[self._find(addr)]
            chunk = min(chunk, i.end - addr)
            data = self.space.read(addr, chunk)
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul]
            out += data
            addr += chunk
        raise Errno(E.ENAMETOOLONG)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))
