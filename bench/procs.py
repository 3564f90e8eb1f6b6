#!/usr/bin/env python3
"""Process benchmarks of issue 5, as ratios to native in the same run:

1. fork + exec + wait of a static /bin/true-like program, N times (per-iteration
   cost with start-up subtracted: (t(N) - t(0)) / N);
2. a 64 KiB ping-pong between two processes over two pipes (per round trip, the
   same way).

Usage: .venv/bin/python bench/procs.py [--quick] [--platform ptrace|unicorn ...]
"""
import argparse
import os
import statistics
import sys

from simple import SENTRY, build as _build, timed  # bench/ is on sys.path when run


def build(name: str) -> str:
    return _build(name, "procs")


def ok_time(argv) -> float:
    dt, out = timed(argv)
    if not out.startswith(b"ok"):
        raise RuntimeError(f"{' '.join(argv[:6])}... printed {out[:100]!r}")
    return dt


def per_op(prefix, prog, args_n, args_0, n: int, runs: int) -> float:
    """Median seconds per iteration, start-up subtracted."""
    ok_time(prefix + [prog, *args_0])  # warm-up (the sentry's ELF plan cache)
    base = statistics.median(ok_time(prefix + [prog, *args_0]) for _ in range(runs))
    full = statistics.median(ok_time(prefix + [prog, *args_n]) for _ in range(runs))
    return max(full - base, 0.0) / n


def main(argv=None) -> int:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with Python's bytecode cache, as users run it
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args(argv)
    plats = o.platform or ["ptrace", "unicorn"]
    runs = 3 if o.quick else 5
    forks = 200 if o.quick else 1000
    rounds = 200 if o.quick else 1000
    true, forkexec, pingpong = build("true"), build("forkexec"), build("pingpong")
    print(f"sentry process bench — {os.cpu_count()} CPUs, {os.uname().release}; medians of {runs}")

    print(f"\n1 fork + exec + wait of a static true, per iteration ({forks} iterations, start-up subtracted)")
    native = per_op([], forkexec, [str(forks), true], ["0", true], forks, runs)
    print(f"  native            {native * 1e6:9.0f} µs")
    for p in plats:
        n = forks if p == "ptrace" else max(forks // 5, 20)
        s = per_op([*SENTRY, "--platform", p], forkexec, [str(n), true], ["0", true], n, runs)
        print(f"  sentry {p:<9}  {s * 1e6:9.0f} µs   {s / native:6.1f}× native")

    print(f"\n2 64 KiB ping-pong over two pipes, per round trip ({rounds} round trips)")
    native = per_op([], pingpong, [str(rounds)], ["0"], rounds, runs)
    print(f"  native            {native * 1e6:9.1f} µs   ({2 * 65536 / native / 1e9:.2f} GB/s)")
    for p in plats:
        s = per_op([*SENTRY, "--platform", p], pingpong, [str(rounds)], ["0"], rounds, runs)
        print(f"  sentry {p:<9}  {s * 1e6:9.1f} µs   {s / native:6.1f}× native ({2 * 65536 / s / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
