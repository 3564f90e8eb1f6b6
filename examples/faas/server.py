"""A small function-as-a-service front for sentry: HTTP in, a sandboxed run, JSON out.

    .venv/bin/python examples/faas/server.py [--port 8080] [--platform ptrace|unicorn] [--warm]

POST /run with a JSON body, either

    {"python": "def handler(event):\\n    return event['x'] * 2", "event": {"x": 21}}

(the source runs under the distribution's /usr/bin/python3 inside the sandbox; "entry"
names another function than handler), or

    {"binary": "<base64 of a static x86-64 ELF>", "args": ["a", "b"], "stdin": "text"}

and optionally "limits": {"timeout": s, "cpu_time": s, "memory": bytes, "max_output":
bytes, "max_procs": n}, each at most the server's own (a request may lower them, never
raise them). The answer is {"result": Result.to_dict(), "value": what handler returned
(python, when it returned)}; a malformed request is 400 with {"error": "..."}.

Every call gets a fresh sandbox (or, with --warm, a copy of a prepared Python: see
Functions.python), nothing of the host but its system directories read-only, no network,
and the server's limits. See README.md.
"""
import argparse
import base64
import binascii
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from sentry import Limits, Sandbox  # noqa: E402

PYTHON = "/usr/bin/python3"
# What runs a Python function in the sandbox: the request arrives on stdin (so that a warm,
# prepared interpreter waits for it there), the function's own output goes to stdout and
# stderr as it is written, and its return value follows on stdout after RETURN_MARK.
RETURN_MARK = b"\x1efaas-return "
RUNNER = r"""
import json, sys
request = json.loads(sys.stdin.buffer.read())
scope = {"__name__": "faas_function"}
exec(compile(request["source"], "<function>", "exec"), scope)
entry = request.get("entry") or "handler"
if not callable(scope.get(entry)):
    sys.exit(f"the source defines no function {entry!r}")
value = scope[entry](request.get("event"))
sys.stdout.flush()
sys.stdout.buffer.write(b"\x1efaas-return " + json.dumps(value, default=repr).encode() + b"\n")
"""
MAX_BODY = 32 << 20
LIMIT_KINDS = {"timeout": float, "cpu_time": float, "memory": int, "max_output": int, "max_procs": int}
DEFAULT_LIMITS = Limits(timeout=10.0, cpu_time=10.0, memory=512 << 20, max_output=1 << 20, max_procs=64)


class BadRequest(ValueError):
    pass


