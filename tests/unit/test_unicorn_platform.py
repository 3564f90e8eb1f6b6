"""The unicorn platform on its own: hand-assembled snippets, no loader, no kernel.

x86_64 bytes come from GNU as (intel syntax), aarch64 bytes from llvm-mc; the
source is beside each snippet.
"""
import errno
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest

import unicorn  # noqa: F401,E402  (a dependency: missing is a failure, not a skip)

from sentry.errors import Errno  # noqa: E402
from sentry.platform import ExitStop, FaultStop, SyscallStop  # noqa: E402
from sentry.platform.unicorn import UnicornPlatform  # noqa: E402

R, W, X = 1, 2, 4
CODE, DATA, STACK_TOP = 0x400000, 0x401000, 0x7FFF00002000
MASK64 = (1 << 64) - 1

X86 = {
    # mov eax, 39; mov edi, 1; mov esi, 2; mov edx, 3; mov r10d, 4; mov r8d, 5; mov r9d, 6; syscall
    # mov rdi, rax; mov eax, 60; syscall
    "getpid_exit": "b827000000bf01000000be02000000ba0300000041ba0400000041b80500000041b9060000000f05"
                   "4889c7b83c0000000f05",
    "write_ro": "b800104000c70001000000",                     # mov eax, 0x401000; mov dword ptr [rax], 1
    "fs_read": "64488b0425080000004889c7b83c0000000f05",     # mov rax, fs:[8]; mov rdi, rax; exit(rdi)
    # mov rax, 16.0; movq xmm0, rax; sqrtsd xmm1, xmm0; cvttsd2si rdi, xmm1; exit(rdi)
    "sqrt": "48b8000000000000304066480f6ec0f20f51c8f2480f2cf9b83c0000000f05",
    "div0": "31c9f7f1",                                        # xor ecx, ecx; div ecx
    "read_null": "31c0488b00",                                 # xor eax, eax; mov rax, [rax]
    "jump_away": "b800503412ffe0",                             # mov eax, 0x12345000; jmp rax
    "ud2": "0f0b",
    "int3": "cc",
    "hlt": "f4",
    # mov ebx, 100000; 1: mov eax, 110; syscall; dec ebx; jnz 1b; mov eax, 60; syscall
    "getppid_loop": "bba0860100b86e0000000f05ffcb75f5b83c0000000f05",
    # mov ecx, 200000000; 1: add rax, rcx; dec ecx; jnz 1b; mov eax, 60; syscall
    "busy_loop": "b900c2eb0b4801c8ffc975f9b83c0000000f05",
    "getpid_forever": "b8270000000f05ebf7",                    # 1: mov eax, 39; syscall; jmp 1b
}
A64 = {
    # mov x8, #172; mov x0..x5, #1..#6; svc #0; mov x8, #93; svc #0
    "getpid_exit": "881580d2200080d2410080d2620080d2830080d2a40080d2c50080d2010000d4a80b80d2010000d4",
    "write_ro": "0108a0d2010082f222008052220000b9",            # x1 = 0x401000; mov w2, #1; str w2, [x1]
    "tls": "40d03bd5a80b80d2010000d4",                         # mrs x0, tpidr_el0; exit(x0)
    "sqrt": "0010661e01c0611e2000789ea80b80d2010000d4",         # fmov d0, #16.0; fsqrt d1, d0; fcvtzs x0, d1; exit
    "udf": "00000000",
    "brk": "000020d4",
    "wfi_exit": "7f2003d5a80b80d2010000d4",                     # wfi; exit(x0)
    "read_null": "000080d2000040f9",                            # mov x0, #0; ldr x0, [x0]
    # x19 = 100000; 1: mov x8, #173; svc #0; subs x19, x19, #1; b.ne 1b; exit
    "getppid_loop": "13d490d23300a0f2a81580d2010000d4730600f1a1ffff54a80b80d2010000d4",
}
EXIT = {"x86_64": 60, "aarch64": 93}


