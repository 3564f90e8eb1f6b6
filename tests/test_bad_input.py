"""The sentry's own failures: a program it cannot run, or a bad command line.
Each prints exactly one line on stderr starting with "sentry: ", exits
127 (not found), 126 (cannot execute) or 125 (bad usage), and never shows a
Python traceback."""
from __future__ import annotations

import os
import shutil

import pytest

import harness
from harness import PLATFORMS


def _copy_fixture(tmp_path, name="hello"):
    src = harness.build("hello", "glibc-static")
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)
    return dst


def _patched(tmp_path, offset: int, value: bytes, name: str):
    p = _copy_fixture(tmp_path, name)
    data = bytearray(p.read_bytes())
    data[offset:offset + len(value)] = value
    p.write_bytes(bytes(data))
    return p


def _truncated(tmp_path, size: int):
    p = _copy_fixture(tmp_path, f"truncated-{size}")
    data = p.read_bytes()
    p.write_bytes(data[:size])
    return p


def _make(kind: str, tmp_path):
    if kind == "missing":
        return tmp_path / "no-such-program"
    if kind == "missing-dir":
        return tmp_path / "no" / "such" / "dir" / "prog"
    if kind == "directory":
        d = tmp_path / "a-directory"
        d.mkdir()
        return d
    if kind == "not-elf":
        p = tmp_path / "text"
        p.write_bytes(b"this is not an ELF file, just text\n" * 20)
        os.chmod(p, 0o755)
        return p
    if kind == "empty":
        p = tmp_path / "empty"
        p.write_bytes(b"")
        os.chmod(p, 0o755)
        return p
    if kind == "elf-magic-only":
        p = tmp_path / "magic"
        p.write_bytes(b"\x7fELF")
        os.chmod(p, 0o755)
        return p
    if kind == "truncated-header":
        return _truncated(tmp_path, 40)
    if kind == "truncated-phdrs":
        return _truncated(tmp_path, 100)
    if kind == "elf32":
        return _patched(tmp_path, 4, b"\x01", "elf32")  # EI_CLASS = ELFCLASS32
    if kind == "machine-arm":
        return _patched(tmp_path, 18, (40).to_bytes(2, "little"), "arm")  # e_machine = EM_ARM
    if kind == "big-endian":
        return _patched(tmp_path, 5, b"\x02", "bigendian")  # EI_DATA = ELFDATA2MSB
    if kind == "relocatable":
        return _patched(tmp_path, 16, (1).to_bytes(2, "little"), "reloc")  # e_type = ET_REL
    raise ValueError(kind)


BAD_PROGRAMS = [
    ("missing", 127),
    ("missing-dir", 127),
    ("directory", 126),
    ("not-elf", 126),
    ("empty", 126),
    ("elf-magic-only", 126),
    ("truncated-header", 126),
    ("truncated-phdrs", 126),
    ("elf32", 126),
    ("machine-arm", 126),
    ("big-endian", 126),
    ("relocatable", 126),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("kind,status", BAD_PROGRAMS, ids=[k for k, _ in BAD_PROGRAMS])
def test_bad_program(kind, status, platform, tmp_path):
    prog = _make(kind, tmp_path)
    run = harness.run_sandbox(platform, prog, ["arg"])
    line = harness.sentry_error_line(run)
    assert run.status == status, f"{kind}: exit {run.status}, expected {status}: {line}"
    assert run.stdout == b"", f"{kind}: unexpected stdout {run.stdout[:200]!r}"


BAD_USAGE = [
    ("unknown-option", ["run", "--no-such-option", "PROG"]),
    ("unknown-option-value", ["run", "--no-such-option=3", "PROG"]),
    ("bad-platform", ["run", "--platform", "no-such-platform", "PROG"]),
    ("no-program", ["run"]),
]


@pytest.mark.parametrize("case,args", BAD_USAGE, ids=[c for c, _ in BAD_USAGE])
def test_bad_usage(case, args):
    prog = str(harness.build("hello", "glibc-static"))
    argv = [a if a != "PROG" else prog for a in args]
    run = harness.run_sentry_cli(argv)
    line = harness.sentry_error_line(run)
    assert run.status == 125, f"{case}: exit {run.status}, expected 125: {line}"
    assert b"hello, world" not in run.stdout, "the program ran anyway"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_program_is_not_an_option(platform):
    """Arguments after PROGRAM belong to the program, even option-like ones
    (also covered by the hello-dashargs differential case)."""
    prog = harness.build("hello", "glibc-static")
    run = harness.run_sandbox(platform, prog, ["--platform", "--no-such-option", "--help"])
    harness.check_sentry_sane(run)
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    assert b"argv[1]=[--platform]" in run.stdout and b"argv[3]=[--help]" in run.stdout
