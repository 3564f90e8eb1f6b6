#!/usr/bin/env python3
"""Filesystem benchmarks of issue 4, as ratios to native in the same run:

1. start-to-exit of the host's dynamic /bin/true (ld.so and libc loaded from the
   sandbox's view), against native and against the static hello of bench/run.py;
2. sequential write then read of a 256 MiB file through a read-write --mount
   and through the sandbox's memory /tmp (MB/s as the program measures it),
   against the same program on the host directory and on the host's tmpfs;
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
    rounds = 3 if o.quick else 5
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

    print(f"\n2 sequential write + read of {mib} MiB (MB/s, medians of {rounds} interleaved rounds; "
          "goal ≥ 0.5× native on ptrace:\n  a rw mount against the host directory, the sandbox's memory /tmp "
          "against the host's tmpfs)")
    with tempfile.TemporaryDirectory(prefix="sentry-bench-") as d:
        shm = None
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            shm = tempfile.mkdtemp(prefix="sentry-bench-", dir="/dev/shm")
        # (label, argv) per configuration; every round runs each once, in this order, so a
        # slow spell of the machine (page-cache writeback, a neighbour) hits all alike.
        configs = [("native host dir", [seqio, os.path.join(d, "f"), str(mib)])]
        if shm:
            configs.append(("native tmpfs", [seqio, os.path.join(shm, "f"), str(mib)]))
        for p in plats:
            configs.append((f"{p} rw mount", [*SENTRY, "--platform", p, "--mount", f"{d}:/data:rw",
                                              seqio, "/data/f", str(mib)]))
            configs.append((f"{p} tmpfs", [*SENTRY, "--platform", p, seqio, "/tmp/f", str(mib)]))
        results = {label: [] for label, _ in configs}
        try:
            for _ in range(rounds):
                for label, argv in configs:
                    try:
                        results[label].append(throughput(timed(argv)[1]))
                    except Exception as e:
                        results[label] = e
        finally:
            if shm:
                shutil.rmtree(shm, ignore_errors=True)
        med = {}
        for label, got in results.items():
            if isinstance(got, Exception) or not got:
                failed += 1
                print(f"  {label:<22} FAILED {got}")
                continue
            med[label] = (statistics.median(w for w, _ in got), statistics.median(r for _, r in got))
        for label in ("native host dir", "native tmpfs"):
            if label in med:
                w, r = med[label]
                print(f"  {label:<22} write {w:8.0f}          read {r:8.0f}")
        for p in plats:
            for where, base in (("rw mount", "native host dir"), ("tmpfs", "native tmpfs")):
                label = f"{p} {where}"
                if label not in med or base not in med:
                    continue
                (w, r), (bw, br) = med[label], med[base]
                goal = ""
                if p == "ptrace":
                    goal = "✓" if min(w / bw, r / br) >= 0.5 else "✗"
                also = ""
                if where == "tmpfs":
                    hw, hr = med["native host dir"]
                    also = f"  [{w / hw:4.2f}× / {r / hr:4.2f}× the host directory]"
                print(f"  sentry {label:<15} write {w:8.0f} ({w / bw:4.2f}×)  read {r:8.0f} ({r / br:4.2f}×)  "
                      f"{goal}{also}")

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
