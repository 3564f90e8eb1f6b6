"""The sandbox's virtual x86-64 CPU (issue 15): what cpuid answers a guest, what rdtsc
and rdtscp read, and what /proc/cpuinfo shows, from one description.

It starts from the real CPU's answers (`raw`: the host's on ptrace, sentry/hostcpu.py;
the emulated model's on unicorn) so that a program only uses features the CPU has
(glibc picks its string functions from them and sizes copies from the cache leaves 4
and 0x80000006), and hides what names the machine: the hypervisor bit is clear and the
hypervisor leaves 0x40000000.. answer zeros, the brand string is BRAND, the family,
model and stepping are a fixed signature per vendor, the serial number (leaf 3) is
zero, and the APIC ids and topology leaves (1 EBX, 4, 0xb, 0x1f, AMD's 0x80000008 and
0x8000001e) describe the sandbox's CPUs, one core each, one package. Still the host's:
the vendor, the feature bits, cache sizes, address sizes and the TSC's rate.

The per-thread controls are the guest's own, kept on its Task as Linux keeps them per
thread (syscalls/cpuctl.py): prctl(PR_SET_TSC, PR_TSC_SIGSEGV) (`tsc_sigsegv`, kept
across execve) and arch_prctl(ARCH_SET_CPUID, 0) (`cpuid_faulting`, reset by execve);
with them set the instruction is a general protection fault (SIGSEGV, SI_KERNEL), as
on Linux.
"""
import os

BRAND = b"sentry virtual CPU"
RDTSC, RDTSCP, CPUID = "rdtsc", "rdtscp", "cpuid"
# the instructions, as the faulting bytes at the guest's pc show them: (kind, length)
OPCODES = {b"\x0f\x31": (RDTSC, 2), b"\x0f\x01\xf9": (RDTSCP, 3), b"\x0f\xa2": (CPUID, 2)}
# fixed (family, model, stepping) per vendor: real parts that glibc's tuning treats as
# generic (Intel Ice Lake-SP, AMD Milan); another vendor keeps its own
SIGNATURES = {b"GenuineIntel": (6, 0x6A, 6), b"AuthenticAMD": (0x19, 0x01, 1)}
_RAW_CACHE_MAX = 4096  # leaves remembered: a guest cannot grow the sentry by asking


def decode(code: bytes):
    """(kind, length) of the rdtsc, rdtscp or cpuid at the start of code, else None."""
    return OPCODES.get(code[:2]) or OPCODES.get(code[:3])


def ncpus() -> int:
    """The sandbox's CPU count (its sched view: syscalls/sched.py)."""
    return max(1, min(os.cpu_count() or 1, 64))


def cpu_of(task) -> int:
    """The CPU a task is on in the sandbox's view: getcpu's answer, the lowest of its affinity."""
    mask = getattr(task, "sched_affinity", None) or (1 << ncpus()) - 1
    return (mask & -mask).bit_length() - 1


def _signature(family: int, model: int, stepping: int) -> int:
    base_family, ext_family = (family, 0) if family < 0xF else (0xF, family - 0xF)
    return (ext_family << 20) | ((model >> 4) << 16) | (base_family << 8) | ((model & 0xF) << 4) | stepping


