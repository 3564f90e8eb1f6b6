"""Many sandboxes at once from one Python process, and nothing left behind.

Each scenario runs in a driver process of its own (DRIVER below, started in a
session of its own, with a timeout): the embedding program. It reports what it
saw as one JSON line; the test judges it.

- 200 runs of Sandbox.run from 8 threads, each with its own output and status.
- run_async: 8 at once in one event loop, which keeps ticking meanwhile.
- A hostile program (two sleeping children, a listener on a published port, a
  busy loop) ended four ways: its asyncio task cancelled, its Cancel fired
  from another thread, its wall-clock limit, a Ctrl-C (SIGINT) in the thread
  waiting in Sandbox.run. Afterwards the driver has no
  descendant process left, the published port is closed, and its open file
  descriptors (memory files, sockets, host directories) and threads are as
  before the run.
- Programs that cannot start, and a published port already taken: nothing of
  the half-made sandbox left.
- The embedding process SIGKILLed in the middle of a run: within seconds no live
  process is left in the sandbox's sessions or pid namespace, the port is
  closed, and nothing was written to its TMPDIR.

Processes are counted through /proc (the driver's descendants, their sessions
and pid namespaces), never by name; nothing is signalled but the driver the
test started. The canary file is one the test's own directory receives.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import harness
from stubwatch import _stat_fields

DRIVER = r'''
import asyncio, gc, json, os, socket, sys, threading, time
repo, scenario, platform, canary, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sys.path[:0] = [repo, os.path.join(repo, "tests")]
from stubwatch import _stat_fields
from sentry.api import Limits, Sandbox
from sentry.lifecycle import Cancel

# Two sleeping children, a listener on the published port, a 1 GiB sparse memory file
# (held in a memfd of the sentry's), then a busy loop.
HOSTILE = ["busybox", "sh", "-c", "sleep 1000 & sleep 1000 & nc -l -p 8080 & truncate -s 1G /tmp/sparse; "
           "touch /canary/ready; while :; do :; done"]


def descendants():
    """Every process (zombies too) below this one."""
    procs = {pid: rest for pid, rest in _stat_fields()}
    kids = {}
    for pid, rest in procs.items():
        kids.setdefault(int(rest[1]), []).append(pid)
    out, todo = [], [os.getpid()]
    while todo:
        for child in kids.get(todo.pop(), []):
            todo.append(child)
            out.append(child)
    return out


def footprint():
    gc.collect()
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "descendants": len(descendants())}


def settled(base):
    """The footprint once it is back to base (or after 3 s, as it is then)."""
    deadline = time.monotonic() + 3
    while True:
        now = footprint()
        if now == base or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def port_open():
    """Whether the host port has a listener: a refused connection says no (one the
    listener accepts and then resets, its guest end not yet listening, says yes)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    except OSError:
        pass
    return True


def wait_canary():
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(canary, "ready")):
        if time.monotonic() > deadline:
            raise SystemExit("the hostile program never touched its canary")
        time.sleep(0.02)


def hostile_box(**limits):
    return Sandbox(platform=platform, mounts=[f"{canary}:/canary:rw"], publish=[f"127.0.0.1:{port}:8080"],
                   limits=Limits(**limits))


def report(**kw):
    print(json.dumps(kw), flush=True)


# What the first run (and fork) of a process loads once stays loaded: the stub's memfd
# on ptrace, /proc/self/pagemap on unicorn.
Sandbox(platform=platform).run(["busybox", "sh", "-c", "sleep 0 & wait"])
base = footprint()

if scenario == "threads":
    from concurrent.futures import ThreadPoolExecutor
    script = "echo run $1; echo err $1 >&2; exit $(($1 % 7))"

    def one(i):
        r = Sandbox(platform=platform, limits=Limits(timeout=120)).run(["busybox", "sh", "-c", script, "sh", str(i)])
        ok = (r.stdout, r.stderr, r.exit_code) == (b"run %d\n" % i, b"err %d\n" % i, i % 7)
        return None if ok else f"{i}: exit {r.exit_code} {r.stdout!r} {r.stderr!r} {r.limit_hit}"
    with ThreadPoolExecutor(8) as pool:
        bad = [b for b in pool.map(one, range(200)) if b]
    report(bad=bad, base=base, after=settled(base))

