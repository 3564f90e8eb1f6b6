"""Threads (issue 6, "What must be shown"): determinism of outcome and real
threaded programs, compared with native runs.

- Determinism: fast modes of fixtures/threads.c where threads race (the 2-thread
  counter, TLS, the main thread leaving first, execve from a thread, a thread
  ending the process by exit or a fatal signal) run RUNS times each on each
  platform, glibc-dynamic and musl-static, every run's exit status, stdout and
  stderr equal to the native run's.  Every mode is also in test_fixtures.py's
  CASES (all four variants, once); the slower modes are only there.  To keep
  this cheap, the runs of one platform x variant happen in one helper process
  that runs the sandbox in-process (sentry.api.Sandbox) one run after another
  and reports each as a JSON line; a run that has not reported within
  RUN_DEADLINE seconds fails the test (the helper is killed: a hang never hangs
  the suite), and each run also has the sandbox's own wall-clock limit.
- Real programs nobody here wrote: the host's python3 with threading (Lock,
  Event, Condition, Barrier, Semaphore, local, Timer, signals and threads),
  queue.Queue producers and consumers, concurrent.futures.ThreadPoolExecutor,
  subprocesses started from several threads at once (vfork from threads),
  asyncio's to_thread/run_in_executor/call_soon_threadsafe; node's libuv thread
  pool and a worker thread with Atomics; perl's ithreads and Thread::Queue; xz
  compressing with 2 threads.
- Host tools that wait with poll/pselect: busybox sh's `read -t` (poll), bash's
  `read -t` (pselect6), coreutils `timeout` (a timer and sigsuspend).

Nothing here prints a tid, a pid or a time.  The sentry may add its own
`sentry: ...` lines on stderr (an unsupported syscall, named once) for the real
programs, nothing else.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time

import pytest

import harness
from harness import PLATFORMS

PYTHON = "/usr/bin/python3"
BASH = "/usr/bin/bash"
TIMEOUT = 60  # per real-program run


def _compare(platform, argv, **kw):
    return harness.compare_program(platform, argv, timeout=TIMEOUT, **kw)


RUNS = 20
RUN_LIMIT = 10  # the sandbox's own wall-clock limit for one run (seconds)
RUN_DEADLINE = 20  # a run not reported by then fails the test (a run takes well under 1 s)
VARIANTS = ("glibc-dynamic", "musl-static")

# (mode, exit status): fast ones (about 0.1 s a run in-process) where threads race:
# the 2-thread counter, TLS under preemption, the main thread leaving first,
# execve from a thread while the others block or compute, and a thread ending
# the process (exit, a fatal signal) likewise
MODES = (
    ("counter", 0),
    ("tls", 0),
    ("main-exit", 0),
    ("exec", 0),
    ("exit-thread", 5),
    ("kill-thread", 143),
)

# Runs the sandbox in-process, one run after another: argv = platform program
# runs limit mode...; one JSON line per run on stdout.
DRIVER = r'''
import json, sys, time
from sentry.api import Limits, Sandbox
platform, prog, runs, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
for mode in sys.argv[5:]:
    for i in range(runs):
        t0 = time.monotonic()
        r = Sandbox(platform=platform, limits=Limits(timeout=limit)).run([prog, mode])
        print(json.dumps({"mode": mode, "i": i, "status": r.exit_code, "limit": r.limit_hit,
                          "stdout": r.stdout.decode("latin-1"), "stderr": r.stderr.decode("latin-1"),
                          "wall": round(time.monotonic() - t0, 3)}), flush=True)
'''


def _repeat(platform: str, variant: str, modes) -> None:
    prog = harness.build("threads", variant)
    natives = {}
    for mode, status in modes:
        n = harness.run_native(prog, [mode], timeout=30)
        assert not n.timed_out and n.status == status, (
            f"native threads {mode} ({variant}): {n.headline()}, expected exit {status}\n{n.stderr_text()}")
        natives[mode] = n

    argv = [sys.executable, "-c", DRIVER, platform, str(prog), str(RUNS), str(RUN_LIMIT), *(m for m, _ in modes)]
    expected = [(m, i) for m, _ in modes for i in range(RUNS)]
    problems: list[str] = []
    walls: dict[str, float] = {}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                env=harness.sentry_host_env(), cwd=str(harness.REPO),
                                preexec_fn=harness._no_core_dumps)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        hung = None
        try:
            for mode, i in expected:
                deadline = time.monotonic() + RUN_DEADLINE
                while b"\n" not in buf:
                    left = deadline - time.monotonic()
                    if left <= 0 or not sel.select(left):
                        hung = f"threads {mode} run {i + 1}/{RUNS} on {platform} ({variant}): no result " \
                               f"after {RUN_DEADLINE} s (a hang)"
                        break
                    chunk = os.read(proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        hung = f"threads {mode} run {i + 1}/{RUNS}: the helper ended (exit {proc.wait()})"
                        break
                    buf += chunk
                if hung:
                    break
                line, buf = buf.split(b"\n", 1)
                r = json.loads(line)
                assert (r["mode"], r["i"]) == (mode, i), (r["mode"], r["i"], mode, i)
                walls[mode] = max(walls.get(mode, 0.0), r["wall"])
                n = natives[mode]
                got = harness.Run(f"sentry/{platform}", [str(prog), mode], r["status"],
                                  r["stdout"].encode("latin-1"), r["stderr"].encode("latin-1"))
                if r["limit"] or got.status != n.status or got.stdout != n.stdout or got.stderr != n.stderr:
                    if sum(p.startswith(f"{mode}:") for p in problems) < 2:  # the first two of a mode
                        what = [f"{mode}: run {i + 1}/{RUNS}: exit {got.status} (native {n.status})"
                                + (f", limit hit: {r['limit']}" if r["limit"] else "")]
                        if got.stdout != n.stdout:
                            what.append(harness.bytes_diff(n.stdout, got.stdout, "native", got.where))
                        if got.stderr != n.stderr:
                            what.append("stderr: " + harness.bytes_diff(n.stderr, got.stderr, "native", got.where))
                        problems.append("\n".join(what))
                    else:
                        problems.append(f"{mode}: run {i + 1} differs too")
        finally:
            sel.close()
            if proc.poll() is None:
                if hung:
                    proc.kill()  # (only the helper we started)
                try:
                    proc.wait(timeout=RUN_DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
            err.seek(0)
            err_text = err.read().decode(errors="replace")
    if hung:
        problems.insert(0, hung)
    if not problems and proc.returncode != 0:
        problems.append(f"the helper exited {proc.returncode}")
    if problems:
        harness.fail(f"{len(problems)} problem(s) in {RUNS} runs each of {[m for m, _ in modes]} "
                     f"on {platform} ({variant}):\n" + "\n".join(problems[:12])
                     + (f"\nhelper stderr:\n{harness._clip(err_text, 2000)}" if err_text.strip() else ""))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_repeated_runs(platform, variant):
    """MODES, RUNS times each: every run as the native one, none hangs."""
    _repeat(platform, variant, MODES)


# --------------------------------------------------------------------------
# real programs


PY_THREADING = r'''
import os, signal, threading, time
lock = threading.Lock()
counter = 0
def work(n):
    global counter
    for _ in range(n):
        with lock:
            counter += 1
ts = [threading.Thread(target=work, args=(1000,), name=f"worker-{i}") for i in range(6)]
for t in ts: t.start()
for t in ts: t.join()
print("6 threads x 1000 under a Lock:", counter)
print("names:", sorted(t.name for t in ts), "alive:", [t.is_alive() for t in ts].count(True))

ev = threading.Event()
woke = []
def waiter(i):
    if ev.wait(30):
        with lock:
            woke.append(i)
ws = [threading.Thread(target=waiter, args=(i,)) for i in range(5)]
for w in ws: w.start()
time.sleep(0.05)
ev.set()
for w in ws: w.join()
print("Event woke:", sorted(woke))

cond = threading.Condition()
items, consumed = [], []
def producer():
    for i in range(100):
        with cond:
            items.append(i)
            cond.notify()
def consumer():
    while True:
        with cond:
            while not items:
                cond.wait(30)
            v = items.pop(0)
        if v is None:
            return
        consumed.append(v)
cs = [threading.Thread(target=consumer) for _ in range(3)]
ps = [threading.Thread(target=producer) for _ in range(2)]
for t in cs + ps: t.start()
for t in ps: t.join()
with cond:
    items.extend([None] * 3)
    cond.notify_all()
for t in cs: t.join()
print("Condition: consumed", len(consumed), "sum", sum(consumed))

barrier = threading.Barrier(4)
order = []
def phases(i):
    for p in range(3):
        with lock:
            order.append(p)
        barrier.wait(30)
bs = [threading.Thread(target=phases, args=(i,)) for i in range(4)]
for t in bs: t.start()
for t in bs: t.join()
print("Barrier: phases in order:", order == sorted(order))

sem = threading.BoundedSemaphore(2)
inside = peak = 0
def limited():
    global inside, peak
    for _ in range(8):
        with sem:
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.001)
            with lock:
                inside -= 1
ss = [threading.Thread(target=limited) for _ in range(5)]
for t in ss: t.start()
for t in ss: t.join()
print("BoundedSemaphore(2): never more than 2:", 1 <= peak <= 2)

local = threading.local()
seen = {}
def use_local(i):
    local.value = i
    time.sleep(0.01)
    seen[i] = local.value
ls = [threading.Thread(target=use_local, args=(i,)) for i in range(6)]
for t in ls: t.start()
for t in ls: t.join()
print("local: each its own:", all(seen[i] == i for i in range(6)), "main has none:", not hasattr(local, "value"))

fired = threading.Event()
tm = threading.Timer(0.05, fired.set)
tm.start(); tm.join()
print("Timer fired:", fired.is_set())

ids = {}
def ident(i):
    ids[i] = (threading.get_ident(), threading.get_native_id(), os.getpid())
its = [threading.Thread(target=ident, args=(i,)) for i in range(4)]
for t in its: t.start()
for t in its: t.join()
print("native ids distinct and not the pid:", len({v[1] for v in ids.values()}) == 4
      and all(v[1] != os.getpid() for v in ids.values()), "getpid the same:", all(v[2] == os.getpid() for v in ids.values()))

got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(threading.current_thread() is threading.main_thread()))
k = threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGUSR1))
k.start(); k.join()
deadline = time.monotonic() + 10
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print("SIGUSR1 from a thread, handled in the main thread:", got)
signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
time.sleep(0.01)
print("pthread_kill to main:", got)
print("active threads at the end:", threading.active_count())
print("done")
'''

PY_QUEUE = r'''
import queue, threading
q = queue.Queue(maxsize=8)
out = queue.Queue()
def producer(base):
    for i in range(100):
        q.put(base + i)
def consumer():
    while True:
        v = q.get()
        if v is None:
            q.task_done()
            return
        out.put(v * 2)
        q.task_done()
ps = [threading.Thread(target=producer, args=(1000 * k,)) for k in range(3)]
cs = [threading.Thread(target=consumer) for _ in range(2)]
for t in ps + cs: t.start()
for t in ps: t.join()
q.join()
print("all 300 items done, queue empty:", q.empty())
for _ in cs: q.put(None)
for t in cs: t.join()
vals = []
while True:
    try:
        vals.append(out.get_nowait())
    except queue.Empty:
        break
print("results:", len(vals), sum(vals))
try:
    q.get(timeout=0.05)
except queue.Empty:
    print("get with a timeout on an empty queue: Empty")
full = queue.Queue(maxsize=1)
full.put(1)
try:
    full.put(2, timeout=0.05)
except queue.Full:
    print("put with a timeout on a full queue: Full")
lq = queue.LifoQueue(); pq = queue.PriorityQueue(); sq = queue.SimpleQueue()
for v in (3, 1, 2):
    lq.put(v); pq.put(v); sq.put(v)
print("lifo", [lq.get() for _ in range(3)], "priority", [pq.get() for _ in range(3)], "simple", [sq.get() for _ in range(3)])
box = []
t = threading.Thread(target=lambda: box.append(sq.get(timeout=30)))
t.start(); sq.put("handed over"); t.join()
print("a blocked get woken by a put:", box)
print("done")
'''

PY_EXECUTOR = r'''
import concurrent.futures as cf, threading, time
def square(x):
    return x * x
with cf.ThreadPoolExecutor(max_workers=4) as ex:
    print("map:", sum(ex.map(square, range(200))))
    futs = [ex.submit(square, i) for i in range(20)]
    print("as_completed:", sorted(f.result() for f in cf.as_completed(futs, timeout=30)) == [i * i for i in range(20)])
    def boom():
        raise ValueError("from a worker")
    try:
        ex.submit(boom).result(timeout=30)
    except ValueError as e:
        print("exception carried back:", e)
    names = set(ex.map(lambda _: threading.current_thread().name.split("_")[0], range(12)))
    print("ran in pool threads:", names)
    slow = ex.submit(time.sleep, 0.2)
    done, not_done = cf.wait([slow], timeout=0.01)
    print("wait with a short timeout: done", len(done), "pending", len(not_done))
    print("then result:", slow.result(timeout=30))
    f = ex.submit(square, 9)
    f.add_done_callback(lambda fut: print("callback sees", fut.result()))
    f.result(timeout=30)
print("after shutdown, threads left:", threading.active_count())
try:
    ex.submit(square, 1)
except RuntimeError:
    print("submit after shutdown: RuntimeError")
print("done")
'''

PY_SUBPROCESS_THREADS = r'''
import concurrent.futures as cf, subprocess
def run(i):
    r = subprocess.run(["/bin/echo", f"child {i}"], capture_output=True, text=True)
    return r.returncode, r.stdout.strip()
with cf.ThreadPoolExecutor(max_workers=4) as ex:
    res = list(ex.map(run, range(8)))
print("8 subprocesses from 4 threads:", res == [(0, f"child {i}") for i in range(8)])
with cf.ThreadPoolExecutor(max_workers=3) as ex:
    print("exit codes:", list(ex.map(lambda i: subprocess.run(f"exit {i}", shell=True).returncode, range(4))))
def tr(i):
    p = subprocess.Popen(["/usr/bin/tr", "a-z", "A-Z"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(b"abc %d\n" % i * 1000)
    return len(out), out[:6], p.returncode
with cf.ThreadPoolExecutor(max_workers=2) as ex:
    print("communicate from 2 threads at once:", list(ex.map(tr, range(2))))
print("done")
'''

PY_ASYNCIO_THREADS = r'''
import asyncio, threading, time
def blocking(x):
    time.sleep(0.02)
    return x * 2
async def main():
    loop = asyncio.get_running_loop()
    r = await asyncio.gather(*(asyncio.to_thread(blocking, i) for i in range(8)))
    print("to_thread:", r)
    r = await loop.run_in_executor(None, blocking, 21)
    print("run_in_executor:", r)
    fut = loop.create_future()
    threading.Thread(target=lambda: (time.sleep(0.05), loop.call_soon_threadsafe(fut.set_result, "from a thread"))).start()
    print("call_soon_threadsafe:", await asyncio.wait_for(fut, 10))
    cf = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.01, "coroutine result"), loop)
    res = await loop.run_in_executor(None, cf.result, 10)
    print("run_coroutine_threadsafe from a thread:", res)
asyncio.run(main())
print("done")
'''

PYTHON_CASES = [
    pytest.param("threading", PY_THREADING, id="threading"),
    pytest.param("queue", PY_QUEUE, id="queue"),
    pytest.param("executor", PY_EXECUTOR, id="executor"),
    pytest.param("subprocess-threads", PY_SUBPROCESS_THREADS, id="subprocess-threads"),
    pytest.param("asyncio-threads", PY_ASYNCIO_THREADS, id="asyncio-threads"),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,script", PYTHON_CASES)
def test_python_threads(name, script, platform):
    harness.require_program(PYTHON)
    native, _ = _compare(platform, [PYTHON, "-I", "-c", script], guest_tracebacks=True, label=f"python3 {name}")
    assert native.status == 0 and native.stdout.endswith(b"done\n"), native.stdout.decode() + native.stderr_text()


PERL = "/usr/bin/perl"
PERL_THREADS = r'''
use strict; use warnings;
use threads; use threads::shared; use Thread::Queue;
my $count :shared = 0;
my @t = map { threads->create(sub { for (1..500) { lock($count); $count++ } return threads->tid() > 0 ? 1 : 0 }) } 1..4;
my $ok = 0; $ok += $_->join for @t;
print "4 threads x 500 under lock: $count, joined $ok\n";
my $q = Thread::Queue->new();
my @c = map { threads->create(sub { my $s = 0; while (defined(my $v = $q->dequeue())) { $s += $v } return $s }) } 1..2;
$q->enqueue($_) for 1..200; $q->end();
my $sum = 0; $sum += $_->join for @c;
print "Thread::Queue 1..200 through 2 consumers: $sum\n";
print "done\n";
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_perl_threads(platform):
    """perl's ithreads: a shared counter under lock, Thread::Queue to two consumers."""
    harness.require_program(PERL)
    native, _ = _compare(platform, [PERL, "-e", PERL_THREADS], label="perl threads")
    assert native.status == 0 and native.stdout.endswith(b"done\n"), native.stdout


