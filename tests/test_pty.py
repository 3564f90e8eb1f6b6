"""Pseudo-terminals in the sandbox (/dev/ptmx, /dev/pts/N: sentry/vfs/tty.py) through
real programs, vs native: python3's pty module (pty.spawn, pty.fork: a session with its
controlling terminal) and util-linux's script. The ioctls and the line discipline one by
one are fixtures/ptys.c's (test_fixtures.py)."""
import pytest

import harness
from harness import PLATFORMS

PYTHON = "/usr/bin/python3"
TIMEOUT = 60

# no input is typed: when the echo of typed input shows against the program's own output
# depends on scheduling, natively too
SPAWN = r"""
import os, pty
status = pty.spawn(["/bin/sh", "-c", "tty | sed 's/[0-9]*$/N/'; stty size; echo done; exit 7"],
                   lambda fd: os.read(fd, 1024))
print("exit status", os.waitstatus_to_exitcode(status))
"""

FORK = r"""
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    print("isatty", os.isatty(0), os.isatty(1), "name", os.ttyname(0).rsplit("/", 1)[0])
    print("session leader", os.getsid(0) == os.getpid(), "foreground", os.tcgetpgrp(0) == os.getpgrp())
    tty = os.open("/dev/tty", os.O_RDWR)
    os.write(tty, b"through /dev/tty\n")
    sys.stdout.flush()
    os._exit(3)
out = b""
while True:
    try:
        data = os.read(fd, 1024)
    except OSError as e:
        print("master read ends with errno", e.errno)
        break
    if not data:
        break
    out += data
print(out.decode().replace("\r\n", "|"))
print("child exit", os.waitpid(pid, 0)[1] >> 8)
"""


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,script,stdin", [("spawn", SPAWN, b""), ("fork", FORK, b"")])
def test_python_pty(name, script, stdin, platform):
    harness.require_program(PYTHON)
    native, _ = harness.compare_program(platform, [PYTHON, "-I", "-c", script], stdin=stdin, timeout=TIMEOUT,
                                        label=f"python3 pty {name}")
    assert native.status == 0 and native.stdout, native


@pytest.mark.parametrize("platform", PLATFORMS)
def test_script(platform):
    harness.require_program("/usr/bin/script")
    native, _ = harness.compare_program(platform, ["/usr/bin/script", "-qec", "tty >/dev/null && echo on a tty; exit 5",
                                                   "/dev/null"], stdin=b"", timeout=TIMEOUT, label="script")
    assert b"on a tty" in native.stdout and native.status == 5, native