def process(arch, code_hex, *, code_prot=R | X):
    space, cpu = UnicornPlatform(arch).new_process()
    space.map(CODE, 0x1000, R | W)
    space.write(CODE, bytes.fromhex(code_hex))
    space.protect(CODE, 0x1000, code_prot)
    space.map(STACK_TOP - 0x2000, 0x2000, R | W)
    cpu.set_entry(CODE, STACK_TOP - 64)
    return space, cpu


@pytest.fixture
def x86():
    made = []

    def make(code_hex, **kw):
        made.append(process("x86_64", code_hex, **kw))
        return made[-1]
    yield make
    for space, _ in made:
        space.close()


@pytest.fixture
def a64():
    made = []

    def make(code_hex, **kw):
        made.append(process("aarch64", code_hex, **kw))
        return made[-1]
    yield make
    for space, _ in made:
        space.close()


@pytest.fixture
def space():
    s, _ = UnicornPlatform("x86_64").new_process()
    yield s
    s.close()


# --- syscalls -------------------------------------------------------------------------------
def test_interface_basics():
    p = UnicornPlatform("aarch64")
    assert p.name == "unicorn" and p.arch == "aarch64"
    space, cpu = p.new_process()
    assert space.reserved == []
    space.close()
    space.close()  # twice is fine


def test_x86_syscall_stop_args_and_result(x86):
    _, cpu = x86(X86["getpid_exit"])
    stop = cpu.run()
    assert stop == SyscallStop(39, (1, 2, 3, 4, 5, 6))
    assert cpu.pc() == CODE + 40  # just after the syscall instruction
    cpu.set_result(4242)
    stop = cpu.run()
    assert stop.nr == 60 and stop.args[0] == 4242


def test_x86_negative_result_is_masked(x86):
    _, cpu = x86(X86["getpid_exit"])
    cpu.run()
    cpu.set_result(-errno.ENOSYS)
    assert cpu.run().args[0] == (-errno.ENOSYS) & MASK64


def test_x86_write_to_read_only_page(x86):
    space, cpu = x86(X86["write_ro"])
    space.map(DATA, 0x1000, R)
    stop = cpu.run()
    assert isinstance(stop, FaultStop)
    assert (stop.signo, stop.addr, stop.pc) == (signal.SIGSEGV, DATA, CODE + 5)
    assert f"{DATA:#x}" in stop.reason and "`mov dword ptr [rax], 1`" in stop.reason
    assert "write" in stop.reason
    assert cpu.pc() == CODE + 5


def test_x86_unmapped_read_and_fetch(x86):
    _, cpu = x86(X86["read_null"])
    stop = cpu.run()
    assert (stop.signo, stop.addr, stop.pc) == (signal.SIGSEGV, 0, CODE + 2)
    assert "invalid read at 0x0 by `mov rax, qword ptr [rax]`" in stop.reason
    _, cpu = x86(X86["jump_away"])
    stop = cpu.run()
    assert (stop.signo, stop.addr, stop.pc) == (signal.SIGSEGV, 0x12345000, 0x12345000)


@pytest.mark.parametrize("name, signo, at", [
    ("ud2", signal.SIGILL, 0), ("div0", signal.SIGFPE, 2), ("int3", signal.SIGTRAP, 0), ("hlt", signal.SIGSEGV, 0)])
def test_x86_cpu_faults(x86, name, signo, at):
    _, cpu = x86(X86[name])
    stop = cpu.run()
    assert isinstance(stop, FaultStop) and stop.signo == signo
    assert f"{CODE + at:#x}" in stop.reason
    mnemonic = {"ud2": "ud2", "div0": "div ecx", "int3": "int3", "hlt": "hlt"}[name]
    assert f"`{mnemonic}`" in stop.reason


def test_x86_tls_is_fs_base(x86):
    space, cpu = x86(X86["fs_read"])
    space.map(0x500000, 0x1000, R | W)
    space.write(0x500008, struct.pack("<Q", 0x1122334455))
    cpu.set_tls(0x500000)
    assert cpu.get_tls() == 0x500000
    assert cpu.run().args[0] == 0x1122334455


