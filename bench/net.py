#!/usr/bin/env python3
"""Network benchmarks of issue 14, as ratios to native in the same run:

1. loopback TCP throughput: one process writes 1 GiB in 64 KiB writes, another
   (its parent) reads it in 64 KiB reads, both in one sandbox (MB/s as the
   program measures it, from accept to end of file; start-up excluded);
2. TCP round trip: 10,000 one-byte ping-pongs over one connection (µs each);
3. the same ping-pong over two pipes, in the sandbox and natively: the yardstick
   of the round-trip goal.

The program is bench/progs/tcploop.c; the runners take turns in each round
and the medians of the rounds are shown. Goals (issue 14): throughput >= 0.3x
native on ptrace; in the sandbox a TCP round trip within 2x of a pipe's. Unicorn
moves 256 MiB instead of 1 GiB (a CPU emulator's run would be long, its MB/s are
the same figure).

Usage: .venv/bin/python bench/net.py [--quick] [--platform ptrace|unicorn ...]
Exit status 0 when everything ran (goals met or not), 1 when a run failed.
"""
import argparse
import os
import statistics
import sys

from simple import SENTRY, build as _build, timed  # bench/ is on sys.path when run

GOAL_TPUT_RATIO = 0.3   # ptrace, of native
GOAL_RTT_VS_PIPE = 2.0  # in the sandbox, TCP round trip over pipe round trip


def figure(argv, what: str) -> float:
    """The program's own figure (MB/s or µs per round trip) of one run."""
    _, out = timed(argv, timeout=600)
    words = out.split()
    if len(words) != 4 or words[0] != b"ok" or words[1].decode() != what:
        raise RuntimeError(f"{' '.join(argv[:6])}... printed {out[:100]!r}")
    return float(words[3])


def main(argv=None) -> int:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with Python's bytecode cache, as users run it
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs, 256 MiB and 2,000 round trips")
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args(argv)
    plats = o.platform or ["ptrace", "unicorn"]
    runs = 1 if o.quick else 3
    mib = 256 if o.quick else 1024
    trips = 2000 if o.quick else 10000
    size = {"native": mib, "ptrace": mib, "unicorn": min(mib, 256)}
    prog = _build("tcploop", "net")
    print(f"sentry network bench — {os.cpu_count()} CPUs, {os.uname().release}; medians of {runs}")
    print(f"  TCP throughput: {mib} MiB in 64 KiB writes (unicorn: {size['unicorn']} MiB); "
          f"round trips: {trips} one-byte ping-pongs")
    failed = 0
    prefixes = {name: ([] if name == "native" else [*SENTRY, "--platform", name]) for name in ["native", *plats]}
    samples = {name: ([], [], []) for name in prefixes}
    for name, prefix in list(prefixes.items()):
        try:
            figure(prefix + [prog, "rtt", "10"], "rtt")  # warm-up (caches, the ELF plan cache)
        except (RuntimeError, OSError) as e:
            print(f"  {name}: FAILED {e}")
            failed = 1
            del prefixes[name]
    # The runners take turns in each round, so that the machine's drift hits them alike.
    for _ in range(runs):
        for name, prefix in list(prefixes.items()):
            try:
                for i, (what, n) in enumerate((("tput", size[name]), ("rtt", trips), ("pipertt", trips))):
                    samples[name][i].append(figure(prefix + [prog, what, str(n)], what))
            except (RuntimeError, OSError) as e:
                print(f"  {name}: FAILED {e}")
                failed = 1
                del prefixes[name]
    rows = {name: tuple(statistics.median(s) for s in samples[name]) for name in prefixes}
    native = rows.get("native")
    print(f"\n  {'':8} {'TCP MB/s':>10} {'x native':>9} {'TCP rtt µs':>11} {'x native':>9} "
          f"{'pipe rtt µs':>12} {'TCP/pipe':>9}")
    for name, (tput, rtt, pipertt) in rows.items():
        xt = f"{tput / native[0]:.3f}" if native else "-"
        xr = f"{rtt / native[1]:.1f}" if native else "-"
        print(f"  {name:8} {tput:10.1f} {xt:>9} {rtt:11.2f} {xr:>9} {pipertt:12.2f} {rtt / pipertt:9.2f}")
    print()
    for name in plats:
        if name not in rows or not native:
            continue
        tput, rtt, pipertt = rows[name]
        if name == "ptrace":
            ok = tput / native[0] >= GOAL_TPUT_RATIO
            print(f"  goal {name}: throughput >= {GOAL_TPUT_RATIO}x native: {'met' if ok else 'MISSED'}")
        ok = rtt / pipertt <= GOAL_RTT_VS_PIPE
        print(f"  goal {name}: TCP round trip <= {GOAL_RTT_VS_PIPE}x pipe round trip: {'met' if ok else 'MISSED'}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
