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


@pytest.mark.parametrize("platform", PLATFORMS)
def test_strace_attach(platform):
    """strace -p of a process asleep: PTRACE_SEIZE and PTRACE_INTERRUPT end its sleep, and
    the tracer's resume restarts it (restart_syscall, as Linux's restart block)."""
    harness.require_program(STRACE)
    # (the sleep outlasts strace's start on a loaded emulator by far)
    script = "/bin/sleep 6 & /bin/sleep 0.5; strace -qq -p $!; wait; echo done"
    native = harness.run_native("/bin/sh", ["-c", script], timeout=60)
    assert native.status == 0 and b"restart_syscall(" in native.stderr, native.headline() + native.stderr_text()
    sandbox = harness.run_sandbox(platform, "/bin/sh", ["-c", script], timeout=120)
    harness.check_sentry_sane(sandbox)
    assert (sandbox.status, sandbox.stdout) == (native.status, native.stdout), sandbox.headline() + sandbox.stderr_text()
    assert _masked(sandbox.stderr) == _masked(native.stderr), harness.bytes_diff(
        b"\n".join(_masked(native.stderr)), b"\n".join(_masked(sandbox.stderr)))


GDB = "/usr/bin/gdb"


def _gdb_lines(run) -> list[bytes]:
    """gdb's report, its warnings left out (the sandbox has no /proc/PID/mem: gdb falls
    back to PTRACE_PEEKDATA and says so), pids masked."""
    out = harness.strip_sentry_notes(run.stdout + run.stderr)
    return [re.sub(rb"process [0-9]+", b"process N", line) for line in out.splitlines()
            if not line.startswith(b"warning:")]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_gdb(platform):
    """gdb on a static fixture: a breakpoint (int3 poked in, the pc put back), a single
    step (the trap flag's SIGTRAP with TRAP_TRACE), registers, the siginfo, the exit."""
    harness.require_program(GDB)
    program = str(harness.build("exitcode", "glibc-static"))
    args = ["-nx", "-batch", "-ex", "break main", "-ex", "run", "-ex", "info registers rip", "-ex", "stepi",
            "-ex", "info registers rip", "-ex", "print $_siginfo.si_signo", "-ex", "print $_siginfo.si_code",
            "-ex", "continue", "--args", program, "3"]
    native = harness.run_native(GDB, args, timeout=60)
    lines = _gdb_lines(native)
    assert native.status == 0 and b"$2 = 2" in lines and any(b"exited with code 03" in x for x in lines), \
        native.headline() + native.stderr_text()
    sandbox = harness.run_sandbox(platform, GDB, args, timeout=180)
    harness.check_sentry_sane(sandbox)
    assert sandbox.status == native.status, sandbox.headline() + sandbox.stderr_text()
    assert _gdb_lines(sandbox) == lines, harness.bytes_diff(b"\n".join(lines), b"\n".join(_gdb_lines(sandbox)))
