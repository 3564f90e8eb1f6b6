#!/usr/bin/env python3
"""Filesystem benchmarks of issue 4, as ratios to native in the same run:

1. start-to-exit of the host's dynamic /bin/true (ld.so and libc loaded from the
   sandbox's view), against native and against the static hello of bench/run.py;
2. sequential write then read of a 256 MiB file through a read-write --mount
   and through the sandbox's memory /tmp (MB/s as the program measures it);
3. find over a tree of 10,000 files lent read-only.

Usage: .venv/bin/python bench/fs.py [--quick] [--platform ptrace|unicorn ...]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

from simple import BUILD, SENTRY, build as _build, timed  # bench/ is on sys.path when run


def build(name: str) -> str:
    return _build(name, "fs")


def median_time(argv, runs: int) -> float:
    timed(argv)  # warm-up: caches, the ELF plan cache
    return statistics.median(timed(argv)[0] for _ in range(runs))


def throughput(out: bytes) -> tuple[float, float]:
    words = out.split()
    return float(words[1]), float(words[4])


def main(argv=None) -> int:
    # Measure sentry as users run it: with Python's bytecode cache (a development
    # shell may set PYTHONDONTWRITEBYTECODE, which recompiles every module per start).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args(argv)
    plats = o.platform or ["ptrace", "unicorn"]
    runs = 5 if o.quick else 11
    mib = 64 if o.quick else 256
    nfiles = 2000 if o.quick else 10000
    seqio = build("seqio")
    hello = build("hello")
    failed = 0
    print(f"sentry fs bench — {os.cpu_count()} CPUs, {os.uname().release}; medians of {runs}")

    print("\n1 start-to-exit of dynamic /bin/true")
    native = median_time(["/bin/true"], runs)
    print(f"  native                 {native * 1e3:7.1f} ms")
    for p in plats:
        try:
            dyn = median_time([*SENTRY, "--platform", p, "/bin/true"], runs)
            static = median_time([*SENTRY, "--platform", p, hello], runs)
            ok = dyn <= 2.5 * static
            print(f"  sentry {p:<8}        {dyn * 1e3:7.1f} ms  {dyn / native:6.1f}× native, "
                  f"{dyn / static:4.2f}× the static hello ({static * 1e3:.1f} ms)  goal ≤ 2.5× {'✓' if ok else '✗'}")
        except Exception as e:
            failed += 1
            print(f"  sentry {p:<8}        FAILED {e}")

    print(f"\n2 sequential write + read of {mib} MiB (MB/s; goal ≥ 0.5× native on ptrace)")
    with tempfile.TemporaryDirectory(prefix="sentry-bench-") as d:
        _, out = timed([seqio, os.path.join(d, "f"), str(mib)])
        nw, nr = throughput(out)
        print(f"  native (host dir)      write {nw:8.0f}  read {nr:8.0f}")
        # The native counterpart of the sandbox's memory /tmp, for reference (the goal
        # is measured against the host directory above).
        tw = tr = None
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            shm = tempfile.mkdtemp(prefix="sentry-bench-", dir="/dev/shm")
            try:
                _, out = timed([seqio, os.path.join(shm, "f"), str(mib)])
                tw, tr = throughput(out)
                print(f"  native (tmpfs)         write {tw:8.0f}  read {tr:8.0f}")
            finally:
                shutil.rmtree(shm, ignore_errors=True)
        for p in plats:
            for where, extra, path in (("rw mount", ["--mount", f"{d}:/data:rw"], "/data/f"),
                                       ("tmpfs", [], "/tmp/f")):
                try:
                    _, out = timed([*SENTRY, "--platform", p, *extra, seqio, path, str(mib)])
                    w, r = throughput(out)
                    goal = ""
                    if p == "ptrace":
                        goal = "✓" if min(w / nw, r / nr) >= 0.5 else "✗"
                    also = f"  [{w / tw:4.2f}× / {r / tr:4.2f}× native tmpfs]" if where == "tmpfs" and tw else ""
                    print(f"  sentry {p:<8} {where:<9} write {w:8.0f} ({w / nw:4.2f}×)  read {r:8.0f} "
                          f"({r / nr:4.2f}×)  {goal}{also}")
                except Exception as e:
                    failed += 1
                    print(f"  sentry {p:<8} {where:<9} FAILED {e}")

    print(f"\n3 find over a tree of {nfiles} files (lent read-only)")
    with tempfile.TemporaryDirectory(prefix="sentry-bench-") as d:
        for i in range(nfiles):
            sub = os.path.join(d, f"d{i // 100:03d}")
            if i % 100 == 0:
                os.mkdir(sub)
            with open(os.path.join(sub, f"f{i:05d}"), "w") as f:
                f.write("x")
        cmd = ["/usr/bin/find", d, "-type", "f"]
        native_t, native_out = timed(cmd)
        native_t = median_time(cmd, runs)
        print(f"  native                 {native_t * 1e3:7.1f} ms")
        for p in plats:
            try:
                argv = [*SENTRY, "--platform", p, "--mount", f"{d}:{d}", *cmd]
                t, out = timed(argv)
                if sorted(out.split()) != sorted(native_out.split()):
                    raise RuntimeError("output differs from native")
                t = median_time(argv, max(3, runs // 3))
                print(f"  sentry {p:<8}        {t * 1e3:7.1f} ms  {t / native_t:6.1f}×")
            except Exception as e:
                failed += 1
                print(f"  sentry {p:<8}        FAILED {e}")
    shutil.rmtree(BUILD + "/tmp", ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
