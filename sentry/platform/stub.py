"""The stub: the tiny static program the ptrace platform execs in place of the guest.

The host kernel only ever loads this; the guest's image is then built by the
sentry through syscalls injected at STUB_SYSCALL. It is generated here as bytes
(an ELF header, two PT_LOADs and a few instructions), so nothing is compiled.
"""
import struct

STUB_BASE = 0x7FFFF8000000      # in the gap between the mmap area and the guest stack
STUB_SIZE = 0x2000              # one code page, one scratch page
STUB_SYSCALL = STUB_BASE + 0x100  # `syscall; int3`: an injected call ends in a SIGTRAP
STUB_TRAP = STUB_SYSCALL + 3      # rip after that int3
SCRATCH = STUB_BASE + 0x1000      # a writable page for injected calls' arguments

STUB_CODE = bytes([0x0F, 0x05, 0xCC, 0x0F, 0x0B])  # syscall; int3; ud2 (at STUB_SYSCALL)


def stub_elf() -> bytes:
    ehdr_size, phdr_size = 64, 56
    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0,          # ELFCLASS64, little endian, version, SYSV ABI
        2, 62, 1,                           # ET_EXEC, EM_X86_64, EV_CURRENT
        STUB_SYSCALL + 3 + 1,               # entry: the ud2 — it never runs untraced
        ehdr_size, 0, 0, ehdr_size, phdr_size, 3, 0, 0, 0)
    code_load = struct.pack("<IIQQQQQQ", 1, 5, 0, STUB_BASE, STUB_BASE, 0x105, 0x105, 0x1000)
    scratch = struct.pack("<IIQQQQQQ", 1, 6, 0, SCRATCH, SCRATCH, 0, 0x1000, 0x1000)
    gnu_stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)
    image = ehdr + code_load + scratch + gnu_stack
    return image.ljust(0x100, b"\0") + STUB_CODE


# seccomp: once the image is built, the host kernel accepts the calls the sentry
# injects, only from the stub's own syscall instruction (clone only with the flags the
# sentry uses: never CLONE_UNTRACED, nor anything else that would leave the tracer), and
# from anywhere else only what ptrace.py's PASSED_THROUGH lists (reads the sentry let
# through at their entry stop, and skipped calls). A call from the vsyscall page (the
# host kernel emulates it, with no ptrace syscall stop) goes to the tracer
# (SECCOMP_RET_TRACE), which answers it as a syscall. Anything else kills the process:
# guest syscalls reach the filter only when the sentry lets them on.
SECCOMP_SET_MODE_FILTER = 1
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_KILL_PROCESS = 0x80000000
_RET_TRACE = 0x7FF00000
_RET_ALLOW = 0x7FFF0000
VSYSCALL_PAGE = 0xFFFFFFFFFF600000
VSYSCALL_NRS = (96, 201, 309)  # gettimeofday, time, getcpu: the vsyscall page's three entries
_NR_CLONE = 56
# struct seccomp_data: nr, arch, instruction_pointer, args[6] (little endian: low word first)
_NR, _ARCH, _IP_LO, _IP_HI, _ARG0_LO, _ARG0_HI = 0, 4, 8, 12, 16, 20
_LD, _JEQ, _JA, _AND, _RET = 0x20, 0x15, 0x05, 0x54, 0x06


def _assemble(prog) -> bytes:
    """Classic BPF from (code, jt, jf, k) tuples and label strings: jt and jf, or ja's k,
    may name a label (every BPF jump goes forward)."""
    labels, at = {}, 0
    for ins in prog:
        if isinstance(ins, str):
            labels[ins] = at
        else:
            at += 1
    out, at = [], 0
    for ins in prog:
        if isinstance(ins, str):
            continue
        code, jt, jf, k = ins
        jt = labels[jt] - at - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - at - 1 if isinstance(jf, str) else jf
        k = labels[k] - at - 1 if isinstance(k, str) else k
        out.append(struct.pack("<HBBI", code, jt, jf, k))
        at += 1
    return b"".join(out)


def seccomp_filter(allowed_nrs, ip: int, anywhere=(), clone_flags=()) -> bytes:
    """A BPF program (struct sock_filter[]) for the rules above; the calls in `anywhere`
    are admitted from any instruction (see ptrace.py's passed-through reads), clone from
    ip only with one of clone_flags."""
    prog = [(_LD, 0, 0, _ARCH), (_JEQ, 0, "kill", _AUDIT_ARCH_X86_64), (_LD, 0, 0, _NR)]
    prog += [(_JEQ, "allow", 0, nr & 0xFFFFFFFF) for nr in anywhere]
    prog += [
        (_LD, 0, 0, _IP_HI), (_JEQ, 0, "stub", VSYSCALL_PAGE >> 32),
        (_LD, 0, 0, _IP_LO), (_AND, 0, 0, 0xFFFFF000), (_JEQ, 0, "kill", VSYSCALL_PAGE & 0xFFFFFFFF),
        (_LD, 0, 0, _NR)]
    prog += [(_JEQ, "trace", 0, nr) for nr in VSYSCALL_NRS]
    prog += [(_JA, 0, 0, "kill"),
             "stub", (_JEQ, 0, "kill", ip >> 32), (_LD, 0, 0, _IP_LO), (_JEQ, 0, "kill", ip & 0xFFFFFFFF),
             (_LD, 0, 0, _NR), (_JEQ, "clone", 0, _NR_CLONE)]
    prog += [(_JEQ, "allow", 0, nr) for nr in allowed_nrs if nr != _NR_CLONE]
    prog += [(_JA, 0, 0, "kill"),
             "clone", (_LD, 0, 0, _ARG0_HI), (_JEQ, 0, "kill", 0), (_LD, 0, 0, _ARG0_LO)]
    prog += [(_JEQ, "allow", 0, flags) for flags in clone_flags]
    prog += ["kill", (_RET, 0, 0, _RET_KILL_PROCESS), "trace", (_RET, 0, 0, _RET_TRACE),
             "allow", (_RET, 0, 0, _RET_ALLOW)]
    return _assemble(prog)
