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
    # /etc, /usr, /lib* are lent read-only by design (and the current directory, but for
    # --no-cwd); everything else of the host is absent.
    for path in (str(harness.REPO / "pyproject.toml"), "/var/lib/dpkg/status", "/home",
                 "/proc/1/environ"):
        run = harness.run_sandbox(platform, _tmpwrite(), ["check", path], options=["--no-cwd"])
        harness.check_sentry_sane(run)
        if path == "/proc/1/environ" and run.stdout.startswith(b"open: ok"):
            # the sandbox's procfs: pid 1 is the program itself, with the guest's environment
            own = "PATH=" + harness.GUEST_PATH
            assert run.stdout.split(b"content: ", 1)[-1].startswith(own.encode()), (
                f"/proc/1/environ is not the guest's own: {run.stdout[:300]!r}")
            continue
        assert run.status == 0 and run.stdout.startswith(b"open: E"), (
            f"host path {path} readable in the sandbox: {run.stdout[:200]!r}\n{run.stderr_text()}")
    # /root is the sandbox's own HOME, in memory: empty, whatever the host's holds
    run = harness.run_sandbox(platform, _tmpwrite(), ["list", "/root"], options=["--no-cwd"])
    harness.check_sentry_sane(run)
    assert run.stdout == b"entry: . dir\nentry: .. dir\nentries: 2\n", (
        f"the sandbox's /root is not its own empty home: {run.stdout!r}\n{run.stderr_text()}")


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


# --------------------------------------------------------------------------
# the sandbox's pid namespace (issue 5)


def _canary() -> subprocess.Popen:
    """A host process of our own (its own session and group), for the sandbox to miss."""
    return subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_pids_are_out_of_reach(platform):
    """From inside, kill(pid, 0) for every pid 1..32768 answers only for the
    sandbox's own processes (itself, pid 1, and its two children), and a real
    SIGKILL sent to the host pid of a canary we started (and to its process
    group) reaches nothing: the canary lives on."""
    prog = harness.build("pidprobe", "glibc-static")
    canary = _canary()
    try:
        # positive control: natively the probe does see the canary
        native = harness.run_native(prog, ["one", canary.pid], timeout=30)
        assert native.status == 0 and native.stdout == b"kill(canary, 0): 0\n", (
            f"native control: {native.stdout!r}\n{native.stderr_text()}")
        run = harness.run_sandbox(platform, prog, ["probe", canary.pid], timeout=120)
        harness.check_sentry_sane(run)
        assert run.status == 0 and run.stdout.endswith(b"done\n"), (
            f"exit {run.status}\n{run.stdout.decode(errors='replace')[-2000:]}\n{run.stderr_text()}")
        out = dict(line.split(": ", 1) for line in run.stdout.decode().splitlines() if ": " in line)
        own = {int(out["self"])} | {int(p) for p in out["children"].split()}
        answered = {int(p) for p in out["answered"].split()}
        assert int(out["self"]) == 1, f"the sandboxed program is not pid 1: {out['self']}"
        assert answered == own, (f"pids answering inside the sandbox: {sorted(answered)[:50]}, "
                                 f"expected only the sandbox's own {sorted(own)}")
        assert out["canary answers"] == "no", "the canary's host pid answers inside the sandbox"
        assert out["kill(canary, SIGKILL)"] == "-1 ESRCH", out["kill(canary, SIGKILL)"]
        assert out["kill(-canary, SIGKILL)"] == "-1 ESRCH", out["kill(-canary, SIGKILL)"]
        time.sleep(0.2)
        assert canary.poll() is None, f"the host canary died (status {canary.returncode})"
        os.kill(canary.pid, 0)  # still ours and alive
    finally:
        canary.kill()  # by its Popen object: only the process we started
        canary.wait(timeout=30)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_stub_left_when_the_sentry_is_killed(platform, tmp_path):
    """SIGKILL the sentry (our own process, started under stubwatch) while the
    sandboxed shell has two background children: no stub process survives."""
    harness.require_busybox()
    report = tmp_path / "stubwatch.json"
    script = "sleep 100 & sleep 100 & echo started; wait"
    argv = [sys.executable, str(STUBWATCH), str(report), "--",
            *harness.sentry_argv(platform, harness.BUSYBOX, ["sh", "-c", script])]
    watch = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=harness.sentry_host_env(), cwd=str(harness.REPO))
    sentry_pid = None
    try:
        ready, _, _ = select.select([watch.stdout], [], [], harness.RUN_TIMEOUT)
        line = os.read(watch.stdout.fileno(), 100) if ready else b""
        assert line == b"started\n", f"the sandboxed shell did not start (got {line!r})"
        # the sentry is stubwatch's only child
        deadline = time.monotonic() + 10
        while sentry_pid is None and time.monotonic() < deadline:
            kids = [p for p, pp in stubwatch._ppids().items() if pp == watch.pid]
            sentry_pid = kids[0] if len(kids) == 1 else None
            if sentry_pid is None:
                time.sleep(0.02)
        assert sentry_pid is not None, "no sentry process under stubwatch"
        if platform == "ptrace":
            # sh and its two sleeps each run in a stub process
            stubs = {}
            deadline = time.monotonic() + 10
            while len(stubs) < 3 and time.monotonic() < deadline:
                stubs = stubwatch.stub_descendants(watch.pid)
                time.sleep(0.02)
            assert len(stubs) >= 3, f"expected 3 stub processes (sh, sleep, sleep), saw {stubs}"
        os.kill(sentry_pid, signal.SIGKILL)  # the sentry we started, by its pid
        out, err = watch.communicate(timeout=harness.RUN_TIMEOUT)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert report.exists(), f"stubwatch wrote no report\n{err.decode(errors='replace')[:1500]}"
    rep = json.loads(report.read_text())
    left = rep["remaining"]
    for pid in left:  # leftovers descend from our stubwatch: ours to end, by pid
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert rep["returncode"] == -signal.SIGKILL, f"the sentry was not the one killed: {rep}"
    assert left == {}, f"stub processes survived the sentry's SIGKILL: {left}"
