"""Limits of a run: --timeout (the CLI) and Limits(timeout=...) (the API)."""
import subprocess
import sys

import pytest

import harness
from harness import PLATFORMS
from sentry.api import Limits, Sandbox

SENTRY = [sys.executable, "-m", "sentry", "run"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_timeout_kills_a_spinning_program(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "--timeout", "0.5", str(harness.build("spin", "musl-static"))],
                       capture_output=True, timeout=60)
    assert r.returncode == 137, r
    assert r.stderr == b"sentry: timeout: the program was killed after 0.5 s\n"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_timeout_ends_a_sleeping_program(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "--timeout", "0.5", harness.BUSYBOX, "sleep", "30"],
                       capture_output=True, timeout=60)
    assert r.returncode == 137 and r.stderr.startswith(b"sentry: timeout"), r


def test_timeout_leaves_a_quick_program_alone():
    r = subprocess.run([*SENTRY, "--timeout", "30", harness.BUSYBOX, "echo", "in time"], capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"in time\n", b"")


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timeout_must_be_positive(value):
    r = subprocess.run([*SENTRY, "--timeout", value, "/bin/true"], capture_output=True, timeout=60)
    assert r.returncode == 125 and r.stderr.count(b"\n") == 1, r


@pytest.mark.parametrize("platform", PLATFORMS)
def test_api_reports_the_limit(platform):
    result = Sandbox(platform=platform, limits=Limits(timeout=0.5)).run([str(harness.build("spin", "musl-static"))])
    assert (result.exit_code, result.signal, result.limit_hit) == (137, 9, "timeout")
    ok = Sandbox(platform=platform, limits=Limits(timeout=30)).run([harness.BUSYBOX, "echo", "hi"])
    assert (ok.exit_code, ok.stdout, ok.limit_hit) == (0, b"hi\n", None)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_memory_limit_refuses_allocations(platform):
    prog = str(harness.build("bigalloc", "glibc-static"))
    r = subprocess.run([*SENTRY, "--platform", platform, "--memory", "100M", prog], capture_output=True, timeout=120)
    assert r.returncode == 3 and r.stdout.startswith(b"malloc failed after "), r
    refused_at = int(r.stdout.split()[3])
    assert 32 <= refused_at < 100, r.stdout         # the image and the stack count too
    assert r.stderr == b"sentry: memory: the program was refused memory beyond --memory 104857600\n"


def test_memory_limit_too_small_for_the_image():
    r = subprocess.run([*SENTRY, "--memory", "1M", str(harness.build("bigalloc", "glibc-static"))],
                       capture_output=True, timeout=60)
    assert r.returncode == 126 and r.stderr.startswith(b"sentry: ") and r.stderr.count(b"\n") == 1, r


def test_api_memory_limit_and_peak():
    prog = str(harness.build("bigalloc", "musl-static"))
    free = Sandbox().run([prog])
    assert free.exit_code == 0 and free.limit_hit is None and free.peak_memory >= 512 << 20
    capped = Sandbox(limits=Limits(memory=64 << 20)).run([prog])
    assert (capped.exit_code, capped.limit_hit) == (3, "memory") and capped.peak_memory <= 64 << 20


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cpu_time_kills_a_spinning_program(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "--cpu-time", "0.5", str(harness.build("spin", "musl-static"))],
                       capture_output=True, timeout=60)
    assert r.returncode == 137, r
    assert r.stderr == b"sentry: cpu time: the program was killed after 0.5 s of CPU\n"