class Functions:
    """Runs what requests ask for, each in its own sandbox with the server's limits."""

    def __init__(self, platform=None, limits: Limits = DEFAULT_LIMITS, concurrency: int = 4, warm: bool = False):
        self.platform = platform
        self.limits = limits
        self.slots = threading.BoundedSemaphore(concurrency)  # sandboxes running at once
        self.prepared = None
        if warm:
            self.prepared = self._prepare_python()

    def _prepare_python(self):
        """The warm hook: with Sandbox.prepare (sentry/warm.py), the interpreter is started
        once and parked at its first read of stdin; each call is a copy of it that reads its
        request from there. Without it, every call starts a fresh interpreter."""
        prepare = getattr(Sandbox, "prepare", None)
        if prepare is None:
            print("faas: this sentry has no Sandbox.prepare: every call starts cold", file=sys.stderr)
            return None
        return prepare(Sandbox(platform=self.platform, limits=self.limits), [PYTHON, "-I", "-c", RUNNER],
                       until="stdin")

    def close(self) -> None:
        if self.prepared is not None:
            self.prepared.close()

    def limits_for(self, asked) -> Limits:
        """The server's limits, each lowered to what the request asks (never raised)."""
        if asked is None:
            return self.limits
        if not isinstance(asked, dict) or set(asked) - set(LIMIT_KINDS):
            raise BadRequest(f"limits: an object with some of {', '.join(LIMIT_KINDS)}")
        values = {}
        for name, value in asked.items():
            kind = LIMIT_KINDS[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BadRequest(f"limits.{name}: a positive number")
            ours = getattr(self.limits, name)
            values[name] = kind(value) if ours is None else min(kind(value), ours)
        return self.limits.replace(**values)

    def call(self, request) -> dict:
        if not isinstance(request, dict):
            raise BadRequest("the body: a JSON object")
        limits = self.limits_for(request.get("limits"))
        with self.slots:
            if "python" in request:
                return self._python(request, limits)
            if "binary" in request:
                return self._binary(request, limits)
        raise BadRequest('the body: {"python": source, ...} or {"binary": base64, ...}')

    def _python(self, request, limits) -> dict:
        source, entry = request["python"], request.get("entry")
        if not isinstance(source, str) or not (entry is None or isinstance(entry, str)):
            raise BadRequest("python: the function's source as a string (entry: a name)")
        payload = json.dumps({"source": source, "entry": entry, "event": request.get("event")}).encode()
        if self.prepared is not None and limits == self.limits:
            result = self.prepared.run(stdin=payload)
        elif self.prepared is not None and limits == self.limits.replace(timeout=limits.timeout):
            result = self.prepared.run(stdin=payload, timeout=limits.timeout)
        else:  # (a warm copy holds the server's limits: a call that lowers others starts cold)
            result = Sandbox(platform=self.platform, limits=limits).run([PYTHON, "-I", "-c", RUNNER], stdin=payload)
        value, found = None, result.stdout.rfind(RETURN_MARK)
        if found >= 0:  # the return value is the server's to read, not the function's output
            line = result.stdout[found + len(RETURN_MARK):].split(b"\n", 1)[0]
            try:
                value = json.loads(line)
            except ValueError:
                pass  # cut short by max_output
            result = dataclasses.replace(result, stdout=result.stdout[:found])
        return {"result": result.to_dict(), "value": value}

    def _binary(self, request, limits) -> dict:
        args, stdin = request.get("args", []), request.get("stdin", "")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args) or not isinstance(stdin, str):
            raise BadRequest("args: a list of strings; stdin: a string")
        try:
            program = base64.b64decode(request["binary"], validate=True)
        except (binascii.Error, TypeError):
            raise BadRequest("binary: the program's bytes in base64") from None
        if program[:4] != b"\x7fELF":
            raise BadRequest("binary: not an ELF program")
        # The program reaches the sandbox as a read-only lent directory of its own, removed
        # with everything in it once the call is over.
        where = tempfile.mkdtemp(prefix="faas-")
        try:
            path = os.path.join(where, "function")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755), "wb") as f:
                f.write(program)
            result = Sandbox(platform=self.platform, limits=limits, mounts=[f"{where}:/function"]).run(
                ["/function/function", *args], stdin=stdin.encode())
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return {"result": result.to_dict()}


class Handler(BaseHTTPRequestHandler):
    functions: Functions = None
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if self.path != "/run":
            return self._answer(404, {"error": "POST /run"})
        try:
            size = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._answer(411, {"error": "a Content-Length"})
        if not 0 <= size <= MAX_BODY:
            return self._answer(413, {"error": f"a body of at most {MAX_BODY} bytes"})
        try:
            request = json.loads(self.rfile.read(size))
        except ValueError as e:
            return self._answer(400, {"error": f"the body: not JSON ({e})"})
        try:
            answer = self.functions.call(request)
        except (BadRequest, TypeError, ValueError) as e:
            return self._answer(400, {"error": str(e)})
        except Exception as e:  # the sandbox could not start the program (SentryError, ...)
            return self._answer(422, {"error": str(e)})
        self._answer(200, answer)

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass  # quiet: one line per request would drown the server's own messages


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: any free port (the one chosen is printed)")
    p.add_argument("--platform", choices=("ptrace", "unicorn"), default=None)
    p.add_argument("--concurrency", type=int, default=4, help="sandboxes running at once (others wait)")
    p.add_argument("--warm", action="store_true", help="Python calls start from a prepared interpreter")
    p.add_argument("--timeout", type=float, default=DEFAULT_LIMITS.timeout,
                   help="a call's wall-clock limit in seconds, the most a request may ask")
    p.add_argument("--cpu-time", type=float, default=DEFAULT_LIMITS.cpu_time, help="... and its CPU seconds")
    o = p.parse_args(argv)
    limits = DEFAULT_LIMITS.replace(timeout=o.timeout, cpu_time=o.cpu_time)
    functions = Functions(o.platform, limits, concurrency=o.concurrency, warm=o.warm)
    Handler.functions = functions
    server = ThreadingHTTPServer((o.host, o.port), Handler)
    server.daemon_threads = True
    print(f"faas: listening on http://{o.host}:{server.server_address[1]}/run", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        functions.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
