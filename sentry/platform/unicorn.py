"""The unicorn platform: guests run in the Unicorn CPU emulator (x86_64 or aarch64 on any host).

One `Uc` is one address space with its one CPU. The only hooks are the
syscall instruction (x86_64: UC_HOOK_INSN on `syscall`; aarch64: UC_HOOK_INTR,
checked to be an `svc`), CPU exceptions, and invalid memory accesses; each
only records what happened and calls emu_stop(). The kernel's work runs after
`emu_start` has returned, never inside a hook, and compute runs with no
per-instruction or per-access hook at all.

The per-syscall path talks to libunicorn through ctypes directly (the
binding's `Uc` methods wrap every call and every hook in several Python
layers): one emu_start, one batched register read into preallocated buffers,
one register write for the result.

Guest pages live in host memory the platform reserves (anonymous mmap, one
1 GiB reservation per guest window in use) and hands to unicorn with
uc_mem_map_ptr. Unicorn then splits a region for a partial unmap or mprotect
by re-pointing it instead of copying it, a large mapping costs nothing until
touched, mremap moves pages on the host without copying, and adjacent guest
regions can be merged (see UnicornSpace) to keep unicorn's region count, which
every map and unmap pays for, low.
"""
import bisect
import ctypes
from collections import deque
import errno
import mmap
import os
import signal
import struct
import sys
from time import perf_counter_ns as _clock

import unicorn.arm64_const as A64
import unicorn.unicorn_const as UC
import unicorn.x86_const as X86
from unicorn.unicorn_py3.unicorn import uclib as _lib

from sentry.errors import Errno, SentryError
from sentry.platform import ExitStop, FaultStop, PreemptStop, SyscallStop

PAGE = 0x1000
MASK64 = (1 << 64) - 1
_END = MASK64  # emu_start's `until`: never reached (non-canonical on x86_64); kept constant so no TB is regenerated

# guest PROT_* -> UC_PROT_*
_UC_PROT = [0] * 8
for _p in range(8):
    _UC_PROT[_p] = ((UC.UC_PROT_READ if _p & 1 else 0) | (UC.UC_PROT_WRITE if _p & 2 else 0)
                    | (UC.UC_PROT_EXEC if _p & 4 else 0))

# --- hook prototypes (as in unicorn.h) --------------------------------------------------
_HOOK_SYSCALL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_HOOK_INTR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_HOOK_CPUID = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_HOOK_MEM_INVALID = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64,
                                     ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)

# --- time slices -------------------------------------------------------------------------
# A slice ends in a UC_HOOK_BLOCK hook: `if (--*counter == 0) uc_emu_stop(uc)`, in machine
# code, so it costs a few instructions per block run, not a Python call. A stop from
# inside a hook is exact (unicorn exits at a block boundary); one from another thread is
# not (it can report a pc before instructions that already ran), and emu_start's own
# `count` hooks every instruction (~14x slower). Off x86-64 hosts the count is the fallback.
SLICE_BLOCKS = 100_000  # about SLICE_INSNS


def _native_countdown():
    """The address of the countdown hook's machine code, or None off x86-64 hosts."""
    import mmap
    if os.uname().machine != "x86_64":
        return None
    stop = ctypes.cast(_lib.uc_emu_stop, ctypes.c_void_p).value
    code = (b"\x48\xff\x09"                           # dec qword [rcx]   (user_data: the counter)
            b"\x75\x0c"                               # jnz ret
            b"\x48\xb8" + stop.to_bytes(8, "little")  # movabs rax, uc_emu_stop
            + b"\xff\xe0"                             # jmp rax           (uc is already in rdi)
            b"\xc3")                                   # ret
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        page.write(code)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        mprotect = ctypes.CDLL(None, use_errno=True).mprotect
        mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC):
            return None
    except (OSError, ValueError):
        return None
    _native_countdown.page = page  # kept mapped for the life of the sentry
    return addr


_COUNTDOWN = _native_countdown()


# why a run stopped (set by the hooks)
_NOTHING, _SYSCALL, _INTR, _MEM = 0, 1, 2, 3

_MEM_ACCESS = {  # uc_mem_type -> (what, cause)
    UC.UC_MEM_READ_UNMAPPED: ("read", ""), UC.UC_MEM_WRITE_UNMAPPED: ("write", ""),
    UC.UC_MEM_FETCH_UNMAPPED: ("fetch", ""), UC.UC_MEM_READ_PROT: ("read", " (not readable)"),
    UC.UC_MEM_WRITE_PROT: ("write", " (not writable)"), UC.UC_MEM_FETCH_PROT: ("fetch", " (not executable)"),
}
_ERR_SIGNAL = {
    UC.UC_ERR_READ_UNMAPPED: signal.SIGSEGV, UC.UC_ERR_WRITE_UNMAPPED: signal.SIGSEGV,
    UC.UC_ERR_FETCH_UNMAPPED: signal.SIGSEGV, UC.UC_ERR_READ_PROT: signal.SIGSEGV,
    UC.UC_ERR_WRITE_PROT: signal.SIGSEGV, UC.UC_ERR_FETCH_PROT: signal.SIGSEGV,
    UC.UC_ERR_INSN_INVALID: signal.SIGILL, UC.UC_ERR_READ_UNALIGNED: signal.SIGBUS,
    UC.UC_ERR_WRITE_UNALIGNED: signal.SIGBUS, UC.UC_ERR_FETCH_UNALIGNED: signal.SIGBUS,
}
# x86 exception vectors -> (signal, what); anything else is SIGSEGV (a #GP in Linux terms)
_X86_VECTOR = {
    0: (signal.SIGFPE, "division error"), 1: (signal.SIGTRAP, "debug trap"),
    3: (signal.SIGTRAP, "breakpoint"), 4: (signal.SIGSEGV, "overflow trap"),
    5: (signal.SIGSEGV, "bound range exceeded"), 6: (signal.SIGILL, "invalid instruction"),
    7: (signal.SIGSEGV, "FPU not available"), 13: (signal.SIGSEGV, "general protection fault"),
    16: (signal.SIGFPE, "x87 floating-point error"), 17: (signal.SIGBUS, "alignment check"),
    19: (signal.SIGFPE, "SIMD floating-point error"),
    0x80: (signal.SIGSEGV, "int 0x80 (the 32-bit syscall ABI is not supported)"),
}
# aarch64 (QEMU) exception numbers
_EXCP_UDEF, _EXCP_SWI, _EXCP_BKPT = 1, 2, 7
_A64_WFI = bytes.fromhex("7f2003d5")

_ARCHS = {
    # arch: (uc arch, uc mode, cpu model, syscall stop registers [nr, a0..a5, pc], sp, pc, result, tls,
    #        capstone (arch, mode) names)
    "x86_64": (UC.UC_ARCH_X86, UC.UC_MODE_64,
               # No AVX (TCG has none) but SSE4.2/POPCNT: glibc's CPUID-driven ifuncs then pick SSE code
               X86.UC_CPU_X86_WESTMERE,
               (X86.UC_X86_REG_RAX, X86.UC_X86_REG_RDI, X86.UC_X86_REG_RSI, X86.UC_X86_REG_RDX,
                X86.UC_X86_REG_R10, X86.UC_X86_REG_R8, X86.UC_X86_REG_R9, X86.UC_X86_REG_RIP),
               X86.UC_X86_REG_RSP, X86.UC_X86_REG_RIP, X86.UC_X86_REG_RAX, X86.UC_X86_REG_FS_BASE,
               ("CS_ARCH_X86", "CS_MODE_64")),
    "aarch64": (UC.UC_ARCH_ARM64, UC.UC_MODE_ARM, A64.UC_CPU_ARM64_MAX,
                (A64.UC_ARM64_REG_X8, A64.UC_ARM64_REG_X0, A64.UC_ARM64_REG_X1, A64.UC_ARM64_REG_X2,
                 A64.UC_ARM64_REG_X3, A64.UC_ARM64_REG_X4, A64.UC_ARM64_REG_X5, A64.UC_ARM64_REG_PC),
                A64.UC_ARM64_REG_SP, A64.UC_ARM64_REG_PC, A64.UC_ARM64_REG_X0, A64.UC_ARM64_REG_TPIDR_EL0,
                ("CS_ARCH_ARM64", "CS_MODE_ARM")),
}
# registers set_entry clears (besides pc and sp)
_CLEARED = {
    "x86_64": [getattr(X86, f"UC_X86_REG_{r}") for r in (
        "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11", "R12", "R13", "R14",
        "R15", "FS_BASE", "GS_BASE")],
    "aarch64": [getattr(A64, f"UC_ARM64_REG_X{i}") for i in range(31)] + [A64.UC_ARM64_REG_NZCV,
                                                                         A64.UC_ARM64_REG_TPIDR_EL0],
}

_STOP_REGS = struct.Struct("<8Q").unpack_from
_CTL_REMOVE_CACHE = (UC.UC_CTL_IO_WRITE << 30) | (2 << 26) | UC.UC_CTL_TB_REMOVE_CACHE


