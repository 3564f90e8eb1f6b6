"""The toolchains are there and every fixture builds, warning-free (-Werror),
as an x86-64 ELF of the kind its variant promises (static or dynamic, ET_EXEC
or ET_DYN, which interpreter), with each variant of harness.VARIANTS."""
from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass

import pytest

import harness

ET_EXEC, ET_DYN = 2, 3
PT_INTERP, PT_DYNAMIC = 3, 2


def elf_info(path) -> dict:
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    assert data[4] == 2, "not ELFCLASS64"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    ptypes, interp = [], None
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type = struct.unpack_from("<I", data, off)[0]
        ptypes.append(p_type)
        if p_type == PT_INTERP:
            p_offset, _, _, p_filesz = struct.unpack_from("<QQQQ", data, off + 8)
            interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return {"type": e_type, "machine": e_machine, "ptypes": ptypes, "interp": interp}


GLIBC_INTERP = "/lib64/ld-linux-x86-64.so.2"


@dataclass(frozen=True)
class Kind:
    """What every fixture built as a variant must be."""
    e_type: int
    interp: str | None  # PT_INTERP's path; None: static (no interpreter)
    dynamic: bool  # has PT_DYNAMIC (static-pie relocates itself with it)


# One entry per harness.VARIANTS: a new variant says here what it builds.
KINDS = {
    "glibc-static": Kind(ET_EXEC, None, False),
    "glibc-static-pie": Kind(ET_DYN, None, True),
    "musl-static": Kind(ET_EXEC, None, False),
    # gcc's default here is PIE; ld.so and libc.so.6 come from the view's /lib64 and /lib
    "glibc-dynamic": Kind(ET_DYN, GLIBC_INTERP, True),
}


@pytest.mark.parametrize("tool", ["gcc", "musl-gcc"])
def test_compiler_present(tool):
    assert shutil.which(tool), f"{tool} is missing: run scripts/setup (gcc, musl-tools)"


def test_busybox_present():
    harness.require_busybox()
    info = elf_info(harness.BUSYBOX)
    assert PT_INTERP not in info["ptypes"], "/bin/busybox must be the static build (busybox-static)"


def test_every_variant_has_a_kind():
    assert set(KINDS) == set(harness.VARIANTS), (
        f"tests/test_build.py KINDS must describe each variant: "
        f"missing {sorted(set(harness.VARIANTS) - set(KINDS))}, stale {sorted(set(KINDS) - set(harness.VARIANTS))}")


@pytest.mark.parametrize("variant", list(harness.VARIANTS))
@pytest.mark.parametrize("name", harness.fixture_names())
def test_fixture_builds(name, variant):
    path = harness.build(name, variant)
    info = elf_info(path)
    kind = KINDS[variant]
    assert info["machine"] == 62, "not x86-64"
    names = {ET_EXEC: "ET_EXEC", ET_DYN: "ET_DYN"}
    assert info["type"] == kind.e_type, (
        f"{path}: {names.get(info['type'], info['type'])}, {variant} must be {names[kind.e_type]}")
    if kind.interp is None:
        assert PT_INTERP not in info["ptypes"], f"{path} has an interpreter ({info['interp']}): not static"
    else:
        assert info["interp"] == kind.interp, f"{path}: interpreter {info['interp']!r}, expected {kind.interp!r}"
        assert os.path.exists(kind.interp), f"the host has no {kind.interp}: the dynamic variant cannot run"
    assert (PT_DYNAMIC in info["ptypes"]) == kind.dynamic, (
        f"{path}: PT_DYNAMIC {'missing' if kind.dynamic else 'present'} for {variant}")


def test_rebuild_only_when_changed():
    """A second build of an up-to-date fixture does not touch the binary."""
    path = harness.build("hello", "glibc-static")
    before = path.stat().st_mtime_ns
    harness._built.clear()
    assert harness.build("hello", "glibc-static") == path
    assert path.stat().st_mtime_ns == before
