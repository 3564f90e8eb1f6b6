"""loader/: parse_elf against binutils' readelf, and the plans it makes.

Nothing is run: binaries are compiled with gcc and only read. The oracle for
parsing is `readelf -lhW`; for plans, the bytes of the file and the layout
Linux uses with ASLR off.
"""

import errno
import json
import os
import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from loader import LAYOUTS, ElfInfo, LoadError, Segment, parse_elf, plan_image
from loader.elf import as_record

PAGE = 4096
X86 = LAYOUTS["x86_64"]
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = 23, 25, 26, 31, 33, 51
PT_NULL, PT_LOAD, PT_GNU_STACK = 0, 1, 0x6474E551

PROGRAM = r"""
#include <stdio.h>
char big_bss[100000];               /* several pages of bss */
int initialized = 42;               /* .data: the file part of the RW segment */
int main(int argc, char **argv) { big_bss[argc] = 1; printf("%d %s\n", initialized, argv[0]); return 0; }
"""


@pytest.fixture(scope="session")
def binaries(tmp_path_factory):
    """{kind: path} of the same program built four ways."""
    where = tmp_path_factory.mktemp("elf")
    source = where / "prog.c"
    source.write_text(PROGRAM)
    flags = {"static": ["-static"], "static-pie": ["-static-pie"], "dynamic": [], "object": ["-c"]}
    built = {}
    for kind, extra in flags.items():
        built[kind] = where / kind
        subprocess.run(["gcc", "-O1", *extra, str(source), "-o", str(built[kind])], check=True)
    return built


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SENTRY_NO_CACHE", raising=False)
    return tmp_path / "cache" / "sentry" / "elf"


# --- the oracle: readelf -lhW ------------------------------------------------------------

PHDR_LINE = re.compile(r"^\s+(\w+)\s+(0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+) "
                       r"(0x[0-9a-f]+) ([RWE ]{3}) (0x[0-9a-f]+)$", re.M)


