"""ptrace(2) inside the sandbox with a real tracer: the host's strace run in the sandbox
on programs of the sandbox, against the same strace run natively (the differential side
of ptrace is fixtures/ptracer.c in test_fixtures.py). Addresses and pids are masked:
the sandbox's stack and pid numbers are its own."""
from __future__ import annotations

import re

import pytest

import harness
from harness import PLATFORMS

STRACE = "/usr/bin/strace"


def _masked(err: bytes) -> list[bytes]:
    err = re.sub(rb"0x[0-9a-f]+", b"ADDR", harness.strip_sentry_notes(err))
    err = re.sub(rb"\[pid +[0-9]+\] ", b"", err)
    err = re.sub(rb"(si_pid|pid)=[0-9]+", rb"\1=N", err)
    err = re.sub(rb" +", b" ", err)
    return err.splitlines()


CASES = {
    # one process: every syscall of a write and the exit (no resumed/unfinished lines)
    "echo": ["-qq", "-e", "trace=write,exit_group", "/bin/echo", "hi"],
    # a shell's children traced from birth (fork/vfork/clone events), their execs and exits
    "sh-f": ["-f", "-qq", "-e", "trace=execve,exit_group", "-e", "signal=none", "/bin/sh", "-c",
             "/bin/true; /bin/echo there"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_strace(platform, case):
    harness.require_program(STRACE)
    args = CASES[case]
    native = harness.run_native(STRACE, args, timeout=60)
    assert native.status == 0 and b"exit_group(0)" in native.stderr, native.headline() + native.stderr_text()
    sandbox = harness.run_sandbox(platform, STRACE, args, timeout=120)
    harness.check_sentry_sane(sandbox)
    assert sandbox.status == native.status, sandbox.headline() + sandbox.stderr_text()
    assert sandbox.stdout == native.stdout
    # lines of different processes interleave as they run: compared as sets of lines in order per kind
    assert sorted(_masked(sandbox.stderr)) == sorted(_masked(native.stderr)), harness.bytes_diff(
        b"\n".join(sorted(_masked(native.stderr))), b"\n".join(sorted(_masked(sandbox.stderr))))
