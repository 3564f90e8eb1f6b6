"""The toolchains are there and every fixture builds, warning-free (-Werror),
as a static x86-64 ELF of the expected type, with each of the three
toolchains."""
from __future__ import annotations

import shutil
import struct

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
    ptypes = [struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)]
    return {"type": e_type, "machine": e_machine, "ptypes": ptypes}


@pytest.mark.parametrize("tool", ["gcc", "musl-gcc"])
def test_compiler_present(tool):
    assert shutil.which(tool), f"{tool} is missing: run scripts/setup (gcc, musl-tools)"


def test_busybox_present():
    harness.require_busybox()
    info = elf_info(harness.BUSYBOX)
    assert PT_INTERP not in info["ptypes"], "/bin/busybox must be the static build (busybox-static)"


@pytest.mark.parametrize("variant", list(harness.VARIANTS))
@pytest.mark.parametrize("name", harness.fixture_names())
def test_fixture_builds(name, variant):
    path = harness.build(name, variant)
    info = elf_info(path)
    assert info["machine"] == 62, "not x86-64"
    assert PT_INTERP not in info["ptypes"], f"{path} has an interpreter: not static"
    if variant == "glibc-static-pie":
        assert info["type"] == ET_DYN, "static-pie must be ET_DYN"
    else:
        assert info["type"] == ET_EXEC, "static must be ET_EXEC"
        assert PT_DYNAMIC not in info["ptypes"]


def test_rebuild_only_when_changed():
    """A second build of an up-to-date fixture does not touch the binary."""
    path = harness.build("hello", "glibc-static")
    before = path.stat().st_mtime_ns
    harness._built.clear()
    assert harness.build("hello", "glibc-static") == path
    assert path.stat().st_mtime_ns == before