def _new_context(uch):
    ctx = ctypes.c_void_p()
    _check(_lib.uc_context_alloc(uch, ctypes.byref(ctx)), "cannot hold a CPU's registers")
    return ctx


def _check(err: int, what: str) -> None:
    if err:
        raise SentryError(f"unicorn: {what}: {_lib.uc_strerror(err).decode()}")


# Instructions one task runs while others are ready or a timer is due (~5-10 ms here).
# A slice is counted, not timed: a stop requested from another thread (uc_emu_stop,
# or emu_start's own timeout) can leave the reported pc before an instruction that
# has already run, which then runs twice when the task resumes.
SLICE_INSNS = 500_000
_UNBOUNDED = 1 << 62  # a count no run reaches


def _no_huge_code_pages() -> None:
    """Each process's emulator madvises its translation buffer for transparent huge pages,
    so its first translated block costs a 2 MiB page: 2.8 MB of the sentry per guest
    process (a fork bomb of 512: 1.5 GB), 0.8 MB without. The sentry asks the host for no
    huge pages in its own memory (PR_SET_THP_DISABLE: this process and what it starts;
    only madvised areas had them)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)


class UnicornPlatform:
    """Tasks take turns on the emulator: the loop runs one ready CPU at a time,
    for a time slice when anything else needs the loop."""
    name = "unicorn"

    def __init__(self, arch: str):
        if arch not in _ARCHS:
            raise SentryError(f"the unicorn platform runs x86_64 and aarch64 programs, not {arch}", 126)
        self.arch = arch
        _no_huge_code_pages()
        self.ready = deque()  # CPUs resumed and waiting for their turn
        self.running_cpu = None  # the CPU in emu_start now, for wake()
        self.wakeable = False    # wake() may come (from another thread): every run can be stopped exactly

    def raw_cpuid(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
        """What the emulated CPU model's own cpuid answers (sentry/vcpu.py starts from it),
        run once per leaf on a scratch engine of the same model."""
        from unicorn import Uc
        uc = Uc(UC.UC_ARCH_X86, UC.UC_MODE_64)
        uc.ctl_set_cpu_model(_ARCHS["x86_64"][2])
        uc.mem_map(0x1000, 0x1000)
        uc.mem_write(0x1000, b"\x0f\xa2")  # cpuid
        uc.reg_write(X86.UC_X86_REG_RAX, leaf)
        uc.reg_write(X86.UC_X86_REG_RCX, subleaf)
        uc.emu_start(0x1000, 0x1002)
        return tuple(uc.reg_read(r) & 0xFFFFFFFF for r in (X86.UC_X86_REG_RAX, X86.UC_X86_REG_RBX,
                                                           X86.UC_X86_REG_RCX, X86.UC_X86_REG_RDX))

    def new_process(self):
        """A fresh empty address space (one Uc) and its one CPU."""
        space = UnicornSpace(self.arch)
        space.cpu.platform = self
        return space, space.cpu

    def fork_process(self, space: "UnicornSpace", cpu: "UnicornCpu", areas):
        """A copy of the process for fork: every area's bytes and the CPU's whole state
        (the child's result register is then set to 0 by the caller)."""
        child, child_cpu = self.new_process()
        cpu._activate()
        try:
            for start, end, prot in areas:
                child.map(start, end - start, prot, lazy_ok=space.is_lazy(start, end))
                child.copy_from(space, start, end)
                for lo, hi, backing, offset in space.shared_in(start, end):
                    child.map_file(lo, hi - lo, prot, backing, offset)  # the same pages, not a copy
            ctx = ctypes.c_void_p()
            _check(_lib.uc_context_alloc(space._uch, ctypes.byref(ctx)), "cannot copy a CPU")
            try:
                _check(_lib.uc_context_save(space._uch, ctx), "cannot copy a CPU")
                _check(_lib.uc_context_restore(child._uch, ctx), "cannot copy a CPU")
            finally:
                _lib.uc_context_free(ctx)
            child_cpu._pc = cpu._pc
            child_cpu.set_result(0)
        except BaseException:
            child.close()
            raise
        return child, child_cpu

    def clone_thread(self, space: "UnicornSpace", cpu: "UnicornCpu", process: bool = False) -> "UnicornCpu":
        """A new thread's CPU over the same Uc: a copy of cpu's registers, 0 as the result.
        (A CLONE_VM process, with process, is the same: its memory is the same Uc.)"""
        thread = UnicornCpu(space, self.arch, sibling=cpu)
        space.threads.append(thread)
        thread.set_result(0)
        return thread

    def exec_process(self, space: "UnicornSpace", cpu: "UnicornCpu"):
        """A fresh address space and CPU for execve (the old ones are closed)."""
        space.close()
        return self.new_process()

    # --- the loop's view ------------------------------------------------------------------------
    def next_stop(self, block: bool):
        """Run the next ready CPU to its next stop: to the end when nothing else needs
        the loop (block), else for one time slice."""
        ready = self.ready
        if not ready:
            return None
        cpu = ready.popleft()
        cpu.queued = False
        self.running_cpu = cpu
        try:
            return cpu, cpu.run(0 if block and not ready else SLICE_INSNS)
        finally:
            self.running_cpu = None

    def wake(self) -> None:
        """From any thread: the running emulation stops at its next block (a PreemptStop),
        so that the loop looks at what was posted to it."""
        cpu = self.running_cpu
        if cpu is None:
            return
        left = cpu._hooked._left
        if left is not None:
            left.value = 1  # the countdown hook stops exactly, at a block boundary
        elif cpu._uch is not None:
            cpu._stop(cpu._uch)  # no countdown off x86-64 hosts: unicorn's own stop

    def busy(self):
        return "now" if self.ready else False

    def event_fd(self):
        return None

    def drain_events(self) -> None:
        pass

    def close_events(self) -> None:
        pass


# --- host memory ------------------------------------------------------------------------------
_WINDOW_SHIFT = 30 if sys.maxsize > 1 << 32 else 24
_WINDOW = 1 << _WINDOW_SHIFT       # guest memory is backed window by window (1 GiB of host address space each)
LAZY_MIN = 64 << 20                # PROT_NONE mappings this large are kept out of unicorn until used
# Accessible guest memory one process may have in unicorn (host address space committed to
# it): beyond, mmap, mprotect, mremap and brk fail with ENOMEM. Unicorn's unmap costs ~50 ms
# per GiB (a TLB flush per page) and its region list grows with every GiB, so a 16 TiB
# read-only mapping, which Linux grants, ran for many minutes with no way to stop it.
MAX_COMMITTED = 16 << 30
_MERGE_SMALL = 1 << 20             # adjacent regions whose union is at most this are always merged,
_MERGE_MAX = 32 << 20              # larger ones if within a factor of two, up to this


class _HostMemory:
    """Host address space reserved for guest windows, and fresh zero pages inside it."""

    def __init__(self):
        linux = sys.platform.startswith("linux")
        libc = ctypes.CDLL(None, use_errno=True)
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long)
        self._munmap = libc.munmap
        self._munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._mremap = getattr(libc, "mremap", None) if linux else None
        if self._mremap is not None:
            self._mremap.restype = ctypes.c_void_p
            self._mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                                     ctypes.c_void_p)
        self._pagemap = None  # /proc/self/pagemap, opened at the first fork
        self._madvise = libc.madvise if linux else None
        if self._madvise is not None:
            self._madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        self.page = mmap.PAGESIZE
        # With host pages larger than the guest's 4 KiB, one host page can hold guest pages
        # that are mapped and others that are not: such hosts keep whole windows accessible.
        self.small_pages = self.page == PAGE
        self._flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (0x4000 if linux else 0)  # MAP_NORESERVE
        self._failed = ctypes.c_void_p(-1).value

    def resident_runs(self, addr: int, size: int):
        """(offset, end offset) runs of [addr, addr+size) whose pages were ever touched
        (present or swapped out, from /proc/self/pagemap: bits 63 and 62); the whole
        range when that cannot be known."""
        page = self.page
        if addr % page or size % page or not sys.platform.startswith("linux"):
            return [(0, size)]
        n = size // page
        try:
            if self._pagemap is None:
                self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            raw = os.pread(self._pagemap, 8 * n, 8 * (addr // page))
        except OSError:
            return [(0, size)]
        if len(raw) != 8 * n:
            return [(0, size)]
        entries = memoryview(raw).cast("Q")
        touched = 3 << 62
        runs, i = [], 0
        while i < n:
            if not entries[i] & touched:
                i += 1
                continue
            j = i
            while j < n and entries[j] & touched:
                j += 1
            runs.append((i * page, j * page))
            i = j
        return runs

    def populate(self, addr: int, size: int, write: bool) -> None:
        """Fault in host pages (madvise MADV_POPULATE_WRITE/READ, Linux 5.14+; a no-op elsewhere)."""
        if self._madvise is not None:
            self._madvise(addr, size, 23 if write else 22)

    def reserve(self, size: int) -> int:
        """Address space for one window: inaccessible (and uncharged) until committed."""
        prot = 0 if self.small_pages else mmap.PROT_READ | mmap.PROT_WRITE
        addr = self._mmap(None, size, prot, self._flags, -1, 0)
        if addr in (None, self._failed):
            raise Errno(errno.ENOMEM)
        return addr

    def free(self, addr: int, size: int) -> None:
        self._munmap(addr, size)

    def map_fd(self, addr: int, size: int, writable: bool, fd: int, offset: int) -> None:
        """A host file's pages from offset at [addr, addr+size) (inside a window), shared."""
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        if self._mmap(addr, size, prot, mmap.MAP_SHARED | 0x10, fd, offset) != addr:  # MAP_FIXED
            raise Errno(ctypes.get_errno() or errno.ENOMEM)

    def fresh(self, addr: int, size: int, commit: bool) -> None:
        """Replace [addr, addr+size) (inside a window) with zero pages, accessible if commit,
        given back to the host otherwise."""
        lo, hi = (addr + self.page - 1) & -self.page, (addr + size) & -self.page
        if hi <= lo:
            ctypes.memset(addr, 0, size)
            return
        if lo > addr:
            ctypes.memset(addr, 0, lo - addr)
        if addr + size > hi:
            ctypes.memset(hi, 0, addr + size - hi)
        prot = mmap.PROT_READ | mmap.PROT_WRITE if commit or not self.small_pages else 0
        if self._mmap(lo, hi - lo, prot, self._flags | 0x10, -1, 0) != lo:  # MAP_FIXED, our own range
            raise Errno(errno.ENOMEM)

    def move(self, src: int, dst: int, size: int) -> None:
        """The contents of src appear at dst (both committed): the host kernel moves the pages
        where it can (mremap MREMAP_DONTUNMAP, Linux 5.7+), else they are copied."""
        if (self._mremap is not None and self.small_pages
                and self._mremap(src, size, size, 1 | 2 | 4, dst) == dst):  # MAYMOVE | FIXED | DONTUNMAP
            return
        ctypes.memmove(dst, src, size)


_host = None


def _host_memory() -> _HostMemory:
    global _host
    if _host is None:
        _host = _HostMemory()
    return _host


def _chunks(start: int, end: int):
    """[start, end) cut at window boundaries."""
    while start < end:
        stop = min(end, ((start >> _WINDOW_SHIFT) + 1) << _WINDOW_SHIFT)
        yield start, stop
        start = stop


class UnicornSpace:
    """One Uc: the guest's address space.

    Guest memory is backed window by window: each 1 GiB-aligned guest window that
    holds a mapping has one host reservation, so guest page P lives at host
    `window base + P % 1 GiB`. Adjacent guest regions are then contiguous on the host
    too, and are merged into one unicorn region (unicorn's map and unmap cost grows
    with its number of regions: a malloc making thousands of mmaps must not leave
    thousands of regions). Merging follows a size rule (merge when the union is at most
    1 MiB, or the two sizes are within a factor of two and the union at most 32 MiB) so
    that growing a region step by step keeps few regions and re-maps each byte only a
    logarithmic number of times, while no merged region grows so large that splitting
    it again (unicorn flushes the TLB page by page over the whole region) costs much.

    `_regions` mirrors unicorn's regions exactly: [start, end, uc perms], sorted.
    """

    def __init__(self, arch: str):
        uc_arch, uc_mode, model, *_ = _ARCHS[arch]
        self.arch = arch
        self.reserved = []
        self._host = _host_memory()
        handle = ctypes.c_void_p()
        _check(_lib.uc_open(uc_arch, uc_mode, ctypes.byref(handle)), "cannot open an engine")
        self._uch = handle
        try:
            code = (UC.UC_CTL_IO_WRITE << 30) | (1 << 26) | UC.UC_CTL_CPU_MODEL
            _check(_lib.uc_ctl(handle, code, ctypes.c_int(model)), "cannot set the CPU model")
        except BaseException:
            _lib.uc_close(handle)
            raise
        self._starts = []   # region starts, sorted (for bisect)
        self._regions = []  # [start, end, uc perms], same order
        self._windows = {}  # guest window number -> [host base, bytes mapped in it]
        # Shared mappings (sentry/vfs/backing.py): [start, end, backing, offset, file end], sorted.
        # Their host pages are the backing's own (mapped MAP_SHARED over the window), up to
        # `file end` (a host file's last page; past it, anonymous zero pages stand in for
        # Linux's SIGBUS). A fork must map these again from the same backings, not copy them.
        self.shared = []
        self.cpu = UnicornCpu(self, arch)
        self.threads = [self.cpu]  # every live thread's CPU over this Uc
        self.counted = False       # a run was counted (a time slice): the count hook is in
        self.active = self.cpu     # the thread whose registers are in the Uc now
        # Large PROT_NONE reservations are kept out of unicorn (and host memory) until made
        # accessible: thousands of 1 GiB regions cost unicorn quadratic time (a 4 TiB
        # reservation took minutes). Faults there are still told apart by the MemoryManager.
        self._lazy = []            # sorted, disjoint [start, end) of such reservations
        self.committed = 0         # bytes of host pages behind unicorn's regions (MAX_COMMITTED)

    # --- residency (mlock, mincore, /proc/PID/smaps) --------------------------------------------
    def populate(self, start: int, length: int, write: bool) -> None:
        """Fault the host pages behind [start, start+length) in (mlock, MAP_POPULATE)."""
        for lo, hi in _chunks(start, start + length):
            if lo >> _WINDOW_SHIFT in self._windows:
                self._host.populate(self._host_of(lo), hi - lo, write)

    def resident(self, start: int, length: int) -> bytes:
        """One byte per page: 1 if the host page behind it was ever touched."""
        out = bytearray(length // PAGE)
        for lo, hi in _chunks(start, start + length):
            if lo >> _WINDOW_SHIFT not in self._windows:
                continue
            for a, b in self._host.resident_runs(self._host_of(lo), hi - lo):
                first, last = (lo - start + a) // PAGE, (lo - start + b) // PAGE
                out[first:last] = b"\x01" * (last - first)
        return bytes(out)

    # --- host backing -------------------------------------------------------------------------
    def _host_of(self, addr: int) -> int:
        return self._windows[addr >> _WINDOW_SHIFT][0] + (addr & (_WINDOW - 1))

    def _may_commit(self, length: int) -> None:
        """ENOMEM if length more bytes of accessible memory would pass MAX_COMMITTED
        (checked before anything changes; what the call replaces still counts)."""
        if self.committed + length > MAX_COMMITTED:
            raise Errno(errno.ENOMEM)

    def _commit(self, start: int, end: int, check: bool = True) -> None:
        """Fresh zero host pages behind [start, end), which is not mapped."""
        if check:
            self._may_commit(end - start)
        self.committed += end - start
        for lo, hi in _chunks(start, end):
            w = self._windows.get(lo >> _WINDOW_SHIFT)
            if w is None:
                w = self._windows[lo >> _WINDOW_SHIFT] = [self._host.reserve(_WINDOW), 0]
            self._host.fresh(w[0] + (lo & (_WINDOW - 1)), hi - lo, True)
            w[1] += hi - lo

    def _decommit(self, start: int, end: int) -> None:
        """Give back the host pages behind [start, end), which was mapped."""
        self.committed -= end - start
        for lo, hi in _chunks(start, end):
            n = lo >> _WINDOW_SHIFT
            w = self._windows[n]
            w[1] -= hi - lo
            if w[1] == 0:
                self._host.free(w[0], _WINDOW)
                del self._windows[n]
            else:
                self._host.fresh(w[0] + (lo & (_WINDOW - 1)), hi - lo, False)

    # --- unicorn's regions, mirrored ----------------------------------------------------------
    def _split_at(self, addr: int) -> None:
        """Make addr a region boundary in the record (unicorn splits its own the same way
        when part of a region is unmapped or protected)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if r[0] < addr < r[1]:
                self._regions.insert(i + 1, [addr, r[1], r[2]])
                self._starts.insert(i + 1, addr)
                r[1] = addr

    def _unmap(self, start: int, end: int) -> None:
        """Unmap whatever is mapped in [start, end) and give its host pages back."""
        if self.shared:
            self._unshare(start, end)
        starts, regions = self._starts, self._regions
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or regions[i][1] <= start:
            i += 1
        if i == len(regions) or regions[i][0] >= end:
            return
        self._split_at(start)
        self._split_at(end)
        i = bisect.bisect_left(starts, start)
        j = bisect.bisect_left(starts, end, i)
        for r in regions[i:j]:
            _check(_lib.uc_mem_unmap(self._uch, r[0], r[1] - r[0]), f"cannot unmap {r[0]:#x}")
            self._decommit(r[0], r[1])
        del regions[i:j]
        del starts[i:j]

    def _add(self, start: int, end: int, perms: int) -> None:
        """Hand the committed pages of [start, end) to unicorn, one region per window."""
        for lo, hi in _chunks(start, end):
            err = _lib.uc_mem_map_ptr(self._uch, lo, hi - lo, perms, self._host_of(lo))
            if err:  # what is left stays unmapped
                self._decommit(lo, end)
                raise Errno(errno.ENOMEM if err == UC.UC_ERR_NOMEM else errno.EINVAL)
            i = bisect.bisect_left(self._starts, lo)
            self._starts.insert(i, lo)
            self._regions.insert(i, [lo, hi, perms])

    @staticmethod
    def _mergeable(left, right) -> bool:
        """May unicorn regions left and right ([start, end, perms]) become one?"""
        if (left[1] != right[0] or left[2] != right[2]
                or left[0] >> _WINDOW_SHIFT != (right[1] - 1) >> _WINDOW_SHIFT):
            return False
        a, b = left[1] - left[0], right[1] - right[0]
        return a + b <= _MERGE_SMALL or (a + b <= _MERGE_MAX and max(a, b) <= 2 * min(a, b))

    def _merge(self, k: int) -> bool:
        """Merge regions k-1 and k into one unicorn region if they may be merged."""
        regions = self._regions
        if k <= 0 or k >= len(regions):
            return False
        left, right = regions[k - 1], regions[k]
        if not self._mergeable(left, right):
            return False
        a, b = left[1] - left[0], right[1] - right[0]
        uch = self._uch
        _check(_lib.uc_mem_unmap(uch, left[0], a), "cannot merge regions")
        _check(_lib.uc_mem_unmap(uch, right[0], b), "cannot merge regions")
        _check(_lib.uc_mem_map_ptr(uch, left[0], a + b, left[2], self._host_of(left[0])), "cannot merge regions")
        left[1] = right[1]
        del regions[k]
        del self._starts[k]
        return True

    def _coalesce(self, addr: int) -> None:
        """Merge across the region boundary at addr, and on as far as the size rule allows."""
        k = bisect.bisect_left(self._starts, addr)
        if k == len(self._starts) or self._starts[k] != addr or not self._merge(k):
            return
        k -= 1
        while True:
            if self._merge(k):
                k -= 1
            elif not self._merge(k + 1):
                return

    # --- the interface ------------------------------------------------------------------------
    def map_file(self, start: int, length: int, prot: int, backing, offset: int) -> None:
        """backing's pages from offset at exactly [start, start+length), replacing what was
        there: its host fd is mapped MAP_SHARED over the window's host range, so unicorn,
        the sentry and every other mapping see the same pages."""
        if offset & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if prot & 2 and not backing.writable:  # the host pages are read-only: so is the guest's view
            raise Errno(errno.EACCES)
        if not self._host.small_pages:  # host pages larger than the guest's cannot follow a file
            raise Errno(errno.ENODEV)
        self.map(start, length, prot, (backing, offset))

    def _share(self, start: int, end: int, backing, offset: int) -> None:
        """Put backing's pages behind the committed (not yet handed over) [start, end)."""
        file_end = end
        if backing.memory:
            # The sentry's own mapping of a memfd must never reach past its end (the sentry
            # would take the SIGBUS): it is grown to cover the mapping, which reads zeros there.
            backing.cover(offset + end - start)
        else:  # past a host file's end: anonymous pages, never a SIGBUS
            size = -(-max(0, backing.size() - offset) // PAGE) * PAGE
            file_end = min(end, start + size)
            from sentry.vfs.backing import watch_shrinks
            watch_shrinks(self)
        try:
            for lo, hi in _chunks(start, file_end):
                self._host.map_fd(self._host_of(lo), hi - lo, backing.writable, backing.fd, offset + lo - start)
        except Errno:
            self._decommit(start, end)
            raise
        i = bisect.bisect_left([r[0] for r in self.shared], start)
        self.shared.insert(i, [start, end, backing, offset, file_end])

    def _unshare(self, start: int, end: int) -> None:
        """Drop [start, end) from the record of shared mappings (splitting records)."""
        keep = []
        for r in self.shared:
            lo, hi, backing, offset, file_end = r
            if hi <= start or lo >= end:
                keep.append(r)
                continue
            if lo < start:
                keep.append([lo, start, backing, offset, min(file_end, start)])
            if hi > end:
                keep.append([end, hi, backing, offset + (end - lo), max(file_end, end)])
        self.shared = keep

    def shared_in(self, start: int, end: int) -> list:
        """(start, end, backing, offset) of the shared mappings in [start, end), cut to it:
        what a fork maps again (map_file) instead of copying."""
        return [(max(lo, start), min(hi, end), b, off + max(0, start - lo))
                for lo, hi, b, off, _ in self.shared if lo < end and start < hi]

    def file_shrunk(self, key, size: int) -> None:
        """A host file got shorter: the pages of its mappings past the new end become
        anonymous zero pages before anything (guest or sentry) can touch them."""
        end_page = -(-size // PAGE) * PAGE
        for r in self.shared:
            lo, hi, backing, offset, file_end = r
            if backing.memory or backing.key != key:
                continue
            cut = max(lo, lo + end_page - offset)
            if cut < file_end:
                for a, b in _chunks(cut, file_end):
                    self._host.fresh(self._host_of(a), b - a, True)
                self._drop_code(cut, file_end)
                r[4] = cut

    def read_file(self, backing, offset: int, addr: int, size: int) -> int:
        """pread from backing straight into the host pages behind guest [addr, addr+size)
        (writable: the MemoryManager checked): one copy. Bytes read, or -errno."""
        done = self._file_io(os.preadv, backing, offset, addr, size)
        if done <= 0:
            return done
        i = bisect.bisect_right(self._starts, addr) - 1
        while i < len(self._regions) and self._regions[i][0] < addr + done:
            if i >= 0 and self._regions[i][2] & UC.UC_PROT_EXEC:
                self._drop_code(addr, addr + done)  # bytes of translated code may have changed
                break
            i += 1
        return done

    def write_file(self, backing, offset: int, addr: int, size: int) -> int:
        """pwrite to backing straight from the host pages behind guest [addr, addr+size)
        (readable: the MemoryManager checked): one copy. Bytes written, or -errno."""
        return self._file_io(os.pwritev, backing, offset, addr, size)

    def _file_io(self, call, backing, offset: int, addr: int, size: int) -> int:
        """call (os.preadv or os.pwritev) on backing at offset over the host pages behind
        guest [addr, addr+size), window by window: bytes moved, or -errno if none were."""
        done = 0
        for lo, hi in _chunks(addr, addr + size):
            buf = (ctypes.c_char * (hi - lo)).from_address(self._host_of(lo))
            try:
                n = call(backing.fd, [buf], offset + done)
            except OSError as e:
                if done:
                    break
                return -(e.errno or errno.EIO)
            done += n
            if n < hi - lo:
                break
        return done

    # --- reservations kept out of unicorn ----------------------------------------------------
    def _lazy_cut(self, start: int, end: int) -> list:
        """Take [start, end) out of the lazy reservations; the pieces that were there."""
        cut, keep = [], []
        for lo, hi in self._lazy:
            if hi <= start or lo >= end:
                keep.append([lo, hi])
                continue
            if lo < start:
                keep.append([lo, start])
            if hi > end:
                keep.append([end, hi])
            cut.append((max(lo, start), min(hi, end)))
        self._lazy = keep
        return cut

    def _lazy_add(self, start: int, end: int) -> None:
        self._lazy.append([start, end])
        self._lazy.sort()

    def is_lazy(self, start: int, end: int) -> bool:
        """Is all of [start, end) a reservation kept out of unicorn?"""
        return any(lo <= start and end <= hi for lo, hi in self._lazy)

    def _materialize(self, start: int, end: int, perms: int) -> None:
        """The lazy parts of [start, end) become unicorn regions of fresh zero pages."""
        for lo, hi in self._lazy_cut(start, end):
            self._commit(lo, hi)
            self._add(lo, hi, perms)
            self._coalesce(lo)
            self._coalesce(hi)

    def map(self, start: int, length: int, prot: int, _shared=None, lazy_ok: bool = True) -> None:
        """Anonymous zeroed pages at exactly [start, start+length), replacing what was there
        (or, from map_file, _shared = (backing, offset): that file's pages). A large PROT_NONE
        reservation (unless lazy_ok is false) is only recorded, until made accessible."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if length <= 0:
            return
        end = start + length
        if end > 1 << 64:
            raise Errno(errno.ENOMEM)
        perms = _UC_PROT[prot & 7]
        lazy = perms == UC.UC_PROT_NONE and _shared is None and lazy_ok and length >= LAZY_MIN
        if not lazy and length > MAX_COMMITTED - self.committed:
            covered = sum(min(r[1], end) - max(r[0], start) for r in self._regions if r[0] < end and start < r[1])
            self._may_commit(length - covered)
        self._unmap(start, end)
        self._lazy_cut(start, end)
        if lazy:
            self._lazy_add(start, end)
            return
        self._commit(start, end)
        if _shared is not None:
            self._share(start, end, *_shared)
        lo, hi = start, end
        if start >> _WINDOW_SHIFT == (end - 1) >> _WINDOW_SHIFT:
            # Join the neighbours now (one unicorn map) rather than map and merge after (three).
            starts, regions, me = self._starts, self._regions, [start, end, perms]
            k = bisect.bisect_left(starts, start)
            if k < len(regions) and self._mergeable(me, regions[k]):
                hi = me[1] = regions[k][1]
                _check(_lib.uc_mem_unmap(self._uch, end, hi - end), "cannot merge regions")
                del regions[k], starts[k]
            if k > 0 and self._mergeable(regions[k - 1], me):
                lo = regions[k - 1][0]
                _check(_lib.uc_mem_unmap(self._uch, lo, start - lo), "cannot merge regions")
                del regions[k - 1], starts[k - 1]
        self._add(lo, hi, perms)
        self._coalesce(lo)
        self._coalesce(hi)

    def unmap(self, start: int, length: int) -> None:
        """Unmap whatever is mapped in [start, start+length); holes are fine."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if length > 0:
            self._unmap(start, start + length)
            self._lazy_cut(start, start + length)

    def protect(self, start: int, length: int, prot: int) -> None:
        """Change the protection of the mapped pages in [start, start+length)."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if prot & 2 and any(not r[2].writable and r[0] < start + length and start < r[1] for r in self.shared):
            raise Errno(errno.EACCES)  # the host pages of a read-only file stay read-only
        perms = _UC_PROT[prot & 7]
        if perms != UC.UC_PROT_NONE and self._lazy:
            self._materialize(start, start + length, perms)
        self._protect(start, start + length, perms)

    def _protect(self, start: int, end: int, perms: int) -> None:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        changed = []
        for r in self._regions[i:]:
            if r[0] >= end:
                break
            lo, hi = max(start, r[0]), min(end, r[1])
            if hi > lo and r[2] != perms:
                changed.append((lo, hi, r[2]))
        for lo, hi, old in changed:
            _check(_lib.uc_mem_protect(self._uch, lo, hi - lo, perms), f"cannot protect {lo:#x}")
            self._split_at(lo)
            self._split_at(hi)
            self._regions[bisect.bisect_left(self._starts, lo)][2] = perms
            if perms & ~old & UC.UC_PROT_EXEC:
                self._drop_code(lo, hi)  # written while not executable: translate afresh
        for lo, hi, _ in changed:
            self._coalesce(lo)
            self._coalesce(hi)

    def move(self, old: int, old_len: int, new: int, new_len: int) -> None:
        """mremap: the first min(old_len, new_len) bytes of old appear at new, the rest
        is zero; the old range is unmapped; each page keeps its protection."""
        if (old | old_len | new | new_len) & (PAGE - 1) or new_len <= 0:
            raise Errno(errno.EINVAL)
        if new + new_len > 1 << 64:
            raise Errno(errno.ENOMEM)
        if new_len > old_len:
            self._may_commit(new_len - old_len)  # the move itself holds both for a moment
        if self._lazy:
            self._materialize(old, old + old_len, UC.UC_PROT_NONE)
            self._lazy_cut(new, new + new_len)
        keep_end = old + min(old_len, new_len)
        kept = []  # (start, end, perms) of the mapped pieces that travel
        i = max(bisect.bisect_right(self._starts, old) - 1, 0)
        for r in self._regions[i:]:
            if r[0] >= old + old_len:
                break
            lo, hi = max(old, r[0]), min(old + old_len, r[1])
            if hi > lo:
                kept.append((lo, min(hi, keep_end), r[2]))
        perms = kept[-1][2] if kept else UC.UC_PROT_READ | UC.UC_PROT_WRITE
        kept = [k for k in kept if k[1] > k[0]]
        delta = new - old
        host = self._host
        if new < old + old_len and old < new + new_len:  # overlapping: go through a copy
            saved = [(lo, ctypes.string_at(self._host_of(lo), hi - lo)) for lo, hi, _ in kept]
            self._unmap(old, old + old_len)
            self._unmap(new, new + new_len)
            self._commit(new, new + new_len, check=False)
            for lo, data in saved:
                for dlo, dhi in _chunks(lo + delta, lo + delta + len(data)):
                    ctypes.memmove(self._host_of(dlo), data[dlo - lo - delta:dhi - lo - delta], dhi - dlo)
        else:
            self._unmap(new, new + new_len)
            self._commit(new, new + new_len, check=False)
            for lo, hi, _ in kept:
                for dlo, dhi in _chunks(lo + delta, hi + delta):
                    host.move(self._host_of(dlo - delta), self._host_of(dlo), dhi - dlo)
            self._unmap(old, old + old_len)
        self._add(new, new + new_len, perms)
        for lo, hi, p in kept:
            if p != perms:
                self._protect(lo + delta, hi + delta, p)
        self._coalesce(new)
        self._coalesce(new + new_len)

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        if _lib.uc_mem_read(self._uch, addr, buf, size):
            raise Errno(errno.EFAULT)
        return buf.raw

    def read_into(self, addr: int, buf) -> None:
        """Fill a writable buffer (a memoryview) with guest memory from addr."""
        size = len(buf)
        if size and _lib.uc_mem_read(self._uch, addr, (ctypes.c_char * size).from_buffer(buf), size):
            raise Errno(errno.EFAULT)

    def write(self, addr: int, data) -> None:
        """Store data, whatever the protections. Unicorn does not drop code it has translated
        from pages written this way (guest stores are tracked, uc_mem_write is not), so a
        write into an executable page also drops the translations of those bytes."""
        n = len(data)
        if not n:
            return
        if data.__class__ is not bytes:
            try:  # a writable buffer (a memory file's bytes): stored from where it lies, no copy
                data = (ctypes.c_char * n).from_buffer(data)
            except TypeError:
                data = bytes(data)
        if _lib.uc_mem_write(self._uch, addr, data, n):
            raise Errno(errno.EFAULT)
        end = addr + n
        regions = self._regions
        i = bisect.bisect_right(self._starts, addr) - 1
        while i < len(regions) and regions[i][0] < end:
            if regions[i][2] & UC.UC_PROT_EXEC:
                self._drop_code(addr, end)
                return
            i += 1

    def _drop_code(self, start: int, end: int) -> None:
        _lib.uc_ctl(self._uch, _CTL_REMOVE_CACHE, ctypes.c_uint64(start), ctypes.c_uint64(end))

    def copy_from(self, other: "UnicornSpace", start: int, end: int) -> None:
        """Copy [start, end) of another space's memory into the same range of this one
        (both mapped), host memory to host memory. Pages the other space never
        touched (pagemap) are zero there and here already: a fork does not copy,
        nor commit, the untouched bulk of an 8 MiB stack or a big heap."""
        pieces = [(start, end)]
        for llo, lhi in other._lazy:  # nothing to copy where the other keeps a reservation
            pieces = [p for a, b in pieces for p in ((a, min(b, llo)), (max(a, lhi), b)) if p[1] > p[0]]
        for lo, hi in (c for a, b in pieces for c in _chunks(a, b)):
            src, dst = other._host_of(lo), self._host_of(lo)
            for run_lo, run_hi in other._host.resident_runs(src, hi - lo):
                ctypes.memmove(dst + run_lo, src + run_lo, run_hi - run_lo)
        self._drop_code(start, end)

    def regions(self) -> list:
        """(start, end, PROT_* bits) of unicorn's regions, for tests and debugging."""
        back = {v: p for p, v in enumerate(_UC_PROT)}
        return [(r[0], r[1], back[r[2]]) for r in self._regions]

    def close(self) -> None:
        """Release the Uc and every host page behind it."""
        if self._uch is None:
            return
        for cpu in self.threads:
            cpu.kill()
            cpu.drop_context()
        _lib.uc_close(self._uch)
        for cpu in self.threads:
            cpu._uch = None
        self._uch = None
        self.threads = []
        self.active = None
        for base, _ in self._windows.values():
            self._host.free(base, _WINDOW)
        self._windows.clear()
        self.shared = []
        self._regions.clear()
        self._starts.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_CONTRIBUTORY = (0, 8, 10, 11, 12, 13)  # x86 exception vectors QEMU tracks for double faults
_OLD_EXCEPTION = []  # [offset of CPUX86State.old_exception in a uc_context], once found


def _old_exception_offset():
    """Where a saved x86 uc_context holds QEMU's `old_exception`: found once by
    experiment (a #DE sets it from -1 to 0; clearing it there must make a second
    #DE a #DE again, not a double fault), None if that cannot be shown."""
    if _OLD_EXCEPTION:
        return _OLD_EXCEPTION[0]
    found = None
    try:
        handle = ctypes.c_void_p()
        _check(_lib.uc_open(UC.UC_ARCH_X86, UC.UC_MODE_64, ctypes.byref(handle)), "calibration")
        try:
            _lib.uc_mem_map(handle, 0x1000, 0x1000, UC.UC_PROT_ALL)
            code = bytes.fromhex("31c9f7f1")  # xor ecx, ecx; div ecx
            _lib.uc_mem_write(handle, 0x1000, code, len(code))
            seen = []

            def on_intr(uch, intno, _):
                seen.append(intno)
                _lib.uc_emu_stop(uch)
            cb = _HOOK_INTR(on_intr)
            hook = ctypes.c_size_t()
            _lib.uc_hook_add(handle, ctypes.byref(hook), UC.UC_HOOK_INTR, cb, None, ctypes.c_uint64(1),
                             ctypes.c_uint64(0))
            _lib.uc_context_size.restype = ctypes.c_size_t
            size = _lib.uc_context_size(handle) + 64

            def snapshot():
                ctx = ctypes.c_void_p()
                _lib.uc_context_alloc(handle, ctypes.byref(ctx))
                _lib.uc_context_save(handle, ctx)
                return ctx, ctypes.string_at(ctx.value, size)
            c0, b0 = snapshot()
            _lib.uc_emu_start(handle, 0x1000, 0x1000 + len(code), 0, 0)
            c1, b1 = snapshot()
            for off in range(0, size - 4, 4):
                if b0[off:off + 4] == b"\xff\xff\xff\xff" and b1[off:off + 4] == bytes(4):
                    ctypes.memmove(c1.value + off, b"\xff\xff\xff\xff", 4)
                    _lib.uc_context_restore(handle, c1)
                    seen.clear()
                    _lib.uc_emu_start(handle, 0x1000, 0x1000 + len(code), 0, 0)
                    if seen == [0]:
                        found = off
                        break
                    _lib.uc_context_save(handle, c1)
            for c in (c0, c1):
                _lib.uc_context_free(c)
        finally:
            _lib.uc_close(handle)
    except Exception:
        found = None
    _OLD_EXCEPTION.append(found)
    return found


# The registers of a signal context, in the order of a batched access (get_context):
# x86-64's integer registers but rip (the CPU keeps it apart), the segment bases, the FPU
# control words, FP0-FP7 (physical order), XMM0-XMM15; aarch64's X0-X30, SP, NZCV,
# TPIDR_EL0, V0-V31, FPSR, FPCR.
def _x86_context():
    from sentry.platform.context import X86_GPRS
    slots = tuple(n for n in X86_GPRS if n != "rip") + ("fs_base", "gs_base")
    ids = [getattr(X86, f"UC_X86_REG_{n.upper()}") for n in slots]
    ids += [X86.UC_X86_REG_FPCW, X86.UC_X86_REG_FPSW, X86.UC_X86_REG_FPTAG, X86.UC_X86_REG_MXCSR]
    ids += [X86.UC_X86_REG_FP0 + i for i in range(8)] + [X86.UC_X86_REG_XMM0 + i for i in range(16)]
    return slots, tuple(ids)


_X86_SLOTS, _X86_CONTEXT = _x86_context()
_A64_CONTEXT = tuple([A64.UC_ARM64_REG_X29 if i == 29 else A64.UC_ARM64_REG_X30 if i == 30
                      else A64.UC_ARM64_REG_X0 + i for i in range(31)]
                     + [A64.UC_ARM64_REG_SP, A64.UC_ARM64_REG_NZCV, A64.UC_ARM64_REG_TPIDR_EL0]
                     + [A64.UC_ARM64_REG_V0 + i for i in range(32)]
                     + [A64.UC_ARM64_REG_FPSR, A64.UC_ARM64_REG_FPCR])
_BATCHES = {}


def _batch(ids):
    """(ids array, 16-byte slot buffer, slot pointers, count) for one batched register
    access of `ids` (a context is ~60 registers: one ctypes call, not sixty)."""
    layout = _BATCHES.get(ids)
    if layout is None:
        n = len(ids)
        buf = ctypes.create_string_buffer(16 * n)
        base = ctypes.addressof(buf)
        layout = _BATCHES[ids] = ((ctypes.c_int * n)(*ids), buf,
                                  (ctypes.c_void_p * n)(*(base + 16 * i for i in range(n))), n)
    return layout


class UnicornCpu:
    """The CPU of one Uc: run to the next syscall or fault."""
    live = False  # (ptrace's passed-through reads: a syscall stop here never runs on the host)

    def arm_pass_through(self) -> None:
        pass

    def __init__(self, space: UnicornSpace, arch: str, sibling: "UnicornCpu | None" = None):
        """The first CPU of a Uc, or (sibling) another thread's over the same Uc, which
        shares the first's hooks and starts as a copy of sibling's registers."""
        _, _, _, stop_regs, self._sp_reg, self._pc_reg, result_reg, self._tls_reg, self._cs = _ARCHS[arch]
        self.space = space
        self.arch = arch
        self._uch = space._uch
        self.platform = None
        self.task = None       # the sentry Task it runs (set by the kernel)
        self.queued = False
        self._why = _NOTHING
        self._info = None       # what the fault hooks recorded
        self._killed = False
        self._pc = 0
        self._run_ns = 0
        self._slice_start = 0
        # one batched read of [nr, a0..a5, pc] into preallocated buffers
        n = len(stop_regs)
        self._ids = (ctypes.c_int * n)(*stop_regs)
        self._vals = (ctypes.c_uint64 * n)()
        base = ctypes.addressof(self._vals)
        self._ptrs = (ctypes.c_void_p * n)(*(base + 8 * i for i in range(n)))
        self._n = ctypes.c_int(n)
        self._result = ctypes.c_uint64()
        self._result_ptr = ctypes.byref(self._result)
        self._result_reg = result_reg
        self._scratch = ctypes.c_uint64()
        self._stop = _lib.uc_emu_stop
        self._emu_start = _lib.uc_emu_start
        self._read_batch = _lib.uc_reg_read_batch
        self._write = _lib.uc_reg_write
        # Threads take turns on the one Uc: a thread's registers wait in _ctx while
        # another's are loaded (_activate).
        self._ctx = None
        if sibling is not None:
            self.platform = sibling.platform
            self._hooked = sibling._hooked  # the CPU whose hooks record why the Uc stopped
            sibling._activate()
            self._ctx = _new_context(self._uch)
            _check(_lib.uc_context_save(self._uch, self._ctx), "cannot copy a CPU")
            self._pc = sibling._pc
            return
        self._hooked = self
        space.active = self
        # hooks: kept referenced, or ctypes frees the trampolines under unicorn
        self._hooks = []
        if arch == "x86_64":
            self._add_hook(UC.UC_HOOK_INSN, _HOOK_SYSCALL(self._on_syscall), ctypes.c_int(X86.UC_X86_INS_SYSCALL))
            self._add_hook(UC.UC_HOOK_INTR, _HOOK_INTR(self._on_intr))
            self._add_hook(UC.UC_HOOK_INSN, _HOOK_CPUID(self._on_cpuid), ctypes.c_int(X86.UC_X86_INS_CPUID))
            # SSE on, as Linux leaves it: CR0.EM clear, CR0.MP set; CR4.OSFXSR and CR4.OSXMMEXCPT set
            self._reg_write(X86.UC_X86_REG_CR0, (self._reg_read(X86.UC_X86_REG_CR0) & ~0x4) | 0x2)
            self._reg_write(X86.UC_X86_REG_CR4, self._reg_read(X86.UC_X86_REG_CR4) | 0x600)
        else:
            self._add_hook(UC.UC_HOOK_INTR, _HOOK_INTR(self._on_intr_a64))
            # FP/SIMD on at EL0 and EL1 (CPACR_EL1.FPEN = 0b11)
            cpacr = self._reg_read(A64.UC_ARM64_REG_CPACR_EL1)
            self._reg_write(A64.UC_ARM64_REG_CPACR_EL1, cpacr | (3 << 20))
        self._add_hook(UC.UC_HOOK_MEM_INVALID, _HOOK_MEM_INVALID(self._on_mem_invalid))
        self._left = None  # blocks left in a time slice: the countdown hook's counter, once in

    def _countdown(self):
        """The countdown hook, put in the first time a slice is wanted and kept (it costs
        ~20% of a tight loop; a program that never shares the loop never pays it).
        Translated blocks lack it: they are flushed, once."""
        self._left = ctypes.c_int64(_UNBOUNDED)
        handle = ctypes.c_size_t()
        _check(_lib.uc_hook_add(self._uch, ctypes.byref(handle), UC.UC_HOOK_BLOCK, ctypes.c_void_p(_COUNTDOWN),
                                ctypes.c_void_p(ctypes.addressof(self._left)), ctypes.c_uint64(1),
                                ctypes.c_uint64(0)), "cannot add a hook")
        _check(_lib.uc_ctl(self._uch, (UC.UC_CTL_IO_WRITE << 30) | UC.UC_CTL_TB_FLUSH), "cannot flush translations")
        return self._left

    def _activate(self) -> None:
        """Load this thread's registers into the Uc, keeping the current thread's."""
        space = self.space
        current = space.active
        if current is self:
            return
        if current is not None:
            if current._ctx is None:
                current._ctx = _new_context(self._uch)
            _check(_lib.uc_context_save(self._uch, current._ctx), "cannot switch threads")
        _check(_lib.uc_context_restore(self._uch, self._ctx), "cannot switch threads")
        space.active = self

    def drop_context(self) -> None:
        if self._ctx is not None:
            _lib.uc_context_free(self._ctx)
            self._ctx = None

    def end_thread(self) -> None:
        """This thread ends while its process goes on: its registers are let go."""
        self._killed = True
        space = self.space
        if self.queued:
            self.queued = False
            try:
                self.platform.ready.remove(self)
            except ValueError:
                pass
        if space.active is self:
            space.active = None
        if self in space.threads:
            space.threads.remove(self)
        self.drop_context()
        self.task = None

    def _add_hook(self, kind: int, cb, *extra) -> None:
        handle = ctypes.c_size_t()
        _check(_lib.uc_hook_add(self._uch, ctypes.byref(handle), kind, cb, None, ctypes.c_uint64(1),
                                ctypes.c_uint64(0), *extra), "cannot add a hook")
        self._hooks.append(cb)

    # --- hooks: record and stop, nothing else -----------------------------------------------
    def _on_syscall(self, uch, _):
        self._why = _SYSCALL
        self._stop(uch)

    def _on_cpuid(self, uch, _):
        """cpuid answers from the sandbox's virtual CPU (sentry/vcpu.py), not the model's
        own (its hypervisor bit, QEMU's brand); with the thread's own ARCH_SET_CPUID it is
        a general protection fault at the instruction. The registers are the running
        thread's (space.active), whichever CPU holds the hooks."""
        from sentry import vcpu
        regs = (X86.UC_X86_REG_RAX, X86.UC_X86_REG_RBX, X86.UC_X86_REG_RCX, X86.UC_X86_REG_RDX)
        value = ctypes.c_uint64()
        _lib.uc_reg_read(uch, regs[0], ctypes.byref(value))
        leaf = value.value & 0xFFFFFFFF
        _lib.uc_reg_read(uch, regs[2], ctypes.byref(value))
        task = getattr(self.space.active, "task", None)
        if task is None:
            return 0  # a CPU run without a sandbox (tests): the model answers itself
        out = vcpu.execute(task, vcpu.CPUID, leaf, value.value & 0xFFFFFFFF)
        if out is None:
            self._why, self._info = _INTR, 13
            self._stop(uch)
            return 1
        for reg, v in zip(regs, out):
            value.value = v
            _lib.uc_reg_write(uch, reg, ctypes.byref(value))
        return 1  # the instruction is done

    def _on_intr(self, uch, intno, _):
        self._why, self._info = _INTR, intno
        self._stop(uch)

    def _on_intr_a64(self, uch, intno, _):
        if intno == _EXCP_SWI:
            self._why = _SYSCALL
        else:
            self._why, self._info = _INTR, intno
        self._stop(uch)

    def _on_mem_invalid(self, uch, access, address, size, value, _):
        self._why, self._info = _MEM, (access, address)
        return False

    # --- registers --------------------------------------------------------------------------
    def _reg_read(self, reg: int) -> int:
        if self.space.active is not self:
            self._activate()
        _check(_lib.uc_reg_read(self._uch, reg, ctypes.byref(self._scratch)), "cannot read a register")
        return self._scratch.value

    def _reg_write(self, reg: int, value: int) -> None:
        if self.space.active is not self:
            self._activate()
        self._scratch.value = value & MASK64
        _check(_lib.uc_reg_write(self._uch, reg, ctypes.byref(self._scratch)), "cannot write a register")

    def set_entry(self, pc: int, sp: int) -> None:
        for reg in _CLEARED[self.arch]:
            self._reg_write(reg, 0)
        if self.arch == "x86_64":
            # The FPU as Linux hands it to a new program (unicorn starts with zeros: single
            # precision x87, every exception unmasked): fninit's control word, MXCSR's default.
            self._reg_write(X86.UC_X86_REG_FPCW, 0x37F)
            self._reg_write(X86.UC_X86_REG_MXCSR, 0x1F80)
            self._reg_write(X86.UC_X86_REG_FPTAG, 0xFFFF)
        self._reg_write(self._sp_reg, sp)
        self._reg_write(self._pc_reg, pc)
        self._pc = pc

    def set_result(self, value: int) -> None:
        if self.space.active is not self:
            self._activate()
        self._result.value = value & MASK64
        self._write(self._uch, self._result_reg, self._result_ptr)

    def set_tls(self, value: int) -> None:
        self._reg_write(self._tls_reg, value)

    def get_tls(self) -> int:
        return self._reg_read(self._tls_reg)

    def set_sp(self, value: int) -> None:
        """The stack pointer (a clone child's new stack)."""
        self._reg_write(self._sp_reg, value)

    def set_gs(self, value: int) -> None:
        """x86-64's second segment base (arch_prctl ARCH_SET_GS)."""
        self._reg_write(X86.UC_X86_REG_GS_BASE, value)

    def get_gs(self) -> int:
        return self._reg_read(X86.UC_X86_REG_GS_BASE)

    def pc(self) -> int:
        return self._pc

    def cpu_time_ns(self) -> int:
        """Time spent running guest code (the emulator is single-threaded and CPU-bound:
        its time inside emu_start is the guest's CPU time, the syscalls' share aside)."""
        started = self._slice_start
        return self._run_ns + (_clock() - started if started else 0)

    # --- the whole user state (signal frames) ------------------------------------------------
    def _forget_exception(self) -> None:
        """QEMU remembers the last contributory exception (#DE, #TS..#GP) until one is
        delivered through the IDT, which a hook-caught one never is: the next would
        become a double fault, the one after a triple fault (a halt). A program whose
        SIGFPE handler returns or longjmps must see its next #DE as #DE: clear it."""
        off = _old_exception_offset()
        if off is None:
            return
        if self.space.active is not self:
            self._activate()
        ctx = ctypes.c_void_p()
        if _lib.uc_context_alloc(self._uch, ctypes.byref(ctx)):
            return
        try:
            if not _lib.uc_context_save(self._uch, ctx):
                ctypes.memmove(ctx.value + off, b"\xff\xff\xff\xff", 4)
                _lib.uc_context_restore(self._uch, ctx)
        finally:
            _lib.uc_context_free(ctx)

    def get_sp(self) -> int:
        return self._reg_read(self._sp_reg)

    def _read_all(self, ids) -> bytes:
        """The registers `ids`, each in a 16-byte little-endian slot."""
        if self.space.active is not self:
            self._activate()
        arr, buf, ptrs, n = _batch(ids)
        ctypes.memset(buf, 0, 16 * n)
        _check(_lib.uc_reg_read_batch(self._uch, arr, ptrs, n), "cannot read the registers")
        return buf.raw

    def _write_all(self, ids, slots: bytes) -> None:
        """Load the registers `ids` from 16-byte slots."""
        if self.space.active is not self:
            self._activate()
        arr, buf, ptrs, n = _batch(ids)
        ctypes.memmove(buf, slots, 16 * n)
        _check(_lib.uc_reg_write_batch(self._uch, arr, ptrs, n), "cannot write the registers")

    def get_context(self):
        """Every user register (see sentry/platform/context.py). x86-64's FP/SIMD state
        is given as the FXSAVE image the CPU model would store."""
        from sentry.platform.context import A64Context, X86Context
        if self.arch == "x86_64":
            raw = self._read_all(_X86_CONTEXT)
            ctx = X86Context.__new__(X86Context)
            for i, name in enumerate(_X86_SLOTS):
                setattr(ctx, name, int.from_bytes(raw[16 * i:16 * i + 8], "little"))
            ctx.rip = self._pc
            k = len(_X86_SLOTS)
            fcw, fsw, tag, mxcsr = (int.from_bytes(raw[16 * (k + j):16 * (k + j) + 8], "little") for j in range(4))
            fcw, fsw, tag = fcw & 0xFFFF, fsw & 0xFFFF, tag & 0xFFFF
            top = (fsw >> 11) & 7
            ftw = sum(1 << i for i in range(8) if (tag >> (2 * i)) & 3 != 3)  # abridged: physical order
            fx = bytearray(512)
            struct.pack_into("<HHB", fx, 0, fcw, fsw, ftw)
            struct.pack_into("<II", fx, 24, mxcsr & 0xFFFFFFFF, 0xFFFF)
            fp = 16 * (k + 4)  # FP0..FP7, physical order
            for i in range(8):  # ST(i) in stack order
                phys = (top + i) & 7
                fx[32 + 16 * i:42 + 16 * i] = raw[fp + 16 * phys:fp + 16 * phys + 10]
            xmm = fp + 16 * 8
            fx[160:416] = raw[xmm:xmm + 256]
            ctx.fpu, ctx.xfeatures = bytes(fx), 0
            return ctx
        raw = self._read_all(_A64_CONTEXT)

        def word(i):
            return int.from_bytes(raw[16 * i:16 * i + 8], "little")
        ctx = A64Context.__new__(A64Context)
        ctx.x = [word(i) for i in range(31)]
        ctx.sp = word(31)
        ctx.pc = self._pc
        ctx.pstate = word(32) & 0xF0000000  # EL0t, flags
        ctx.tpidr = word(33)
        ctx.v = [int.from_bytes(raw[16 * (34 + i):16 * (35 + i)], "little") for i in range(32)]
        ctx.fpsr = word(66) & 0xFFFFFFFF
        ctx.fpcr = word(67) & 0xFFFFFFFF
        return ctx

    def set_context(self, ctx) -> None:
        """Load every user register from ctx."""
        if self.arch == "x86_64":
            slots = bytearray(16 * len(_X86_CONTEXT))
            for i, name in enumerate(_X86_SLOTS):
                struct.pack_into("<Q", slots, 16 * i, getattr(ctx, name) & MASK64)
            k = len(_X86_SLOTS)
            fx = ctx.fpu
            fcw, fsw, ftw = struct.unpack_from("<HHB", fx, 0)
            top = (fsw >> 11) & 7
            tag = sum(0 if ftw >> i & 1 else 3 << (2 * i) for i in range(8))
            mxcsr = struct.unpack_from("<I", fx, 24)[0]
            for j, v in enumerate((fcw, fsw, tag, mxcsr)):
                struct.pack_into("<Q", slots, 16 * (k + j), v)
            fp = 16 * (k + 4)
            for i in range(8):
                phys = (top + i) & 7
                slots[fp + 16 * phys:fp + 16 * phys + 10] = fx[32 + 16 * i:42 + 16 * i]
            xmm = fp + 16 * 8
            slots[xmm:xmm + 256] = fx[160:416]
            self._write_all(_X86_CONTEXT, bytes(slots))
            self._reg_write(X86.UC_X86_REG_RIP, ctx.rip)
            self._pc = ctx.rip & MASK64
            return
        slots = bytearray(16 * len(_A64_CONTEXT))
        for i in range(31):
            struct.pack_into("<Q", slots, 16 * i, ctx.x[i] & MASK64)
        struct.pack_into("<Q", slots, 16 * 31, ctx.sp & MASK64)
        struct.pack_into("<Q", slots, 16 * 32, ctx.pstate & 0xF0000000)
        struct.pack_into("<Q", slots, 16 * 33, ctx.tpidr & MASK64)
        for i in range(32):
            slots[16 * (34 + i):16 * (35 + i)] = (ctx.v[i] & ((1 << 128) - 1)).to_bytes(16, "little")
        struct.pack_into("<Q", slots, 16 * 66, ctx.fpsr & 0xFFFFFFFF)
        struct.pack_into("<Q", slots, 16 * 67, ctx.fpcr & 0xFFFFFFFF)
        self._write_all(_A64_CONTEXT, bytes(slots))
        self._reg_write(A64.UC_ARM64_REG_PC, ctx.pc)
        self._pc = ctx.pc & MASK64

    # --- running ------------------------------------------------------------------------------
    def resume(self) -> None:
        """Queue for a turn on the emulator (the platform's next_stop runs it)."""
        if not self.queued:
            self.queued = True
            self.platform.ready.append(self)

    def answer(self, value: int) -> None:
        """set_result then resume."""
        self.set_result(value)
        self.resume()

    _stop_requested = False

    def request_stop(self) -> None:
        """Only the loop's thread runs guests, and it is not running one now: the next
        run() stops at once (a PreemptStop), so that a signal for a task that would run
        long without a syscall (a compute loop waiting for SIGALRM) is taken first."""
        self._stop_requested = True

    def run(self, count: int = 0):
        """Run until the guest makes a syscall or faults, or after `count` instructions."""
        if self._killed:
            return ExitStop(signal.SIGKILL)
        if self._stop_requested:
            self._stop_requested = False
            return PreemptStop()
        uch = self._uch
        if self.space.active is not self:
            self._activate()
        hooked = self._hooked
        hooked._why = _NOTHING
        t = self._slice_start = _clock()
        limit = count
        space = self.space
        left = hooked._left
        if (count or self.platform.wakeable) and left is None and _COUNTDOWN is not None:
            left = hooked._countdown()
        if left is not None:
            left.value = max(1, count * SLICE_BLOCKS // SLICE_INSNS) if count else _UNBOUNDED
            limit = 0
        elif count:
            space.counted = True
        elif space.counted and len(space.threads) > 1:
            # Threads come back to slices soon: keep unicorn's count hook in, as taking it
            # out (and putting it back) flushes every translation of the process's code.
            limit = _UNBOUNDED
        err = self._emu_start(uch, self._pc, _END, 0, limit)
        self._slice_start = 0  # read by cpu_time_ns() from a watchdog thread while running
        self._run_ns += _clock() - t
        if hooked is not self:
            self._why, self._info = hooked._why, hooked._info
            hooked._info = None
        self._read_batch(uch, self._ids, self._ptrs, self._n)
        v = _STOP_REGS(self._vals)
        self._pc = v[7]
        if self._why == _SYSCALL and not err:
            return SyscallStop(v[0], v[1:7])
        if self._why == _NOTHING and not err and not self._killed and (count or left is not None and left.value <= 0):
            # The slice is used up. (A `hlt` in a counted slice is taken for this too and
            # the task goes on after it; outside slices it is a fault, as on Linux.)
            return PreemptStop()
        return self._fault(err)

    def _fault(self, err: int):
        if self._killed:
            return ExitStop(signal.SIGKILL)
        pc, why, info = self._pc, self._why, self._info
        self._info = None
        if why == _MEM:
            access, addr = info
            what, cause = _MEM_ACCESS.get(access, ("access", ""))
            if what == "fetch":
                return FaultStop(signal.SIGSEGV, addr, pc, f"fetch from {addr:#x}{cause}"
                                 + (f" (jump target {pc:#x})" if addr != pc else ""))
            return FaultStop(_ERR_SIGNAL.get(err, signal.SIGSEGV), addr, pc,
                             f"invalid {what} at {addr:#x}{cause} by {self._insn(pc)}")
        if why == _INTR:
            at = pc
            if self.arch == "x86_64" and info in _CONTRIBUTORY:
                self._forget_exception()
            if self.arch == "x86_64":
                signo, what = _X86_VECTOR.get(info, (signal.SIGSEGV, f"CPU exception {info}"))
                if info == 3 or info == 0x80:
                    at = pc - (1 if info == 3 else 2)  # a software interrupt: pc is already past it
            elif info == _EXCP_BKPT:
                signo, what = signal.SIGTRAP, "breakpoint"
            elif info == _EXCP_UDEF:
                signo, what = signal.SIGILL, "invalid instruction"
            else:
                signo, what = signal.SIGILL, f"CPU exception {info}"
            return FaultStop(signo, at, pc, f"{what} at {at:#x}: {self._insn(at)}")
        if err == UC.UC_ERR_INSN_INVALID:
            return FaultStop(signal.SIGILL, pc, pc, f"invalid instruction at {pc:#x}: {self._insn(pc)}")
        if err in _ERR_SIGNAL:
            return FaultStop(_ERR_SIGNAL[err], pc, pc, f"{_lib.uc_strerror(err).decode()} at {self._insn(pc)}")
        if err:
            return FaultStop(signal.SIGSEGV, pc, pc, f"emulation failed at {pc:#x}: {_lib.uc_strerror(err).decode()}")
        # Stopped with nothing recorded: the CPU halted (it runs in supervisor mode). aarch64
        # `wfi` is a hint in user mode on Linux: carry on. x86 `hlt` is privileged: #GP, SIGSEGV,
        # with the pc left on the instruction.
        before = pc - 4 if self.arch == "aarch64" else pc - 1
        try:
            insn = self.space.read(before, pc - before)
        except Errno:
            insn = b""
        if insn == _A64_WFI:
            return self.run()
        if insn == b"\xf4":
            self._pc = pc = before
        return FaultStop(signal.SIGSEGV, 0, pc, f"privileged instruction at {pc:#x}: {self._insn(pc)}")

    def _insn(self, pc: int) -> str:
        """`mnemonic operands` of the instruction at pc, decoded with capstone."""
        try:
            code = self.space.read(pc, 16 if self.arch == "x86_64" else 4)
        except Errno:
            try:
                code = self.space.read(pc, ((pc | (PAGE - 1)) + 1) - pc)
            except Errno:
                return "an unreadable instruction"
        try:
            import capstone
            md = capstone.Cs(getattr(capstone, self._cs[0]), getattr(capstone, self._cs[1]))
            for insn in md.disasm(code, pc, 1):
                return f"`{insn.mnemonic} {insn.op_str}`" if insn.op_str else f"`{insn.mnemonic}`"
        except Exception:
            pass
        size = 4 if self.arch == "aarch64" else min(len(code), 8)
        return "undecodable bytes " + code[:size].hex(" ")

    def interrupt(self) -> None:
        """From any thread: the running emulation stops and run() reports SIGKILL."""
        self.kill()

    def kill(self) -> None:
        """Stop for good (there is nothing to reap)."""
        self._killed = True
        if self._uch is not None:
            self._stop(self._uch)  # in case it is running (from another thread): a no-op otherwise