elif scenario == "async":
    async def main():
        gap = 0.0
        done = asyncio.Event()

        async def ticker():
            nonlocal gap
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gap, last = max(gap, now - last), now
        t = asyncio.create_task(ticker())
        t0 = time.monotonic()
        box = Sandbox(platform=platform, limits=Limits(timeout=120))
        results = await asyncio.gather(*[box.run_async(["busybox", "sh", "-c", "sleep 1; echo run $1", "sh", str(i)])
                                         for i in range(8)])
        wall = time.monotonic() - t0
        done.set()
        await t
        bad = [i for i, r in enumerate(results) if r.stdout != b"run %d\n" % i or r.exit_code != 0]
        return gap, wall, bad
    gap, wall, bad = asyncio.run(main())
    report(gap=gap, wall=wall, bad=bad, base=base, after=settled(base))

elif scenario == "cancel":
    async def main():
        before = len(os.listdir("/proc/self/fd"))  # (the event loop's own fds are there now)
        task = asyncio.create_task(hostile_box().run_async(HOSTILE))
        while not os.path.exists(os.path.join(canary, "ready")):
            assert not task.done(), task
            await asyncio.sleep(0.02)
        during, port_during = len(descendants()), port_open()
        t0 = time.monotonic()
        task.cancel()
        try:
            await task
            raised = False
        except asyncio.CancelledError:
            raised = True
        return during, port_during, raised, time.monotonic() - t0, len(os.listdir("/proc/self/fd")) - before
    during, port_during, raised, took, fds_at_once = asyncio.run(main())
    report(during=during, port_during=port_during, raised=raised, took=took, port_after=port_open(),
           fds_at_once=fds_at_once, base=base, after=settled(base))

elif scenario in ("thread-cancel", "timeout"):
    box = {}
    cancel = Cancel()
    limits = {"timeout": 3.0} if scenario == "timeout" else {}
    t = threading.Thread(target=lambda: box.setdefault("r", hostile_box(**limits).run(HOSTILE, cancel=cancel)))
    t.start()
    wait_canary()
    during, port_during = len(descendants()), port_open()
    t0 = time.monotonic()
    if scenario == "thread-cancel":
        cancel.cancel()
    t.join(60)
    r = box.get("r")
    report(during=during, port_during=port_during, took=time.monotonic() - t0, port_after=port_open(),
           signal=r and r.signal, limit_hit=r and r.limit_hit, fds_at_once=len(os.listdir("/proc/self/fd")),
           base=base, after=settled(base))

elif scenario == "sigint":
    import signal
    # Python's own Ctrl-C handler, whatever this process inherited: under pytest-xdist
    # SIGINT comes ignored, and an ignored SIGINT would never interrupt the run
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seen = {}

    def interrupt():
        wait_canary()
        seen["during"], seen["port"] = len(descendants()), port_open()
        seen["t0"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        hostile_box().run(HOSTILE)
        raised = False
    except KeyboardInterrupt:
        raised = True
    report(during=seen.get("during"), port_during=seen.get("port"), raised=raised,
           took=time.monotonic() - seen.get("t0", 0), port_after=port_open(), base=base, after=settled(base))

elif scenario == "failed-starts":
    busybox = open("/bin/busybox", "rb").read()
    programs = {"not-elf": b"just text", "bad-header": b"\x7fELF\x02\x01\x01" + b"garbage" * 4,
                "truncated": busybox[:3000]}
    for name, data in programs.items():
        with open(os.path.join(canary, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(canary, name), 0o755)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    errors = []
    for _ in range(5):
        for name in programs:
            try:
                Sandbox(platform=platform).run([os.path.join(canary, name)])
            except Exception as e:
                errors.append(type(e).__name__)
        try:
            Sandbox(platform=platform, publish=[f"127.0.0.1:{taken.getsockname()[1]}:80"]).run(["busybox", "sleep", "5"])
        except Exception as e:
            errors.append(type(e).__name__)
    taken.close()
    report(errors=errors, base=base, after=settled(base))

elif scenario == "memory-files":
    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS"))
    before = rss()
    grown = []
    for _ in range(2):  # each run's /tmp holds 64 MiB; what is left of it after its run?
        r = Sandbox(platform=platform).run(["busybox", "sh", "-c", "head -c 67108864 /dev/zero > /tmp/big && echo ok"])
        grown.append(rss() - before)
    report(ok=r.stdout == b"ok\n", grown=grown, base=base, after=settled(base))

elif scenario == "hang":
    hostile_box().run(HOSTILE)  # until the test kills this process
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_driver(scenario: str, platform: str, canary: str, port: int, tmpdir: str | None = None):
    env = harness.sentry_host_env()
    if tmpdir:
        env["TMPDIR"] = tmpdir
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(harness.REPO), scenario, platform, canary, str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True, preexec_fn=harness._no_core_dumps)


def drive(scenario: str, platform: str, timeout: float = 240) -> dict:
    with tempfile.TemporaryDirectory(prefix="sentry-api-") as canary:
        p = start_driver(scenario, platform, canary, free_port())
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"{scenario} on {platform}: no report within {timeout} s\n{err.decode()[-3000:]}")
    assert p.returncode == 0 and out.strip(), f"{scenario} on {platform}: exit {p.returncode}\n{err.decode()[-3000:]}"
    return json.loads(out.decode().splitlines()[-1])


