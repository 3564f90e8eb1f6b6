"""Warm starts (issue 16): Sandbox.prepare(argv, until=...) and Prepared.run(stdin) on both
platforms. fixtures/warmfn.c initialises, reaches the point (its first read of stdin, or
the warm-start marker), then answers one command from stdin; a fresh native run with the
same stdin is the oracle of every warm call (the marker is a no-op natively). Isolation:
what one call leaves (a file, an environment variable, a child, a bound port) no later
call sees; a call past its timeout ends and the next still works; nothing is left on the
host once a Prepared is closed."""
import os
import socket
import subprocess
import sys
import time

import pytest

import harness
import stubwatch
from harness import PLATFORMS
from sentry import Limits, Sandbox
from sentry.warm import NotPrepared

VARIANT = "glibc-static"
CALLS = {"ptrace": 40, "unicorn": 12}


def warmfn(variant: str = VARIANT) -> str:
    return str(harness.build("warmfn", variant))


def native(mode: str, stdin: bytes, variant: str = VARIANT) -> subprocess.CompletedProcess:
    return subprocess.run([warmfn(variant), mode], input=stdin, capture_output=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubs_of_this_process() -> dict:
    deadline = time.monotonic() + stubwatch.GRACE_SECONDS
    while True:
        left = stubwatch.stub_descendants(os.getpid())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("until", ["marker", "stdin"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_call_answers_its_stdin(platform, until):
    mode = "marker" if until == "marker" else "stdin"
    with Sandbox(platform=platform, limits=Limits(timeout=30)).prepare([warmfn(), mode], until=until) as fn:
        assert (fn.stdout, fn.stderr) == (b"", b"")
        for i in range(CALLS[platform]):
            stdin = b"echo request %d %s\n" % (i, b"x" * (i * 37 % 300))
            want = native(mode, stdin)
            got = fn.run(stdin=stdin)
            assert (got.exit_code, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), (i, got)
            assert got.limit_hit is None and got.wall_time > 0 and got.cpu_time >= 0, got
    assert stubs_of_this_process() == {}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_calls_from_threads(platform):
    """run() from 4 threads at once: the calls queue, each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor
    stdins = [b"echo thread call %d\n" % i for i in range(12)]
    wants = [native("marker", s).stdout for s in stdins]
    with Sandbox(platform=platform, limits=Limits(timeout=30)).prepare([warmfn(), "marker"], until="marker") as fn:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda s: fn.run(stdin=s).stdout, stdins))
    assert got == wants


@pytest.mark.timeout(240)
@pytest.mark.parametrize("variant", ["musl-static", "glibc-dynamic"])
@pytest.mark.parametrize("platform", PLATFORMS)
def test_just_loaded(platform, variant):
    """until=None: every call runs the program from its first instruction."""
    with Sandbox(platform=platform, limits=Limits(timeout=30)).prepare([warmfn(variant), "marker"]) as fn:
        for i in range(4):
            stdin = b"echo from the start %d\n" % i
            want = native("marker", stdin, variant)
            got = fn.run(stdin=stdin)
            assert (got.exit_code, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr), got
    assert stubs_of_this_process() == {}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_call_sees_nothing_of_earlier_calls(platform, tmp_path):
    port = free_port()
    with Sandbox(platform=platform, limits=Limits(timeout=30)).prepare([warmfn(), "marker"], until="marker") as fn:
        left = fn.run(stdin=b"leave /tmp %d\n" % port)
        assert left.exit_code == 0, left
        assert left.stdout.endswith(b"file written: yes\nsetenv: OK\nchild left running: yes\nport bound: yes\n"), left
        # what a fresh process sees (natively in an empty directory), call after call
        want = native("marker", b"look %s %d\n" % (bytes(tmp_path), port))
        assert want.stdout.endswith(b"file: ENOENT\nenv WARM_LEFT: unset\nchildren: ECHILD\nport: free\n"), want
        for _ in range(2):
            look = fn.run(stdin=b"look /tmp %d\n" % port)
            assert (look.exit_code, look.stdout) == (0, want.stdout), look
            again = fn.run(stdin=b"leave /tmp %d\n" % port)
            assert again.stdout == left.stdout, again  # (the port was free for it too)
    assert not os.path.exists("/tmp/left") or os.path.getmtime("/tmp/left") < time.time() - 600
    assert stubs_of_this_process() == {}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_call_past_its_timeout_ends_and_the_next_works(platform):
    with Sandbox(platform=platform, limits=Limits(timeout=30)).prepare([warmfn(), "marker"], until="marker") as fn:
        start = time.monotonic()
        spun = fn.run(stdin=b"spin\n", timeout=0.5)
        assert (spun.exit_code, spun.signal, spun.limit_hit) == (137, 9, "timeout"), spun
        assert time.monotonic() - start < 10, spun
        want = native("marker", b"echo after the timeout\n")
        ok = fn.run(stdin=b"echo after the timeout\n")
        assert (ok.exit_code, ok.stdout, ok.limit_hit) == (0, want.stdout, None), ok
        cpu = Sandbox(platform=platform, limits=Limits(cpu_time=0.5))
    with cpu.prepare([warmfn(), "marker"], until="marker") as fn:
        spun = fn.run(stdin=b"spin\n")
        assert (spun.exit_code, spun.limit_hit) == (137, "cpu_time"), spun
        assert fn.run(stdin=b"echo on\n").stdout == native("marker", b"echo on\n").stdout
    assert stubs_of_this_process() == {}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_output_before_the_point_is_the_prepare_s(platform):
    """What the program wrote before the point is Prepared.stdout; each call's is its own."""
    box = Sandbox(platform=platform, limits=Limits(timeout=30))
    with box.prepare([harness.BUSYBOX, "sh", "-c", "echo starting; echo warn >&2; read line; echo got $line"],
                     until="stdin") as fn:
        assert (fn.stdout, fn.stderr) == (b"starting\n", b"warn\n")
        for word in (b"one", b"two"):
            r = fn.run(stdin=word + b"\n")
            assert (r.exit_code, r.stdout, r.stderr) == (0, b"got " + word + b"\n", b""), r


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_dynamic_interpreter_warm(platform):
    """python3 started once (its libraries mapped from the host, modules imported) and
    answering at its first read of stdin: each call gets its own stdin and files."""
    box = Sandbox(platform=platform, limits=Limits(timeout=120))
    code = ("import json, sys, os\n"
            "seen = os.path.exists('/tmp/mark')\n"
            "req = json.loads(sys.stdin.read())\n"
            "open('/tmp/mark', 'w').write('x')\n"
            "print(json.dumps({'sum': sum(req), 'seen': seen}))\n")
    with box.prepare(["/usr/bin/python3", "-c", code], until="stdin", timeout=120) as fn:
        for numbers in ([1, 2, 3], [10, 20], []):
            r = fn.run(stdin=repr(numbers).encode())
            assert (r.exit_code, r.stdout) == (0, b'{"sum": %d, "seen": false}\n' % sum(numbers)), r


FILES_BEFORE_THE_POINT = r"""
import hashlib, os, sys
f = open("/usr/bin/python3", "rb", buffering=0)
f.read(100)
with open("/tmp/big", "wb") as g:  # a hole past 1 MiB: its bytes move into a memfd
    g.truncate(4 << 20)
    g.write(b"A")
names = os.listdir(os.open("/usr", os.O_RDONLY | os.O_DIRECTORY))
request = sys.stdin.read()
data = f.read(1 << 20)
with open("/tmp/big", "r+b") as g:
    first = g.read(1)
    g.write(b"B")
    g.seek(3 << 20)
    g.write(b"C" * 10)
print(request, f.tell(), hashlib.sha256(data).hexdigest()[:16], first, os.path.getsize("/tmp/big"), len(names))
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_files_open_at_the_point_are_each_call_s_own(platform):
    """A host file open at the point is at its offset in every call (a large read goes
    straight to the host fd); a memory file held in a memfd is the point's in every call,
    whatever the one before wrote into it."""
    box = Sandbox(platform=platform, limits=Limits(timeout=120))
    with box.prepare(["/usr/bin/python3", "-c", FILES_BEFORE_THE_POINT], until="stdin", timeout=120) as fn:
        answers = [fn.run(stdin=b"same") for _ in range(3)]
    assert [(r.exit_code, r.stderr) for r in answers] == [(0, b"")] * 3, answers
    assert answers[0].stdout.startswith(b"same 1048676 ") and b" b'A' 4194304 " in answers[0].stdout, answers[0]
    assert answers[1].stdout == answers[0].stdout == answers[2].stdout, answers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_refused_states(platform):
    box = Sandbox(platform=platform, limits=Limits(timeout=30))
    with pytest.raises(ValueError, match="2 tasks"):
        box.prepare([warmfn(), "forked"], until="marker")
    with pytest.raises(NotPrepared) as ended:  # it never calls the marker: it reads stdin, then ends
        box.prepare([warmfn(), "stdin"], until="marker")
    assert ended.value.result.exit_code == 1 and ended.value.result.stdout.endswith(b"unknown command []\n")
    with pytest.raises(ValueError, match="until"):
        box.prepare([warmfn(), "marker"], until="main")
    with pytest.raises(ValueError, match="net"):
        Sandbox(platform=platform, net="host").prepare([warmfn(), "marker"])
    assert stubs_of_this_process() == {}


@pytest.mark.timeout(120)
def test_prepare_timeout_and_closed():
    box = Sandbox(limits=Limits(timeout=30))
    start = time.monotonic()
    with pytest.raises(NotPrepared, match="within 0.5 s"):
        box.prepare([harness.BUSYBOX, "sleep", "30"], until="marker", timeout=0.5)
    assert time.monotonic() - start < 10
    fn = box.prepare([warmfn(), "marker"], until="marker")
    fn.close()
    fn.close()
    with pytest.raises(ValueError, match="closed"):
        fn.run(stdin=b"echo x\n")
    assert stubs_of_this_process() == {}


EMBEDDER = """
import sys
sys.path.insert(0, {root!r})
from sentry import Sandbox
fn = Sandbox(platform={platform!r}).prepare([{prog!r}, "marker"], until="marker")
print(fn._server.pid, flush=True)
fn.run(stdin=b"spin\\n")  # no timeout: only its caller's end ends it
"""


def _alive(pids) -> list:
    return [p for p in pids if os.path.exists(f"/proc/{p}") and stubwatch._exe(p) is not None]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_nothing_outlives_a_killed_caller(platform):
    """The embedding process SIGKILLed during a call that would spin for ever: the call's
    sentry, the server and every guest process end with it."""
    code = EMBEDDER.format(root=str(harness.REPO), platform=platform, prog=warmfn())
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        server = int(caller.stdout.readline())
        time.sleep(1.5)  # the call spins
        ours = set(stubwatch.session_members(server)) | set(stubwatch.stub_descendants(server))
        assert len(ours) >= (4 if platform == "ptrace" else 2), ours  # the server, its call's sentry (ptrace: a keeper, stubs)
    finally:
        caller.kill()
        caller.wait()
    deadline = time.monotonic() + 10
    while _alive(ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(ours) == []
