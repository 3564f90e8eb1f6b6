"""Lent files' identity, differentially (issue 15): fixtures/inodes.c in a fresh host
directory on another filesystem than /tmp (the host's /dev/shm), natively and lent to the
sandbox with --mount DIR:DIR:rw on both platforms.

The sandbox numbers host files itself (sentry/vfs/hostids.py), so the numbers differ from
the host's by design; what must hold in both is every relation between them: stat and
getdents, hard links and st_nlink, renames, reopening, fstat and statx, /proc/self/fdinfo,
/proc/self/maps, /proc/locks, st_dev and mountinfo per mount, and file handles. The fixture prints only
those relations (yes/no) and /proc/locks's lines with their numbers left out."""
from __future__ import annotations

import os
import re

import pytest

import harness
from harness import PLATFORMS, VARIANTS
from test_filesyscalls import shm_dir  # noqa: F401  (a fresh directory on /dev/shm)

EXPECT = (b"six files, six numbers: yes\n", b"entries of t agreeing (d_ino = st_ino): 5\n",
          b"entries of the lent directory agreeing (but ..): 2\n", b"hard links share st_ino: yes\n",
          b"st_nlink after link: 2 2\n", b"st_nlink after a link in another directory: 3\n",
          b"after unlinking both: st_nlink 1, same st_ino: yes\n", b"renamed file keeps st_ino: yes\n",
          b"entries of t after 200 more agreeing: 205\n",
          b"fdinfo ino is st_ino: file yes, directory yes, O_PATH yes\n", b"stat through /proc/self/fd agrees: yes\n",
          b"an O_TMPFILE file linked in keeps st_ino: yes, st_nlink 1, fdinfo agrees: yes\n",
          b"in /proc/self/maps: yes, inode is st_ino: yes, device is st_dev: yes\n",
          b"flock line: [FLOCK  ADVISORY  WRITE ] ... [0 EOF]\n",
          b"fcntl lock in /proc/locks: yes, inode is st_ino: yes, device is st_dev: yes\n",
          b"OFD lock in /proc/locks: yes, inode is st_ino: yes\n",
          b"st_dev differs from /proc's: yes, from /tmp's: yes\n",
          b"mountinfo names the mount: yes, its device is st_dev: yes, fdinfo's mnt_id is its id: yes\n",
          b"the handle's mount id is mountinfo's: yes\n",
          b"the handle opens the same file: yes\n", b"done\n")


def _native(prog, directory: str) -> harness.Run:
    run = harness.run_native(prog, [directory])
    assert not run.timed_out and run.status == 0, f"native inodes: exit {run.status}\n{run.stderr_text()}"
    for e in EXPECT:
        assert e in run.stdout, f"native inodes: {e!r} not in\n{run.stdout.decode(errors='replace')}"
    # every relation holds on the host: a "no" would be a broken fixture, not an oracle
    assert not re.search(rb"\bno\b", run.stdout), run.stdout.decode(errors="replace")
    return run


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lent_inode_relations(variant, platform, shm_dir):  # noqa: F811
    prog = harness.build("inodes", variant)
    native = _native(prog, shm_dir)
    assert os.listdir(shm_dir) == [], "the native run left files behind"
    sandbox = harness.run_sandbox(platform, prog, [shm_dir], options=["--mount", f"{shm_dir}:{shm_dir}:rw"])
    harness.compare(native, sandbox, label=f"inodes ({variant})")
    assert os.listdir(shm_dir) == [], "the sandboxed run left files behind"
