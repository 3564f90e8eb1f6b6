#!/usr/bin/env python3
"""Thread benchmarks of issue 6, as ratios to native in the same run:

1. futex ping-pong between two threads: raw FUTEX_WAIT/FUTEX_WAKE on two words,
   time per round trip with start-up (and the thread's creation) subtracted,
   (t(N) - t(0)) / N (bench/progs/futexpp.c);
2. a mutex-contended counter: 4 threads let go together add 1 under one
   pthread_mutex until N increments in all, the sum checked exact; the total
   for N increments with start-up subtracted, shown per increment
   (bench/progs/mutexcount.c);
3. epoll_wait over 1,000 eventfds in one epoll set, one of them made readable
   per iteration: time per epoll_wait, (t(N) - t(N without the epoll_wait)) / N,
   i.e. the write and read that make and clear readiness are subtracted too
   (bench/progs/epollfds.c). Reported as "eventfd missing" when the sandbox
   answers eventfd with ENOSYS.

ptrace runs all of a sandbox's threads on one host CPU (the sentry's), which
changes what contention costs: the first two are also measured natively on one
CPU (taskset) and shown under the table.

Each runner does one unmeasured warm-up run per program (the sentry's ELF plan
cache), then the two runs of a difference alternate, so drift hits both alike.
The sentry runs fewer iterations where it is slow; figures are per operation,
so the ratios stay comparable.

Usage: .venv/bin/python bench/threads.py [--quick] [--platform ptrace|unicorn ...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys

from simple import SENTRY, build as _build, timed  # bench/ is on sys.path when run


class Missing(Exception):
    """The sandbox lacks what the bench needs (the program said so)."""


class Noise(Exception):
    """N iterations took no longer than none: the figure drowned in start-up's noise."""


def build(name: str) -> str:
    return _build(name, "threads")


def ok_time(argv) -> float:
    try:
        dt, out = timed(argv, timeout=600)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(argv[:6])}... timed out") from None
    if not out.startswith(b"ok"):
        raise RuntimeError(f"{' '.join(argv[:6])}... printed {out[:100]!r}")
    return dt


def probe(argv) -> None:
    """One short run; Missing if the program reports eventfd missing."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if b"eventfd missing" in r.stdout:
        raise Missing("eventfd missing")
    if r.returncode != 0 or not r.stdout.startswith(b"ok"):
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {r.returncode}: {r.stdout[:100]!r} "
                           f"{r.stderr.decode(errors='replace')[-300:]}")


def per_op(cmd_n, cmd_0, n: int, runs: int) -> float:
    """Median seconds per iteration: (t(cmd_n) - t(cmd_0)) / n, the two runs alternating.
    Noise when the difference is not above zero."""
    ok_time(cmd_0)  # warm-up
    base, full = [], []
    for _ in range(runs):
        base.append(ok_time(cmd_0))
        full.append(ok_time(cmd_n))
    diff = statistics.median(full) - statistics.median(base)
    if diff <= 0:
        raise Noise("noise")
    return diff / n


def main(argv=None) -> int:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with Python's bytecode cache, as users run it
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations and runs (about a minute)")
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args(argv)
    plats = o.platform or ["ptrace", "unicorn"]
    runs = 3 if o.quick else 5
    q = o.quick
    futexpp, mutexcount, epollfds = build("futexpp"), build("mutexcount"), build("epollfds")
    fds = "1000"
    # iterations per runner: (native, ptrace, unicorn)
    plans = [
        ("futex ping-pong, 2 threads", "round trip", futexpp,
         dict(native=2000 if q else 10000, ptrace=2000 if q else 10000, unicorn=1000 if q else 5000),
         lambda n: [str(n)], lambda n: ["0"], 1e6, "µs"),
        ("mutex counter, 4 threads", "increment", mutexcount,
         dict(native=10_000_000 if q else 20_000_000, ptrace=10_000_000 if q else 20_000_000,
              unicorn=300_000 if q else 2_000_000),
         lambda n: [str(n), "4"], lambda n: ["0", "4"], 1e9, "ns"),
        ("epoll_wait, 1,000 eventfds", "epoll_wait", epollfds,
         dict(native=20_000 if q else 100_000, ptrace=2_000 if q else 10_000, unicorn=2_000 if q else 10_000),
         lambda n: [str(n), fds, "epoll"], lambda n: [str(n), fds, "plain"], 1e6, "µs"),
    ]
    print(f"sentry thread bench — {os.cpu_count()} CPUs, {os.uname().release}; medians of {runs}, "
          f"start-up subtracted")
    head = f"{'':30} {'per':>11} {'native':>11}"
    for p in plats:
        head += f" {p:>11} {'×':>7}"
    print("\n" + head)
    failed = False
    results = {}
    for title, unit_name, prog, counts, args_n, args_0, scale, unit in plans:
        line = f"{title:30} {unit_name:>11}"
        row = {}
        for runner in ["native", *plats]:
            prefix = [] if runner == "native" else [*SENTRY, "--platform", runner]
            n = counts[runner]
            try:
                if prog is epollfds:
                    probe(prefix + [prog, "1", fds, "epoll"])
                row[runner] = per_op(prefix + [prog, *args_n(n)], prefix + [prog, *args_0(n)], n, runs)
            except (Missing, Noise) as e:
                row[runner] = str(e)
            except RuntimeError as e:
                row[runner] = "FAILED"
                failed = True
                print(f"  ({runner}: {e})", file=sys.stderr)
        native = row["native"]
        for runner in ["native", *plats]:
            v = row[runner]
            if isinstance(v, str):
                line += f" {v:>19}" if runner != "native" else f" {v:>11}"
                continue
            line += f" {v * scale:8.2f} {unit:<2}"
            if runner != "native":
                line += f" {v / native:6.1f}×" if isinstance(native, float) and native > 0 else f" {'-':>7}"
        print(line, flush=True)
        results[title] = row
    pin = [["taskset", "-c", str(min(os.sched_getaffinity(0)))]] if shutil.which("taskset") else []
    for title, unit_name, prog, counts, args_n, args_0, scale, unit in plans[:2] if pin else ():
        try:
            v = per_op(pin[0] + [prog, *args_n(counts["native"])], pin[0] + [prog, *args_0(counts["native"])],
                       counts["native"], runs)
            print(f"  native on one CPU, {title}: {v * scale:.2f} {unit} per {unit_name}")
        except (RuntimeError, Noise) as e:
            print(f"  (native on one CPU: {e})", file=sys.stderr)
    print(f"\niterations: " + "; ".join(
        f"{t.split(',')[0]} " + "/".join(f"{c[r]:,}" for r in ["native", *plats])
        for t, _, _, c, *_ in plans) + f" ({'/'.join(['native', *plats])})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
