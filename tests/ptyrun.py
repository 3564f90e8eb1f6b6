"""Running a program the way a terminal user does: on a fresh pseudo-terminal,
as its session leader, with the terminal as its controlling one (as a shell's
job is its foreground group), a known window size, and keys typed at it.

By default the program runs as a shell's job would (tests/jobshell.py plays the
shell). `run_on_pty(argv, steps=[Step(expect, send), ...])` waits for each `expect` in
the output, then types `send` (bytes, e.g. b"\\x03" for Ctrl-C, b"\\x1a" for
Ctrl-Z) or calls it with the process. It returns the exit status, everything
the terminal showed, and the terminal's modes before and after the run (read
on the slave side, which the test keeps open), so a test can check that the
modes a program changed are put back.
"""
from __future__ import annotations

import fcntl
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass


@dataclass
class Step:
    expect: bytes | None  # wait until the output (since the last step) shows this
    send: object = None   # bytes typed at the terminal, or fn(proc, master) called


@dataclass
class PtyRun:
    status: int | None      # exit status (128+N for signal N); None if it timed out
    output: bytes           # what the terminal showed (\r\n line ends, as a terminal shows them)
    modes_before: list
    modes_after: list
    timed_out: bool = False
    failed_step: int | None = None  # the step whose expect never came

    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")


def _take_terminal() -> None:
    """In the child, after setsid(): its stdin (the pty's slave) becomes its controlling terminal;
    the job-control signals are at their defaults, as in a fresh terminal's session (whatever
    the test runner ignores)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU):
        signal.signal(sig, signal.SIG_DFL)


JOBSHELL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobshell.py")


def run_on_pty(argv, *, env: dict | None = None, cwd=None, winsize=(31, 101), steps=(),
               timeout: float = 60, step_timeout: float = 30, as_job: bool = True) -> PtyRun:
    """as_job: run argv as an interactive shell runs a job (tests/jobshell.py), not as the
    session leader itself."""
    if as_job:
        argv = [sys.executable, JOBSHELL, *argv]
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", winsize[0], winsize[1], 0, 0))
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([str(a) for a in argv], stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=cwd, start_new_session=True, preexec_fn=_take_terminal)
    out = bytearray()
    steps = list(steps)
    mark, index, step_started = 0, 0, time.monotonic()
    deadline = time.monotonic() + timeout
    failed = None
    try:
        while True:
            if index < len(steps):
                step = steps[index]
                if step.expect is None or step.expect in out[mark:]:
                    if step.expect is not None:
                        mark = out.index(step.expect, mark) + len(step.expect)
                    if isinstance(step.send, bytes):
                        os.write(master, step.send)
                    elif step.send is not None:
                        step.send(proc, master)
                    index += 1
                    step_started = time.monotonic()
                    continue
                if time.monotonic() - step_started > step_timeout and failed is None:
                    failed = index
                    index = len(steps)  # give up on the script; let the program end or time out
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                out += chunk
                continue
            if proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()  # only the process this test started
                proc.wait()
                return PtyRun(None, bytes(out), before, termios.tcgetattr(slave), True, failed)
        # what is left in the terminal once the program is gone
        while select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        rc = proc.returncode
        return PtyRun(rc if rc >= 0 else 128 - rc, bytes(out), before, termios.tcgetattr(slave),
                      failed_step=failed)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
