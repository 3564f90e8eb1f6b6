"""The sentry's own messages are the sentry's, not the program's: a call the
sandbox does not answer is noted in the sentry's log, which `sentry run`
shows only with --verbose or SENTRY_LOG, and the embedding API returns in
Result.log; the program's stderr is exactly its own. What the user must
know (a limit reached, everything killed) is still one `sentry:` line."""
import os
import subprocess

import pytest

import harness
from harness import PLATFORMS

UNSUPPORTED = b"sentry: unsupported syscall syscall 999 (answered ENOSYS)\n"


def _run(platform, options=(), env=None):
    exe = harness.build("enosys", "glibc-static")
    host_env = harness.sentry_host_env()
    host_env.pop("SENTRY_LOG", None)
    host_env.update(env or {})
    return subprocess.run(harness.sentry_argv(platform, exe, options=options), capture_output=True,
                          env=host_env, cwd=str(harness.REPO), timeout=harness.RUN_TIMEOUT)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_unsupported_calls_stay_out_of_the_programs_stderr(platform):
    r = _run(platform)
    assert r.returncode == 0 and b"after\n" in r.stdout
    assert r.stderr == b""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_verbose_and_sentry_log_show_them(platform, tmp_path):
    r = _run(platform, options=("--verbose",))
    assert UNSUPPORTED in r.stderr, r.stderr
    r = _run(platform, env={"SENTRY_LOG": "stderr"})
    assert UNSUPPORTED in r.stderr, r.stderr
    log = tmp_path / "sentry.log"
    r = _run(platform, env={"SENTRY_LOG": str(log)})
    assert r.stderr == b"" and UNSUPPORTED in log.read_bytes()


def test_sentry_log_that_cannot_be_written():
    r = _run("ptrace", env={"SENTRY_LOG": "/nonexistent-dir/x.log"})
    assert r.returncode == 125 and r.stderr.startswith(b"sentry: SENTRY_LOG=") and r.stderr.count(b"\n") == 1


@pytest.mark.parametrize("platform", PLATFORMS)
def test_api_returns_the_log(platform):
    from sentry import api
    exe = str(harness.build("enosys", "glibc-static"))
    r = api.Sandbox(platform=platform).run([exe])
    assert r.exit_code == 0 and r.stderr == b"", r
    assert "unsupported syscall syscall 999 (answered ENOSYS)" in r.log, r.log


@pytest.mark.parametrize("platform", PLATFORMS)
def test_crash_report_is_a_note(platform):
    exe = harness.build("mmap", "glibc-static")
    quiet = subprocess.run(harness.sentry_argv(platform, exe, ["segv"]), capture_output=True,
                           env=harness.sentry_host_env(), cwd=str(harness.REPO), timeout=harness.RUN_TIMEOUT)
    native = harness.run_native(exe, ["segv"])
    assert quiet.returncode == native.status == 139
    assert quiet.stderr == native.stderr
    loud = subprocess.run(harness.sentry_argv(platform, exe, ["segv"], options=("--verbose",)), capture_output=True,
                          env=harness.sentry_host_env(), cwd=str(harness.REPO), timeout=harness.RUN_TIMEOUT)
    assert b"killed by SIGSEGV" in loud.stderr, loud.stderr
    assert os.path.basename(str(exe)).encode() in loud.stderr or b"mmap" in loud.stderr
