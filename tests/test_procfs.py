"""/proc and /dev as programs see them.

- fixtures/procself.c, differentially: what a program reads about itself
  and the system from /proc (formats, agreement with the syscalls, errors of
  writes) must be what the host kernel gives it.
- busybox applets that live on /proc (ps, free, uptime, mount, cat of
  status), checked against what the sandbox's own objects say: their output
  differs from the host's on purpose (pid 1, 4 GiB, the sandbox's mounts).
- /proc shows the sandbox's processes only, never the host's.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

import harness
from harness import PLATFORMS, VARIANTS

BB = harness.BUSYBOX

PROCSELF_EXPECT = (
    b"exe is argv[0]: yes\n", b"/proc/self is the pid: yes\n", b"cmdline is argv, NUL-separated: yes\n",
    b"environ is envp: yes (3 entries)\n", b"status Name: procself\n", b"status Pid is getpid: yes\n",
    b"status SigBlk has SIGUSR1: yes\n", b"stat fields: 52\n",
    b"maps: main in an r-xp mapping of the program: yes\n", b"maps: a local variable in [stack] rw-p: yes\n",
    b"maps: the grown break in [heap]: yes\n", b"maps names at column 73, anonymous lines end in a space: yes\n",
    b"fd: 0 lnk\nfd: 1 lnk\nfd: 2 lnk\nfd: 3 lnk\n",
    b"reopen through the link: yes, reads the ELF magic: yes, own offset: yes\n",
    b"unlinked file reopened: yes, data: yes\n", b"through /dev/stdout\n",
    b"mounts: proc on /proc: yes, a root: yes\n", b"write status: -1 EINVAL\n", b"write cpuinfo: -1 EIO\n",
    b"open osrelease O_WRONLY: -1 EACCES\n", b"unlink /proc/self/status: -1 EPERM\n", b"done\n",
)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_procself_native(variant):
    """The fixture says what it should on the host kernel."""
    run = harness.run_native(harness.build("procself", variant))
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    for want in PROCSELF_EXPECT:
        assert want in run.stdout, f"{want!r} not in the native output:\n{run.stdout.decode(errors='replace')}"
    assert b": no" not in run.stdout, run.stdout.decode(errors="replace")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_procself_differential(variant, platform):
    harness.differential(platform, harness.build("procself", variant), label=f"procself ({variant})")


def _bb(platform, *argv, stdin=None):
    harness.require_busybox()
    run = harness.run_sandbox(platform, BB, list(argv), stdin=stdin)
    harness.check_sentry_sane(run)
    assert run.status == 0, f"busybox {' '.join(argv)}: exit {run.status}\n{run.stderr_text()}"
    assert run.stderr == b"", run.stderr_text()
    return run.stdout.decode()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_cat_status(platform):
    fields = dict(line.split(":\t", 1) for line in _bb(platform, "cat", "/proc/self/status").splitlines())
    assert fields["Name"] == "busybox" and fields["Pid"] == "1" and fields["PPid"] == "0"
    assert fields["State"] == "R (running)" and fields["Threads"] == "1"
    assert fields["Uid"] == "0\t0\t0\t0"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_ps(platform):
    assert _bb(platform, "ps") == f"PID   USER     COMMAND\n    1 root     {BB} ps\n"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_free(platform):
    lines = _bb(platform, "free").splitlines()
    assert lines[0].split() == ["total", "used", "free", "shared", "buff/cache", "available"]
    mem = lines[1].split()
    assert mem[0] == "Mem:" and mem[1] == "4194304" and int(mem[2]) + int(mem[3]) == 4194304
    assert lines[2].split() == ["Swap:", "0", "0", "0"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_uptime(platform):
    out = _bb(platform, "uptime")
    # the sandbox's own uptime: its age plus a boot uptime drawn per sandbox, 30 s to 5 min (sentry/clock.py)
    m = re.fullmatch(r" \d\d:\d\d:\d\d up (\d) min,  0 users,  load average: 0\.00, 0\.00, 0\.00\n", out)
    assert m and int(m.group(1)) <= 5, out


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_mount(platform):
    lines = _bb(platform, "mount").splitlines()
    assert lines[0] == "tmpfs on / type tmpfs (rw,relatime)"
    assert "proc on /proc type proc (rw,nosuid,nodev,noexec,relatime)" in lines
    assert "devtmpfs on /dev type devtmpfs (rw,nosuid,relatime,mode=755)" in lines
    assert "none on /usr type ext4 (ro,relatime)" in lines


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_dev(platform):
    out = _bb(platform, "ls", "-l", "/dev")
    for line in ("fd -> /proc/self/fd", "stdin -> /proc/self/fd/0", "stdout -> /proc/self/fd/1",
                 "stderr -> /proc/self/fd/2"):
        assert line in out, out
    assert re.search(r"^crw-rw-rw- .* 5, +0 .* tty$", out, re.M), out
    assert re.search(r"^drwxrwxrwt .* shm$", out, re.M)
    assert re.search(r"^crw-rw-rw- .* 5, +2 .* ptmx$", out, re.M), out
    assert _bb(platform, "cat", "/dev/stdin", stdin=b"from stdin\n") == "from stdin\n"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_tty_is_enxio(platform):
    harness.require_busybox()
    run = harness.run_sandbox(platform, BB, ["cat", "/dev/tty"])
    harness.check_sentry_sane(run)
    assert run.status == 1 and b"No such device or address" in run.stderr, run.stderr_text()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_proc_shows_only_the_sandbox(platform):
    """The host's processes are not there; pid 1 is the sandbox's own program,
    its environment is the sandbox's, its root is the sandbox's /."""
    pids = [n for n in _bb(platform, "ls", "/proc").split() if n.isdigit()]
    assert pids == ["1"]
    env = _bb(platform, "cat", "/proc/1/environ")
    assert env == "".join(f"{k}={v}\0" for k, v in harness.GUEST_ENV.items())
    assert _bb(platform, "ls", "/proc/1/root/") == _bb(platform, "ls", "/")
    maps = _bb(platform, "cat", "/proc/self/maps")
    assert maps.splitlines()[-1].endswith("[stack]") and "[vdso]" not in maps


def _symlinked_program(tmp_path):
    """d/bin/prog -> ../real/prog, a dynamic program whose library sits beside it
    and is found by RPATH $ORIGIN: ld.so takes $ORIGIN from /proc/self/exe, so the
    program runs only if that names the link's target (whose directory the default
    view lends, as it lends the link's)."""
    real, link_dir = tmp_path / "real", tmp_path / "bin"
    real.mkdir()
    link_dir.mkdir()
    (tmp_path / "lib.c").write_text('const char *where(void) { return "the library beside the target"; }\n')
    (tmp_path / "prog.c").write_text(
        '#include <stdio.h>\n#include <unistd.h>\nconst char *where(void);\n'
        'int main(int c, char **v) { char b[4096]; ssize_t n = readlink("/proc/self/exe", b, sizeof b - 1);\n'
        '  b[n < 0 ? 0 : n] = 0; printf("argv[0] %s\\nexe %s\\nlib %s\\n", v[0], b, where()); return 0; }\n')
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", real / "libwhere.so", tmp_path / "lib.c"], check=True)
    subprocess.run(["gcc", "-o", real / "prog", tmp_path / "prog.c", f"-L{real}", "-lwhere",
                    "-Wl,-rpath,$ORIGIN"], check=True)
    os.symlink("../real/prog", link_dir / "prog")
    return link_dir / "prog"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_program_named_by_a_symlink(platform, tmp_path):
    """The first program, named by a symlink, runs as its target, as execve runs it:
    /proc/self/exe and $ORIGIN are the target's (`sentry run /usr/bin/java` needs
    both), argv[0] the name the user typed."""
    prog = _symlinked_program(tmp_path)
    native = harness.run_native(prog)
    assert native.status == 0 and f"exe {tmp_path}/real/prog\n".encode() in native.stdout, native.stdout
    sandbox = harness.run_sandbox(platform, prog)
    harness.compare(native, sandbox, label="program named by a symlink")
