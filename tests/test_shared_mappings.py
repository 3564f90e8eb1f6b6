"""Shared mappings of host files (issue 4): a store through a MAP_SHARED
mapping of a file under a :rw mount changes the host file; under a :ro mount
nothing the program tries (a writable shared mapping, making a read-only one
writable, MADV_REMOVE, a private store) ever changes the host.

fixtures/shmap.c runs natively (the oracle; for `ro` in a private mount
namespace where the directory is bound read-only, as test_filesyscalls does)
and in the sandbox, and the output must match; the host tree the test made is
hashed before and after (harness.tree_manifest), as tests/test_escapes.py does.
The other modes of the fixture (file, anon) are cases of tests/test_fixtures.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness
from harness import PLATFORMS, VARIANTS
from test_filesyscalls import _native_read_only

BIG = bytes(i * 7 % 251 for i in range(1 << 20))  # the fixture's pattern()
TEXT = b"a host file lent to the sandbox, long enough for the marker\nsecond line\n"
MARKER = b"STORED THROUGH A SHARED MAPPING"


def _scene(base: Path) -> Path:
    """BASE/lent/{file,big} (the mount), BASE/outside/canary (never mounted)."""
    lent = base / "lent"
    lent.mkdir()
    (lent / "file").write_bytes(TEXT)
    (lent / "big").write_bytes(BIG)
    (base / "outside").mkdir()
    (base / "outside" / "canary").write_bytes(b"not lent\n")
    return lent


def _check(run: harness.Run, expect=()) -> None:
    assert not run.timed_out and run.status == 0, f"{run.headline()}\n{run.stderr_text()}"
    for e in expect:
        assert e in run.stdout, f"{e!r} not in:\n{run.stdout.decode(errors='replace')}"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_read_only_mount_is_never_written_through_a_mapping(variant, platform, tmp_path):
    lent = _scene(tmp_path)
    prog = harness.build("shmap", variant)
    args = ["ro", str(lent / "file"), str(lent / "big")]
    before = harness.tree_manifest(tmp_path)
    native = _native_read_only(str(lent), prog, args)
    _check(native, (b"open O_RDWR: -1 EROFS\n", b"shared writable: -1 EACCES\n",
                    b"mprotect it writable: -1 EACCES\n", b"private store seen by the shared view: no\n",
                    b"read-only mount read into half a buffer: 524288 ", b"done\n"))
    assert harness.tree_manifest(tmp_path) == before, "the native run changed the read-only tree"
    sandbox = harness.run_sandbox(platform, prog, args, options=["--mount", f"{lent}:{lent}:ro"])
    harness.compare(native, sandbox, label=f"shmap ro ({variant})")
    after = harness.tree_manifest(tmp_path)
    diff = harness.manifest_diff(before, after, "before", "after")
    assert not diff, f"a read-only mount changed on the host:\n{diff}"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rw_mount_is_written_through_a_mapping(variant, platform, tmp_path):
    lent = _scene(tmp_path)
    prog = harness.build("shmap", variant)
    args = ["rw", str(lent / "file"), str(lent / "big2")]
    native = harness.run_native(prog, args)
    _check(native, (b"seen by read: " + MARKER + b"\n", b"store at the end of the big file seen: E\n",
                    b"read-write mount read into half a buffer: 524288 ", b"done\n"))
    assert (lent / "file").read_bytes() == MARKER + TEXT[len(MARKER):]
    (lent / "file").write_bytes(TEXT)
    before = harness.tree_manifest(tmp_path)
    sandbox = harness.run_sandbox(platform, prog, args, options=["--mount", f"{lent}:{lent}:rw"])
    harness.compare(native, sandbox, label=f"shmap rw ({variant})")
    # The store reached the host file, and nothing else changed (big2 was made and removed).
    assert (lent / "file").read_bytes() == MARKER + TEXT[len(MARKER):]
    after = harness.tree_manifest(tmp_path)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed <= {"lent/file", "lent", "."}, f"the run changed more than the mapped file: {sorted(changed)}"
    assert before["outside/canary"] == after["outside/canary"]
    assert not os.path.exists(lent / "big2")
