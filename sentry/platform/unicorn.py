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

Guest pages live in host memory the platform allocates (anonymous mmap) and
hands to unicorn with uc_mem_map_ptr: unicorn then splits regions for a
partial unmap or mprotect by re-pointing them instead of copying the whole
region, and a large mapping costs nothing until it is touched.
"""
import bisect
import ctypes
import errno
import mmap
import signal
import struct
import sys

import unicorn.arm64_const as A64
import unicorn.unicorn_const as UC
import unicorn.x86_const as X86
from unicorn.unicorn_py3.unicorn import uclib as _lib

from sentry.errors import Errno, SentryError
from sentry.platform import ExitStop, FaultStop, SyscallStop

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
_HOOK_MEM_INVALID = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64,
                                     ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)

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


def _check(err: int, what: str) -> None:
    if err:
        raise SentryError(f"unicorn: {what}: {_lib.uc_strerror(err).decode()}")


class UnicornPlatform:
    name = "unicorn"

    def __init__(self, arch: str):
        if arch not in _ARCHS:
            raise SentryError(f"the unicorn platform runs x86_64 and aarch64 programs, not {arch}", 126)
        self.arch = arch

    def new_process(self):
        """A fresh empty address space (one Uc) and its one CPU."""
        space = UnicornSpace(self.arch)
        return space, space.cpu


# --- host memory ------------------------------------------------------------------------------
class _HostMemory:
    """Anonymous host pages, allocated lazily by the host kernel (MAP_NORESERVE)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_long)
        self._munmap = libc.munmap
        self._munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._madvise = getattr(libc, "madvise", None)
        if self._madvise is not None:
            self._madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        self._mremap = getattr(libc, "mremap", None) if sys.platform.startswith("linux") else None
        if self._mremap is not None:
            self._mremap.restype = ctypes.c_void_p
            self._mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int)
        self.page = mmap.PAGESIZE
        self._flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        if sys.platform.startswith("linux"):
            self._flags |= 0x4000  # MAP_NORESERVE: a 100 MiB heap costs what the guest touches
        self._dontneed = 4 if sys.platform.startswith("linux") else None  # MADV_DONTNEED

    def round(self, size: int) -> int:
        return (size + self.page - 1) & -self.page

    def alloc(self, size: int) -> int:
        addr = self._mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, self._flags, -1, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise Errno(errno.ENOMEM)
        return addr

    def free(self, addr: int, size: int) -> None:
        self._munmap(addr, size)

    def release(self, addr: int, size: int) -> None:
        """Give back the host pages inside [addr, addr+size) but keep the range reserved."""
        lo, hi = self.round(addr), (addr + size) & -self.page
        if self._dontneed is not None and hi > lo:
            self._madvise(lo, hi - lo, self._dontneed)

    def grow(self, addr: int, size: int, new_size: int):
        """mremap the whole block (its pages move, no copy); None where the host has no mremap."""
        if self._mremap is None:
            return None
        new = self._mremap(addr, size, new_size, 1)  # MREMAP_MAYMOVE
        return None if new in (None, ctypes.c_void_p(-1).value) else new


class _Block:
    """One host allocation; freed when no guest page refers to it any more."""
    __slots__ = ("addr", "size", "live")

    def __init__(self, addr: int, size: int, live: int):
        self.addr, self.size, self.live = addr, size, live


_host = None


def _host_memory() -> _HostMemory:
    global _host
    if _host is None:
        _host = _HostMemory()
    return _host


