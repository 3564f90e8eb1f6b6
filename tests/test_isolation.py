"""What happens in a sandbox stays there: /tmp writes never reach the host's
/tmp nor the next sandbox, host files are not visible, and no stub process
(/proc/PID/exe containing "sentry-stub") outlives a run.

Processes are only looked at here; the tests never signal a process they did
not start themselves."""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness
import stubwatch
from harness import PLATFORMS

STUBWATCH = Path(stubwatch.__file__).resolve()


def _tmpwrite():
    return harness.build("tmpwrite", "glibc-static")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_tmp_writes_stay_in_the_sandbox(platform):
    path = harness.unique_tmp_path("iso")
    try:
        run = harness.run_sandbox(platform, _tmpwrite(), ["write", path])
        harness.check_sentry_sane(run)
        assert run.status == 0 and b"create: ok\nwrite: 27\n" == run.stdout, (
            f"exit {run.status}, stdout {run.stdout!r}\n{run.stderr_text()}")
        assert not os.path.lexists(path), f"the sandbox's {path} appeared on the host"
        # and the next sandbox starts with a fresh /tmp
        run2 = harness.run_sandbox(platform, _tmpwrite(), ["check", path])
        harness.check_sentry_sane(run2)
        assert run2.status == 0 and run2.stdout == b"open: ENOENT\n", (
            f"second run saw the first one's file: {run2.stdout!r}\n{run2.stderr_text()}")
    finally:
        if os.path.lexists(path):  # only our own unique path, if the test failed
            os.unlink(path)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_tmp_is_invisible(platform):
    path = harness.unique_tmp_path("host")
    with open(path, "w") as f:
        f.write("host secret\n")
    try:
        run = harness.run_sandbox(platform, _tmpwrite(), ["check", path])
        harness.check_sentry_sane(run)
        assert run.status == 0 and run.stdout == b"open: ENOENT\n", (
            f"host's {path} visible in the sandbox: {run.stdout!r}\n{run.stderr_text()}")
        run = harness.run_sandbox(platform, _tmpwrite(), ["list", "/tmp"])
        harness.check_sentry_sane(run)
        # Empty, but for the way to the program itself when it lives under /tmp
        # (the sandbox holds the program at the path it was given).
        prog = _tmpwrite()
        own = (f"entry: {prog.relative_to('/tmp').parts[0]} dir\n".encode()
               if str(prog).startswith("/tmp/") else b"")
        entries = 2 + bool(own)
        assert run.stdout == b"entry: . dir\nentry: .. dir\n" + own + b"entries: %d\n" % entries, (
            f"the sandbox's /tmp is not empty: {run.stdout!r}\n{run.stderr_text()}")
    finally:
        os.unlink(path)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_files_are_invisible(platform):
    # /etc, /usr, /lib* are lent read-only by design; everything else of the host is absent.
    for path in (str(harness.REPO / "pyproject.toml"), "/var/lib/dpkg/status", "/root", "/home",
                 "/proc/1/environ"):
        run = harness.run_sandbox(platform, _tmpwrite(), ["check", path])
        harness.check_sentry_sane(run)
        if path == "/proc/1/environ" and run.stdout.startswith(b"open: ok"):
            # the sandbox's procfs: pid 1 is the program itself, with the guest's environment
            own = "PATH=" + harness.GUEST_PATH
            assert run.stdout.split(b"content: ", 1)[-1].startswith(own.encode()), (
                f"/proc/1/environ is not the guest's own: {run.stdout[:300]!r}")
            continue
        assert run.status == 0 and run.stdout.startswith(b"open: E"), (
            f"host path {path} readable in the sandbox: {run.stdout[:200]!r}\n{run.stderr_text()}")