class VirtualCpu:
    def __init__(self, raw, count: int | None = None, cpuid_fault: bool = True):
        self._raw_fn = raw
        self._raw = {}
        self.count = count or ncpus()
        self.cpuid_fault = cpuid_fault  # can a thread have cpuid fault (ARCH_SET_CPUID)?
        v = self.raw(0)
        self.max_leaf = v[0]
        self.vendor = b"".join(x.to_bytes(4, "little") for x in (v[1], v[3], v[2]))
        self.max_ext = self.raw(0x80000000)[0]
        sig = self.raw(1)[0]
        family = (sig >> 8) & 0xF
        model = (sig >> 4) & 0xF
        if family == 0xF:
            family += (sig >> 20) & 0xFF
        if family >= 6:
            model |= ((sig >> 16) & 0xF) << 4
        self.family, self.model, self.stepping = SIGNATURES.get(self.vendor, (family, model, sig & 0xF))
        self.signature = _signature(self.family, self.model, self.stepping)

    def raw(self, leaf: int, subleaf: int = 0):
        key = (leaf, subleaf)
        v = self._raw.get(key)
        if v is None:
            v = tuple(self._raw_fn(leaf, subleaf))
            if len(self._raw) < _RAW_CACHE_MAX:
                self._raw[key] = v
        return v

    def cpuid(self, leaf: int, subleaf: int = 0, cpu: int = 0) -> tuple[int, int, int, int]:
        """(eax, ebx, ecx, edx) for leaf and subleaf, asked on the sandbox's CPU `cpu`."""
        leaf &= 0xFFFFFFFF
        subleaf &= 0xFFFFFFFF
        n = self.count
        if 0x40000000 <= leaf <= 0x4FFFFFFF or leaf == 3:  # hypervisor leaves, serial number
            return 0, 0, 0, 0
        if 0x80000002 <= leaf <= 0x80000004 and leaf <= self.max_ext:
            brand = BRAND.ljust(48, b"\0")[(leaf - 0x80000002) * 16:][:16]
            return tuple(int.from_bytes(brand[i:i + 4], "little") for i in range(0, 16, 4))
        eax, ebx, ecx, edx = self.raw(leaf, subleaf)
        if leaf == 1:
            # APIC id, logical processors per package, CLFLUSH line size kept; no hypervisor
            ebx = (cpu << 24) | (min(n, 255) << 16) | (ebx & 0xFF00)
            return self.signature, ebx, ecx & ~(1 << 31), edx | (1 << 28 if n > 1 else 0)
        if leaf == 4 and self.vendor == b"GenuineIntel" and leaf <= self.max_leaf:
            if eax & 0x1F:  # a cache shared by one CPU (L1, L2) or all (L3); n cores a package
                sharing = n - 1 if (eax >> 5) & 7 >= 3 else 0
                eax = (eax & 0x3FFF) | (min(sharing, 0xFFF) << 14) | (min(n - 1, 63) << 26)
            return eax, ebx, ecx, edx
        if leaf in (0xB, 0x1F) and leaf <= self.max_leaf:
            if subleaf == 0:  # SMT level: one thread a core
                return 0, 1, 0x100, cpu
            if subleaf == 1:  # core level: n cores
                return max(0, (n - 1).bit_length()), n, 0x201, cpu
            return 0, 0, subleaf & 0xFF, cpu
        if leaf == 0x80000008 and self.vendor == b"AuthenticAMD":
            ecx = (ecx & ~0xF0FF) | ((n - 1) & 0xFF) | (max(0, (n - 1).bit_length()) << 12)
        elif leaf == 0x8000001E and self.vendor == b"AuthenticAMD":
            return cpu, cpu & 0xFF, 0, 0
        return eax, ebx, ecx, edx

    # --- /proc/cpuinfo ------------------------------------------------------------------------
    def flags(self) -> list[str]:
        """Linux's cpuinfo flag names of the features the virtual CPU reports."""
        out = []
        invariant_tsc = False
        for (leaf, sub, reg), names in _FLAG_REGS.items():
            if leaf > (self.max_ext if leaf >= 0x80000000 else self.max_leaf):
                continue
            value = self.cpuid(leaf, sub)["abcd".index(reg)]
            out += [name for bit, name in enumerate(names) if name and value >> bit & 1]
            if (leaf, reg) == (0x80000007, "d"):
                invariant_tsc = bool(value >> 8 & 1)
        if invariant_tsc:
            out += ["constant_tsc", "nonstop_tsc"]
        if self.cpuid_fault:
            out.append("cpuid_fault")
        return out

    def cpuinfo(self) -> str:
        """The x86 /proc/cpuinfo of the sandbox's CPUs."""
        mhz = (self.cpuid(0x16)[0] if self.max_leaf >= 0x16 else 0) or 2000
        cache_kb = 0
        if self.vendor == b"GenuineIntel" and self.max_leaf >= 4:
            for i in range(16):
                a, b, c, _ = self.cpuid(4, i)
                if not a & 0x1F:
                    break
                cache_kb = (((b >> 22) + 1) * (((b >> 12) & 0x3FF) + 1) * ((b & 0xFFF) + 1) * (c + 1)) >> 10
        elif self.max_ext >= 0x80000006:
            c, d = self.cpuid(0x80000006)[2:]
            cache_kb = max(c >> 16, (d >> 18) * 512)
        sizes = self.cpuid(0x80000008)[0] if self.max_ext >= 0x80000008 else 0x3028
        flags = " ".join(self.flags())
        line = ((self.cpuid(1)[1] >> 8) & 0xFF) * 8 or 64
        out = []
        for i in range(self.count):
            out.append(
                f"processor\t: {i}\nvendor_id\t: {self.vendor.decode('ascii', 'replace')}\n"
                f"cpu family\t: {self.family}\nmodel\t\t: {self.model}\nmodel name\t: {BRAND.decode()}\n"
                f"stepping\t: {self.stepping}\nmicrocode\t: 0x1\ncpu MHz\t\t: {mhz:.3f}\n"
                f"cache size\t: {cache_kb} KB\nphysical id\t: 0\nsiblings\t: {self.count}\ncore id\t\t: {i}\n"
                f"cpu cores\t: {self.count}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\n"
                f"fpu_exception\t: yes\ncpuid level\t: {self.max_leaf}\nwp\t\t: yes\nflags\t\t: {flags}\n"
                f"bugs\t\t:\nbogomips\t: {2 * mhz:.2f}\nclflush size\t: {line}\ncache_alignment\t: {line}\n"
                f"address sizes\t: {sizes & 0xFF} bits physical, {(sizes >> 8) & 0xFF} bits virtual\n"
                f"power management:\n\n")
        return "".join(out)