class UnicornSpace:
    """One Uc: the guest's address space. Its mapped regions are recorded here
    exactly as unicorn holds them ([start, end, uc perms, block, host address of start])
    so that every guest page knows the host page that backs it."""

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
        self._regions = []  # [start, end, perms, block, host], same order
        self.cpu = UnicornCpu(self, arch)

    # --- the region record ------------------------------------------------------------------
    def _split_at(self, addr: int) -> None:
        """Make addr a region boundary in the record (unicorn splits its own when asked)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if r[0] < addr < r[1]:
                right = [addr, r[1], r[2], r[3], r[4] + (addr - r[0])]
                r[1] = addr
                self._regions.insert(i + 1, right)
                self._starts.insert(i + 1, addr)

    def _span(self, start: int, end: int):
        """Indexes [i, j) of the regions inside [start, end), after splitting at both ends."""
        self._split_at(start)
        self._split_at(end)
        i = bisect.bisect_left(self._starts, start)
        j = bisect.bisect_left(self._starts, end, i)
        return i, j

    def _remove(self, start: int, end: int) -> list:
        """Unmap [start, end) from unicorn and the record; returns the removed regions
        (their host pages still allocated: the caller releases or moves them)."""
        i, j = self._span(start, end)
        removed = self._regions[i:j]
        for r in removed:
            _check(_lib.uc_mem_unmap(self._uch, r[0], r[1] - r[0]), f"cannot unmap {r[0]:#x}")
        del self._regions[i:j]
        del self._starts[i:j]
        return removed

    def _release(self, regions) -> None:
        host = self._host
        for r in regions:
            block = r[3]
            block.live -= r[1] - r[0]
            if block.live == 0:
                host.free(block.addr, block.size)
            else:
                host.release(r[4], r[1] - r[0])

    def _add(self, start: int, end: int, perms: int, block: _Block, host: int) -> None:
        err = _lib.uc_mem_map_ptr(self._uch, start, end - start, perms, host)
        if err:
            raise Errno(errno.ENOMEM if err == UC.UC_ERR_NOMEM else errno.EINVAL)
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._regions.insert(i, [start, end, perms, block, host])

    # --- the interface ----------------------------------------------------------------------
    def map(self, start: int, length: int, prot: int) -> None:
        """Anonymous zeroed pages at exactly [start, start+length), replacing what was there."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if length <= 0:
            return
        self._release(self._remove(start, start + length))
        size = self._host.round(length)
        block = _Block(self._host.alloc(size), size, length)
        try:
            self._add(start, start + length, _UC_PROT[prot & 7], block, block.addr)
        except BaseException:
            self._host.free(block.addr, size)
            raise

    def unmap(self, start: int, length: int) -> None:
        """Unmap whatever is mapped in [start, start+length); holes are fine."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        if length > 0:
            self._release(self._remove(start, start + length))

    def protect(self, start: int, length: int, prot: int) -> None:
        """Change the protection of the mapped pages in [start, start+length)."""
        if (start | length) & (PAGE - 1):
            raise Errno(errno.EINVAL)
        self._protect(start, length, _UC_PROT[prot & 7])

    def _protect(self, start: int, length: int, perms: int) -> None:
        i, j = self._span(start, start + length)
        for r in self._regions[i:j]:
            if r[2] != perms:
                _check(_lib.uc_mem_protect(self._uch, r[0], r[1] - r[0], perms), f"cannot protect {r[0]:#x}")
                if perms & ~r[2] & UC.UC_PROT_EXEC:
                    self._drop_code(r[0], r[1])  # written while not executable: translate afresh
                r[2] = perms

    def move(self, old: int, old_len: int, new: int, new_len: int) -> None:
        """mremap: the first min(old_len, new_len) bytes of old appear at new, the rest
        is zero; the old range is unmapped; protections follow the pages."""
        if (old | old_len | new | new_len) & (PAGE - 1) or new_len <= 0:
            raise Errno(errno.EINVAL)
        old_regions = self._remove(old, old + old_len)
        self._release(self._remove(new, new + new_len))
        keep = min(old_len, new_len)
        perms = old_regions[-1][2] if old_regions else UC.UC_PROT_READ | UC.UC_PROT_WRITE
        host = self._host
        size = host.round(new_len)
        block = None
        if len(old_regions) == 1:
            r = old_regions[0]
            b = r[3]
            if r[0] == old and r[4] == b.addr and b.live == r[1] - r[0] == old_len and b.size == host.round(old_len):
                # the whole of one host block moves: let the host kernel move its pages
                addr = host.grow(b.addr, b.size, size)
                if addr is not None:
                    block = _Block(addr, size, new_len)
                    b.live = 0
        if block is None:
            block = _Block(host.alloc(size), size, new_len)
            for r in old_regions:
                lo, hi = r[0], min(r[1], old + keep)
                if hi > lo:
                    ctypes.memmove(block.addr + (lo - old), r[4], hi - lo)
            self._release(old_regions)
        try:
            self._add(new, new + new_len, perms, block, block.addr)
        except BaseException:
            host.free(block.addr, block.size)
            raise
        for r in old_regions:  # mixed protections: each page keeps its own
            lo, hi = r[0], min(r[1], old + keep)
            if hi > lo and r[2] != perms:
                self._protect(new + (lo - old), hi - lo, r[2])

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        if _lib.uc_mem_read(self._uch, addr, buf, size):
            raise Errno(errno.EFAULT)
        return buf.raw

    def write(self, addr: int, data) -> None:
        """Store data, whatever the protections. Unicorn does not drop code it has translated
        from pages written this way (guest stores are tracked, uc_mem_write is not), so a
        write into an executable page also drops the translations of those bytes."""
        if data.__class__ is not bytes:
            data = bytes(data)
        if not data:
            return
        if _lib.uc_mem_write(self._uch, addr, data, len(data)):
            raise Errno(errno.EFAULT)
        end = addr + len(data)
        regions = self._regions
        i = bisect.bisect_right(self._starts, addr) - 1
        while i < len(regions) and regions[i][0] < end:
            if regions[i][2] & UC.UC_PROT_EXEC:
                self._drop_code(addr, end)
                return
            i += 1

    def _drop_code(self, start: int, end: int) -> None:
        _lib.uc_ctl(self._uch, _CTL_REMOVE_CACHE, ctypes.c_uint64(start), ctypes.c_uint64(end))

    def regions(self) -> list:
        """(start, end, PROT_* bits) of every mapped region, for tests and debugging."""
        back = {v: p for p, v in enumerate(_UC_PROT)}
        return [(r[0], r[1], back[r[2]]) for r in self._regions]

    def close(self) -> None:
        """Release the Uc and every host page behind it."""
        if self._uch is None:
            return
        self.cpu.kill()
        _lib.uc_close(self._uch)
        self._uch = None
        self.cpu._uch = None
        freed = set()
        for r in self._regions:
            b = r[3]
            if id(b) not in freed:
                freed.add(id(b))
                self._host.free(b.addr, b.size)
        self._regions.clear()
        self._starts.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class UnicornCpu:
    """The CPU of one Uc: run to the next syscall or fault."""

    def __init__(self, space: UnicornSpace, arch: str):
        _, _, _, stop_regs, self._sp_reg, self._pc_reg, result_reg, self._tls_reg, self._cs = _ARCHS[arch]
        self.space = space
        self.arch = arch
        self._uch = space._uch
        self._why = _NOTHING
        self._info = None       # what the fault hooks recorded
        self._killed = False
        self._pc = 0
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
        # hooks: kept referenced, or ctypes frees the trampolines under unicorn
        self._hooks = []
        if arch == "x86_64":
            self._add_hook(UC.UC_HOOK_INSN, _HOOK_SYSCALL(self._on_syscall), ctypes.c_int(X86.UC_X86_INS_SYSCALL))
            self._add_hook(UC.UC_HOOK_INTR, _HOOK_INTR(self._on_intr))
            # SSE on, as Linux leaves it: CR0.EM clear, CR0.MP set; CR4.OSFXSR and CR4.OSXMMEXCPT set
            self._reg_write(X86.UC_X86_REG_CR0, (self._reg_read(X86.UC_X86_REG_CR0) & ~0x4) | 0x2)
            self._reg_write(X86.UC_X86_REG_CR4, self._reg_read(X86.UC_X86_REG_CR4) | 0x600)
        else:
            self._add_hook(UC.UC_HOOK_INTR, _HOOK_INTR(self._on_intr_a64))
            # FP/SIMD on at EL0 and EL1 (CPACR_EL1.FPEN = 0b11)
            cpacr = self._reg_read(A64.UC_ARM64_REG_CPACR_EL1)
            self._reg_write(A64.UC_ARM64_REG_CPACR_EL1, cpacr | (3 << 20))
        self._add_hook(UC.UC_HOOK_MEM_INVALID, _HOOK_MEM_INVALID(self._on_mem_invalid))
        self._stop = _lib.uc_emu_stop
        self._emu_start = _lib.uc_emu_start
        self._read_batch = _lib.uc_reg_read_batch
        self._write = _lib.uc_reg_write

    def _add_hook(self, kind: int, cb, *extra) -> None:
        handle = ctypes.c_size_t()
        _check(_lib.uc_hook_add(self._uch, ctypes.byref(handle), kind, cb, None, ctypes.c_uint64(1),
                                ctypes.c_uint64(0), *extra), "cannot add a hook")
        self._hooks.append(cb)

    # --- hooks: record and stop, nothing else -----------------------------------------------
    def _on_syscall(self, uch, _):
        self._why = _SYSCALL
        self._stop(uch)

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
        _check(_lib.uc_reg_read(self._uch, reg, ctypes.byref(self._scratch)), "cannot read a register")
        return self._scratch.value

    def _reg_write(self, reg: int, value: int) -> None:
        self._scratch.value = value & MASK64
        _check(_lib.uc_reg_write(self._uch, reg, ctypes.byref(self._scratch)), "cannot write a register")

    def set_entry(self, pc: int, sp: int) -> None:
        for reg in _CLEARED[self.arch]:
            self._reg_write(reg, 0)
        self._reg_write(self._sp_reg, sp)
        self._reg_write(self._pc_reg, pc)
        self._pc = pc

    def set_result(self, value: int) -> None:
        self._result.value = value & MASK64
        self._write(self._uch, self._result_reg, self._result_ptr)

    def set_tls(self, value: int) -> None:
        self._reg_write(self._tls_reg, value)

    def get_tls(self) -> int:
        return self._reg_read(self._tls_reg)

    def pc(self) -> int:
        return self._pc

    # --- running ------------------------------------------------------------------------------
    def run(self):
        """Run until the guest makes a syscall or faults."""
        if self._killed:
            return ExitStop(signal.SIGKILL)
        uch = self._uch
        self._why = _NOTHING
        err = self._emu_start(uch, self._pc, _END, 0, 0)
        self._read_batch(uch, self._ids, self._ptrs, self._n)
        v = _STOP_REGS(self._vals)
        self._pc = v[7]
        if self._why == _SYSCALL and not err:
            return SyscallStop(v[0], v[1:7])
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
        # Stopped with nothing recorded: the CPU halted. aarch64 `wfi` is a hint in user mode
        # on Linux: carry on; x86 `hlt` is privileged: #GP, SIGSEGV.
        if self.arch == "aarch64":
            try:
                if self.space.read(pc - 4, 4) == _A64_WFI:
                    return self.run()
            except Errno:
                pass
            at = self._pc = pc - 4
        else:
            at = self._pc = pc - 1  # a fault: the pc stays on the instruction
        return FaultStop(signal.SIGSEGV, 0, at, f"privileged instruction at {at:#x}: {self._insn(at)}")

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

    def kill(self) -> None:
        """Stop for good (there is nothing to reap)."""
        self._killed = True
        if self._uch is not None:
            self._stop(self._uch)  # in case it is running (from another thread): a no-op otherwise