def _watched(platform, program, args, tmp_path, **kw) -> tuple[harness.Run, dict]:
    report = tmp_path / "stubwatch.json"
    argv = [sys.executable, str(STUBWATCH), str(report), "--",
            *harness.sentry_argv(platform, program, args)]
    run = harness._communicate(argv, stdin=kw.get("stdin"), env=harness.sentry_host_env(),
                               cwd=str(harness.REPO), timeout=harness.RUN_TIMEOUT,
                               where=f"sentry/{platform}")
    harness.check_sentry_sane(run)
    assert report.exists(), f"stubwatch wrote no report\n{run.stderr_text()}"
    return run, json.loads(report.read_text())


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_stub_left_after_normal_run(platform, tmp_path):
    run, rep = _watched(platform, harness.build("hello", "glibc-static"), [], tmp_path)
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    assert b"hello, world" in run.stdout
    assert rep["remaining"] == {}, f"stub processes left after the run: {rep['remaining']}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_stub_left_after_segv(platform, tmp_path):
    run, rep = _watched(platform, harness.build("mmap", "glibc-static"), ["segv"], tmp_path)
    assert run.status == 139, f"exit {run.status}, expected 139 (SIGSEGV)\n{run.stderr_text()}"
    assert rep["remaining"] == {}, f"stub processes left after SIGSEGV: {rep['remaining']}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_stub_left_after_sentry_error(platform, tmp_path):
    bad = tmp_path / "not-elf"
    bad.write_bytes(b"not an ELF\n")
    bad.chmod(0o755)
    run, rep = _watched(platform, bad, [], tmp_path)
    assert run.status == 126, f"exit {run.status}\n{run.stderr_text()}"
    assert rep["remaining"] == {}, f"stub processes left after a failed start: {rep['remaining']}"


@pytest.mark.parametrize("platform", ["ptrace"])
def test_guest_runs_in_a_stub_process(platform):
    """Positive control for the checks above: while a guest runs (busybox cat,
    blocked reading its stdin) a stub process descends from the sentry.
    (ptrace only: the unicorn platform emulates the guest inside the sentry's
    own process, so there is no stub to see; the no-stub-left checks still run
    on both platforms.)"""
    harness.require_busybox()
    argv = harness.sentry_argv(platform, harness.BUSYBOX, ["cat"])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=harness.sentry_host_env(), cwd=str(harness.REPO))
    try:
        proc.stdin.write(b"ping\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], harness.RUN_TIMEOUT)
        line = os.read(proc.stdout.fileno(), 100) if ready else b""
        stubs = {}
        if line == b"ping\n":
            # the guest is alive and blocked in read(0): its stub must be there
            deadline = time.monotonic() + 10
            while not stubs and time.monotonic() < deadline:
                stubs = stubwatch.stub_descendants(proc.pid)
                if not stubs:
                    time.sleep(0.02)
    finally:
        try:  # closes stdin: cat sees EOF and exits
            out, err = proc.communicate(timeout=harness.RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert b"Traceback" not in err, err.decode(errors="replace")
    assert line == b"ping\n", (
        f"the guest did not echo its input (got {line!r}), exit {proc.returncode}\n"
        f"{err.decode(errors='replace')[:1500]}")
    assert stubs, f"no process with {stubwatch.STUB_MARK!r} in /proc/PID/exe under the sentry (pid {proc.pid})"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err.decode(errors='replace')[:1500]}"


def test_stubwatch_sees_a_leftover(tmp_path):
    """Negative control for stubwatch itself (no sentry involved): a process
    named like a stub that outlives the command it was started by is found."""
    fake = tmp_path / "sentry-stub-fake"
    shutil.copy(shutil.which("sleep"), fake)
    fake.chmod(0o755)
    report = tmp_path / "report.json"
    env = dict(os.environ, STUBWATCH_GRACE="0.2")
    # start it in the background, wait (busily) until it has exec'd, leave
    script = (f'{fake} 30 >/dev/null 2>&1 & '
              f'while [ "$(readlink /proc/$!/exe)" != "{fake}" ]; do :; done; exit 3')
    res = subprocess.run([sys.executable, str(STUBWATCH), str(report), "--", "sh", "-c", script],
                         env=env, timeout=60, stdin=subprocess.DEVNULL, capture_output=True)
    rep = json.loads(report.read_text())
    # the leftover is ours (started by the sh we started): end it, by its pid
    for pid in rep["remaining"]:
        os.kill(int(pid), signal.SIGKILL)
    assert res.returncode == 3
    assert list(rep["remaining"].values()) == [str(fake)], rep
