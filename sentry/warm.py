"""Warm starts: Sandbox.prepare(argv, until=...) -> Prepared, and Prepared.run(stdin) -> Result.

    fn = Sandbox(limits=Limits(timeout=5)).prepare(["/srv/fn"], until="marker")
    for request in requests:
        result = fn.run(stdin=request)   # each call from the same prepared state
    fn.close()

The program is loaded once, and run until the point every call starts from:

- until=None: just loaded, before its first instruction;
- until="stdin": its first read of stdin (a read, readv, splice ... of the stdin stream);
- until="marker": its warm-start marker, prctl(0x5357524d, 0, 0, 0, 0) ('SWRM'), which
  Linux answers with EINVAL (examples/warm/sentry_warm.h: SENTRY_WARM_MARKER()).

What a call observes is that state and its own stdin, nothing else: not the files an
earlier call wrote (the sandbox's memory files are copied for each call), its
environment, its processes (every task of a call is killed when it ends) or its sockets
and ports. Only the host itself is shared: what a writable Mount lends, and time (the
clocks go on; a timer the program set before the point fires when it is due). The
prepared state is one copy: every call sees the same memory, including the random bytes
the program drew before the point (stack canaries, hash seeds, AT_RANDOM), as with any
fork server; draw per-request secrets after it.

How (docs/warm.md): a server process (sentry/warmserver.py) runs the program as
Sandbox.run would until that point, inside the syscall, and parks it; each call is a
fork of the server, whose copy of the kernel (VFS, fds, signals, limits, process tree)
takes a copy of the guest process (sentry/platform/handover.py: a host fork on ptrace;
on unicorn the emulator's memory is the fork's already) and returns from the syscall.

Refused (ValueError) at prepare(): a state with more than one task (threads or
processes: a copy of one single-threaded process is made), a memory file mapped shared,
net='host' or publish.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from sentry.errors import SentryError
from sentry.warmserver import WARM_OPTION, recv, send

UNTIL = (None, "stdin", "marker")
PREPARE_TIMEOUT = 60.0  # seconds the program may take to reach the point, when Limits.timeout says nothing
__all__ = ["Prepared", "NotPrepared", "WARM_OPTION", "UNTIL"]


class NotPrepared(SentryError):
    """The program ended (or was killed by the prepare timeout) before it reached the point
    calls would start from. result: that run's Result."""

    def __init__(self, message: str, result=None):
        super().__init__(message, 125)
        self.result = result


class Prepared:
    """A program loaded (and run up to a point) once, each run() a copy of that state.
    Made by Sandbox.prepare(); close() (or a with block) ends it. stdout, stderr and log
    are what the program wrote and the sentry said before the point. run() may be called
    from several threads: the calls run one after another."""

    def __init__(self, sandbox, argv, *, until=None, env=None, workdir=None, timeout=None):
        from sentry import api
        if until not in UNTIL:
            raise ValueError(f"until: {until!r}: expected None, 'stdin' or 'marker'")
        if sandbox.net != "none" or sandbox.publish:
            raise ValueError("net, publish: a prepared program holds no host sockets (net='none', no publish)")
        self.argv = api._argv(argv)
        self.until = until
        self.limits = sandbox.limits
        self.stdout = self.stderr = b""
        self.log = []
        self._lock = threading.Lock()
        self._server = None
        timeout = api._number("prepare", "timeout", timeout, integer=False, minimum=0) if timeout is not None \
            else sandbox.limits.timeout or PREPARE_TIMEOUT
        ours, theirs = socket.socketpair()
        self._ctl = ours
        self._errors = tempfile.TemporaryFile()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        environ = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        try:
            self._server = subprocess.Popen([sys.executable, "-m", "sentry.warmserver", str(theirs.fileno())],
                                            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=self._errors, env=environ,
                                            cwd="/", start_new_session=True)
        finally:
            theirs.close()
        start = time.monotonic()
        try:
            send(ours, {"sandbox": sandbox, "argv": self.argv, "until": until, "limits": sandbox.limits,
                        "env": {**sandbox.env, **api._str_map("env", env)},
                        "workdir": api._workdir("workdir", workdir) or sandbox.workdir})
            ours.settimeout(timeout)
            try:
                reply = recv(ours)
            except socket.timeout:
                self.close()
                raise NotPrepared(f"prepare: the program did not reach the point (until={until!r}) "
                                  f"within {timeout} s") from None
            ours.settimeout(None)
        except BaseException:
            self.close()
            raise
        if reply is None or "ready" not in reply:
            self.close()
            self._fail(reply, start)
        self.stdout, self.stderr, self.log = reply["stdout"], reply["stderr"], reply["log"]

    def _fail(self, reply, start):
        from sentry import api
        from sentry.runner import Outcome
        if reply is None:
            raise SentryError(f"prepare: the warm server ended{self._server_errors()}")
        if "refused" in reply:
            raise ValueError(f"prepare: {reply['refused']}")
        if "error" in reply:
            raise SentryError(reply["error"], reply["exit_code"])
        result = api.Result.from_outcome(Outcome(*reply["ended"]), time.monotonic() - start, reply["stdout"],
                                         reply["stderr"], False, reply["log"])
        raise NotPrepared(f"prepare: the program ended (exit {result.exit_code}) before it reached the point "
                          f"(until={self.until!r})", result)

    def run(self, stdin=b"", timeout=None):
        """Run one call from the prepared state and wait for it: stdin (bytes or a binary
        file) is what its stdin holds from the point on; timeout: this call's wall-clock
        limit over Limits.timeout (Limits.cpu_time and the others hold per call too).
        Returns a Result as Sandbox.run does; wall_time is the call's."""
        from sentry import api
        from sentry.runner import Outcome
        stdin = api._stdin(stdin)
        limit = self.limits.timeout if timeout is None else api._number("run", "timeout", timeout, integer=False,
                                                                       minimum=0)
        start = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                if self._server is None:
                    raise ValueError("run: this Prepared is closed")
                try:
                    socket.send_fds(self._ctl, [b"C"], [theirs.fileno()])
                except OSError:
                    raise SentryError(f"warm call: the warm server has ended{self._server_errors()}") from None
            theirs.close()
            send(ours, {"stdin": stdin, "timeout": limit})
            reply = recv(ours)
        finally:
            ours.close()
            theirs.close()
        if reply is None:
            raise SentryError(f"warm call: the call's sentry ended without an answer{self._server_errors()}")
        if "error" in reply:
            raise SentryError(reply["error"], reply["exit_code"])
        return api.Result.from_outcome(Outcome(*reply["outcome"]), time.monotonic() - start, reply["stdout"],
                                       reply["stderr"], reply["capped"], reply["log"])

    def _server_errors(self) -> str:
        try:
            self._errors.seek(0)
            text = self._errors.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            text = ""
        return f": {text}" if text else ""

    def close(self) -> None:
        """End the server and the prepared program (a call running finishes first). Idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        self._ctl.close()  # the server sees EOF between calls and exits; its guest dies with it
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        self._errors.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
