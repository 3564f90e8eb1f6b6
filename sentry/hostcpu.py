"""The host CPU's own rdtsc and cpuid, run by the sentry itself (x86-64 hosts).

The sandbox's TSC (sentry/clock.py) counts from the host's, and its virtual CPU
(sentry/vcpu.py) starts from the host's cpuid answers: both need the instructions,
which Python cannot issue, so a few bytes of machine code are mapped executable once
and called through ctypes. Off x86-64 hosts both are None.
"""
import ctypes
import mmap
import os

# cpuid(leaf, subleaf, uint32 out[4]): eax, ebx, ecx, edx (rbx is callee-saved: kept)
_CPUID = bytes.fromhex("53" "89f8" "89f1" "4989d0" "0fa2" "418900" "41895804" "41894808" "4189500c"
                       "5b" "c3")
# rdtsc() -> edx:eax as one uint64
_RDTSC = bytes.fromhex("0f31" "48c1e220" "4809d0" "c3")


def _load():
    if os.uname().machine != "x86_64":
        return None, None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        page.write(_CPUID.ljust(64, b"\xcc") + _RDTSC)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        mprotect = ctypes.CDLL(None, use_errno=True).mprotect
        mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if mprotect(addr, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC):
            return None, None
    except (OSError, ValueError):
        return None, None
    _load.page = page  # kept mapped for the life of the sentry
    return (ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)(addr),
            ctypes.CFUNCTYPE(ctypes.c_uint64)(addr + 64))


_cpuid_fn, rdtsc = _load()


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """The host's (eax, ebx, ecx, edx) for leaf and subleaf (zeros off x86-64)."""
    if _cpuid_fn is None:
        return 0, 0, 0, 0
    out = (ctypes.c_uint32 * 4)()
    _cpuid_fn(leaf & 0xFFFFFFFF, subleaf & 0xFFFFFFFF, ctypes.addressof(out))
    return tuple(out)