NODE = "/usr/bin/node"
NODE_THREADS = r'''
const crypto = require('crypto');
const { Worker } = require('worker_threads');
(async () => {
  // libuv's thread pool runs these off the main thread, four at once
  const keys = await Promise.all([1, 2, 3, 4].map(i => new Promise((res, rej) =>
    crypto.pbkdf2('secret' + i, 'salt', 50, 8, 'sha256', (e, k) => e ? rej(e) : res(k.toString('hex'))))));
  console.log('pbkdf2 in the pool:', keys.join(' '));
  // a worker thread: a message back, and Atomics on a SharedArrayBuffer with the main thread
  const sab = new SharedArrayBuffer(8);
  const ia = new Int32Array(sab);
  const w = new Worker(`const { parentPort, workerData } = require('worker_threads');
    const ia = new Int32Array(workerData);
    for (let i = 0; i < 1000; i++) Atomics.add(ia, 0, 1);
    let s = 0; for (let i = 0; i <= 1000; i++) s += i;
    parentPort.postMessage(s);
    Atomics.store(ia, 1, 1); Atomics.notify(ia, 1);`, { eval: true, workerData: sab });
  const msg = await new Promise((res, rej) => { w.on('message', res); w.on('error', rej); });
  Atomics.wait(ia, 1, 0, 10000);
  console.log('worker message:', msg, 'its flag:', Atomics.load(ia, 1), 'Atomics.add from it:', Atomics.load(ia, 0));
  await new Promise(r => w.on('exit', r));
  setTimeout(() => console.log('timer fired; done'), 20);
})();
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_node_threads(platform):
    """node: libuv's thread pool (crypto.pbkdf2 four at once), a worker thread with a
    message and Atomics on a SharedArrayBuffer, a timer; epoll and eventfds underneath."""
    harness.require_program(NODE)
    native, _ = _compare(platform, [NODE, "-e", NODE_THREADS], label="node threads")
    assert native.status == 0 and native.stdout.endswith(b"timer fired; done\n"), native.stdout


XZ_INPUT = b"".join(b"%06d the quick brown fox jumps over the lazy dog %d\n" % (i, i * i % 9973) for i in range(2500))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_xz_two_threads(platform):
    """xz compresses blocks in 2 threads: the same bytes as natively."""
    harness.require_program("/usr/bin/xz")
    native, _ = _compare(platform, ["/usr/bin/xz", "-T2", "--block-size=32KiB", "-0", "-c"], stdin=XZ_INPUT,
                         label="xz -T2")
    assert native.status == 0 and native.stdout[:6] == b"\xfd7zXZ\x00"


# --------------------------------------------------------------------------
# host tools that wait with poll / pselect6

READ_T = r'''
(sleep 0.2; echo late) | { read -t 5 x; echo "read -t 5, a line after 0.2 s: status $? [$x]"; }
sleep 0.3 | { read -t 0.05 x; echo "read -t 0.05, nothing comes: status $? [$x]"; }
printf 'a\nb\n' | { read -t 1 x; read -t 1 y; read -t 1 z; echo "lines [$x] [$y], then end of file: $? [$z]"; }
echo done
'''


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("shell", ["busybox", "bash"])
def test_read_timeout(shell, platform):
    """`read -t`: busybox sh waits with poll, bash with pselect6."""
    argv = [harness.require_busybox(), "sh", "-c", READ_T] if shell == "busybox" else [BASH, "-c", READ_T]
    harness.require_program(argv[0])
    native, _ = _compare(platform, argv, label=f"{shell} read -t")
    assert b"[late]" in native.stdout and native.stdout.endswith(b"done\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_coreutils_timeout(platform):
    """coreutils timeout: a timer, sigsuspend, and the child it kills."""
    harness.require_program("/usr/bin/timeout")
    script = ('/usr/bin/timeout 0.2 /bin/sleep 5; echo "timeout: $?"; '
              '/usr/bin/timeout -s KILL 0.2 /bin/sleep 5; echo "timeout -s KILL: $?"; '
              '/usr/bin/timeout 5 /bin/sh -c "exit 3"; echo "finished in time: $?"')
    native, _ = _compare(platform, [harness.require_busybox(), "sh", "-c", script], label="timeout")
    assert native.stdout == b"timeout: 124\ntimeout -s KILL: 137\nfinished in time: 3\n", native.stdout