def test_x86_sse_works(x86):
    _, cpu = x86(X86["sqrt"])
    assert cpu.run() == SyscallStop(60, (4, 0, 0, 0, 0, 0))


def test_x86_fpu_starts_as_on_linux(x86):
    # fnstcw [rsp-8]; movzx edi, word [rsp-8]; stmxcsr [rsp-16]; mov esi, [rsp-16]
    # rdx = (double)(1.0L / 3.0L) through the x87; r10 = 3.0 / 0.0 through SSE; exit
    _, cpu = x86("d97c24f80fb77c24f80fae5c24f08b7424f048b8000000000000084048894424e8d9e8dc7424e8dd5c24e0"
                 "488b5424e0660fefc966480f6ec0f20f5ec166490f7ec2b83c0000000f05")
    stop = cpu.run()
    assert stop.nr == 60
    assert stop.args[:4] == (0x37F, 0x1F80, 0x3FD5555555555555, 0x7FF0000000000000)


def test_x86_cpu_model_has_sse42_and_no_avx(x86):
    # cpuid leaf 1 -> ecx: SSE4.2 (bit 20) set, AVX (bit 28) clear; then exit(ecx)
    _, cpu = x86("b8010000000fa289cfb83c0000000f05")  # mov eax, 1; cpuid; mov edi, ecx; exit
    ecx = cpu.run().args[0]
    assert ecx & (1 << 20) and not ecx & (1 << 28)


def test_code_written_by_the_sentry_is_executed(x86):
    space, cpu = x86(X86["getpid_forever"])
    assert cpu.run().nr == 39
    cpu.set_result(0)
    assert cpu.run().nr == 39
    space.write(CODE + 1, b"\x28")          # now mov eax, 40
    cpu.set_result(0)
    assert cpu.run().nr == 40
    space.protect(CODE, 0x1000, R | W)       # a JIT's W^X dance
    space.write(CODE + 1, b"\x29")
    space.protect(CODE, 0x1000, R | X)
    cpu.set_result(0)
    assert cpu.run().nr == 41


def test_kill_ends_the_cpu(x86):
    _, cpu = x86(X86["getpid_exit"])
    cpu.kill()
    assert cpu.run() == ExitStop(signal.SIGKILL)


def test_kill_from_another_thread_stops_a_spinning_guest(x86):
    import threading
    _, cpu = x86("ebfe")                                    # 1: jmp 1b
    timer = threading.Timer(0.1, cpu.kill)
    timer.start()
    assert cpu.run() == ExitStop(signal.SIGKILL)
    timer.join()


def test_compute_runs_to_the_next_syscall_and_counts_cpu_time(x86):
    """Speed is bench/run.py's business; here: the loop runs through, and the
    guest's CPU clock moves only while it runs."""
    _, cpu = x86(X86["busy_loop"])     # 600 million instructions
    assert cpu.cpu_time_ns() == 0
    t = time.perf_counter_ns()
    assert cpu.run().nr == 60
    assert 0 < cpu.cpu_time_ns() <= time.perf_counter_ns() - t  # time inside the emulator


def test_syscall_round_trips(x86):
    _, cpu = x86(X86["getppid_loop"])
    n = 0
    while True:
        stop = cpu.run()
        if stop.nr != 110:
            break
        cpu.set_result(1)
        n += 1
    assert n == 100000 and stop.nr == 60


# --- aarch64 --------------------------------------------------------------------------------
def test_a64_syscall_stop_args_and_result(a64):
    _, cpu = a64(A64["getpid_exit"])
    assert cpu.run() == SyscallStop(172, (1, 2, 3, 4, 5, 6))
    assert cpu.pc() == CODE + 32
    cpu.set_result(-1)
    stop = cpu.run()
    assert stop.nr == 93 and stop.args[0] == MASK64