def host_processes_of_sandbox(expected: bool, during: int) -> None:
    """ptrace runs each sandbox process as a host process (plus its keeper); unicorn none."""
    if expected:
        assert during >= 5, f"{during} host processes while the hostile program ran: its tree was not seen"
    else:
        assert during == 0, f"unicorn made {during} host processes"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_200_runs_from_8_threads(platform):
    r = drive("threads", platform)
    assert r["bad"] == [], f"{len(r['bad'])} of 200 runs wrong: {r['bad'][:5]}"
    assert r["after"] == r["base"], f"left after 200 runs: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_run_async_many_at_once_without_blocking_the_loop(platform):
    r = drive("async", platform)
    assert r["bad"] == [], f"wrong results: {r['bad']}"
    # 8 runs of 1 s each one after another would take 8 s; a loop blocked by one would not
    # wake its 5 ms ticker for a whole second
    assert r["wall"] < 6, f"8 run_async calls took {r['wall']:.2f} s: not at once"
    assert r["gap"] < 0.5, f"the event loop was blocked for {r['gap']:.2f} s"
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_cancelled_run_async_leaves_nothing(platform):
    r = drive("cancel", platform)
    host_processes_of_sandbox(platform == "ptrace", r["during"])
    assert r["port_during"], "the published port was not open while the program ran"
    assert r["raised"], "the cancelled await returned instead of raising CancelledError"
    assert r["took"] < 2.0, f"CancelledError came {r['took']:.2f} s after the cancel"
    assert not r["port_after"], "the published port is still open"
    assert r["fds_at_once"] == 0, \
        f"{r['fds_at_once']} fds (memory files, host directories) still open when the await raised"
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_cancel_from_another_thread_leaves_nothing(platform):
    r = drive("thread-cancel", platform)
    host_processes_of_sandbox(platform == "ptrace", r["during"])
    assert r["signal"] == 9 and r["limit_hit"] is None, r
    assert r["took"] < 2.0, f"run() returned {r['took']:.2f} s after the cancel"
    assert r["fds_at_once"] == r["base"]["fds"], f"fds still open when run() returned: {r}"
    assert r["port_during"] and not r["port_after"], r
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_timeout_leaves_nothing(platform):
    r = drive("timeout", platform)
    host_processes_of_sandbox(platform == "ptrace", r["during"])
    assert r["limit_hit"] == "timeout" and r["signal"] == 9, r
    assert r["fds_at_once"] == r["base"]["fds"], f"fds still open when run() returned: {r}"
    assert r["port_during"] and not r["port_after"], r
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_ctrl_c_in_run_leaves_nothing(platform):
    """A KeyboardInterrupt in the thread waiting in Sandbox.run ends the sandbox before
    it reaches the caller (a Thread.join it interrupted would not have waited)."""
    r = drive("sigint", platform)
    host_processes_of_sandbox(platform == "ptrace", r["during"])
    assert r["raised"], "run() returned instead of raising KeyboardInterrupt"
    assert r["took"] < 2.0, f"KeyboardInterrupt came {r['took']:.2f} s after SIGINT"
    assert r["port_during"] and not r["port_after"], r
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_failed_starts_leave_nothing(platform):
    """Programs the sandbox cannot start (not an ELF, a bad header, truncated) and a
    published port already taken: each raises, and nothing of its half-made sandbox (a
    stub process, the kernel's fds) is left."""
    r = drive("failed-starts", platform)
    assert r["errors"] == ["SentryError"] * 20, r["errors"]
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_memory_files_given_back_after_each_run(platform):
    """A run's /tmp (64 MiB here) is the embedding process's memory until the run's objects
    are collected: right after each run it is back, with no collection by the caller (a
    module-level cache once kept the last 17 sandboxes' files)."""
    r = drive("memory-files", platform)
    assert r["ok"], r
    # Less than the file itself stays: what malloc keeps for reuse (a thread's arena, tens of
    # MiB at most) is not the file (a run's 64 MiB kept until a collection was 83 MiB).
    assert max(r["grown"]) < 64 << 20, f"the process grew by {[g >> 20 for g in r['grown']]} MiB after runs"
    assert r["after"] == r["base"], f"left: {r['after']} (before: {r['base']})"