def test_cpu_time_does_not_count_sleeping():
    r = subprocess.run([*SENTRY, "--cpu-time", "0.5", harness.BUSYBOX, "sleep", "1"], capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (0, b""), r


def test_api_cpu_time_limit():
    result = Sandbox(limits=Limits(cpu_time=0.3)).run([str(harness.build("spin", "musl-static"))])
    assert (result.exit_code, result.limit_hit) == (137, "cpu_time")


FORK_FOUR = "for i in 1 2 3 4; do sleep 0.3 & done; wait; echo all forked"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_max_procs_refuses_forks_beyond_it(platform):
    r = subprocess.run([*SENTRY, "--platform", platform, "--max-procs", "3", harness.BUSYBOX, "sh", "-c", FORK_FOUR],
                       capture_output=True, timeout=60)
    assert b"can't fork: Resource temporarily unavailable" in r.stderr, r
    assert r.stderr.endswith(b"sentry: max procs: a fork or thread was refused beyond --max-procs 3\n"), r
    assert b"all forked" not in r.stdout
    enough = subprocess.run([*SENTRY, "--platform", platform, "--max-procs", "5", harness.BUSYBOX, "sh", "-c",
                             FORK_FOUR], capture_output=True, timeout=60)
    assert (enough.returncode, enough.stdout, enough.stderr) == (0, b"all forked\n", b""), enough


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_max_procs_must_be_a_positive_count(value):
    r = subprocess.run([*SENTRY, "--max-procs", value, "/bin/true"], capture_output=True, timeout=60)
    assert r.returncode in (2, 125) and r.stderr.count(b"\n") <= 3 and b"Traceback" not in r.stderr, r


def test_api_max_procs():
    result = Sandbox(limits=Limits(max_procs=2)).run([harness.BUSYBOX, "sh", "-c", FORK_FOUR])
    assert result.limit_hit == "max_procs" and b"all forked" not in result.stdout, result
    ok = Sandbox(limits=Limits(max_procs=8)).run([harness.BUSYBOX, "sh", "-c", FORK_FOUR])
    assert (ok.exit_code, ok.stdout, ok.limit_hit) == (0, b"all forked\n", None), ok


THREADS = """
import threading
stop = threading.Event()
started = []
try:
    for i in range(8):
        t = threading.Thread(target=stop.wait); t.start(); started.append(t)
except RuntimeError as e:
    print("refused after", len(started), "threads:", e)
stop.set()
for t in started:
    t.join()
print("joined", len(started))
"""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_max_procs_counts_threads(platform):
    """Threads count against --max-procs as against RLIMIT_NPROC: a thread bomb is stopped too."""
    r = subprocess.run([*SENTRY, "--platform", platform, "--max-procs", "4", "/usr/bin/python3", "-I", "-c", THREADS],
                       capture_output=True, timeout=120)
    assert r.stdout == b"refused after 3 threads: can't start new thread\njoined 3\n", r
    assert r.stderr.endswith(b"sentry: max procs: a fork or thread was refused beyond --max-procs 4\n"), r
    assert r.returncode == 0, r


@pytest.mark.parametrize("mode", ["mmap", "brk", "nsinit"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_timeout_ends_whatever_the_program_does(platform, mode):
    """fixtures/endless.c: a 4 TiB reservation (unicorn took minutes to map it), a 16 TiB brk,
    a pid-namespace-leading process whose zombies only the tracer can release (ptrace's
    teardown waited for it for ever). Each ends within a second of --timeout, and no stub
    process of the sandbox is left on the host."""
    import time

    import stubwatch
    exe = harness.build("endless", "musl-static")
    start = time.monotonic()
    proc = subprocess.Popen([*SENTRY, "--platform", platform, "--timeout", "2", str(exe), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.sentry_host_env())
    stubs = set()
    while proc.poll() is None and time.monotonic() - start < 1.5:
        stubs.update(stubwatch.stub_descendants(proc.pid))
        time.sleep(0.1)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.monotonic() - start
    assert proc.returncode == 137, (out, err)
    assert err.endswith(b"sentry: timeout: the program was killed after 2 s\n"), err
    assert took < 3.5, f"the run took {took:.1f} s with --timeout 2"
    assert out in (b"4 TiB reserved: yes\n", b"brk of 16 TiB: ENOMEM\n", b"spawner started\n"), out
    if platform == "ptrace":
        assert stubs, "no stub process seen while it ran"
    time.sleep(0.5)
    left = [pid for pid in stubs if (stubwatch._exe(pid) or "").find("sentry-stub") >= 0]
    assert not left, f"stub processes left on the host: {left}"