def test_a64_write_to_read_only_page(a64):
    space, cpu = a64(A64["write_ro"])
    space.map(DATA, 0x1000, R)
    stop = cpu.run()
    assert (stop.signo, stop.addr, stop.pc) == (signal.SIGSEGV, DATA, CODE + 12)
    assert "`str w2, [x1]`" in stop.reason


def test_a64_faults(a64):
    _, cpu = a64(A64["udf"])
    stop = cpu.run()
    assert stop.signo == signal.SIGILL and stop.pc == CODE and "udf" in stop.reason
    _, cpu = a64(A64["brk"])
    assert cpu.run().signo == signal.SIGTRAP
    _, cpu = a64(A64["read_null"])
    stop = cpu.run()
    assert (stop.signo, stop.addr, stop.pc) == (signal.SIGSEGV, 0, CODE + 4)


def test_a64_tls_fp_and_wfi(a64):
    _, cpu = a64(A64["tls"])
    cpu.set_tls(0xDEADBEEF)
    assert cpu.get_tls() == 0xDEADBEEF
    assert cpu.run().args[0] == 0xDEADBEEF
    _, cpu = a64(A64["sqrt"])
    assert cpu.run() == SyscallStop(93, (4, 0, 0, 0, 0, 0))
    _, cpu = a64(A64["wfi_exit"])
    assert cpu.run().nr == 93


def test_a64_syscall_loop(a64):
    _, cpu = a64(A64["getppid_loop"])
    n = 0
    while (stop := cpu.run()).nr == 173:
        cpu.set_result(1)
        n += 1
    assert n == 100000 and stop.nr == 93


# --- memory ---------------------------------------------------------------------------------
def readable(space, addr, size=1):
    try:
        space.read(addr, size)
        return True
    except Errno as e:
        assert e.errno == errno.EFAULT
        return False


def test_read_write_and_efault(space):
    space.map(0x10000, 0x4000, R | W)
    space.write(0x10ffe, b"abcd")
    assert space.read(0x10ffe, 4) == b"abcd"
    assert space.read(0x11000, 0) == b""
    assert space.read(0x12000, 8) == bytes(8)            # fresh pages are zero
    assert not readable(space, 0x13ffc, 8)               # runs off the end
    assert not readable(space, 0x9000)
    with pytest.raises(Errno) as e:
        space.write(0x14000, b"x")
    assert e.value.errno == errno.EFAULT


def test_write_ignores_protections(space):
    space.map(0x10000, 0x2000, R)
    space.map(0x12000, 0x1000, 0)
    space.write(0x10000, b"ro")
    space.write(0x12000, bytearray(b"none"))
    assert space.read(0x10000, 2) == b"ro" and space.read(0x12000, 4) == b"none"


def test_partial_unmap_in_the_middle(space):
    space.map(0x10000, 0x10000, R | W)
    space.write(0x10000, b"\x01" * 0x10000)
    space.unmap(0x14000, 0x2000)
    assert readable(space, 0x13fff) and not readable(space, 0x14000) and not readable(space, 0x15fff)
    assert space.read(0x16000, 4) == b"\x01" * 4
    assert not readable(space, 0x13fff, 2)
    space.unmap(0x14000, 0x2000)                      # again: a no-op
    space.unmap(0x0, 0x100000)                        # across holes
    assert space.regions() == []


def test_map_replaces_partial_overlaps(space):
    space.map(0x10000, 0x4000, R)
    space.map(0x18000, 0x4000, R | X)
    space.write(0x10000, b"\x07" * 0x4000)
    space.write(0x18000, b"\x09" * 0x4000)
    space.map(0x12000, 0x8000, R | W)                 # over the end of one, the start of the other
    assert space.read(0x11fff, 2) == b"\x07\x00"
    assert space.read(0x19fff, 2) == b"\x00\x09"
    assert space.regions() == [(0x10000, 0x12000, R), (0x12000, 0x1A000, R | W), (0x1A000, 0x1C000, R | X)]


