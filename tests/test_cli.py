"""The command line surface: `sentry test`, `sentry syscalls`, usage errors."""
import json
import shutil
import subprocess
import sys

import pytest

import harness

SENTRY = [sys.executable, "-m", "sentry"]


def test_sentry_test_reports_each_binary(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(harness.build("hello", "musl-static"), corpus / "a_passes")
    shutil.copy(harness.build("exitcode", "musl-static"), corpus / "b_fails")  # no argument: exits 2
    report = tmp_path / "junit.xml"
    r = subprocess.run([*SENTRY, "test", "--jobs", "2", "--junit", str(report), str(corpus)],
                       capture_output=True, timeout=120)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 1, r.stderr
    assert lines[0].startswith("PASS") and lines[0].split()[1].endswith("a_passes")
    assert lines[1].startswith("FAIL") and "exit 2" in lines[1]
    assert lines[-1] == "1 passed, 1 failed"
    xml = report.read_text()
    assert 'tests="2" failures="1"' in xml and "exit status 2" in xml


def test_sentry_test_missing_path_is_one_line():
    r = subprocess.run([*SENTRY, "test", "/nonexistent/dir"], capture_output=True, timeout=60)
    assert r.returncode == 127 and r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"sentry: ")


def test_syscalls_table_formats():
    r = subprocess.run([*SENTRY, "syscalls", "--format", "json"], capture_output=True, timeout=60)
    rows = json.loads(r.stdout)
    assert {"nr": 0, "name": "read", "status": "full", "note": ""} in rows
    r = subprocess.run([*SENTRY, "syscalls", "--arch", "aarch64"], capture_output=True, timeout=60)
    assert b"  63  read" in r.stdout


def test_not_yet_options_are_refused_clearly():
    for opt in (["--net", "host"], ["--deterministic"]):
        r = subprocess.run([*SENTRY, "run", *opt, "/bin/true"], capture_output=True, timeout=60)
        assert r.returncode == 125 and r.stderr.startswith(b"sentry: ") and r.stderr.count(b"\n") == 1, opt


def _closed_early(argv) -> int:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout.read(10) == b"y\n" * 5
    p.stdout.close()
    p.wait(timeout=60)
    p.stderr.close()
    return p.returncode


def test_writing_to_a_closed_pipe_is_sigpipe_as_natively():
    native = _closed_early([harness.BUSYBOX, "yes"])
    assert native == -13
    for platform in ("ptrace", "unicorn"):
        assert _closed_early([*SENTRY, "run", "--platform", platform, harness.BUSYBOX, "yes"]) == 128 + 13


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_output_to_a_slow_reader_is_whole(platform):
    """A full host pipe parks the writer (other processes go on) and loses nothing."""
    p = subprocess.Popen([*SENTRY, "run", "--platform", platform, harness.BUSYBOX, "sh", "-c",
                          "(echo side job) & head -c 3000000 /dev/zero; wait"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time
        time.sleep(0.5)  # let the pipe fill while nobody reads
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert len(out) == 3000000 + len(b"side job\n") and out.count(b"side job\n") == 1


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_run_a_script(platform, tmp_path):
    """`sentry run script` runs its #! interpreter from the sandbox's view, as execve would."""
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh -e\necho \"script $0 got: $*\"\n")
    script.chmod(0o755)
    r = subprocess.run([*SENTRY, "run", "--platform", platform, str(script), "a b", "c"], capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"script {script} got: a b c\n".encode(), b""), r
    empty = tmp_path / "empty.sh"
    empty.write_text("#!\n")
    empty.chmod(0o755)
    r = subprocess.run([*SENTRY, "run", str(empty)], capture_output=True, timeout=60)
    assert r.returncode == 126 and r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"sentry: "), r