def readelf(path) -> ElfInfo:
    out = subprocess.run(["readelf", "-lhW", str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    field = lambda name: re.search(rf"^\s+{name}:\s+(.+?)\s*$", out, re.M).group(1)
    machine = {"Advanced Micro Devices X86-64": "x86_64", "AArch64": "aarch64"}[field("Machine")]
    segments, phdr_vaddr, exec_stack, aligns = [], None, False, [PAGE]
    phoff = int(field("Start of program headers").split()[0])
    for kind, offset, vaddr, _, filesz, memsz, flags, align in PHDR_LINE.findall(out):
        offset, vaddr, filesz, memsz, align = (int(x, 16) for x in (offset, vaddr, filesz, memsz, align))
        if kind == "LOAD":
            prot = (1 if "R" in flags else 0) | (2 if "W" in flags else 0) | (4 if "E" in flags else 0)
            segments.append(Segment(vaddr=vaddr, memsz=memsz, offset=offset, filesz=filesz, prot=prot))
            aligns.append(align)
        elif kind == "PHDR":
            phdr_vaddr = vaddr
        elif kind == "GNU_STACK":
            exec_stack = "E" in flags
    if phdr_vaddr is None:
        phdr_vaddr = next(s.vaddr + phoff - s.offset for s in segments
                          if s.offset <= phoff < s.offset + s.filesz)
    interp = re.search(r"\[Requesting program interpreter: (.+)\]", out)
    return ElfInfo(machine=machine, is_dyn=field("Type").startswith("DYN"),
                   entry=int(field("Entry point address"), 16), phoff=phoff,
                   phentsize=int(field("Size of program headers").split()[0]),
                   phnum=int(field("Number of program headers")), phdr_vaddr=phdr_vaddr,
                   segments=tuple(segments), interp=interp and interp.group(1),
                   exec_stack=exec_stack, load_align=max(aligns))


# --- helpers: patch ELF bytes, read a plan's memory ---------------------------------------

def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def program_headers(data: bytes):
    """[(file offset of the entry, p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align)]"""
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    return [(phoff + 56 * i, *struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)) for i in range(phnum)]


def read(plan, address: int, size: int) -> bytes:
    """Bytes of the planned address space; a later mapping hides an earlier one."""
    out = bytearray()
    while size:
        mapping = [m for m in plan.mappings if m.start <= address < m.start + m.length][-1]
        n = min(size, (address | (PAGE - 1)) + 1 - address)
        offset, chunk = address - mapping.start, bytearray(n)
        for at, raw in mapping.contents:
            lo, hi = max(at, offset), min(at + len(raw), offset + n)
            if lo < hi:
                chunk[lo - offset:hi - offset] = raw[lo - at:hi - at]
        out += chunk
        address, size = address + n, size - n
    return bytes(out)


def read_cstring(plan, address: int) -> bytes:
    out = b""
    while not out.endswith(b"\0"):
        out += read(plan, address + len(out), 1)
    return out[:-1]


def word(plan, address: int) -> int:
    return struct.unpack("<Q", read(plan, address, 8))[0]


def decode_stack(plan):
    """(argv, envp, auxv) as a program's _start would find them at sp."""
    sp = plan.sp
    argc = word(plan, sp)
    argv = [read_cstring(plan, word(plan, sp + 8 * (1 + i))) for i in range(argc)]
    assert word(plan, sp + 8 * (1 + argc)) == 0
    at, envp = sp + 8 * (2 + argc), []
    while word(plan, at):
        envp.append(read_cstring(plan, word(plan, at)))
        at += 8
    auxv, at = [], at + 8
    while word(plan, at) != AT_NULL:
        auxv.append((word(plan, at), word(plan, at + 8)))
        at += 16
    return argv, envp, auxv


def plan_for(info, data, path="/bin/prog", interp=None, layout=None, **kw):
    args = dict(argv=[b"prog", b"one"], envp=[b"HOME=/", b"TERM=dumb"], execfn=path.encode(),
                random_bytes=bytes(range(16)), hwcap=0x178BFBFF, hwcap2=2)
    args.update(kw)
    return plan_image(info, data, path=path, interp=interp, layout=layout, **args)


def check_mapping_shapes(plan):
    for m in plan.mappings:
        assert m.start % PAGE == 0 and m.length % PAGE == 0 and m.length > 0
        assert all(0 <= at and at + len(raw) <= m.length for at, raw in m.contents)


def check_segments_loaded(plan, info, data, bias, name):
    """Every PT_LOAD as a file mmap plus zeroed bss would show it."""
    for s in info.segments:
        start = s.vaddr + bias
        mapping = next(m for m in plan.mappings if m.start == start & ~(PAGE - 1) and m.name == name)
        assert mapping.length == ((start + s.memsz + PAGE - 1) & ~(PAGE - 1)) - mapping.start
        assert mapping.prot == s.prot
        file_page = s.offset & ~(PAGE - 1)
        assert read(plan, mapping.start, s.offset + s.filesz - file_page) == data[file_page:s.offset + s.filesz]
        assert read(plan, start + s.filesz, s.memsz - s.filesz) == bytes(s.memsz - s.filesz)


# --- parse_elf --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["static", "static-pie", "dynamic"])
def test_parse_matches_readelf(binaries, kind):
    assert parse_elf(binaries[kind].read_bytes()) == readelf(binaries[kind])


def test_parse_matches_readelf_for_the_interpreter(binaries):
    ld = Path(readelf(binaries["dynamic"]).interp)
    assert parse_elf(ld.read_bytes()) == readelf(ld)


def test_parse_kinds(binaries):
    static, pie, dyn = (parse_elf(binaries[k].read_bytes()) for k in ("static", "static-pie", "dynamic"))
    assert (static.is_dyn, pie.is_dyn, dyn.is_dyn) == (False, True, True)
    assert static.interp is None and pie.interp is None and dyn.interp.startswith("/")
    assert not static.exec_stack
    # the bss of the RW segment is in memory only
    assert any(s.memsz - s.filesz >= 100000 and s.prot == 3 for s in static.segments)


def test_parse_exec_stack_patched(binaries, tmp_path):
    data = binaries["static"].read_bytes()
    entry = next(h for h in program_headers(data) if h[1] == PT_GNU_STACK)
    patched = tmp_path / "execstack"
    patched.write_bytes(patch(data, entry[0] + 4, "<I", entry[2] | 1))
    info = parse_elf(patched.read_bytes())
    assert info.exec_stack and info == readelf(patched)


def test_parse_aarch64_machine_accepted(binaries, tmp_path):
    patched = tmp_path / "arm64"
    patched.write_bytes(patch(binaries["static-pie"].read_bytes(), 18, "<H", 183))
    info = parse_elf(patched.read_bytes())
    assert info.machine == "aarch64" and info == readelf(patched)


def test_parse_program_header_type_unknown_to_lief(binaries, tmp_path):
    data = binaries["static"].read_bytes()
    entry = next(h for h in program_headers(data) if h[1] == PT_GNU_STACK)
    patched = tmp_path / "sframe"
    patched.write_bytes(patch(data, entry[0], "<I", 0x6474E554))  # PT_GNU_SFRAME (binutils 2.40)
    assert parse_elf(patched.read_bytes()) == readelf(patched)


# --- parse_elf: what cannot run -------------------------------------------------------

def load_error(data: bytes) -> LoadError:
    with pytest.raises(LoadError) as caught:
        parse_elf(data)
    e = caught.value
    assert e.exit_code == 126 and e.errno == errno.ENOEXEC
    assert "\n" not in str(e) and str(e).startswith("exec format error: ")
    return e


def test_rejects_what_is_not_elf():
    assert "not an ELF file" in str(load_error(b""))
    assert "not an ELF file" in str(load_error(b"#!/bin/sh\necho hi\n"))
    assert "not an ELF file" in str(load_error(random.Random(1).randbytes(5000)))
    load_error(b"\x7fELF")
    load_error(b"\x7fELF" + random.Random(2).randbytes(5000))


def test_rejects_patched_headers(binaries):
    data = binaries["static"].read_bytes()
    assert "32-bit ELF is not supported" in str(load_error(patch(data, 4, "<B", 1)))
    assert "big-endian" in str(load_error(patch(data, 5, "<B", 2)))
    message = str(load_error(patch(data, 18, "<H", 40)))
    assert "ELF for machine ARM (40)" in message and "x86_64" in message
    assert "core dump" in str(load_error(patch(data, 16, "<H", 4)))
    assert "program header size" in str(load_error(patch(data, 54, "<H", 32)))
    assert "program header count" in str(load_error(patch(data, 56, "<H", 0)))


def test_rejects_relocatable_object(binaries):
    assert "relocatable object" in str(load_error(binaries["object"].read_bytes()))


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_rejects_truncated_files(binaries, kind):
    data = binaries[kind].read_bytes()
    assert "truncated" in str(load_error(data[:40]))
    assert "truncated" in str(load_error(data[:100]))  # inside the program header table
    assert "truncated" in str(load_error(data[:len(data) // 2]))
    last_load = max((h for h in program_headers(data) if h[1] == PT_LOAD), key=lambda h: h[3] + h[6])
    assert "truncated" in str(load_error(data[:last_load[3] + last_load[6] - 1]))


def test_rejects_inconsistent_segments(binaries, private_cache):
    data = binaries["static"].read_bytes()
    loads = [h for h in program_headers(data) if h[1] == PT_LOAD]
    no_load = data
    for h in loads:
        no_load = patch(no_load, h[0], "<I", PT_NULL)
    assert "no loadable segment" in str(load_error(no_load))
    first = loads[0]  # file offset 0, so a larger p_filesz still lies inside the file
    assert "file size larger than memory size" in str(load_error(patch(data, first[0] + 32, "<Q", first[7] + 8)))
    assert "within a page" in str(load_error(patch(data, loads[1][0] + 8, "<Q", loads[1][3] + 1)))
    swapped = bytearray(data)
    swapped[loads[0][0]:loads[0][0] + 56], swapped[loads[1][0]:loads[1][0] + 56] = (
        data[loads[1][0]:loads[1][0] + 56], data[loads[0][0]:loads[0][0] + 56])
    assert "out of address order" in str(load_error(bytes(swapped)))
    assert not private_cache.exists() or not list(private_cache.iterdir())  # failures are not cached


def test_hostile_bytes_raise_only_load_error(binaries, monkeypatch):
    monkeypatch.setenv("SENTRY_NO_CACHE", "1")
    data = binaries["static-pie"].read_bytes()
    rng = random.Random(0)
    headers_end = 64 + 56 * len(program_headers(data))
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(headers_end)] = rng.randrange(256)
        try:
            parse_elf(bytes(mutated))
        except LoadError:
            pass


# --- plan_image -------------------------------------------------------------------------

def test_plan_static(binaries):
    data = binaries["static"].read_bytes()
    info = parse_elf(data)
    plan = plan_for(info, data, path="/bin/static")
    check_mapping_shapes(plan)
    check_segments_loaded(plan, info, data, 0, "/bin/static")
    assert plan.machine == "x86_64" and plan.exe_path == "/bin/static"
    assert plan.entry == info.entry
    assert plan.brk == max(s.vaddr + s.memsz for s in info.segments) + PAGE - 1 & ~(PAGE - 1)
    assert plan.mmap_base == X86.mmap_top
    auxv = dict(plan.auxv)
    assert auxv[AT_BASE] == 0 and auxv[AT_ENTRY] == info.entry
    # the program headers are in memory where AT_PHDR says (libc reads them there)
    assert read(plan, auxv[AT_PHDR], info.phnum * 56) == data[info.phoff:info.phoff + info.phnum * 56]


def test_plan_static_pie_is_biased(binaries):
    data = binaries["static-pie"].read_bytes()
    info = parse_elf(data)
    plan = plan_for(info, data)
    check_mapping_shapes(plan)
    bias = X86.dyn_base - (info.segments[0].vaddr & ~(PAGE - 1))
    check_segments_loaded(plan, info, data, bias, "/bin/prog")
    assert plan.mappings[0].start == 0x555555554000
    assert read(plan, 0x555555554000, 4) == b"\x7fELF"  # the file's first page, header included
    auxv = dict(plan.auxv)
    assert plan.entry == auxv[AT_ENTRY] == info.entry + bias
    assert read(plan, auxv[AT_PHDR], info.phnum * 56) == data[info.phoff:info.phoff + info.phnum * 56]
    assert plan.brk == max(m.start + m.length for m in plan.mappings if m.name == "/bin/prog")


def test_plan_with_interpreter(binaries):
    data = binaries["dynamic"].read_bytes()
    info = parse_elf(data)
    ld_path = info.interp
    ld_data = Path(ld_path).read_bytes()
    ld = parse_elf(ld_data)
    plan = plan_for(info, data, interp=(ld, ld_data, ld_path))
    check_mapping_shapes(plan)
    auxv = dict(plan.auxv)
    base = auxv[AT_BASE]
    check_segments_loaded(plan, info, data, X86.dyn_base, "/bin/prog")
    check_segments_loaded(plan, ld, ld_data, base, ld_path)
    ld_maps = [m for m in plan.mappings if m.name == ld_path]
    assert max(m.start + m.length for m in ld_maps) == X86.mmap_top  # just below mmap_base, as Linux
    assert plan.mmap_base == min(m.start for m in ld_maps) == base
    assert base % PAGE == 0
    assert plan.entry == ld.entry + base  # the interpreter runs first...
    assert auxv[AT_ENTRY] == info.entry + X86.dyn_base  # ...and finds the program's entry here
    assert read(plan, base, 4) == b"\x7fELF"
    assert plan.brk < plan.mmap_base


def test_plan_needs_its_interpreter(binaries):
    data = binaries["dynamic"].read_bytes()
    with pytest.raises(LoadError, match="needs an interpreter"):
        plan_for(parse_elf(data), data)


def test_plan_interpreter_of_another_machine(binaries):
    data = binaries["dynamic"].read_bytes()
    info = parse_elf(data)
    ld_data = patch(Path(info.interp).read_bytes(), 18, "<H", 183)
    with pytest.raises(LoadError, match="aarch64") as caught:
        plan_for(info, data, interp=(parse_elf(ld_data), ld_data, info.interp))
    assert caught.value.exit_code == 126


def test_plan_aarch64_layout_and_alignment(binaries):
    data = patch(binaries["static-pie"].read_bytes(), 18, "<H", 183)
    plan = plan_for(parse_elf(data), data)
    arm = LAYOUTS["aarch64"]
    assert plan.machine == "aarch64" and plan.mappings[0].start == arm.dyn_base == 0xaaaaaaaaa000
    stack = plan.mappings[-1]
    assert stack.start + stack.length == arm.stack_top == 0xfffffffff000
    assert read_cstring(plan, dict(plan.auxv)[AT_PLATFORM]) == b"aarch64"
    # Linux aligns the load bias to the largest p_align: 64 KiB pages land at 0xaaaaaaaa0000
    for h in program_headers(data):
        if h[1] == PT_LOAD:
            data = patch(data, h[0] + 48, "<Q", 0x10000)
    info = parse_elf(data)
    assert info.load_align == 0x10000
    assert plan_for(info, data).mappings[0].start == 0xaaaaaaaa0000


@pytest.mark.parametrize("argv, envp", [
    ([b"prog"], []),
    ([], []),
    ([b"prog", b"a", b"bb", b"ccc"], [b"A=1"]),
    ([b"x" * n for n in range(1, 9)], [b"K%d=%s" % (i, b"v" * i) for i in range(7)]),
])
def test_plan_stack(binaries, argv, envp):
    data = binaries["static"].read_bytes()
    info = parse_elf(data)
    random_bytes = bytes(range(100, 116))
    plan = plan_for(info, data, path="/bin/static", argv=argv, envp=envp, execfn=b"/bin/static",
                    random_bytes=random_bytes, uid=1000, euid=1001, gid=1002, egid=1003, secure=True)
    stack = plan.mappings[-1]
    assert (stack.start, stack.length) == (X86.stack_top - X86.stack_size, X86.stack_size)
    assert (stack.prot, stack.name) == (3, "[stack]")
    assert plan.sp % 16 == 0 and stack.start < plan.sp < X86.stack_top

    got_argv, got_envp, got_auxv = decode_stack(plan)
    assert (got_argv, got_envp, got_auxv) == (argv, envp, plan.auxv)
    keys = [k for k, _ in plan.auxv]
    assert keys == [AT_HWCAP, AT_PAGESZ, AT_CLKTCK, AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_FLAGS,
                    AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE, AT_RANDOM, AT_HWCAP2,
                    AT_EXECFN, AT_PLATFORM]
    auxv = dict(plan.auxv)
    assert auxv[AT_PAGESZ] == PAGE and auxv[AT_CLKTCK] == 100 and auxv[AT_FLAGS] == 0
    assert (auxv[AT_PHENT], auxv[AT_PHNUM]) == (56, info.phnum)
    assert (auxv[AT_UID], auxv[AT_EUID], auxv[AT_GID], auxv[AT_EGID], auxv[AT_SECURE]) == (1000, 1001, 1002, 1003, 1)
    assert (auxv[AT_HWCAP], auxv[AT_HWCAP2]) == (0x178BFBFF, 2)
    assert read(plan, auxv[AT_RANDOM], 16) == random_bytes
    assert read_cstring(plan, auxv[AT_PLATFORM]) == b"x86_64"

    # Linux's order from the top down: a NULL word, execfn, envp strings, argv strings,
    # then (16-aligned) the platform string and the random bytes, then the tables.
    assert read(plan, X86.stack_top - 8, 8) == bytes(8)
    assert auxv[AT_EXECFN] == X86.stack_top - 8 - len(b"/bin/static\0")
    assert read_cstring(plan, auxv[AT_EXECFN]) == b"/bin/static"
    argc = len(argv)
    string_addresses = [word(plan, plan.sp + 8 * (1 + i)) for i in range(argc)]
    string_addresses += [word(plan, plan.sp + 8 * (2 + argc + i)) for i in range(len(envp))]
    string_addresses.append(auxv[AT_EXECFN])
    assert string_addresses == sorted(string_addresses)
    strings_bottom = string_addresses[0]
    assert auxv[AT_PLATFORM] + len(b"x86_64\0") == strings_bottom & ~15
    assert auxv[AT_RANDOM] + 16 == auxv[AT_PLATFORM]
    tables_end = plan.sp + 8 * (1 + argc + 1 + len(envp) + 1 + 2 * len(plan.auxv) + 2)
    assert tables_end <= auxv[AT_RANDOM] < tables_end + 16


def test_plan_optional_auxv_entries(binaries):
    data = binaries["static"].read_bytes()
    plan = plan_for(parse_elf(data), data, minsigstksz=3376, clktck=250)
    assert plan.auxv[0] == (AT_MINSIGSTKSZ, 3376) and dict(plan.auxv)[AT_CLKTCK] == 250
    assert AT_SYSINFO_EHDR not in dict(plan.auxv)  # no vDSO
    assert decode_stack(plan)[2] == plan.auxv


def test_plan_exec_stack(binaries):
    data = binaries["static"].read_bytes()
    entry = next(h for h in program_headers(data) if h[1] == PT_GNU_STACK)
    data = patch(data, entry[0] + 4, "<I", entry[2] | 1)
    assert plan_for(parse_elf(data), data).mappings[-1].prot == 7


def test_plan_argument_list_too_long(binaries):
    data = binaries["static"].read_bytes()
    info = parse_elf(data)
    for argv in ([b"x" * (128 * 1024)], [b"y" * 100_000] * 25):
        with pytest.raises(LoadError) as caught:
            plan_for(info, data, argv=argv)
        assert caught.value.errno == errno.E2BIG


# --- the cache --------------------------------------------------------------------------

PARSE_IN_A_FRESH_PROCESS = """
import json, sys
from loader import parse_elf
from loader.elf import as_record
info = parse_elf(open(sys.argv[1], "rb").read())
print(json.dumps({"lief": "lief" in sys.modules, "info": as_record(info)}))
"""


def test_cache_spares_the_lief_import(binaries, tmp_path, private_cache):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("SENTRY_NO_CACHE", None)
    runs = [json.loads(subprocess.run([sys.executable, "-c", PARSE_IN_A_FRESH_PROCESS, str(binaries["dynamic"])],
                                      env=env, capture_output=True, text=True, check=True,
                                      cwd=Path(__file__).resolve().parents[2]).stdout)
            for _ in range(2)]
    assert runs[0]["lief"] and not runs[1]["lief"]
    assert runs[0]["info"] == runs[1]["info"] == json.loads(json.dumps(as_record(readelf(binaries["dynamic"]))))
    assert len(list(private_cache.glob("*.json"))) == 1


def test_cache_can_be_disabled(binaries, monkeypatch, private_cache):
    monkeypatch.setenv("SENTRY_NO_CACHE", "1")
    parse_elf(binaries["static"].read_bytes())
    assert not private_cache.exists()


def test_cache_damage_is_a_miss(binaries, private_cache):
    data = binaries["static"].read_bytes()
    expected = parse_elf(data)
    (entry,) = private_cache.glob("*.json")
    for damage in ("{not json", json.dumps({"format": 1, "value": {"machine": "x86_64"}}), "[]"):
        entry.write_text(damage)
        assert parse_elf(data) == expected


def test_cache_unwritable_is_ignored(binaries, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    data = binaries["static"].read_bytes()
    assert parse_elf(data) == parse_elf(data)