def test_protect_splits_and_merges_back(space):
    space.map(0x10000, 0x8000, R | W)
    space.write(0x10000, b"z" * 0x8000)
    space.protect(0x12000, 0x2000, R)
    assert space.regions() == [(0x10000, 0x12000, R | W), (0x12000, 0x14000, R), (0x14000, 0x18000, R | W)]
    space.protect(0x12000, 0x2000, R | W)
    assert space.regions() == [(0x10000, 0x18000, R | W)]
    assert space.read(0x10000, 0x8000) == b"z" * 0x8000
    space.protect(0x8000, 0x20000, R)                   # holes are skipped
    assert space.regions() == [(0x10000, 0x18000, R)]


def test_move_keeps_contents_and_protections(space):
    space.map(0x10000, 0x4000, R | W)
    space.write(0x10000, bytes(range(256)) * 64)
    space.protect(0x11000, 0x1000, R)
    space.move(0x10000, 0x4000, 0x40000, 0x6000)        # grow
    assert not readable(space, 0x10000) and not readable(space, 0x13fff)
    assert space.read(0x40000, 0x4000) == bytes(range(256)) * 64
    assert space.read(0x44000, 0x2000) == bytes(0x2000)
    assert space.regions() == [(0x40000, 0x41000, R | W), (0x41000, 0x42000, R), (0x42000, 0x46000, R | W)]
    space.move(0x40000, 0x6000, 0x80000, 0x1000)        # shrink
    assert space.read(0x80000, 0x1000) == bytes(range(256)) * 16
    assert space.regions() == [(0x80000, 0x81000, R | W)]


def test_move_overlapping_and_in_place(space):
    space.map(0x10000, 0x3000, R | W)
    space.write(0x10000, b"a" * 0x1000 + b"b" * 0x1000 + b"c" * 0x1000)
    space.move(0x10000, 0x3000, 0x11000, 0x3000)
    assert space.read(0x11000, 0x3000) == b"a" * 0x1000 + b"b" * 0x1000 + b"c" * 0x1000
    assert not readable(space, 0x10000)
    space.move(0x11000, 0x3000, 0x11000, 0x4000)        # grow in place
    assert space.read(0x13fff, 2) == b"c\x00"


def test_large_mappings(space):
    space.map(0x10000000, 100 << 20, R | W)             # a malloc arena
    space.map(0x7FFFFF000000 - (8 << 20), 8 << 20, R | W)  # a stack
    space.write(0x10000000 + (100 << 20) - 4, b"tail")
    space.protect(0x10000000 + (50 << 20), 0x1000, 0)    # a guard page in the middle
    space.move(0x10000000, 100 << 20, 0x30000000, 200 << 20)
    assert space.read(0x30000000 + (100 << 20) - 4, 8) == b"tail" + bytes(4)
    space.unmap(0x30000000, 200 << 20)
    assert not readable(space, 0x30000000)


def test_regions_cross_window_boundaries(space):
    base = (1 << 30) - 0x2000
    space.map(base, 0x4000, R | W)
    space.write(base + 0x1ffe, b"edge")
    assert space.read(base + 0x1ffe, 4) == b"edge"
    space.move(base, 0x4000, (3 << 30) - 0x1000, 0x4000)
    assert space.read((3 << 30) + 0xffe, 4) == b"edge"


def test_adjacent_mappings_are_merged(space):
    top = 0x70000000
    for i in range(300):                                # top-down, as mmap hands them out
        top -= 0x1000 * (1 + i % 3)
        space.map(top, 0x1000 * (1 + i % 3), R | W)
        space.write(top, bytes([i % 256]) * 8)
    assert len(space.regions()) < 10
    assert readable(space, top, 0x70000000 - top)


def test_misaligned_arguments(space):
    for call in (lambda: space.map(0x10001, 0x1000, R), lambda: space.unmap(0x10000, 0x10),
                 lambda: space.protect(0x10800, 0x1000, R), lambda: space.move(0x10000, 0x1000, 0x20001, 0x1000)):
        with pytest.raises(Errno) as e:
            call()
        assert e.value.errno == errno.EINVAL


