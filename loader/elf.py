"""ELF parsing: from the bytes of a file to the facts exec needs (ElfInfo).

    check the header (struct, no lief) -> cache lookup -> lief parse
    -> check the segments -> cache store

The header checks come first so that garbage never reaches lief and most
rejections cost no lief import. Addresses here are *link addresses* (p_vaddr,
e_entry) and *file offsets*; mapped addresses exist only in plan.py, once a
load bias is chosen.
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

from loader import cache

try:  # the builtin sha256: hashlib would load OpenSSL (~5 ms) on every start
    from _sha2 import sha256
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
from loader.errors import LoadError

PAGE_SIZE = 4096
PATH_MAX = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
PF_X, PF_W, PF_R = 1, 2, 4  # p_flags: note the order is not PROT_*'s

ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551

MACHINES = {62: "x86_64", 183: "aarch64"}
# Only to name the machine in an error message.
OTHER_MACHINES = {2: "SPARC", 3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64",
                  22: "S/390", 40: "ARM", 43: "SPARC V9", 50: "IA-64", 243: "RISC-V",
                  258: "LoongArch"}

EHDR = struct.Struct("<4sBB10xHHIQQQIHHHHHH")  # Elf64_Ehdr, e_ident split
PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
# No user address space reaches this (47 bits on x86_64, 48 on aarch64);
# plan.py checks against the real layout.
ADDRESS_LIMIT = 1 << 48

FORMAT_ERROR = "exec format error: "  # the prefix of every ENOEXEC message


class Segment(NamedTuple):
    """One PT_LOAD. vaddr is a link address, offset a file offset."""
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    prot: int  # PROT_READ | PROT_WRITE | PROT_EXEC


class ElfInfo(NamedTuple):
    machine: str  # "x86_64" or "aarch64"
    is_dyn: bool  # ET_DYN (PIE, static-pie, ld.so) rather than ET_EXEC
    entry: int  # link address
    phoff: int
    phentsize: int
    phnum: int
    phdr_vaddr: int  # link address of the program headers
    segments: tuple[Segment, ...]  # sorted by vaddr
    interp: str | None  # PT_INTERP path
    exec_stack: bool  # PT_GNU_STACK asks for PF_X
    load_align: int = PAGE_SIZE  # largest power-of-two p_align of the PT_LOADs


LARGE = 256 << 10  # past this size OpenSSL's sha256 (7x faster) repays loading it


def _digest(data: bytes) -> str:
    if len(data) > LARGE:
        try:
            from _hashlib import openssl_sha256
            return openssl_sha256(data).hexdigest()
        except ImportError:
            pass
    return sha256(data).hexdigest()


def parse_elf(data: bytes) -> ElfInfo:
    """The exec-relevant facts of an ELF file; LoadError if it cannot run."""
    data = bytes(data)
    machine, p_types = _check_header(data)
    key = _digest(data)
    info = _from_record(cache.load(key))
    if info is None:
        info = _parse_with_lief(data, machine, p_types)
        _check_segments(info)
        cache.store(key, as_record(info))
    return info


def _check_header(data: bytes) -> tuple[str, list[int]]:
    """The checks Linux makes before it maps anything, without lief.
    Returns the machine name and the p_type of each program header."""
    if len(data) < 6 or data[:4] != b"\x7fELF":
        raise LoadError(FORMAT_ERROR + "not an ELF file")
    if data[4] == ELFCLASS32:
        raise LoadError(FORMAT_ERROR + "32-bit ELF is not supported")
    if data[4] != ELFCLASS64:
        raise LoadError(FORMAT_ERROR + f"bad ELF class {data[4]}")
    if data[5] == ELFDATA2MSB:
        raise LoadError(FORMAT_ERROR + "big-endian ELF is not supported")
    if data[5] != ELFDATA2LSB:
        raise LoadError(FORMAT_ERROR + f"bad ELF data encoding {data[5]}")
    if len(data) < EHDR.size:
        raise LoadError(FORMAT_ERROR + "truncated ELF header")
    (_, _, _, e_type, e_machine, _, _, phoff, _, _, _, phentsize, phnum, _, _, _
     ) = EHDR.unpack_from(data)
    if e_type not in (ET_EXEC, ET_DYN):
        kind = {ET_REL: "a relocatable object", ET_CORE: "a core dump"}.get(e_type, f"ELF type {e_type}")
        raise LoadError(FORMAT_ERROR + f"{kind}, not an executable")
    if e_machine not in MACHINES:
        name = OTHER_MACHINES.get(e_machine, "unknown")
        raise LoadError(FORMAT_ERROR + f"ELF for machine {name} ({e_machine}), "
                        f"sandbox runs {' and '.join(MACHINES.values())}")
    if phentsize != PHDR.size:
        raise LoadError(FORMAT_ERROR + f"bad program header size {phentsize}")
    if phnum == 0 or phnum * PHDR.size > 65536:  # Linux's limit, which also rules out PN_XNUM
        raise LoadError(FORMAT_ERROR + f"bad program header count {phnum}")
    if phoff + phnum * PHDR.size > len(data):
        raise LoadError(FORMAT_ERROR + "truncated file: program headers beyond its end")
    # lief shortens a segment that runs past the end of the data without
    # saying so, so truncation is found here, on the raw table.
    p_types = []
    for i in range(phnum):
        p_type, _, offset, _, _, filesz, _, _ = PHDR.unpack_from(data, phoff + i * PHDR.size)
        if p_type == PT_LOAD and filesz and offset + filesz > len(data):
            raise LoadError(FORMAT_ERROR + f"truncated file: segment at file offset {offset:#x} beyond its end")
        p_types.append(p_type)
    return MACHINES[e_machine], p_types


def _parse_with_lief(data: bytes, machine: str, p_types: list[int]) -> ElfInfo:
    try:
        import lief  # ~370 ms: paid only for a binary missing from the cache
        lief.logging.disable()
        config = lief.ELF.ParserConfig()
        for part in ("parse_relocations", "parse_dyn_symbols", "parse_symtab_symbols",
                     "parse_symbol_versions", "parse_notes", "parse_overlay"):
            setattr(config, part, False)  # exec needs the program headers only
        # Given bytes, lief 1.0 opens the host file of that *name*: pass a stream.
        binary = lief.ELF.parse(io.BytesIO(data), config)
        if binary is None or len(binary.segments) != len(p_types):
            raise LoadError(FORMAT_ERROR + "malformed program headers")
        loads, aligns = [], [PAGE_SIZE]
        interp = phdr_vaddr = exec_stack = None
        # Segment.type warns (raises, under -W error) for a p_type lief does
        # not know, such as a newer PT_GNU_*: the types come from the raw table.
        for p_type, s in zip(p_types, binary.segments):  # where a type repeats, the first counts
            if p_type == PT_LOAD:
                loads.append(Segment(vaddr=s.virtual_address, memsz=s.virtual_size,
                                     offset=s.file_offset, filesz=s.physical_size,
                                     prot=_prot(s.raw_flags)))
                if s.alignment & (s.alignment - 1) == 0:  # Linux ignores other alignments
                    aligns.append(s.alignment)
            elif p_type == PT_INTERP and interp is None:
                interp = _interp_path(bytes(s.content), s.physical_size)
            elif p_type == PT_PHDR and phdr_vaddr is None:
                phdr_vaddr = s.virtual_address
            elif p_type == PT_GNU_STACK and exec_stack is None:
                exec_stack = bool(s.raw_flags & PF_X)
        header = binary.header
        if phdr_vaddr is None:  # no PT_PHDR: find the table in a PT_LOAD, as Linux does
            phdr_vaddr = next((s.vaddr + header.program_header_offset - s.offset for s in loads
                               if s.offset <= header.program_header_offset < s.offset + s.filesz), 0)
        return ElfInfo(machine=machine, is_dyn=header.file_type == lief.ELF.Header.FILE_TYPE.DYN,
                       entry=header.entrypoint, phoff=header.program_header_offset,
                       phentsize=header.program_header_size, phnum=len(p_types), phdr_vaddr=phdr_vaddr,
                       segments=tuple(loads), interp=interp, exec_stack=bool(exec_stack),
                       load_align=max(aligns))
    except LoadError:
        raise
    except Exception as e:  # whatever lief makes of hostile bytes is the file's fault
        raise LoadError(FORMAT_ERROR + f"malformed ELF ({type(e).__name__})") from e


def _prot(p_flags: int) -> int:
    return ((PROT_READ if p_flags & PF_R else 0) | (PROT_WRITE if p_flags & PF_W else 0)
            | (PROT_EXEC if p_flags & PF_X else 0))


def _interp_path(raw: bytes, filesz: int) -> str:
    # Linux wants the whole segment in the file and a NUL as its last byte.
    path = raw.split(b"\0", 1)[0]
    if len(raw) != filesz or not 2 <= filesz <= PATH_MAX or raw[-1] != 0 or not path:
        raise LoadError(FORMAT_ERROR + "bad PT_INTERP")
    return path.decode("utf-8", "surrogateescape")


def _check_segments(info: ElfInfo) -> None:
    loads = info.segments
    if not loads:
        raise LoadError(FORMAT_ERROR + "no loadable segment")
    for s in loads:
        where = f"segment at {s.vaddr:#x}"
        if s.filesz > s.memsz:
            raise LoadError(FORMAT_ERROR + f"{where}: file size larger than memory size")
        if (s.vaddr - s.offset) % PAGE_SIZE:
            raise LoadError(FORMAT_ERROR + f"{where}: link address and file offset differ within a page")
        if s.vaddr + s.memsz > ADDRESS_LIMIT:
            raise LoadError(FORMAT_ERROR + f"{where}: beyond the address space")
    if any(b.vaddr < a.vaddr for a, b in zip(loads, loads[1:])):
        raise LoadError(FORMAT_ERROR + "loadable segments out of address order")


def as_record(info: ElfInfo) -> dict:
    """ElfInfo as plain JSON-able data (what the cache stores)."""
    return {**info._asdict(), "segments": [s._asdict() for s in info.segments]}


def _from_record(record: dict | None) -> ElfInfo | None:
    """An ElfInfo from the cache, or None if the record is not a sound one."""
    if record is None:
        return None
    try:
        info = ElfInfo(**{**record, "segments": tuple(Segment(**s) for s in record["segments"])})
        _check_segments(info)
        return info
    except (TypeError, KeyError, ValueError, LoadError):
        return None
