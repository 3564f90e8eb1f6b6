"""Extended attributes where the sandbox's files come from the host (issue 13,
"Extended attributes"); no native oracle: what the sandbox answers is Linux's
for the kind of file it shows, and the host must be as the test left it.

- a --rootfs file (the overlay): the lower's user.* attributes are seen, a
  change copies the file up with them, and the host file keeps its own;
- a host directory lent :rw: its files' user.* attributes are read and written
  on the host, other namespaces are refused (EOPNOTSUPP);
- lent read-only: seen, never changed (EROFS).

The differential side is fixtures/xattrs.c in tests/test_fixtures.py.
"""
from __future__ import annotations

import os
import shutil

import pytest

import harness
from harness import PLATFORMS


@pytest.fixture
def prog():
    return harness.build("xattrs", "glibc-static")


def _file(directory, name: str):
    path = directory / name
    path.write_text("data\n")
    os.setxattr(path, "user.origin", b"host")
    os.setxattr(path, "user.gone", b"soon")
    return path


def _host_view(path) -> dict:
    return {name: os.getxattr(path, name) for name in os.listxattr(path)}


BEFORE = (b"before: 22 [user.gone,user.origin]\n  user.gone = soon\n  user.origin = host\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rootfs_copy_up_keeps_them(platform, prog, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    shutil.copy(prog, root / "xattrs")
    path = _file(root / "etc", "attrfile")
    run = harness.run_sandbox(platform, "/xattrs", ["--on", "/etc/attrfile"],
                              options=["--rootfs", str(root)], cwd=tmp_path)
    harness.check_sentry_sane(run)
    assert run.status == 0 and run.stdout == BEFORE + (
        b"set user.added: 0\nset trusted.t: 0\nremove user.gone: 0\n"
        b"after: 33 [trusted.t,user.added,user.origin]\n"
        b"  trusted.t = t\n  user.added = sandbox\n  user.origin = host\n"), run.stdout.decode() + run.stderr_text()
    assert _host_view(path) == {"user.origin": b"host", "user.gone": b"soon"}, "the rootfs changed on the host"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_files_take_user_attributes_through_rw(platform, prog, tmp_path):
    lent = tmp_path / "lent"
    lent.mkdir()
    path = _file(lent, "f")
    run = harness.run_sandbox(platform, prog, ["--on", str(path)], options=["--mount", f"{lent}:{lent}:rw"])
    harness.check_sentry_sane(run)
    assert run.status == 0 and run.stdout == BEFORE + (
        b"set user.added: 0\nset trusted.t: -1 ENOTSUP\nremove user.gone: 0\n"
        b"after: 23 [user.added,user.origin]\n  user.added = sandbox\n  user.origin = host\n"), \
        run.stdout.decode() + run.stderr_text()
    assert _host_view(path) == {"user.origin": b"host", "user.added": b"sandbox"}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_files_lent_read_only_stay(platform, prog, tmp_path):
    lent = tmp_path / "lent"
    lent.mkdir()
    path = _file(lent, "f")
    run = harness.run_sandbox(platform, prog, ["--on", str(path)], options=["--mount", f"{lent}:{lent}:ro"])
    harness.check_sentry_sane(run)
    assert run.status == 0 and run.stdout == BEFORE + (
        b"set user.added: -1 EROFS\nset trusted.t: -1 EROFS\nremove user.gone: -1 EROFS\n") + BEFORE.replace(
        b"before", b"after"), run.stdout.decode() + run.stderr_text()
    assert _host_view(path) == {"user.origin": b"host", "user.gone": b"soon"}