# --- a real static binary -------------------------------------------------------------------
HELLO_C = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char *big = malloc(1 << 20);            /* mmap-backed */
    memset(big, 'x', (1 << 20) - 1);
    big[(1 << 20) - 1] = 0;
    volatile double two = 2.0;
    printf("hello %s %zu %.4f\n", argv[0], strlen(big), sqrt(two));
    return 7;
}
"""


def run_static(path, argv):
    """Just enough of a loader and a kernel for a static non-PIE x86_64 hello."""
    data = open(path, "rb").read()
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    space, cpu = UnicornPlatform("x86_64").new_process()
    top = phdr = 0
    for i in range(phnum):
        kind, flags, off, vaddr, _, filesz, memsz = struct.unpack_from("<IIQQQQQ", data, phoff + i * phentsize)
        if kind == 1:
            lo, hi = vaddr & ~0xFFF, (vaddr + memsz + 0xFFF) & ~0xFFF
            space.map(lo, hi - lo, R | W)
            space.write(vaddr, data[off:off + filesz])
            space.protect(lo, hi - lo, (R if flags & 4 else 0) | (W if flags & 2 else 0) | (X if flags & 1 else 0))
            top = max(top, hi)
            phdr = phdr or (vaddr - off + phoff if off == 0 else 0)
    brk = top
    stack = 0x7FFFFFFDE000
    space.map(stack - (8 << 20), 8 << 20, R | W)
    strings = b"".join(a.encode() + b"\0" for a in argv) + bytes(range(16))
    base = stack - 0x1000
    space.write(base, strings)
    ptrs, at = [], base
    for a in argv:
        ptrs.append(at)
        at += len(a) + 1
    auxv = [3, phdr, 4, phentsize, 5, phnum, 6, 4096, 9, entry, 25, at, 0, 0]
    words = [len(argv)] + ptrs + [0, 0] + auxv
    sp = (base - 8 * len(words) - 64) & ~0xF
    space.write(sp, struct.pack(f"<{len(words)}Q", *words))
    cpu.set_entry(entry, sp)
    out, mmap_top = b"", 0x7FFFF7FFF000
    try:
        while True:
            stop = cpu.run()
            assert isinstance(stop, SyscallStop), stop
            nr, a = stop.nr, stop.args
            ret = -errno.ENOSYS
            if nr == 12:                                   # brk
                if a[0] > brk:
                    new_top = (a[0] + 0xFFF) & ~0xFFF
                    if new_top > top:
                        space.map(top, new_top - top, R | W)
                        top = new_top
                    brk = a[0]
                ret = brk
            elif nr == 158 and a[0] == 0x1002:             # arch_prctl(ARCH_SET_FS)
                cpu.set_tls(a[1])
                ret = 0
            elif nr in (1, 20):                            # write, writev
                iov = [(a[1], a[2])] if nr == 1 else [struct.unpack("<QQ", space.read(a[1] + 16 * i, 16))
                                                      for i in range(a[2])]
                for p, n in iov:
                    out += space.read(p, n)
                ret = sum(n for _, n in iov)
            elif nr in (60, 231):                          # exit, exit_group
                return a[0], out
            elif nr == 9:                                  # mmap (anonymous)
                length = (a[1] + 0xFFF) & ~0xFFF
                mmap_top -= length
                space.map(mmap_top, length, a[2])
                ret = mmap_top
            elif nr == 11:                                 # munmap
                space.unmap(a[0], (a[1] + 0xFFF) & ~0xFFF)
                ret = 0
            elif nr == 10:                                 # mprotect
                space.protect(a[0], (a[1] + 0xFFF) & ~0xFFF, a[2])
                ret = 0
            elif nr == 218:                                # set_tid_address
                ret = 1
            elif nr == 318:                                # getrandom
                space.write(a[0], bytes(a[1]))
                ret = a[1]
            elif nr == 16:                                 # ioctl
                ret = -errno.ENOTTY
            cpu.set_result(ret)
    finally:
        space.close()


@pytest.mark.parametrize("cc", ["gcc", "musl-gcc"])
def test_static_libc_hello(tmp_path, cc):
    assert shutil.which(cc), f"{cc} missing: scripts/setup installs it"
    (tmp_path / "hello.c").write_text(HELLO_C)
    exe = tmp_path / "hello"
    built = subprocess.run([cc, "-static", "-no-pie", "-O2", "-o", str(exe), str(tmp_path / "hello.c"), "-lm"],
                           capture_output=True)
    assert built.returncode == 0, f"{cc} -static failed: {built.stderr.decode()[:200]}"
    code, out = run_static(os.fspath(exe), ["hello"])
    assert (code, out) == (7, b"hello hello 1048575 1.4142\n")


def unicorn_regions(space):
    """What unicorn itself holds, to check the platform's mirror of it."""
    import ctypes
    from unicorn.unicorn_py3.unicorn import uc_mem_region, uclib
    regions, count = ctypes.POINTER(uc_mem_region)(), ctypes.c_uint32()
    assert uclib.uc_mem_regions(space._uch, ctypes.byref(regions), ctypes.byref(count)) == 0
    try:
        return [(regions[i].begin, regions[i].end + 1, regions[i].perms) for i in range(count.value)]
    finally:
        uclib.uc_free(regions)