def execute(task, kind: str, rax: int, rcx: int):
    """What the instruction leaves in (rax, rbx, rcx, rdx) for task (None: a register it
    keeps), or None altogether when the guest's own setting makes it fault."""
    if kind == CPUID:
        if getattr(task, "cpuid_faulting", False):
            return None
        return of(task.kernel).cpuid(rax, rcx, cpu_of(task))
    if getattr(task, "tsc_sigsegv", False):
        return None
    from sentry import clock
    tsc = clock.of(task.kernel).tsc()
    lo, hi = tsc & 0xFFFFFFFF, tsc >> 32
    return (lo, None, cpu_of(task), hi) if kind == RDTSCP else (lo, None, None, hi)


def of(kernel) -> VirtualCpu:
    """The sandbox's virtual CPU, made on first use from its platform's raw cpuid."""
    v = getattr(kernel, "vcpu", None)
    if v is None:
        platform = getattr(kernel, "platform", None)
        raw = getattr(platform, "raw_cpuid", None)
        if raw is None:
            from sentry import hostcpu
            raw = hostcpu.cpuid
        # ptrace: only where the host CPU has CPUID faulting (PtracePlatform.cpuid_trapped)
        v = kernel.vcpu = VirtualCpu(raw, cpuid_fault=getattr(platform, "cpuid_trapped", True) is not False)
    return v


def _bits(names: str) -> list[str]:
    return ["" if n == "-" else n for n in names.split()]


# Linux's cpuinfo names (arch/x86/include/asm/cpufeatures.h) of the CPUID bits by (leaf,
# subleaf, register), bit 0 first; "-" where Linux shows none.
_FLAG_REGS = {
    (1, 0, "d"): _bits("fpu vme de pse tsc msr pae mce cx8 apic - sep mtrr pge mca cmov pat pse36 pn "
                       "clflush - dts acpi mmx fxsr sse sse2 ss ht tm ia64 pbe"),
    (1, 0, "c"): _bits("pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 cid sdbg fma cx16 xtpr "
                       "pdcm - pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave - "
                       "avx f16c rdrand hypervisor"),
    (0x80000001, 0, "d"): _bits("- - - - - - - - - - - syscall - - - - - - - mp nx - mmxext - - fxsr_opt "
                                "pdpe1gb rdtscp - lm 3dnowext 3dnow"),
    (0x80000001, 0, "c"): _bits("lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch "
                                "osvw ibs xop skinit wdt - lwp fma4 tce - nodeid_msr - tbm topoext perfctr_core "
                                "perfctr_nb - bpext ptsc perfctr_llc mwaitx"),
    (7, 0, "b"): _bits("fsgsbase tsc_adjust sgx bmi1 hle avx2 - smep bmi2 erms invpcid rtm cqm - mpx rdt_a "
                       "avx512f avx512dq rdseed adx smap avx512ifma - clflushopt clwb intel_pt avx512pf "
                       "avx512er avx512cd sha_ni avx512bw avx512vl"),
    (7, 0, "c"): _bits("- avx512vbmi umip pku ospke waitpkg avx512_vbmi2 - gfni vaes vpclmulqdq avx512_vnni "
                       "avx512_bitalg tme avx512_vpopcntdq - la57 - - - - - rdpid - bus_lock_detect cldemote "
                       "- movdiri movdir64b enqcmd sgx_lc -"),
    (7, 0, "d"): _bits("- - avx512_4vnniw avx512_4fmaps fsrm - - - avx512_vp2intersect srbds_ctrl md_clear "
                       "rtm_always_abort - tsx_force_abort serialize hybrid_cpu tsxldtrk - pconfig arch_lbr "
                       "ibt - amx_bf16 avx512_fp16 amx_tile amx_int8 ibrs stibp flush_l1d arch_capabilities "
                       "core_capabilities ssbd"),
    (7, 1, "a"): _bits("- - - - avx_vnni avx512_bf16 - cmpccxadd - - fzrm fsrs fsrc - - - - - - - - - lkgs "
                       "- - - amx_fp16 - - - - -"),
    (0xD, 1, "a"): _bits("xsaveopt xsavec xgetbv1 xsaves xfd"),
    (0x80000007, 0, "d"): [],  # read for the invariant TSC (constant_tsc, nonstop_tsc)
}
