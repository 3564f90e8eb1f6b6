"""Cold starts and calls per second through the embedding API, next to native fork+exec.

    .venv/bin/python bench/api.py [--calls N] [--seconds S] [--platform ptrace|unicorn ...]

One static binary (bench/progs/hello.c, gcc -static), measured as a FaaS host sees it:

- cold start: in a running Python process, a new Sandbox(platform=P).run([hello]) to its
  Result, each call a fresh sandbox (median and 10th-90th percentiles of N calls);
- first call: a fresh Python process that imports sentry and makes one such run, timed
  inside it (the interpreter's own start-up is not counted): what a process that serves
  a single call pays;
- native: subprocess.run([hello]) (fork+exec and a pipe) in the same process;
- calls per second with 2 threads, each making one call after another for S seconds
  (a new Sandbox each; native: subprocess.run).

Runs are interleaved (ptrace, unicorn, native, ptrace, ...) so that drift and other load
hit each alike; the ratio is to native's figure. Goal (issue 16): a cold start of at most
40 ms through the API. Exit 0 when everything ran (a missed goal is reported, not an
error), 1 when a call's answer was wrong.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from simple import build  # noqa: E402

GOAL_COLD_MS = 40.0
HELLO_OUT = b"hello from the sentry bench\n"
FIRST_CALL = r"""
import sys, time, json
t0 = time.perf_counter()
from sentry import Sandbox
r = Sandbox(platform=sys.argv[1]).run([sys.argv[2]])
t1 = time.perf_counter()
print(json.dumps({"s": t1 - t0, "ok": r.exit_code == 0 and r.stdout == b"hello from the sentry bench\n"}))
"""


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1e3 for s in samples)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    return f"{statistics.median(ms):8.2f} ({pick(0.1):.2f}-{pick(0.9):.2f})"


def runner(name: str, prog: str):
    """A function making one call of prog under name ('native' or a platform): True if right."""
    if name == "native":
        return lambda: subprocess.run([prog], capture_output=True, timeout=60).stdout == HELLO_OUT
    from sentry import Sandbox

    def call():
        r = Sandbox(platform=name).run([prog])
        return r.exit_code == 0 and r.stdout == HELLO_OUT
    return call


def cold(names, prog: str, calls: int) -> tuple[dict, bool]:
    calls_of = {n: runner(n, prog) for n in names}
    ok = all(c() for c in calls_of.values())  # warm-up: imports, the loader's cache, the stub
    times = {n: [] for n in names}
    for _ in range(calls):
        for n, call in calls_of.items():
            t = time.perf_counter()
            ok &= call()
            times[n].append(time.perf_counter() - t)
    return times, ok


def first_call(names, prog: str, runs: int) -> tuple[dict, bool]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    times, ok = {n: [] for n in names if n != "native"}, True
    for _ in range(runs):
        for n in times:
            out = subprocess.run([sys.executable, "-c", FIRST_CALL, n, prog], capture_output=True, env=env,
                                 cwd=ROOT, timeout=120)
            try:
                r = json.loads(out.stdout)
            except ValueError:
                print(f"first call on {n} failed: {out.stderr.decode()[-500:]}", file=sys.stderr)
                return times, False
            ok &= r["ok"]
            times[n].append(r["s"])
    return times, ok


def per_second(name: str, prog: str, seconds: float, threads: int = 2) -> tuple[float, bool]:
    call = runner(name, prog)
    call()
    counts, wrong = [0] * threads, []
    stop = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < stop:
            if not call():
                wrong.append(i)
            counts[i] += 1
    t0 = time.monotonic()
    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0), not wrong


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=50, help="cold starts per runner (default 50)")
    ap.add_argument("--first", type=int, default=5, help="fresh processes per platform for the first call")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each calls-per-second run")
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args()
    platforms = o.platform or ["ptrace", "unicorn"]
    prog = build("hello", "api")
    names = [*platforms, "native"]
    print(f"bench/api.py: static hello, {o.calls} calls each, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs")

    ok = True
    times, good = cold(names, prog, o.calls)
    ok &= good
    native = statistics.median(times["native"])
    print("\ncold start (new Sandbox, run, Result), ms: median (p10-p90)   x native   goal")
    for n in names:
        ratio = statistics.median(times[n]) / native
        goal = "" if n == "native" else ("met" if statistics.median(times[n]) * 1e3 <= GOAL_COLD_MS else "MISSED")
        print(f"  {n:8} {figures(times[n])}   {ratio:7.1f}   {'' if n == 'native' else f'<= {GOAL_COLD_MS:g} {goal}'}")

    firsts, good = first_call(names, prog, o.first)
    ok &= good
    print("\nfirst call of a fresh process (import sentry, run, Result), ms:")
    for n, samples in firsts.items():
        if samples:
            print(f"  {n:8} {figures(samples)}   {statistics.median(samples) / native:7.1f}")

    print(f"\ncalls per second, 2 threads, {o.seconds:g} s each:")
    rates = {}
    for n in names:
        rates[n], good = per_second(n, prog, o.seconds)
        ok &= good
    for n in names:
        print(f"  {n:8} {rates[n]:8.1f}/s   {rates[n] / rates['native']:.3f} of native")
    if not ok:
        print("\nSOME CALLS GAVE A WRONG ANSWER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
