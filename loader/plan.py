"""Planning: from parsed ELF files to the initial process image (ImagePlan).

    choose load biases -> map the PT_LOAD segments (program, interpreter)
    -> build the stack (strings, AT_RANDOM, argc/argv/envp/auxv)

A *link address* is what the ELF file says (p_vaddr, e_entry); a *mapped
address* is a link address plus the object's load bias; a *file offset*
indexes the file's bytes. Nothing here touches a process: the MemoryManager
carries the plan out.
"""

from __future__ import annotations

import errno
import struct
from typing import NamedTuple

from loader.elf import FORMAT_ERROR, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, ElfInfo
from loader.errors import LoadError

MASK64 = (1 << 64) - 1

AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51

MMAP_MIN_ADDR = 0x10000  # vm.mmap_min_addr: Linux refuses to map below it
MAX_ARG_STRLEN = 32 * PAGE_SIZE  # longest single argv/envp string execve accepts


class Layout(NamedTuple):
    """Linux's address-space layout with ASLR disabled (as under `setarch -R`)."""
    stack_top: int
    stack_size: int  # reserved below stack_top
    dyn_base: int  # ELF_ET_DYN_BASE: where an ET_DYN program goes
    mmap_top: int  # mmap_base: the interpreter ends just below it
    platform: str  # the AT_PLATFORM string


LAYOUTS: dict[str, Layout] = {
    "x86_64": Layout(stack_top=0x7ffffffff000, stack_size=8 << 20, dyn_base=0x555555554000,
                     mmap_top=0x7ffff7fff000, platform="x86_64"),
    "aarch64": Layout(stack_top=0xfffffffff000, stack_size=8 << 20, dyn_base=0xaaaaaaaaa000,
                      mmap_top=0xfffff7fff000, platform="aarch64"),
}


class Mapping(NamedTuple):
    start: int  # mapped address, page aligned
    length: int  # a multiple of PAGE_SIZE
    prot: int  # PROT_* bits
    name: str  # what /proc/self/maps shows
    contents: list[tuple[int, bytes]]  # (offset in the mapping, bytes); the rest is zero


class ImagePlan(NamedTuple):
    machine: str
    mappings: list[Mapping]  # in creation order; a later one replaces what it overlaps (MAP_FIXED)
    entry: int  # the interpreter's entry if there is one, else the program's
    sp: int  # points at argc, 16-byte aligned
    brk: int  # page-aligned end of the program's highest segment
    mmap_base: int  # mmap(NULL) allocates top-down below this
    auxv: list[tuple[int, int]]  # as written on the stack, AT_NULL excluded
    exe_path: str


def page_down(address: int) -> int:
    return address & ~(PAGE_SIZE - 1)


def page_up(address: int) -> int:
    return page_down(address + PAGE_SIZE - 1)


def plan_image(exe: ElfInfo, exe_data: bytes, *, path: str, argv: list[bytes], envp: list[bytes],
               execfn: bytes, random_bytes: bytes, hwcap: int, hwcap2: int,
               uid: int = 0, euid: int = 0, gid: int = 0, egid: int = 0, secure: bool = False,
               interp: tuple[ElfInfo, bytes, str] | None = None, layout: Layout | None = None,
               clktck: int = 100, minsigstksz: int | None = None) -> ImagePlan:
    """The image Linux's execve builds for `exe`, with `interp` = (info, bytes,
    path) of the file its PT_INTERP names, resolved by the caller."""
    if len(random_bytes) != 16:
        raise ValueError("AT_RANDOM needs exactly 16 bytes")
    layout = layout or LAYOUTS[exe.machine]
    if exe.interp is not None and interp is None:
        raise LoadError(FORMAT_ERROR + f"{path} needs an interpreter ({exe.interp})")
    if exe.interp is None and interp is not None:
        raise ValueError(f"{path} has no PT_INTERP, yet an interpreter was given")

    exe_bias = _program_bias(exe, layout)
    exe_low, exe_high = _link_span(exe)
    mappings = _segment_mappings(exe, exe_data, exe_bias, path)
    regions = [("program", exe_low + exe_bias, exe_high + exe_bias)]
    # unsigned long arithmetic as Linux's: a PIE's e_entry near 2^64 wraps (and then faults)
    entry, interp_bias, mmap_base = (exe.entry + exe_bias) & MASK64, 0, layout.mmap_top
    if interp is not None:
        interp_info, interp_data, interp_path = interp
        if interp_info.machine != exe.machine:
            raise LoadError(FORMAT_ERROR + f"interpreter {interp_path} is for {interp_info.machine}, "
                            f"{path} for {exe.machine}")
        interp_bias = _interpreter_bias(interp_info, layout)
        interp_low, interp_high = _link_span(interp_info)
        mappings += _segment_mappings(interp_info, interp_data, interp_bias, interp_path)
        regions.append(("interpreter", interp_low + interp_bias, interp_high + interp_bias))
        entry, mmap_base = (interp_info.entry + interp_bias) & MASK64, interp_low + interp_bias
    stack_bottom = layout.stack_top - layout.stack_size
    regions.append(("stack", stack_bottom, layout.stack_top))
    _check_regions(regions)

    stack = _Stack(layout.stack_top)
    execfn_address, env_addresses, arg_addresses = stack.push_strings(execfn, envp, argv)
    if layout.stack_top - stack.sp + 8 * (len(argv) + len(envp)) > layout.stack_size // 4:
        raise LoadError("argument list too long", errno=errno.E2BIG)
    stack.align()
    platform_address = stack.push(layout.platform.encode() + b"\0")
    random_address = stack.push(random_bytes)
    auxv = [(AT_MINSIGSTKSZ, minsigstksz)] if minsigstksz is not None else []
    auxv += [
        (AT_HWCAP, hwcap), (AT_PAGESZ, PAGE_SIZE), (AT_CLKTCK, clktck),
        (AT_PHDR, exe.phdr_vaddr + exe_bias), (AT_PHENT, exe.phentsize), (AT_PHNUM, exe.phnum),
        (AT_BASE, interp_bias), (AT_FLAGS, 0), (AT_ENTRY, (exe.entry + exe_bias) & MASK64),
        (AT_UID, uid), (AT_EUID, euid), (AT_GID, gid), (AT_EGID, egid),
        (AT_SECURE, int(secure)), (AT_RANDOM, random_address), (AT_HWCAP2, hwcap2),
        (AT_EXECFN, execfn_address), (AT_PLATFORM, platform_address),
    ]
    sp = stack.push_tables([len(argv), *arg_addresses, 0, *env_addresses, 0,
                            *(word for pair in auxv for word in pair), 0, 0])
    stack_prot = PROT_READ | PROT_WRITE | (PROT_EXEC if exe.exec_stack else 0)
    mappings.append(Mapping(stack_bottom, layout.stack_size, stack_prot, "[stack]",
                            [(sp - stack_bottom, stack.contents())]))
    return ImagePlan(machine=exe.machine, mappings=mappings, entry=entry, sp=sp,
                     brk=exe_high + exe_bias, mmap_base=mmap_base, auxv=auxv, exe_path=path)


