"""Find the sentry's stub processes (host processes whose /proc/PID/exe link
contains "sentry-stub") that descend from a given process.

As a script:  python stubwatch.py REPORT.json -- COMMAND...
runs COMMAND as a child *subreaper* (so that anything COMMAND leaves behind is
reparented to this process instead of init, and can be told apart from the
stubs of other sandboxes running at the same time, e.g. under pytest-xdist),
waits for it, then records which stub processes descending from this process
still exist.  Exits with COMMAND's status (128+N for a signal).

Processes are only looked at, never signalled.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

STUB_MARK = "sentry-stub"
PR_SET_CHILD_SUBREAPER = 36
# a stub that is already dying gets this long to go
GRACE_SECONDS = float(os.environ.get("STUBWATCH_GRACE", "3.0"))


def _stat_fields():
    """(pid, the fields of /proc/PID/stat after comm) of every host process (only looked at)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'
        yield int(name), data[data.rfind(b")") + 2:].split()


def _ppids() -> dict[int, int]:
    out = {}
    for pid, rest in _stat_fields():
        try:
            out[pid] = int(rest[1])
        except (IndexError, ValueError):
            continue
    return out


def session_members(sid: int) -> list[int]:
    """Host processes of session sid, from /proc (only looked at, never signalled)."""
    return [pid for pid, rest in _stat_fields() if len(rest) > 3 and int(rest[3]) == sid]


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None  # gone, a zombie, or a kernel thread


def stub_processes() -> dict[int, str]:
    """Every live process on the host whose exe link names the stub."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            exe = _exe(int(name))
            if exe is not None and STUB_MARK in exe:
                found[int(name)] = exe
    return found


def stub_descendants(root: int) -> dict[int, str]:
    """Live stub processes that descend from process `root`."""
    stubs = stub_processes()
    if not stubs:
        return {}
    parent = _ppids()
    mine = {}
    for pid, exe in stubs.items():
        p, hops = pid, 0
        while p > 1 and hops < 10000:
            p = parent.get(p, 0)
            hops += 1
            if p == root:
                mine[pid] = exe
                break
    return mine


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: stubwatch.py REPORT.json -- COMMAND...", file=sys.stderr)
        return 2
    report_path, cmd = argv[1], argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"stubwatch: prctl failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 2
    me = os.getpid()
    proc = subprocess.Popen(cmd)
    # a harness timeout terminates us: pass it on to the command we started
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    rc = proc.wait()
    remaining = stub_descendants(me)
    deadline = time.monotonic() + GRACE_SECONDS
    while remaining and time.monotonic() < deadline:
        _reap()
        time.sleep(0.02)
        remaining = stub_descendants(me)
    _reap()
    with open(report_path, "w") as f:
        json.dump({"returncode": rc, "remaining": {str(k): v for k, v in remaining.items()}}, f)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
