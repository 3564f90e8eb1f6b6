"""What the sandbox says about the machine and its user, against the host's tools."""
import os
import subprocess
import sys

import pytest

from harness import PLATFORMS

SENTRY = [sys.executable, "-m", "sentry", "run"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_nproc_sees_the_hosts_cpu_count(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "/usr/bin/nproc", "--all"], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"%d\n" % os.cpu_count(), b""), r
    r = subprocess.run([*SENTRY, "--platform", platform, "/usr/bin/nproc"], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"%d\n" % min(os.cpu_count(), 64), b""), r


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_sandbox_user_is_root_with_its_own_group(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "/usr/bin/id"], capture_output=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"uid=0(root) gid=0(root) groups=0(root)\n", b""), r