def _link_span(info: ElfInfo) -> tuple[int, int]:
    """[first page, end of last page) of the PT_LOAD segments, in link addresses."""
    return (page_down(min(s.vaddr for s in info.segments)),
            page_up(max(s.vaddr + s.memsz for s in info.segments)))


def _program_bias(exe: ElfInfo, layout: Layout) -> int:
    if not exe.is_dyn:
        return 0
    # Linux: ELF_ET_DYN_BASE rounded down to the largest PT_LOAD alignment
    # (so aarch64 binaries aligned to 64 KiB land at 0xaaaaaaaa0000).
    return (layout.dyn_base & ~(exe.load_align - 1)) - _link_span(exe)[0]


def _interpreter_bias(interp: ElfInfo, layout: Layout) -> int:
    if not interp.is_dyn:
        return 0
    low, high = _link_span(interp)
    return layout.mmap_top - (high - low) - low  # as a top-down mmap(NULL) of the whole span


def _segment_mappings(info: ElfInfo, data: bytes, bias: int, name: str) -> list[Mapping]:
    mappings = []
    for s in info.segments:
        if s.memsz == 0:
            continue  # Linux maps nothing for it
        start, end = page_down(s.vaddr + bias), page_up(s.vaddr + s.memsz + bias)
        # As a file mmap shows it: from the start of the file page, so the
        # bytes before vaddr are the file's too; past filesz is bss, zero.
        file_bytes = data[page_down(s.offset):s.offset + s.filesz] if s.filesz else b""
        mappings.append(Mapping(start, end - start, s.prot, name,
                                [(0, file_bytes)] if file_bytes else []))
    return mappings


def _check_regions(regions: list[tuple[str, int, int]]) -> None:
    regions = sorted(regions, key=lambda r: r[1])
    if regions[0][1] < MMAP_MIN_ADDR:
        raise LoadError(FORMAT_ERROR + f"{regions[0][0]} mapped at {regions[0][1]:#x}, "
                        f"below the lowest mappable address {MMAP_MIN_ADDR:#x}")
    for (name_a, _, end_a), (name_b, start_b, _) in zip(regions, regions[1:]):
        if start_b < end_a:
            raise LoadError(FORMAT_ERROR + f"{name_a} and {name_b} overlap at {start_b:#x}")


class _Stack:
    """The top of the initial stack, written downwards as Linux's exec does."""

    def __init__(self, top: int):
        self.sp = top
        self.chunks: list[bytes] = []  # from the top down
        self.push(bytes(8))  # Linux leaves a NULL pointer at the very top

    def push(self, raw: bytes) -> int:
        self.sp -= len(raw)
        self.chunks.append(raw)
        return self.sp

    def push_strings(self, execfn: bytes, envp: list[bytes], argv: list[bytes]):
        """execfn highest, then envp, then argv; each list in order upwards."""
        for s in (execfn, *envp, *argv):
            if len(s) + 1 > MAX_ARG_STRLEN:
                raise LoadError("argument list too long", errno=errno.E2BIG)
        execfn_address = self.push(execfn + b"\0")
        env_addresses = [self.push(s + b"\0") for s in reversed(envp)][::-1]
        arg_addresses = [self.push(s + b"\0") for s in reversed(argv)][::-1]
        return execfn_address, env_addresses, arg_addresses

    def align(self) -> None:
        self.push(bytes(self.sp % 16))

    def push_tables(self, words: list[int]) -> int:
        """argc .. AT_NULL, placed so that argc lands 16-byte aligned; returns sp."""
        self.push(bytes((self.sp - 8 * len(words)) % 16))
        return self.push(struct.pack(f"<{len(words)}Q", *words))

    def contents(self) -> bytes:
        return b"".join(reversed(self.chunks))
