"""`sentry test`: run a corpus of tests, each in its own sandbox, and report
pass/fail/skip per test, optionally as JUnit XML.

A corpus is a test binary, a directory (every executable under it, sorted),
or a runtest file in the Linux Test Project's format: one `TAG COMMAND
ARGS...` per line, `#` comments and blank lines skipped; COMMAND runs
through the sandbox's /bin/sh, as LTP's own runner does, as a child of that
shell (the sandbox's pid 1), never as the sandbox's init itself. `--env`,
`--mount` and `--workdir` give the corpora of one invocation their
environment and files; `--tags FILE` keeps only the tags it lists.

Each test runs as a separate `sentry run` process with a wall-clock timeout,
so a hang or a crash fails that test only. Exit statuses are read by a
convention: `status` (0 passes, anything else fails) or `ltp` (a bitmask:
1 TFAIL, 2 TBROK, 4 TWARN fail; 32 TCONF alone, "not configured here", is a
skip; 0 passes)."""
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

from sentry.errors import SentryError

TCONF = 32


class Test(NamedTuple):
    name: str        # the tag (runtest) or the binary's path
    argv: list       # what `sentry run` runs in the sandbox


def _is_elf_or_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head[:2] == b"#!"


def read_runtest(path: str) -> list[Test]:
    """The tests of an LTP runtest file."""
    tests = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                tag, _, command = line.partition(" ")
                if not command.strip():
                    tag, _, command = line.partition("\t")
                if not command.strip():
                    raise SentryError(f"{path}:{number}: expected TAG COMMAND, not {line!r}")
                # "; exit $?": the shell forks the command instead of exec'ing it, so the test is
                # never its sandbox's pid 1 (as under LTP's runner: its library takes a parent
                # pid of 1 for "main test process exited")
                tests.append(Test(tag, ["/bin/sh", "-c", command.strip() + "\nexit $?"]))
    except OSError as e:
        raise SentryError(f"{path}: {e.strerror}", 127) from None
    return tests


def collect(paths) -> list[Test]:
    """The tests the paths name: binaries, executables under directories, runtest files."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            for d, dirs, files in os.walk(p):
                dirs.sort()
                found += [Test(os.path.join(d, f), [os.path.abspath(os.path.join(d, f))]) for f in sorted(files)
                          if os.access(os.path.join(d, f), os.X_OK) and not os.path.islink(os.path.join(d, f))]
        elif os.path.isfile(p):
            if os.access(p, os.X_OK) and _is_elf_or_script(p):
                found.append(Test(p, [os.path.abspath(p)]))
            else:
                found += read_runtest(p)
        else:
            raise SentryError(f"{p}: No such file or directory", 127)
    if not found:
        raise SentryError("no tests found")
    return found


def select(tests: list[Test], tags_file: str | None) -> list[Test]:
    """Only the tests whose names tags_file lists (one per line, `#` comments)."""
    if tags_file is None:
        return tests
    try:
        with open(tags_file) as f:
            wanted = {line.split()[0] for line in f if line.strip() and not line.lstrip().startswith("#")}
    except OSError as e:
        raise SentryError(f"--tags {tags_file}: {e.strerror}") from None
    chosen = [t for t in tests if t.name in wanted]
    if not chosen:
        raise SentryError(f"--tags {tags_file}: none of its tags is in the corpus")
    return chosen


def outcome_of(status: int, convention: str) -> str:
    if status == 0:
        return "pass"
    if convention == "ltp" and status == TCONF:
        return "skip"
    return "fail"


def run_one(test: Test, options: list, timeout: float, convention: str) -> dict:
    argv = [sys.executable, "-m", "sentry", "run", *options, *test.argv]
    start = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        status, out, err = r.returncode, r.stdout, r.stderr
        outcome = outcome_of(status, convention)
    except subprocess.TimeoutExpired as e:
        status, out, err, outcome = None, e.stdout or b"", e.stderr or b"", "timeout"
    return dict(name=test.name, outcome=outcome, status=status, seconds=time.monotonic() - start,
                stdout=out, stderr=err)


def first_reason(r) -> str:
    """The line of a failed or skipped LTP test that says why: its first TFAIL or TBROK,
    else its first TCONF (LTP's library prints them on stderr, old-style tests on stdout)."""
    text = (r["stdout"] + b"\n" + r["stderr"]).decode(errors="replace").splitlines()
    for marks in (("TFAIL", "TBROK"), ("TCONF",)):
        for line in text:
            if any(m in line for m in marks):
                return re.sub(r"^\s*\S+\.[ch]:\d+:\s*", "", line.strip())[:160]
    return ""


def junit(results, path: str) -> None:
    failures = sum(r["outcome"] in ("fail", "timeout") for r in results)
    skipped = sum(r["outcome"] == "skip" for r in results)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name="sentry" tests="{len(results)}" failures="{failures}" skipped="{skipped}">']
    for r in results:
        lines.append(f'  <testcase classname="sentry" name={quoteattr(r["name"])} time="{r["seconds"]:.3f}">')
        if r["outcome"] in ("fail", "timeout"):
            why = "timed out" if r["outcome"] == "timeout" else f"exit status {r['status']}"
            lines.append(f'    <failure message={quoteattr(why)}>'
                         f'{escape(r["stderr"][-4000:].decode(errors="replace"))}</failure>')
        elif r["outcome"] == "skip":
            lines.append(f'    <skipped message="TCONF: not configured here">'
                         f'{escape(r["stderr"][-4000:].decode(errors="replace"))}</skipped>')
        lines.append(f'    <system-out>{escape(r["stdout"][-4000:].decode(errors="replace"))}</system-out>')
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(paths, platform=None, jobs=1, junit_path=None, timeout=60.0, env=(), mounts=(), workdir=None,
         convention="status", tags_file=None, as_json=False) -> int:
    """Run the tests and print a line per verdict and a summary (as_json: a JSON object per
    line for each, the summary last, as `sentry test --json`); 0 when none failed."""
    tests = select(collect(paths), tags_file)
    options = (["--platform", platform] if platform else []) + [f"--env={e}" for e in env] \
        + [f"--mount={m}" for m in mounts] + ([f"--workdir={workdir}"] if workdir else ["--no-cwd"])
    width = max(len(t.name) for t in tests)
    counts = {"pass": 0, "fail": 0, "skip": 0, "timeout": 0}
    results = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for r in pool.map(lambda t: run_one(t, options, timeout, convention), tests):
            results.append(r)
            counts[r["outcome"]] += 1
            detail = "timed out" if r["outcome"] == "timeout" else f"exit {r['status']}"
            why = first_reason(r) if convention == "ltp" and r["outcome"] != "pass" else ""
            if as_json:
                print(json.dumps({k: r[k] for k in ("name", "outcome", "status")} | {
                    "seconds": round(r["seconds"], 3), "reason": why}), flush=True)
                continue
            print(f"{r['outcome'].upper():<7} {r['name']:<{width}}  {detail:<10} {r['seconds']:6.2f} s"
                  + (f"  {why}" if why else ""), flush=True)
    if as_json:
        print(json.dumps({"summary": {"passed": counts["pass"], "failed": counts["fail"] + counts["timeout"],
                                      "timed_out": counts["timeout"], "skipped": counts["skip"]}}), flush=True)
    else:
        print(f"{counts['pass']} passed, {counts['fail'] + counts['timeout']} failed, {counts['skip']} skipped")
    if junit_path:
        junit(results, junit_path)
    return 0 if not counts["fail"] and not counts["timeout"] else 1
