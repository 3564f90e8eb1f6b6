"""The Linux Test Project's syscall tests, a suite nobody here wrote, in the sandbox.

`../shared/ltp/` (beside the repository) holds them built for this kind of
machine, with each tag's native result. They are unpacked into a temporary
directory (never into ../shared) and run by `sentry test` as a runtest
corpus, LTP's directory lent read-only at its own path:

- on ptrace, every tag that passes natively, in chunks (one test item each,
  so that pytest-xdist spreads them over the cores; two tags at once in each),
  those listed as timing out apart with a short timeout;
- on unicorn, a fixed slice of them (every SLICE-th of the quick ones).

A tag passes when it exits 0 (a TCONF skip is no pass: natively it passed).
Each tag that fails is listed in tests/ltp-known-failures.txt with its family
and a one-line reason; any other failure fails its chunk, and so does a
listed tag that passes now (take it off the list: the list only shrinks),
unless its family is "flaky" (seen both ways) or "timeout" (its time depends
on the machine's load).
`bench/ltp.py` runs the whole corpus and prints the pass counts.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import harness

SHARED = harness.REPO.parent / "shared" / "ltp"
TARBALL = SHARED / "ltp-syscalls-x86_64.tar.xz"
NATIVE = SHARED / "native-x86_64.tsv"
KNOWN = Path(__file__).with_name("ltp-known-failures.txt")

CHUNKS = 24               # ptrace test items
SLICE = 6                 # unicorn runs every SLICE-th quick tag
QUICK = 1.0               # natively under this many seconds: a candidate for unicorn's slice
# families whose tags may pass on a run: "flaky" (seen both ways), "timeout" (pass on a less loaded machine)
UNSTEADY = ("flaky:", "timeout:")
TAG_TIMEOUT = 60          # seconds per tag (LTP's own timeout is 30 s with LTP_TIMEOUT_MUL=1)
ENV = {"LTP_COLORIZE_OUTPUT": "n", "LTP_RUNTIME_MUL": "0.1", "LTP_TIMEOUT_MUL": "1", "KCONFIG_SKIP_CHECK": "1",
       "TMPDIR": "/tmp"}


def _native() -> dict[str, tuple[str, float]]:
    """tag -> (native exit status as written, seconds)."""
    rows = {}
    for line in NATIVE.read_text().splitlines():
        tag, status, seconds = line.split("\t")
        rows[tag] = (status, float(seconds))
    return rows


def _known() -> dict[tuple[str, str], str]:
    """(tag, platform) -> "family: reason", from tests/ltp-known-failures.txt."""
    known = {}
    for number, line in enumerate(KNOWN.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 4 or fields[1] not in ("all", "ptrace", "unicorn"):
            raise AssertionError(f"{KNOWN.name}:{number}: expected TAG PLATFORMS FAMILY REASON, not {line!r}")
        tag, platforms, family, reason = fields
        for platform in (("ptrace", "unicorn") if platforms == "all" else (platforms,)):
            known[(tag, platform)] = f"{family}: {reason}"
    return known


NATIVE_ROWS = _native() if NATIVE.exists() else {}
PASSING = sorted(tag for tag, (status, _) in NATIVE_ROWS.items() if status == "0")
# listed as timing out on ptrace: run apart with a short timeout (each would hold a chunk for
# TAG_TIMEOUT seconds), where any outcome but a missing report is accepted
KNOWN_SLOW = sorted({tag for (tag, platform), why in _known().items()
                     if platform == "ptrace" and why.startswith("timeout:")}) if KNOWN.exists() else []
UNICORN_SLICE = [tag for tag in PASSING if NATIVE_ROWS[tag][1] < QUICK][::SLICE]
_CHUNKED = [tag for tag in PASSING if tag not in KNOWN_SLOW]
PTRACE_CHUNKS = [_CHUNKED[i::CHUNKS] for i in range(CHUNKS)]
SLOW_TIMEOUT = 15         # seconds per known-slow tag
JOBS = 2                  # tags at once in one chunk (most of a tag's time is waiting)


@pytest.fixture(scope="session")
def ltp_root(tmp_path_factory) -> Path:
    """LTP unpacked once per test process (each xdist worker has its own copy)."""
    if not TARBALL.exists():
        pytest.fail(f"{TARBALL} is missing: the LTP corpus comes with the workplace (../shared/ltp)")
    root = tmp_path_factory.mktemp("ltp")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(root, filter="tar")
    return root / "install"


def _run(platform: str, tags: list[str], ltp: Path, tmp_path: Path,
         timeout: int = TAG_TIMEOUT) -> dict[str, tuple[str, str]]:
    """tag -> (outcome, the report's line), from one `sentry test` run of the tags."""
    tags_file = tmp_path / "tags"
    tags_file.write_text("".join(t + "\n" for t in tags))
    argv = [sys.executable, "-m", "sentry", "test", "--platform", platform, "--convention", "ltp",
            "--jobs", str(JOBS), "--timeout", str(timeout), "--mount", f"{ltp}:{ltp}", "--tags", str(tags_file),
            "--env", f"LTPROOT={ltp}", "--env", f"PATH={ltp}/testcases/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for name, value in ENV.items():
        argv += ["--env", f"{name}={value}"]
    argv.append(str(ltp / "runtest" / "syscalls"))
    r = subprocess.run(argv, capture_output=True, env=harness.sentry_host_env(), cwd="/",
                       timeout=CHUNK_TIMEOUT - 60)
    outcomes = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in ("PASS", "FAIL", "SKIP", "TIMEOUT"):
            outcomes[fields[1]] = (fields[0].lower(), line)
    missing = set(tags) - set(outcomes)
    assert not missing, f"sentry test did not report {sorted(missing)[:10]}:\n{r.stderr.decode()[-2000:]}"
    return outcomes


def _check(platform: str, tags: list[str], ltp: Path, tmp_path: Path) -> None:
    known = _known()
    outcomes = _run(platform, tags, ltp, tmp_path)
    new_failures, now_passing = [], []
    for tag in tags:
        outcome, line = outcomes[tag]
        listed = (tag, platform) in known
        if outcome == "pass" and listed and not known[(tag, platform)].startswith(UNSTEADY):
            now_passing.append(tag)
        elif outcome != "pass" and not listed:
            new_failures.append(line)
    message = []
    if new_failures:
        message.append(f"{len(new_failures)} tag(s) that pass natively fail in the sandbox ({platform}):\n  "
                       + "\n  ".join(new_failures))
    if now_passing:
        message.append(f"{len(now_passing)} listed tag(s) pass now: take them off {KNOWN.name} for {platform}: "
                       + " ".join(now_passing))
    assert not message, "\n".join(message)


# a chunk's own bound (pytest-timeout's default is 300 s): its tags' timeouts are the real guard
CHUNK_TIMEOUT = 1800


@pytest.mark.timeout(CHUNK_TIMEOUT)
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_ltp_ptrace(chunk, ltp_root, tmp_path):
    _check("ptrace", PTRACE_CHUNKS[chunk], ltp_root, tmp_path)


@pytest.mark.timeout(CHUNK_TIMEOUT)
def test_ltp_ptrace_known_slow(ltp_root, tmp_path):
    """The tags listed as timing out each run for SLOW_TIMEOUT seconds: whatever their outcome,
    each is run and reported (the sentry neither hangs nor ends the run)."""
    outcomes = _run("ptrace", KNOWN_SLOW, ltp_root, tmp_path, timeout=SLOW_TIMEOUT)
    assert set(outcomes) == set(KNOWN_SLOW)


@pytest.mark.timeout(CHUNK_TIMEOUT)
@pytest.mark.parametrize("half", range(2))
def test_ltp_unicorn(half, ltp_root, tmp_path):
    _check("unicorn", UNICORN_SLICE[half::2], ltp_root, tmp_path)


def test_ltp_corpus_and_list_agree():
    """The natively passing count is what the corpus says, the unicorn slice is at least
    150 tags, and every listed tag is one that passes natively (the list names real gaps)."""
    assert len(PASSING) >= 1200, len(PASSING)
    assert len(UNICORN_SLICE) >= 150, len(UNICORN_SLICE)
    stray = sorted({tag for tag, _ in _known()} - set(PASSING))
    assert not stray, f"{KNOWN.name} lists tags that do not pass natively: {stray}"