def test_random_operations_against_a_model(space):
    """map/unmap/protect/move at random over a few windows' edges, checked page by page
    against a plain model of what Linux would hold."""
    import random
    rng = random.Random(1234)
    pg = 0x1000
    base = (1 << 30) - 48 * pg                        # straddles a window boundary
    npages = 96
    model = {}                                        # page number -> [prot, tag]
    tag = 0

    def page_range(n):
        start = rng.randrange(npages - 1)
        return start, min(npages, start + 1 + rng.randrange(n))

    for step in range(400):
        op = rng.choice("mmmuppwwv")
        a, b = page_range(24)
        if op == "m":
            prot = rng.choice([R, R | W, R | X, 0, R | W])
            space.map(base + a * pg, (b - a) * pg, prot)
            for p in range(a, b):
                model[p] = [prot, 0]
        elif op == "u":
            space.unmap(base + a * pg, (b - a) * pg)
            for p in range(a, b):
                model.pop(p, None)
        elif op == "p":
            prot = rng.choice([R, R | W, R | X])
            space.protect(base + a * pg, (b - a) * pg, prot)
            for p in range(a, b):
                if p in model:
                    model[p][0] = prot
        elif op == "w":
            mapped = sorted(model)
            if mapped:
                p = rng.choice(mapped)
                tag += 1
                space.write(base + p * pg, struct.pack("<Q", tag))
                model[p][1] = tag
        else:
            # move a fully mapped run [a, b) somewhere that does not overlap it
            if not all(p in model for p in range(a, b)):
                continue
            n = b - a
            new_len = max(1, n + rng.randrange(-n + 1, 4))
            dest = rng.randrange(npages - new_len + 1)
            if dest < b and a < dest + new_len:
                continue
            space.move(base + a * pg, n * pg, base + dest * pg, new_len * pg)
            moved = {p - a: model.pop(p) for p in range(a, b)}
            last_prot = moved[n - 1][0]
            for i in range(new_len):
                model[dest + i] = list(moved[i]) if i < n else [last_prot, 0]
        for p in range(npages):
            addr = base + p * pg
            if p in model:
                assert space.read(addr, 8) == struct.pack("<Q", model[p][1]), (step, op, p)
            else:
                assert not readable(space, addr), (step, op, p)
        pages = {}
        for lo, hi, prot in space.regions():
            for p in range((lo - base) // pg, (hi - base) // pg):
                pages[p] = prot
        assert pages == {p: v[0] for p, v in model.items()}, (step, op)
        assert [(lo, hi) for lo, hi, _ in space.regions()] == [(lo, hi) for lo, hi, _ in unicorn_regions(space)]
        assert all(lo >> 30 == (hi - 1) >> 30 for lo, hi, _ in space.regions())


# --- shared mappings: the backing's host pages behind guest memory ---------------------------------
def test_shared_pages_are_one_between_spaces_and_the_file(space):
    from sentry.vfs.backing import new_memory
    other, _ = UnicornPlatform("x86_64").new_process()
    try:
        b = new_memory("t", 2 * 0x1000)
        space.map_file(0x10000, 0x2000, R | W, b, 0)
        other.map_file(0x20000, 0x1000, R, b, 0x1000)
        space.write(0x11000, b"hi")
        assert other.read(0x20000, 2) == b"hi" and os.pread(b.fd, 2, 0x1000) == b"hi"
        os.pwrite(b.fd, b"yo", 0)
        assert space.read(0x10000, 2) == b"yo"
        assert space.shared == [[0x10000, 0x12000, b, 0, 0x12000]]
        assert space.shared_in(0x11000, 0x20000) == [(0x11000, 0x12000, b, 0x1000)]
        space.unmap(0x10000, 0x1000)  # the record follows unmap and map over it
        assert space.shared == [[0x11000, 0x12000, b, 0x1000, 0x12000]]
        space.map(0x11000, 0x1000, R | W)
        assert space.shared == [] and space.read(0x11000, 2) == bytes(2)
        assert other.read(0x20000, 2) == b"hi"
    finally:
        other.close()


def test_guest_stores_reach_the_file(x86):
    from sentry.vfs.backing import new_memory
    space, cpu = x86("b800104000c70001000000" "b83c0000000f05")  # mov [0x401000], 1; exit
    b = new_memory("t", 0x1000)
    space.map_file(DATA, 0x1000, R | W, b, 0)
    assert isinstance(cpu.run(), SyscallStop)
    assert os.pread(b.fd, 4, 0) == (1).to_bytes(4, "little")


def test_read_only_file_pages_stay_read_only(space, tmp_path):
    from sentry.vfs.backing import of_host_fd
    p = tmp_path / "f"
    p.write_bytes(b"r" * 0x1000)
    fd = os.open(p, os.O_RDONLY)
    b = of_host_fd(fd, writable=False)
    os.close(fd)
    with pytest.raises(Errno) as e:
        space.map_file(0x10000, 0x1000, R | W, b, 0)
    assert e.value.errno == errno.EACCES
    space.map_file(0x10000, 0x1000, R, b, 0)
    with pytest.raises(Errno) as e:
        space.protect(0x10000, 0x1000, R | W)
    assert e.value.errno == errno.EACCES
    assert space.read(0x10000, 1) == b"r"


def test_host_file_past_its_end_never_faults_the_sentry(space, tmp_path):
    from sentry.vfs.backing import host_file_shrunk, of_host_fd
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    fd = os.open(p, os.O_RDWR)
    try:
        b = of_host_fd(fd, writable=True)
        space.map_file(0x10000, 0x3000, R | W, b, 0)
        assert space.shared[0][4] == 0x11000  # the file's one page; past it, zero pages
        assert space.read(0x10000, 1) == b"x" and space.read(0x12000, 4) == bytes(4)
        os.ftruncate(fd, 0)
        host_file_shrunk(fd)  # what HostFile.truncate calls
        assert space.read(0x10000, 4) == bytes(4)  # no SIGBUS: fresh pages stand in
        space.write(0x10000, b"w")
        assert os.path.getsize(p) == 0
    finally:
        os.close(fd)


def test_read_file_fills_guest_memory_straight_from_the_fd(space):
    from sentry.vfs.backing import new_memory
    b = new_memory("t")
    os.pwrite(b.fd, bytes(range(256)) * 40, 0)  # 10240 bytes
    b.host_size = 10240
    space.map(0x10000, 0x4000, R | W)
    assert space.read_file(b, 100, 0x10010, 5000) == 5000
    assert space.read(0x10010, 5000) == (bytes(range(256)) * 40)[100:5100]
    assert space.read_file(b, 10000, 0x10000, 5000) == 240  # short at the end of the file
    assert space.read_file(b, 20000, 0x10000, 5000) == 0
