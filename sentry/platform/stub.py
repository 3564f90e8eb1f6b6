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

_CODE = bytes([0x0F, 0x05, 0xCC, 0x0F, 0x0B])  # syscall; int3; ud2


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
    return image.ljust(0x100, b"\0") + _CODE


# seccomp: once the image is built, the host kernel accepts the calls the sentry
# injects, only from the stub's own syscall instruction, and from anywhere else only
# what ptrace.py's PASSED_THROUGH lists (reads the sentry let through at their entry
# stop, and skipped calls). Guest syscalls reach it only when the sentry lets them on.
SECCOMP_SET_MODE_FILTER = 1
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000


def seccomp_filter(allowed_nrs, ip: int, anywhere=()) -> bytes:
    """A BPF program (struct sock_filter[]) for the rules above; the calls in `anywhere`
    are admitted from any instruction (see ptrace.py's passed-through reads)."""
    ld, jeq, ret = 0x20, 0x15, 0x06
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, _RET_KILL_PROCESS)]
    if anywhere:
        prog.append((ld, 0, 0, 0))
        n = len(anywhere)
        for i, nr in enumerate(anywhere):
            prog.append((jeq, n - i, 0, nr & 0xFFFFFFFF))
        prog.append((0x05, 0, 0, 1))           # ja +1: none matched, on to the IP check
        prog.append((ret, 0, 0, _RET_ALLOW))
    prog += [
        (ld, 0, 0, 8), (jeq, 1, 0, ip & 0xFFFFFFFF), (ret, 0, 0, _RET_KILL_PROCESS),
        (ld, 0, 0, 12), (jeq, 1, 0, ip >> 32), (ret, 0, 0, _RET_KILL_PROCESS),
        (ld, 0, 0, 0),
    ]
    n = len(allowed_nrs)
    for i, nr in enumerate(allowed_nrs):
        prog.append((jeq, n - i, 0, nr))
    prog += [(ret, 0, 0, _RET_KILL_PROCESS), (ret, 0, 0, _RET_ALLOW)]
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)
