"""The Linux Test Project's syscall tests in the sandbox: pass counts against native.

    .venv/bin/python bench/ltp.py [--platform ptrace|unicorn ...] [--jobs N] [--slice]
                                  [--tags FILE] [--write-known]

Unpacks ../shared/ltp into a temporary directory, runs every tag that passes
natively (or, with --slice, unicorn's fixed slice from tests/test_ltp.py; or
the tags of --tags) with `sentry test --convention ltp`, and prints per
platform how many pass against the natively passing count, with the failures
grouped by family. --write-known rewrites tests/ltp-known-failures.txt from
the run: each failing tag with its family and the first TFAIL/TBROK/TCONF
line as its reason (review the result: a family named "other" wants a name).
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import test_ltp  # noqa: E402  (the corpus's location, environment and slices)

# (family, a pattern of the reason or None, a pattern of the tag or None): the first that matches;
# a failure none names is in its syscall's family (the tag without its number)
FAMILIES = [
    ("timeout", r"^timed out|Test killed! \(timeout", None),
    ("block-device", r"acquire device|free loop device|tst_device|No free devices", None),
    ("network", r"EAFNOSUPPORT|ip/ifconfig|netlink|NETLINK", r"^(accept|bind|connect|recv|send|setsockopt|"
                                                             r"getsockopt|getsockname|getpeername|shutdown|"
                                                             r"socket|mq_notify)"),
    ("tmpfs-tmpdir", r"tmpfs", None),
    ("cgroups", r"cgroup|controller required", None),
    ("hugetlb", r"hugetlbfs|[Hh]uge ?[Pp]age", None),
    ("numa", r"NUMA", None),
    ("unoffered", r"__NR_(userfaultfd|landlock\w*|io_uring\w*|perf_event_open) not supported",
     r"^(landlock|io_uring|userfaultfd|fanotify|perf_event)"),
    ("newer-kernel", r"requires kernel|kernel [\d.]+ or newer|PROCMAP_QUERY|PIDFD_INFO|__NR_\w+ not supported",
     r"^(mseal|file_attr)"),
    ("host-tools", r"Couldn't find '", None),
    ("read-only-root", r"EROFS", None),
    ("kernel-config", r"kernel \.config|CONFIG_", None),
]


def family_of(tag: str, reason: str) -> str:
    for name, reason_re, tag_re in FAMILIES:
        if reason_re and re.search(reason_re, reason) or tag_re and re.search(tag_re, tag):
            return name
    return re.sub(r"(\d+)?(_64|_16)?$", "", tag).rstrip("_") or tag


def reasons(junit: str) -> dict[str, tuple[str, str, float]]:
    """tag -> (outcome, the first line that says why, seconds) from a `sentry test --junit` report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failure, skipped = case.find("failure"), case.find("skipped")
        seconds = float(case.get("time", 0))
        if failure is None and skipped is None:
            out[case.get("name")] = ("pass", "", seconds)
            continue
        text = "\n".join(e.text or "" for e in (case.find("system-out"), failure, skipped) if e is not None)
        why = ""
        for marks in (r"TBROK|TFAIL", r"TCONF"):
            lines = [line for line in text.splitlines() if re.search(marks, line)]
            if lines:
                why = lines[0]
                break
        if not why:
            why = failure.get("message") if failure is not None else "TCONF"
        why = re.sub(r"^\s*\S+\.[ch]:\d+:\s*", "", why.strip())
        out[case.get("name")] = ("skip" if skipped is not None else "fail", why[:140], seconds)
    return out


def run(platform: str, tags: list[str], ltp: str, jobs: int, workdir: str) -> dict:
    tags_file = os.path.join(workdir, f"tags-{platform}")
    with open(tags_file, "w") as f:
        f.write("".join(t + "\n" for t in tags))
    junit = os.path.join(workdir, f"junit-{platform}.xml")
    argv = [sys.executable, "-m", "sentry", "test", "--platform", platform, "--convention", "ltp",
            "--jobs", str(jobs), "--timeout", str(test_ltp.TAG_TIMEOUT), "--mount", f"{ltp}:{ltp}",
            "--tags", tags_file, "--junit", junit, "--env", f"LTPROOT={ltp}",
            "--env", f"PATH={ltp}/testcases/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for name, value in test_ltp.ENV.items():
        argv += ["--env", f"{name}={value}"]
    argv.append(os.path.join(ltp, "runtest", "syscalls"))
    subprocess.run(argv, stdout=subprocess.DEVNULL, cwd="/", env={**os.environ, "PYTHONPATH": ROOT})
    return reasons(junit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--slice", action="store_true", help="unicorn's slice only (tests/test_ltp.py)")
    parser.add_argument("--tags", help="only these tags (one per line)")
    parser.add_argument("--write-known", action="store_true", help="rewrite tests/ltp-known-failures.txt")
    o = parser.parse_args()
    platforms = o.platform or ["ptrace", "unicorn"]
    with tempfile.TemporaryDirectory(prefix="sentry-ltp-") as tmp:
        with tarfile.open(test_ltp.TARBALL) as tar:
            tar.extractall(tmp, filter="tar")
        ltp = os.path.join(tmp, "install")
        results = {}
        for platform in platforms:
            if o.tags:
                tags = [line.split()[0] for line in open(o.tags) if line.strip()]
            elif o.slice or platform == "unicorn":
                tags = test_ltp.UNICORN_SLICE
            else:
                tags = test_ltp.PASSING
            results[platform] = run(platform, tags, ltp, o.jobs, tmp)
    for platform, got in results.items():
        passed = sum(outcome == "pass" for outcome, _, _ in got.values())
        print(f"{platform}: {passed} of {len(got)} tags pass ({100 * passed / len(got):.1f}%); "
              f"{len(test_ltp.PASSING)} pass natively")
        families = collections.Counter(family_of(tag, why) for tag, (outcome, why, _) in got.items()
                                       if outcome != "pass")
        print("  failing by family: " + ", ".join(f"{name} {n}" for name, n in families.most_common()))
        total = sum(seconds for _, _, seconds in got.values())
        slowest = sorted(got.items(), key=lambda item: -item[1][2])[:8]
        print(f"  {total:.0f} s of tag time; slowest: "
              + ", ".join(f"{tag} {seconds:.0f} s" for tag, (_, _, seconds) in slowest))
    if o.write_known:
        write_known(results)
    return 0


def write_known(results: dict) -> None:
    failing = {}
    for platform, got in results.items():
        for tag, (outcome, why, _) in got.items():
            if outcome != "pass":
                failing.setdefault(tag, {})[platform] = why
    lines = [line for line in open(test_ltp.KNOWN).read().splitlines() if line.startswith("#")]
    for tag in sorted(failing):
        where = failing[tag]
        ran_both = all(tag in results.get(p, {}) for p in ("ptrace", "unicorn"))
        platforms = "all" if len(where) == 2 or not ran_both and "ptrace" in where else next(iter(where))
        why = where.get("ptrace") or where.get("unicorn")
        lines.append(f"{tag:<24} {platforms:<8} {family_of(tag, why):<14} {why}")
    with open(test_ltp.KNOWN, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
