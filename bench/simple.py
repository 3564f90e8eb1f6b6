"""What bench/fs.py and bench/procs.py share: building a static C program from
bench/progs/ and timing one run of a command against its exit status."""
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "build")
SENTRY = [os.path.join(ROOT, ".venv", "bin", "sentry"), "run"]


def build(name: str, suffix: str) -> str:
    """bench/progs/NAME.c compiled static into bench/build/NAME-SUFFIX (when the source is newer)."""
    os.makedirs(BUILD, exist_ok=True)
    src, out = os.path.join(HERE, "progs", name + ".c"), os.path.join(BUILD, f"{name}-{suffix}")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["gcc", "-O2", "-static", "-o", out, src], check=True, timeout=120)
    return out


def timed(argv, timeout: float = 900.0) -> tuple[float, bytes]:
    """(wall seconds, stdout) of one run; RuntimeError unless it exits 0."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {r.returncode}: {r.stderr.decode()[-300:]}")
    return dt, r.stdout