def _tree(root: int) -> dict[int, tuple]:
    """pid -> (state, session, pid namespace) of root's descendants."""
    procs = {pid: rest for pid, rest in _stat_fields()}
    kids: dict[int, list] = {}
    for pid, rest in procs.items():
        kids.setdefault(int(rest[1]), []).append(pid)
    out, todo = {}, [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            todo.append(child)
            try:
                out[child] = (procs[child][0], int(procs[child][3]), os.readlink(f"/proc/{child}/ns/pid"))
            except OSError:
                pass  # gone meanwhile
    return out


def _live_in(sessions: set, namespaces: set) -> list[int]:
    """Live (not zombie) host processes in these sessions or pid namespaces. A zombie is a
    dead process its new parent (the host's init, once the embedding process died) has
    not yet reaped: nothing of it runs or holds anything but its pid."""
    live = []
    for pid, rest in _stat_fields():
        if rest[0] in (b"Z", b"X"):
            continue
        try:
            ns = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            continue
        if int(rest[3]) in sessions or ns in namespaces:
            live.append(pid)
    return live


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_embedding_process_killed_leaves_nothing(platform):
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sentry-api-") as canary, \
            tempfile.TemporaryDirectory(prefix="sentry-api-tmp-") as tmpdir:
        p = start_driver("hang", platform, canary, port, tmpdir)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(canary, "ready")):
                assert p.poll() is None, f"the driver ended: {p.communicate()[1].decode()[-3000:]}"
                assert time.monotonic() < deadline, "the hostile program never touched its canary"
                time.sleep(0.02)
            tree = _tree(p.pid)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # published, and the driver holds its listener
        except BaseException:
            p.kill()
            p.communicate()
            raise
        ours = os.readlink("/proc/self/ns/pid")
        sessions = {p.pid} | {sid for _, sid, _ in tree.values()}
        namespaces = {ns for _, _, ns in tree.values()} - {ours}
        host_processes_of_sandbox(platform == "ptrace", len(tree))
        if platform == "ptrace":
            assert namespaces, "no sandbox process in a pid namespace of its own"
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
        deadline = time.monotonic() + 10
        while (left := _live_in(sessions, namespaces)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"live after the embedding process was killed: {left}"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert os.listdir(tmpdir) == [], f"left in TMPDIR: {os.listdir(tmpdir)}"
        assert os.listdir(canary) == ["ready"], f"the canary directory holds {os.listdir(canary)}"


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_a_host_program_changed_between_runs_is_loaded_anew(platform):
    """What one process remembers of a host program (its ELF facts, sentry/exec.parse_elf)
    is for that version of the file: rewritten in place (the same inode), it is read again."""
    sys.path.insert(0, str(harness.REPO))
    from sentry import Limits, Sandbox
    hello, readstdin = harness.build("hello", "glibc-static"), harness.build("readstdin", "glibc-static")
    with tempfile.TemporaryDirectory(prefix="sentry-api-") as d:
        prog = os.path.join(d, "prog")
        for source, want in ((hello, b"hello, world\n"), (readstdin, b"bytes=0 lines=0"), (hello, b"hello, world\n")):
            with open(prog, "wb") as f:  # (the same inode each time: truncated and rewritten)
                f.write(source.read_bytes())
            os.chmod(prog, 0o755)
            r = Sandbox(platform=platform, limits=Limits(timeout=30)).run([prog])
            assert r.exit_code == 0 and r.stdout.startswith(want), (source.name, r)

