"""examples/faas/server.py, driven as a client would: the server started on an
ephemeral port (one per platform, its TMPDIR a fresh directory), real HTTP
requests through urllib.

- a good Python function: its return value, its printed output, exit 0;
- one that loops for ever: ended at the request's timeout, limit_hit "timeout";
- one that floods stdout: stopped at the request's max_output, limit_hit "output"
  (not "timeout": the flood itself ended it);
- one that tries to read a canary file this test made on the host: not found;
- a static binary (fixtures/readstdin) with stdin: the same output as natively;
- eight requests at once, each answered with its own value;
- a malformed request: 400;
- with --warm (each Python call a copy of a prepared interpreter): values right,
  a file one call writes unseen by the next, a timeout that holds.
After the server ends, nothing is left in its TMPDIR (a binary is lent from a
directory of its own, removed after its call).
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness

SERVER = harness.REPO / "examples" / "faas" / "server.py"
REQUEST_TIMEOUT = 120


class Faas:
    def __init__(self, platform: str, *options):
        self.tmpdir = tempfile.mkdtemp(prefix="faas-test-")
        env = dict(harness.sentry_host_env(), TMPDIR=self.tmpdir)
        # Generous limits: eight Python interpreters at once on unicorn share one GIL (and the
        # machine its test workers); the tests that want a limit ask for theirs.
        self.proc = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", "--platform", platform,
                                      "--timeout", "60", "--cpu-time", "60", *options],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True, preexec_fn=harness._no_core_dumps)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            self.stop()
            pytest.fail("the FaaS server did not say where it listens within 60 s")
        line = self.proc.stdout.readline().decode()
        assert "listening on http://" in line, f"the server said {line!r}: {self.proc.stderr.read().decode()}"
        self.url = line.split("listening on ", 1)[1].strip()

    def call(self, body, expect: int = 200) -> dict:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        request = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        assert status == expect, f"HTTP {status}, expected {expect}: {answer[:2000]!r}"
        return json.loads(answer)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # its KeyboardInterrupt: the server closes
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def _stopped(server: Faas) -> None:
    server.stop()
    left = os.listdir(server.tmpdir)
    os.rmdir(server.tmpdir) if not left else None
    assert not left, f"the FaaS server left in its TMPDIR: {left}"


@pytest.fixture(scope="module", params=harness.PLATFORMS)
def faas(request):
    server = Faas(request.param)
    yield server
    _stopped(server)


def test_good_function(faas):
    r = faas.call({"python": "def handler(event):\n    print('working on', event['x'])\n    return event['x'] * 2",
                   "event": {"x": 21}})
    assert r["value"] == 42, r
    assert r["result"]["stdout"] == "working on 21\n", r
    assert r["result"]["exit_code"] == 0 and r["result"]["limit_hit"] is None, r


def test_function_that_times_out(faas):
    t0 = time.monotonic()
    r = faas.call({"python": "def handler(event):\n    while True:\n        pass", "limits": {"timeout": 1}})
    took = time.monotonic() - t0
    assert r["result"]["limit_hit"] == "timeout" and r["result"]["signal"] == 9, r
    assert r["value"] is None
    assert took < 30, f"answered {took:.1f} s after a 1 s timeout"


def test_function_that_floods_output(faas):
    r = faas.call({"python": "def handler(event):\n    while True:\n        print('x' * 4096)",
                   "limits": {"max_output": 65536}})
    assert r["result"]["limit_hit"] == "output" and r["result"]["output_truncated"], r["result"]
    assert r["result"]["stdout_size"] == 65536, r["result"]["stdout_size"]


def test_function_cannot_read_a_host_canary(faas):
    with tempfile.TemporaryDirectory(prefix="faas-canary-") as d:
        canary = os.path.join(d, "canary")
        with open(canary, "w") as f:
            f.write("host secret 7f3a")
        source = ("def handler(path):\n"
                  "    try:\n"
                  "        return open(path).read()\n"
                  "    except OSError as e:\n"
                  "        return type(e).__name__\n")
        r = faas.call({"python": source, "event": canary})
        assert r["value"] == "FileNotFoundError", r
        assert "7f3a" not in json.dumps(r)


def test_static_binary_with_stdin(faas):
    program = harness.build("readstdin", "glibc-static")
    text = "one\ntwo\nthree\n" * 100
    native = harness.run_native(program, stdin=text.encode())
    assert native.status == 0, native.headline()
    r = faas.call({"binary": base64.b64encode(program.read_bytes()).decode(), "stdin": text})
    assert r["result"]["exit_code"] == 0, r
    assert r["result"]["stdout"] == native.stdout.decode(), r


def test_concurrent_requests(faas):
    source = "import os\ndef handler(n):\n    return [n, os.getpid()]"

    def one(n):
        return faas.call({"python": source, "event": n})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert [(a["value"] or [None])[0] for a in answers] == list(range(8)), [a for a in answers if not a["value"]][:2]
    assert all(a["value"][1] == 1 for a in answers), "each call is its sandbox's first process (pid 1)"


@pytest.mark.parametrize("body, why", [
    (b"not json", "not JSON"),
    ({"python": 3}, "python:"),
    ({"binary": "!!"}, "binary:"),
    ({"python": "def handler(e): pass", "limits": {"timeout": -1}}, "limits.timeout"),
    ({"neither": 1}, "the body"),
])
def test_bad_requests(faas, body, why):
    r = faas.call(body, expect=400)
    assert why in r["error"], r


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_warm_calls(platform):
    server = Faas(platform, "--warm")
    try:
        leave = ("import os\n"
                 "def handler(n):\n"
                 "    seen = os.path.exists('/tmp/left')\n"
                 "    open('/tmp/left', 'w').write('call %d' % n)\n"
                 "    return [n, seen]\n")
        for n in range(3):
            r = server.call({"python": leave, "event": n})
            assert r["value"] == [n, False], f"call {n} saw an earlier call's file: {r}"
        r = server.call({"python": "def handler(e):\n    while True:\n        pass", "limits": {"timeout": 1}})
        assert r["result"]["limit_hit"] == "timeout", r
        assert server.call({"python": "def handler(e):\n    return e + 1", "event": 41})["value"] == 42
    finally:
        _stopped(server)
