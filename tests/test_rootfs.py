"""--rootfs DIR: the directory read-only below, the program's changes in memory above."""
import shutil
import subprocess
import sys

import pytest

import harness
from harness import PLATFORMS

SENTRY = [sys.executable, "-m", "sentry", "run"]


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(harness.BUSYBOX, root / "bin" / "busybox")
    (root / "etc" / "greeting").write_text("hello from the rootfs\n")
    (root / "etc" / "doomed").write_text("x\n")
    before = {p: p.read_bytes() for p in (root / "etc").iterdir()}
    yield root
    assert {p: p.read_bytes() for p in (root / "etc").iterdir()} == before, "the rootfs changed on the host"


def run(platform, root, *argv):
    return subprocess.run([*SENTRY, "--platform", platform, "--rootfs", str(root), *argv],
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rootfs_is_the_view(platform, rootfs):
    r = run(platform, rootfs, "/bin/busybox", "ls", "/")
    # root: HOME, made in memory when the rootfs has none
    assert r.returncode == 0 and r.stdout.split() == [b"bin", b"dev", b"etc", b"proc", b"root", b"tmp"], r
    r = run(platform, rootfs, "busybox", "cat", "/etc/greeting")   # a bare name: PATH inside the rootfs
    assert r.returncode == 0 and r.stdout == b"hello from the rootfs\n", r


@pytest.mark.parametrize("platform", PLATFORMS)
def test_changes_stay_in_memory(platform, rootfs):
    r = run(platform, rootfs, "/bin/busybox", "sed", "-i", "s/hello/bye/", "/etc/greeting")
    assert r.returncode == 0, r.stderr
    r = run(platform, rootfs, "/bin/busybox", "rm", "/etc/doomed")
    assert r.returncode == 0, r.stderr
    r = run(platform, rootfs, "/bin/busybox", "mkdir", "-p", "/new/dir")
    assert r.returncode == 0, r.stderr
    assert not (rootfs / "new").exists()


def test_rootfs_errors_are_one_line(tmp_path):
    for argv, code in (([str(tmp_path / "missing"), "/bin/true"], 125), ([str(tmp_path), "/bin/nothing"], 127)):
        r = subprocess.run([*SENTRY, "--rootfs", *argv], capture_output=True, timeout=60)
        assert r.returncode == code and r.stderr.startswith(b"sentry: ") and r.stderr.count(b"\n") == 1, r
