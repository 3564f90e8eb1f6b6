"""`sentry test`: run a corpus of test binaries, each in its own sandbox, and
report pass/fail per binary (exit status 0 passes), optionally as JUnit XML.

Each binary runs as a separate `sentry run` process with a wall-clock
timeout, so a hang or a crash fails that binary only."""
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from xml.sax.saxutils import escape, quoteattr

from sentry.errors import SentryError


def collect(paths) -> list[str]:
    """The executable regular files named, or found (recursively, sorted) in directories."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            for d, dirs, files in os.walk(p):
                dirs.sort()
                found += [os.path.join(d, f) for f in sorted(files)
                          if os.access(os.path.join(d, f), os.X_OK) and not os.path.islink(os.path.join(d, f))]
        elif os.path.isfile(p):
            found.append(p)
        else:
            raise SentryError(f"{p}: No such file or directory", 127)
    if not found:
        raise SentryError("no test binaries found")
    return found


def run_one(binary: str, platform, timeout: float) -> dict:
    argv = [sys.executable, "-m", "sentry", "run"] + (["--platform", platform] if platform else []) + [binary]
    start = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        status, out, err = r.returncode, r.stdout, r.stderr
        outcome = "pass" if status == 0 else "fail"
    except subprocess.TimeoutExpired as e:
        status, out, err, outcome = None, e.stdout or b"", e.stderr or b"", "timeout"
    return dict(binary=binary, outcome=outcome, status=status, seconds=time.monotonic() - start,
                stdout=out, stderr=err)


def junit(results, path: str) -> None:
    failures = sum(r["outcome"] != "pass" for r in results)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name="sentry" tests="{len(results)}" failures="{failures}">']
    for r in results:
        lines.append(f'  <testcase classname="sentry" name={quoteattr(r["binary"])} time="{r["seconds"]:.3f}">')
        if r["outcome"] != "pass":
            why = "timed out" if r["outcome"] == "timeout" else f"exit status {r['status']}"
            lines.append(f'    <failure message={quoteattr(why)}>'
                         f'{escape(r["stderr"][-4000:].decode(errors="replace"))}</failure>')
        lines.append(f'    <system-out>{escape(r["stdout"][-4000:].decode(errors="replace"))}</system-out>')
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(paths, platform=None, jobs=1, junit_path=None, timeout=60.0) -> int:
    binaries = collect(paths)
    width = max(len(b) for b in binaries)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = []
        for r in pool.map(lambda b: run_one(b, platform, timeout), binaries):
            results.append(r)
            detail = "timed out" if r["outcome"] == "timeout" else f"exit {r['status']}"
            print(f"{r['outcome'].upper():<7} {r['binary']:<{width}}  {detail:<10} {r['seconds']:6.2f} s",
                  flush=True)
    passed = sum(r["outcome"] == "pass" for r in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    if junit_path:
        junit(results, junit_path)
    return 0 if passed == len(results) else 1
