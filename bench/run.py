"""The sentry's benchmark: native vs each platform, for the same static binaries.

    .venv/bin/python bench/run.py [--quick] [--platform ptrace|unicorn ...] [--json FILE]

Measures, interleaving the runners so that drift hits all of them alike:

1. start-to-exit of a static hello (median wall time, output to a pipe);
2. a CPU-bound loop: time per iteration with start-up subtracted,
   (t(N) - t(0)) / N, as a ratio to native's;
3. a getppid loop: per-call overhead over native in µs,
   (t(100k) - t(1)) / 100k - native's same figure, next to a minimal C
   PTRACE_SYSEMU tracer (bench/progs/ctracer.c), pinned to one CPU like the
   sentry and unpinned.

The C programs in bench/progs/ are compiled with `gcc -static -O2` into
bench/build/ (rebuilt when the source or the flags change). Each runner does one
unmeasured warm-up run per binary first (it fills the sentry's loader cache).

Exit status: 0 when everything ran (goals missed or not: this is a report),
1 when some measurement failed to run (it is reported as FAILED in the table),
2 when the bench itself cannot start (no gcc, a program does not compile).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform as pyplatform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROGS = os.path.join(HERE, "progs")
BUILD = os.path.join(HERE, "build")
CFLAGS = ["-static", "-O2", "-Wall"]

PLATFORMS = ("ptrace", "unicorn")

HELLO_OUT = b"hello from the sentry bench\n"
CPU_ITERS = 80_000_000  # ~0.7 s natively on the 2-vCPU VM
GETPPID_CALLS = 100_000

GOAL_START_MS = 60.0
GOAL_CPU_RATIO = 1.02
GOAL_VS_CTRACER = 2.0


# ── running things ─────────────────────────────────────────────────────────


class RunFailed(Exception):
    pass


class TimedOut(RunFailed):
    pass


def sentry_exe() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "sentry")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "sentry"]


@dataclass
class Runner:
    """Something that runs a program: native, a sentry platform, the C tracer."""

    name: str
    prefix: list[str]
    platform: str | None = None  # the sentry platform, for the goals
    failed: str | None = None  # why it stopped being measured
    extra_args: list[str] = field(default_factory=list)  # appended to the program's

    def cmd(self, prog: str, args: list[str]) -> list[str]:
        return [*self.prefix, prog, *args, *self.extra_args]


def run_once(runner: Runner, prog: str, args: list[str], timeout: float, check) -> float:
    """Run, return the wall time in seconds; RunFailed if it fails or checks wrong."""
    cmd = runner.cmd(prog, args)
    t0 = time.perf_counter()
    try:
        # its own process group, so that a timeout ends everything it started
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    except OSError as e:
        raise RunFailed(f"cannot start: {e}") from None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # something outside the group holds the pipes
            p.kill()
            p.wait()
        raise TimedOut(f"timed out after {timeout:g} s") from None
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        tail = lines[-1] if lines else ""
        raise RunFailed(f"exit status {p.returncode}" + (f": {tail[:160]}" if tail else ""))
    problem = check(out, err)
    if problem:
        raise RunFailed(problem)
    return dt


@dataclass
class Cell:
    """The samples of one runner on one program with one argument list."""

    runner: Runner
    prog: str
    args: list[str]
    check: object
    timeout: float
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def measure(cells: list[Cell], runs: int, warmup: bool = True) -> None:
    """Warm each cell up once, then take `runs` samples of each, interleaved.
    A cell that fails stops being run; a runner that times out is given up on."""

    def one(c: Cell, keep: bool) -> None:
        if c.error is not None:
            return
        if c.runner.failed:
            c.error = f"skipped: {c.runner.failed}"
            return
        try:
            dt = run_once(c.runner, c.prog, c.args, c.timeout, c.check)
        except TimedOut as e:
            c.error = str(e)
            c.runner.failed = f"timed out earlier ({e})"
            return
        except RunFailed as e:
            c.error = str(e)
            return
        if keep:
            c.samples.append(dt)

    if warmup:
        for c in cells:
            one(c, keep=False)
    for _ in range(runs):
        for c in cells:
            one(c, keep=True)


# ── building ───────────────────────────────────────────────────────────────


def build(name: str) -> str:
    """Compile bench/progs/NAME.c into bench/build/NAME unless up to date."""
    src = os.path.join(PROGS, name + ".c")
    out = os.path.join(BUILD, name)
    stamp = out + ".stamp"
    with open(src, "rb") as f:
        key = hashlib.sha256(f.read() + repr(CFLAGS).encode()).hexdigest()
    try:
        with open(stamp) as f:
            if f.read().strip() == key and os.path.exists(out):
                return out
    except OSError:
        pass
    os.makedirs(BUILD, exist_ok=True)
    cmd = ["gcc", *CFLAGS, src, "-o", out + ".tmp"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SystemExit(f"bench: cannot compile {src}: {e}")
    if p.returncode != 0:
        raise SystemExit(f"bench: cannot compile {src}:\n{p.stderr.decode(errors='replace')}")
    os.replace(out + ".tmp", out)
    with open(stamp, "w") as f:
        f.write(key + "\n")
    return out


# ── checks of the programs' output ─────────────────────────────────────────


def expect_exact(want: bytes):
    def check(out: bytes, err: bytes) -> str | None:
        return None if out == want else f"unexpected output {out[:80]!r}"

    return check


def expect_prefix(want: str):
    def check(out: bytes, err: bytes) -> str | None:
        return None if out.decode(errors="replace").startswith(want) else f"unexpected output {out[:80]!r}"

    return check


def expect_same_as(reference: dict, key: str):
    """The output must equal what native printed for the same arguments."""

    def check(out: bytes, err: bytes) -> str | None:
        want = reference.get(key)
        if want is None:
            reference[key] = out
            return None
        return None if out == want else f"output {out[:60]!r} differs from native's {want[:60]!r}"

    return check


def expect_ctracer(calls: int):
    want = f"ctracer: {calls} getppid".encode()

    def check(out: bytes, err: bytes) -> str | None:
        return None if want in err else f"unexpected tracer report {err[-80:]!r}"

    return check


# ── the report ─────────────────────────────────────────────────────────────

rows: list[tuple[str, ...]] = []
results: dict = {}


def row(*cols: str) -> None:
    rows.append(tuple(cols))


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def fmt_ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_ratio(x: float) -> str:
    return f"{x:.3f}×" if x < 10 else f"{x:.1f}×" if x < 1000 else f"{x:.0f}×"


def print_table() -> None:
    widths = [0] * max(len(r) for r in rows)
    for r in rows:
        if len(r) == 1:
            continue
        for i, col in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(col))
    for r in rows:
        if len(r) == 1:
            print(r[0])
            continue
        print(("  " + "  ".join(col.ljust(widths[i]) for i, col in enumerate(r[:-1])) + "  " + r[-1]).rstrip())


def loadavg() -> float | None:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, timeout=10).stdout.strip()
    u = os.uname()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": f"{u.sysname} {u.release} {u.machine}",
        "python": pyplatform.python_version(),
        "gcc": gcc,
        "loadavg_1min_before": loadavg(),
    }


# ── the benchmarks ─────────────────────────────────────────────────────────


def bench_hello(hello: str, native: Runner, plats: list[Runner], runs: int, timeout: float) -> None:
    cells = [Cell(r, hello, [], expect_exact(HELLO_OUT), timeout) for r in [native, *plats]]
    measure(cells, runs)
    n = cells[0]
    res = results["hello"] = {"runs": runs}
    row(f"1 start-to-exit of a static hello — median of {runs}")
    if not n.ok:
        row("native", "FAILED", "", "", n.error)
        res["native"] = {"error": n.error}
        return
    row("native", fmt_ms(n.median), "1.00×", "", "")
    res["native"] = {"median_s": n.median, "samples": n.samples}
    for c in cells[1:]:
        if not c.ok:
            row(c.runner.name, "FAILED", "", "", c.error)
            res[c.runner.name] = {"error": c.error}
            continue
        ratio = c.median / n.median
        goal, ok = "", None
        if c.runner.platform == "ptrace":
            ok = c.median * 1e3 <= GOAL_START_MS
            goal = f"≤ {GOAL_START_MS:g} ms"
        row(c.runner.name, fmt_ms(c.median), fmt_ratio(ratio), goal, mark(ok) if ok is not None else "")
        res[c.runner.name] = {"median_s": c.median, "samples": c.samples, "ratio": ratio, "goal_met": ok}


def bench_hello_api(hello: str, plat_names: list[str], runs: int) -> None:
    """The same hello through the embedding API, in this already-warm Python
    process: what a FaaS host pays per run once sentry is imported."""
    sys.path.insert(0, ROOT)
    from sentry.api import Sandbox
    res = results["hello_api"] = {"runs": runs}
    for p in plat_names:
        name = f"sentry {p}, API in-process"
        samples = []
        try:
            for i in range(runs + 1):
                t0 = time.perf_counter()
                r = Sandbox(platform=p).run([hello])
                dt = time.perf_counter() - t0
                if r.exit_code != 0 or r.stdout != HELLO_OUT:
                    raise RunFailed(f"exit {r.exit_code}, stdout {r.stdout[:80]!r}")
                if i:  # the first run is the warm-up
                    samples.append(dt)
        except Exception as e:  # a report, not a crash
            row(name, "FAILED", "", "", str(e)[:120])
            res[p] = {"error": str(e)}
            continue
        median = statistics.median(samples)
        ok = median * 1e3 <= GOAL_START_MS
        row(name, fmt_ms(median), "", f"≤ {GOAL_START_MS:g} ms", mark(ok))
        res[p] = {"median_s": median, "samples": samples}


def pick_count(runner: Runner, prog: str, args_for, check_for, full: int, probe: int, target_s: float,
               timeout: float) -> int:
    """A count ≤ full for which runner takes about target_s beyond its start-up, for
    runners too slow to run the full count in time: probe at growing counts until
    the loop's share of a run is measurable, then scale."""
    t0 = run_once(runner, prog, args_for(0), timeout, check_for(0))
    while True:
        t1 = run_once(runner, prog, args_for(probe), timeout, check_for(probe))
        if probe >= full or t1 - t0 >= target_s / 4:
            break
        probe = min(full, probe * 10)
    per = max(t1 - t0, 1e-9) / probe
    n = int(min(full, max(probe, target_s / per)))
    mag = 10 ** max(len(str(n)) - 2, 0)  # 2 significant digits, for a readable table
    return min(full, max(1, n // mag * mag))


def bench_cpu(cpuloop: str, native: Runner, plats: list[Runner], runs: int, iters: int, slow_target: float,
              timeout: float) -> None:
    outputs: dict = {}
    res = results["cpu"] = {"runs": runs, "formula": "(t(N) - t(0)) / N per runner, ratio to native's"}
    row(f"2 CPU-bound loop — median of {runs}; ratio of time per iteration with start-up subtracted, "
        f"(t(N) − t(0)) / N")

    def cells_for(r: Runner, n: int) -> tuple[Cell, Cell]:
        return (Cell(r, cpuloop, ["0"], expect_same_as(outputs, "0"), timeout),
                Cell(r, cpuloop, [str(n)], expect_same_as(outputs, str(n)), timeout))

    counts: dict[str, int] = {native.name: iters}
    for r in plats:
        if r.platform == "unicorn" and not r.failed:
            # emulation: a smaller count, sized from a probe, scaled per iteration
            probe = iters // 1000
            try:
                for k in (0, probe):  # native's output first: the reference
                    run_once(native, cpuloop, [str(k)], timeout, expect_same_as(outputs, str(k)))
                counts[r.name] = pick_count(r, cpuloop, lambda k: [str(k)],
                                            lambda k: expect_same_as(outputs, str(k)), iters, probe,
                                            slow_target, timeout)
            except TimedOut as e:
                r.failed = f"timed out earlier ({e})"
            except RunFailed:
                pass  # measured below, where the failure is recorded
        counts.setdefault(r.name, iters)
    # native's output for every count used, so that each runner is checked against it
    for n in set(counts.values()):
        if str(n) not in outputs:
            try:
                run_once(native, cpuloop, [str(n)], timeout, expect_same_as(outputs, str(n)))
            except RunFailed:
                pass
    pairs = {r.name: cells_for(r, counts[r.name]) for r in [native, *plats]}
    measure([c for p in pairs.values() for c in p], runs)

    def per_iter(r: Runner) -> tuple[float | None, str | None]:
        c0, cn = pairs[r.name]
        if not c0.ok:
            return None, c0.error
        if not cn.ok:
            return None, cn.error
        if cn.median <= c0.median:
            return None, "loop time not above start-up time: too noisy to measure"
        return (cn.median - c0.median) / counts[r.name], None

    n_per, err = per_iter(native)
    c0, cn = pairs[native.name]
    if n_per is None:
        row("native", "FAILED", "", "", err)
        res["native"] = {"error": err}
        return
    row(f"native, N={iters:,}", f"{fmt_ms(cn.median - c0.median)} loop + {fmt_ms(c0.median)} start",
        "1.00×", "", "")
    res["native"] = {"count": iters, "median_s": cn.median, "start_s": c0.median, "per_iter_s": n_per,
                     "samples": cn.samples, "start_samples": c0.samples}
    for r in plats:
        p, err = per_iter(r)
        if p is None:
            row(r.name, "FAILED", "", "", err)
            res[r.name] = {"error": err}
            continue
        c0, cn = pairs[r.name]
        ratio = p / n_per
        ok = ratio <= GOAL_CPU_RATIO if r.platform == "ptrace" else None
        goal = f"≤ {GOAL_CPU_RATIO:g}×" if ok is not None else ""
        row(f"{r.name}, N={counts[r.name]:,}", f"{fmt_ms(cn.median - c0.median)} loop + {fmt_ms(c0.median)} start",
            fmt_ratio(ratio), goal, mark(ok) if ok is not None else "")
        res[r.name] = {"count": counts[r.name], "median_s": cn.median, "start_s": c0.median, "per_iter_s": p,
                       "ratio": ratio, "goal_met": ok, "samples": cn.samples, "start_samples": c0.samples}


def bench_getppid(getppid: str, ctracer: str, native: Runner, plats: list[Runner], runs: int, calls: int,
                  slow_target: float, timeout: float) -> None:
    res = results["getppid"] = {
        "runs": runs,
        "formula": "per call = (t(N) - t(1)) / N; overhead = per call - native's per call",
    }
    row(f"3 getppid loop — median of {runs}; per call = (t(N) − t(1)) / N, shown as overhead over native's")
    tracers = [
        Runner("C tracer, pinned", [ctracer, "pin"], extra_args=["--stop"]),
        Runner("C tracer, unpinned", [ctracer, "free"], extra_args=["--stop"]),
    ]
    counts: dict[str, int] = {}
    for r in plats:
        if r.platform == "unicorn" and not r.failed:
            try:
                counts[r.name] = pick_count(r, getppid, lambda k: [str(max(k, 1))],
                                            lambda k: expect_prefix(f"getppid x{max(k, 1)} ok"), calls,
                                            max(calls // 100, 1), slow_target, timeout)
            except TimedOut as e:
                r.failed = f"timed out earlier ({e})"
            except RunFailed:
                pass
    runners = [native, *tracers, *plats]
    pairs = {}
    for r in runners:
        n = counts.get(r.name, calls)
        if r in tracers:
            checks = (expect_ctracer(1), expect_ctracer(n))
        else:
            checks = (expect_prefix("getppid x1 ok"), expect_prefix(f"getppid x{n} ok"))
        pairs[r.name] = (Cell(r, getppid, ["1"], checks[0], timeout), Cell(r, getppid, [str(n)], checks[1], timeout))
    measure([c for p in pairs.values() for c in p], runs)

    def per_call(r: Runner) -> tuple[float | None, str | None]:
        c1, cn = pairs[r.name]
        for c in (c1, cn):
            if not c.ok:
                return None, c.error
        if cn.median <= c1.median:
            return None, "loop time not above start-up time: too noisy to measure"
        n = counts.get(r.name, calls)
        return (cn.median - c1.median) / n, None

    n_per, err = per_call(native)
    if n_per is None:
        row("native", "FAILED", "", "", err)
        res["native"] = {"error": err}
        return
    us = 1e6
    row(f"native, N={calls:,}", f"{n_per * us:.2f} µs/call", "1.00×", "", "")
    res["native"] = {"count": calls, "per_call_us": n_per * us, "median_s": pairs[native.name][1].median,
                     "samples": pairs[native.name][1].samples, "start_samples": pairs[native.name][0].samples}
    ct_over = None
    for r in [*tracers, *plats]:
        p, err = per_call(r)
        if p is None:
            row(r.name, "FAILED", "", "", err)
            res[r.name] = {"error": err}
            continue
        over = p - n_per
        n = counts.get(r.name, calls)
        entry = {"count": n, "per_call_us": p * us, "overhead_us": over * us, "ratio": p / n_per,
                 "median_s": pairs[r.name][1].median, "samples": pairs[r.name][1].samples,
                 "start_samples": pairs[r.name][0].samples}
        goal, ok = "", None
        if r is tracers[0]:
            ct_over = over
        if r.platform == "ptrace":
            if ct_over is None:
                goal = "≤ 2× C tracer (C tracer failed)"
            else:
                entry["vs_ctracer_pinned"] = over / ct_over
                ok = over <= GOAL_VS_CTRACER * ct_over
                goal = f"≤ {GOAL_VS_CTRACER:g}× C tracer pinned: {over / ct_over:.2f}×"
        elif r.platform is not None and ct_over is not None:
            entry["vs_ctracer_pinned"] = over / ct_over
            goal = f"{over / ct_over:.2f}× C tracer pinned"
        entry["goal_met"] = ok
        res[r.name] = entry
        row(f"{r.name}, N={n:,}", f"+{over * us:.2f} µs/call", fmt_ratio(p / n_per), goal,
            mark(ok) if ok is not None else "")


def main(argv=None) -> int:
    # Measure sentry as users run it: with Python's bytecode cache (a development
    # shell may set PYTHONDONTWRITEBYTECODE, which recompiles every module per start).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and a shorter CPU loop (< ~60 s)")
    ap.add_argument("--platform", action="append", choices=PLATFORMS,
                    help="a platform to measure (repeatable; default: all)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    opts = ap.parse_args(argv)
    plat_names = list(dict.fromkeys(opts.platform or PLATFORMS))

    if shutil.which("gcc") is None:
        print("bench: gcc not found", file=sys.stderr)
        return 2
    bins = {name: build(name) for name in ("hello", "cpuloop", "getppid", "ctracer")}

    quick = opts.quick
    hello_runs = 5 if quick else 15
    cpu_runs = 3 if quick else 5
    cpu_iters = CPU_ITERS // 4 if quick else CPU_ITERS
    pp_runs = 3 if quick else 7
    slow_target = 0.4 if quick else 1.5  # seconds per run for emulated (slow) runners
    timeout = 30.0 if quick else 120.0

    m = machine()
    results["machine"] = m
    results["quick"] = quick
    print(f"sentry bench{' (--quick)' if quick else ''} — {m['nproc']} CPUs ({m['usable_cpus']} usable), "
          f"{m['kernel']}, Python {m['python']}, gcc {m['gcc']}")
    if m["loadavg_1min_before"] is not None:
        busy = m["loadavg_1min_before"] > 0.5
        print(f"load average (1 min) {m['loadavg_1min_before']:.2f}"
              + (" — the machine is busy: figures will be noisy" if busy else ""))
    print("binaries: gcc -static -O2 bench/progs/*.c; one unmeasured warm-up run per runner and binary; "
          "wall times, output to a pipe")
    print()

    native = Runner("native", [])
    plats = [Runner(f"sentry {p}", [*sentry_exe(), "run", "--platform", p], platform=p) for p in plat_names]

    started = time.perf_counter()
    row("runner", "figure", "× native", "goal", "")
    bench_hello(bins["hello"], native, plats, hello_runs, timeout)
    bench_hello_api(bins["hello"], plat_names, hello_runs)
    row("")
    bench_cpu(bins["cpuloop"], native, plats, cpu_runs, cpu_iters, slow_target, timeout)
    row("")
    bench_getppid(bins["getppid"], bins["ctracer"], native, plats, pp_runs, GETPPID_CALLS, slow_target, timeout)
    print_table()
    elapsed = time.perf_counter() - started
    results["elapsed_s"] = elapsed
    results["loadavg_1min_after"] = load_after = loadavg()
    print()
    print("For reference, PERFORMANCE.md (another VM of the kind): hello 0.7 ms native; getppid 0.17 µs/call "
          "native, C tracer +11.8, runsc ptrace +17.2, qiling +60.4; CPU loop runsc 1.7×, qemu-user 1.8×.")
    print(f"({elapsed:.0f} s, load average after {load_after}.  For emulated platforms N is sized from a probe run; their ratios are per "
          f"iteration / per call, so comparable with native's at its own N.)")

    failed = [
        f"{bench}: {name}: {entry['error']}"
        for bench, entries in results.items() if isinstance(entries, dict)
        for name, entry in entries.items() if isinstance(entry, dict) and "error" in entry
    ]
    results["failed"] = failed
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)
    if failed:
        print(f"{len(failed)} measurement(s) failed to run:", file=sys.stderr)
        for f_ in failed:
            print(f"  {f_}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
