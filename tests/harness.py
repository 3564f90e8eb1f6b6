"""Differential-test harness: build the C fixtures, run a program natively and
under the sentry, compare what they print.

The host kernel is the oracle (DESIGN.md, "Tests"): a fixture is run natively
with the same environment and working directory the sandbox gives it, and its
stdout, exit status and (usually) stderr must be identical under each
platform.

Fixture binaries live in fixtures/build/<variant>/<name> (gitignored).  A
binary is rebuilt only when its inputs change: the hash of the compiler
command, the compiler's version, the source and every fixtures/*.h is kept in
fixtures/build/<variant>/.<name>.stamp.  Building is safe under pytest-xdist:
each target is built under an flock, into a temporary name, then renamed.
"""
from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
BUILD = FIXTURES / "build"
BUSYBOX = "/bin/busybox"

PLATFORMS = ("ptrace", "unicorn")

# variant -> compiler command (before the common flags)
VARIANTS: dict[str, list[str]] = {
    "glibc-static": ["gcc", "-static"],
    "glibc-static-pie": ["gcc", "-static-pie"],
    "musl-static": ["musl-gcc", "-static"],
    "glibc-dynamic": ["gcc"],  # ld.so and libc come from the sandbox's view of /lib and /usr
}
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-I", str(FIXTURES)]

# The guest's whole environment by default (the sentry's contract, as `docker run`
# gives one); --env entries replace a default's value in place or come after them.
# The sentry would also pass the host's LANG and LC_ALL: sentry_host_env() leaves them
# out, so that both sides run without (and TERM is given only with a terminal: never here).
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GUEST_ENV = {"PATH": GUEST_PATH, "HOSTNAME": "sentry", "HOME": "/root"}

RUN_TIMEOUT = 60  # seconds for one program run; a hang fails one test
BUILD_TIMEOUT = 120

# How much of a big output a failure message shows.
MAX_DIFF_LINES = 60
MAX_SHOW_CHARS = 4000


class HarnessError(AssertionError):
    """A failure of the harness's own preconditions (missing tool, build)."""


# --------------------------------------------------------------------------
# building


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.c"))


@lru_cache(maxsize=None)
def _compiler_identity(compiler: str) -> str:
    path = shutil.which(compiler)
    if path is None:
        raise HarnessError(
            f"{compiler} not found on PATH: the fixtures cannot be built "
            f"(scripts/setup installs gcc, musl-tools and busybox-static)"
        )
    out = subprocess.run([path, "--version"], capture_output=True, timeout=60)
    first = out.stdout.decode(errors="replace").splitlines()[:1]
    return f"{path} {first}"


_built: dict[tuple[str, str], Path] = {}


def build(name: str, variant: str) -> Path:
    """Build fixtures/<name>.c as <variant>; return the binary's path."""
    key = (name, variant)
    if key in _built:
        return _built[key]
    if variant not in VARIANTS:
        raise HarnessError(f"unknown variant {variant!r}")
    src = FIXTURES / f"{name}.c"
    if not src.is_file():
        raise HarnessError(f"no fixture source {src}")
    cc = VARIANTS[variant]
    outdir = BUILD / variant
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / name
    stamp = outdir / f".{name}.stamp"

    h = hashlib.sha256()
    h.update(repr((cc, CFLAGS, _compiler_identity(cc[0]))).encode())
    for f in [src, *sorted(FIXTURES.glob("*.h"))]:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    digest = h.hexdigest()

    def fresh() -> bool:
        try:
            return out.is_file() and stamp.read_text() == digest
        except FileNotFoundError:
            return False

    if not fresh():
        with open(outdir / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not fresh():
                tmp = outdir / f".{name}.tmp.{os.getpid()}"
                cmd = [*cc, *CFLAGS, "-o", str(tmp), str(src)]
                try:
                    res = subprocess.run(cmd, capture_output=True, timeout=BUILD_TIMEOUT)
                    if res.returncode != 0 or res.stderr.strip():
                        raise HarnessError(
                            f"building fixture {name} ({variant}) failed "
                            f"(exit {res.returncode}):\n$ {' '.join(cmd)}\n"
                            + _clip(res.stderr.decode(errors="replace"))
                        )
                    os.replace(tmp, out)
                finally:
                    if tmp.exists():
                        tmp.unlink()
                stmp = outdir / f".{name}.stamp.{os.getpid()}"
                stmp.write_text(digest)
                os.replace(stmp, stamp)
    _built[key] = out
    return out


def require_busybox() -> str:
    if not os.access(BUSYBOX, os.X_OK):
        raise HarnessError(f"{BUSYBOX} missing: scripts/setup installs busybox-static")
    return BUSYBOX


def require_program(path: str) -> str:
    """A host program the tests run (in the sandbox and natively); its absence fails
    the test."""
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is not installed on this host (scripts/setup installs it)")
    return path


# --------------------------------------------------------------------------
# running


@dataclass
class Run:
    """One finished (or timed-out) run of a program."""

    where: str  # "native" or the platform name
    argv: list[str]
    status: int | None  # exit status, 128+N for signal N; None if timed out
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    extra: dict = field(default_factory=dict)

    def headline(self) -> str:
        if self.timed_out:
            return f"{self.where}: TIMED OUT after {self.extra.get('timeout', RUN_TIMEOUT)}s"
        return f"{self.where}: exit {self.status}"

    def stderr_text(self, limit: int = 1500) -> str:
        return _clip(self.stderr.decode(errors="replace"), limit)


def guest_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the guest sees: GUEST_ENV, then the --env entries."""
    out = dict(GUEST_ENV)
    for k, v in (env or {}).items():
        out[k] = v
    return out


def _no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _status(rc: int) -> int:
    return rc if rc >= 0 else 128 - rc


def _communicate(argv, *, stdin, env, cwd, timeout, where) -> Run:
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        preexec_fn=_no_core_dumps,
    )
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        # Only the process we started is signalled: politely first, so that a
        # sentry gets the chance to take its stub processes down with it.
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return Run(where, list(argv), None, out or b"", err or b"", timed_out=True, extra={"timeout": timeout})
    return Run(where, list(argv), _status(proc.returncode), out, err)


def run_native(program: str | os.PathLike, args=(), *, stdin: bytes | None = None,
               env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT,
               cwd: str | os.PathLike = REPO) -> Run:
    """Run the program on the host, with the sandbox's env and working directory:
    the repository, which run_sandbox's sentry runs in and so lends (pass the
    --workdir of the sandboxed run otherwise, or "/" for --no-cwd)."""
    argv = [str(program), *map(str, args)]
    return _communicate(argv, stdin=stdin, env=guest_env(env), cwd=str(cwd), timeout=timeout, where="native")


def sentry_argv(platform: str, program, args=(), *, env: dict[str, str] | None = None,
                options=()) -> list[str]:
    argv = [sys.executable, "-m", "sentry", "run", "--platform", platform]
    for k, v in (env or {}).items():
        argv += ["--env", f"{k}={v}"]
    argv += list(options)
    argv += [str(program), *map(str, args)]
    return argv


def sentry_host_env() -> dict[str, str]:
    """The environment of the sentry process itself (not the guest's)."""
    e = dict(os.environ)
    # make `python -m sentry` find the package even without an install
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("PYTHONSTARTUP", None)
    for name in ("LANG", "LC_ALL"):  # the sentry would pass them on: see GUEST_ENV
        e.pop(name, None)
    return e


def run_sandbox(platform: str, program, args=(), *, stdin: bytes | None = None,
                env: dict[str, str] | None = None, options=(),
                timeout: float = RUN_TIMEOUT, cwd: str | os.PathLike = REPO) -> Run:
    """Run the program under `sentry run --platform PLATFORM`, started in cwd (which
    the sandbox lends as its working directory, but for --workdir or --no-cwd)."""
    argv = sentry_argv(platform, program, args, env=env, options=options)
    return _communicate(argv, stdin=stdin, env=sentry_host_env(), cwd=str(cwd),
                        timeout=timeout, where=f"sentry/{platform}")


def run_sentry_cli(args, *, stdin: bytes | None = None, timeout: float = RUN_TIMEOUT,
                   cwd: str | os.PathLike = REPO, host_env: dict[str, str] | None = None) -> Run:
    """Run `python -m sentry ARGS...` as given (for command-line tests), in cwd, with
    host_env added to the sentry's own environment."""
    argv = [sys.executable, "-m", "sentry", *map(str, args)]
    return _communicate(argv, stdin=stdin, env={**sentry_host_env(), **(host_env or {})}, cwd=str(cwd),
                        timeout=timeout, where="sentry")


# --------------------------------------------------------------------------
# comparing


def _clip(text: str, limit: int = MAX_SHOW_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} more characters]"


def _is_text(b: bytes) -> bool:
    if b"\0" in b:
        return False
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def bytes_diff(a: bytes, b: bytes, a_name: str = "native", b_name: str = "sandbox") -> str:
    """A readable description of how two outputs differ (truncated)."""
    if a == b:
        return ""
    if _is_text(a) and _is_text(b) and len(a) + len(b) < 2_000_000:
        lines = list(
            difflib.unified_diff(
                a.decode().splitlines(), b.decode().splitlines(), a_name, b_name, n=2, lineterm=""
            )
        )
        if lines:
            extra = len(lines) - MAX_DIFF_LINES
            shown = [_clip(line, 300) for line in lines[:MAX_DIFF_LINES]]
            if extra > 0:
                shown.append(f"... [{extra} more diff lines]")
            return "\n".join(shown)
        return f"(outputs differ only in line endings / final newline: {a[-20:]!r} vs {b[-20:]!r})"
    # binary or huge: sizes, hashes, and the first difference
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    lo = max(0, i - 16)
    return (
        f"{a_name}: {len(a)} bytes sha256 {hashlib.sha256(a).hexdigest()[:16]}\n"
        f"{b_name}: {len(b)} bytes sha256 {hashlib.sha256(b).hexdigest()[:16]}\n"
        f"first difference at offset {i}:\n"
        f"  {a_name}[{lo}:{i + 32}] = {a[lo:i + 32]!r}\n"
        f"  {b_name}[{lo}:{i + 32}] = {b[lo:i + 32]!r}"
    )


def fail(msg: str) -> None:
    """Fail the test with just this message (no harness traceback)."""
    pytest.fail(msg, pytrace=False)


def _sentry_traceback(stderr: bytes) -> bool:
    """A Python traceback from the sentry itself: it names a file of this
    repository or of the Python running the sentry (a guest python3's own
    traceback names /usr/lib/python3... and "<string>")."""
    if b"Traceback (most recent call last)" not in stderr:
        return False
    ours = (str(REPO) + "/", sys.prefix + "/", sys.base_prefix + "/", "<frozen ")
    return any(f'File "{p}'.encode() in stderr for p in ours)


def check_sentry_sane(run: Run, *, guest_tracebacks: bool = False) -> None:
    """What must hold for any sentry run, whatever the program did.
    guest_tracebacks: the guest is a Python program, whose own tracebacks on
    stderr are its output; only one of the sentry's fails here."""
    if run.timed_out:
        fail(f"{run.headline()}\n$ {' '.join(run.argv)}\n"
             f"stdout so far: {_clip(run.stdout.decode(errors='replace'), 500)!r}\n"
             f"stderr:\n{run.stderr_text()}")
    if guest_tracebacks:
        if _sentry_traceback(run.stderr):
            fail(f"{run.where} printed a Python traceback of its own (exit {run.status}):\n"
                 f"$ {' '.join(run.argv)}\n{run.stderr_text(3000)}")
    elif b"Traceback (most recent call last)" in run.stderr:
        fail(f"{run.where} printed a Python traceback (exit {run.status}):\n"
             f"$ {' '.join(run.argv)}\n{run.stderr_text(3000)}")


# How a case's stderr is compared:
#   "exact":   byte for byte
#   "notes":   the sentry may add its own lines starting with "sentry: " (a
#              crash report when the guest dies of a signal, the name of an
#              unsupported syscall); everything else must match exactly
#   "ignore":  not compared
STDERR_MODES = ("exact", "notes", "ignore")


def strip_sentry_notes(stderr: bytes) -> bytes:
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"sentry: "))


def compare(native: Run, sandbox: Run, *, stderr: str = "exact", label: str = "",
            guest_tracebacks: bool = False) -> None:
    """Fail with a readable report unless the sandbox run matches native."""
    assert stderr in STDERR_MODES, stderr
    check_sentry_sane(sandbox, guest_tracebacks=guest_tracebacks)
    if native.timed_out:
        fail(f"the native run timed out: {' '.join(native.argv)}")
    problems = []
    if native.status != sandbox.status:
        problems.append(f"exit status: native {native.status}, {sandbox.where} {sandbox.status}")
    if native.stdout != sandbox.stdout:
        problems.append("stdout differs:\n" + bytes_diff(native.stdout, sandbox.stdout, "native", sandbox.where))
    got_err = strip_sentry_notes(sandbox.stderr) if stderr == "notes" else sandbox.stderr
    stderr_differs = stderr != "ignore" and native.stderr != got_err
    if stderr_differs:
        problems.append("stderr differs:\n" + bytes_diff(native.stderr, got_err, "native", sandbox.where))
    if not problems:
        return
    head = f"{sandbox.where} != native{(' for ' + label) if label else ''}: "
    head += "; ".join(p.split(":")[0] + (f" ({native.status} vs {sandbox.status})" if p.startswith("exit") else "")
                      for p in problems)
    first = sandbox.stderr.decode(errors="replace").strip().splitlines()[:1]
    if first:
        head += f" [{sandbox.where} stderr: {first[0][:200]}]"
    msg = [head, f"$ {' '.join(sandbox.argv)}", *problems]
    if not stderr_differs and sandbox.stderr:
        msg.append(f"{sandbox.where} stderr:\n{sandbox.stderr_text()}")
    fail("\n".join(msg))


def differential(platform: str, program, args=(), *, stdin: bytes | None = None,
                 env: dict[str, str] | None = None, stderr: str = "exact",
                 label: str = "") -> tuple[Run, Run]:
    """Run natively and under the sentry; assert they match; return both."""
    native = run_native(program, args, stdin=stdin, env=env)
    sandbox = run_sandbox(platform, program, args, stdin=stdin, env=env)
    compare(native, sandbox, stderr=stderr, label=label)
    return native, sandbox


def compare_program(platform: str, argv, *, stdin: bytes | None = None, timeout: float = RUN_TIMEOUT,
                    guest_tracebacks: bool = False, label: str = "") -> tuple[Run, Run]:
    """Run a real program (argv[0] a host path) natively and in the sandbox and compare
    them (stderr up to the sentry's notes); (native, sandbox)."""
    native = run_native(argv[0], argv[1:], stdin=stdin, timeout=timeout)
    assert not native.timed_out, f"native {label or argv[0]} timed out"
    sandbox = run_sandbox(platform, argv[0], argv[1:], stdin=stdin, timeout=timeout)
    compare(native, sandbox, stderr="notes", label=label or " ".join(map(str, argv))[:120],
            guest_tracebacks=guest_tracebacks)
    return native, sandbox


def sentry_error_line(run: Run) -> str:
    """Assert the run is one of the sentry's own failures: exactly one line on
    stderr, starting with 'sentry: ', and no traceback.  Return that line."""
    check_sentry_sane(run)
    text = run.stderr.decode(errors="replace")
    lines = text.splitlines()
    if len(lines) != 1 or not lines[0].startswith("sentry: ") or not text.endswith("\n"):
        fail(f"expected exactly one stderr line starting with 'sentry: ', got {len(lines)} "
             f"line(s) (exit {run.status}):\n$ {' '.join(run.argv)}\n{run.stderr_text()}")
    return lines[0]


def unique_tmp_path(tag: str) -> str:
    """A fresh path under /tmp that neither the host nor a sandbox has."""
    return f"/tmp/sentry-test-{tag}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------
# directory trees on the host


def tree_manifest(root: str | os.PathLike, *, root_times: bool = True) -> dict[str, tuple]:
    """What a host directory tree holds, never following a symlink:
    relative path ("." for the root) -> (kind, mode, uid, gid, nlink, size,
    sha256 of a file or a symlink's target, mtime_ns).  Directory sizes and
    atimes are left out (they change by themselves); root_times=False also
    leaves out the root's mtime (it changes when anything is created in it)."""
    import stat as S
    out: dict[str, tuple] = {}

    def visit(path: str, rel: str) -> None:
        st = os.lstat(path)
        kind = S.S_IFMT(st.st_mode)
        content: str | None = None
        size: int | None = st.st_size
        if S.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            content = h.hexdigest()
        elif S.S_ISLNK(st.st_mode):
            content = "-> " + os.readlink(path)
        elif S.S_ISDIR(st.st_mode):
            size = None
        mtime = st.st_mtime_ns if (rel != "." or root_times) else None
        name = {S.S_IFREG: "file", S.S_IFDIR: "dir", S.S_IFLNK: "symlink"}.get(kind, oct(kind))
        out[rel] = (name, oct(S.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_nlink, size, content, mtime)
        if S.S_ISDIR(st.st_mode):
            for entry in sorted(os.listdir(path)):
                visit(os.path.join(path, entry), entry if rel == "." else f"{rel}/{entry}")

    visit(os.fspath(root), ".")
    return out


MANIFEST_FIELDS = ("kind", "mode", "uid", "gid", "nlink", "size", "content", "mtime_ns")


def manifest_diff(a: dict, b: dict, a_name: str = "native", b_name: str = "sandbox",
                  limit: int = 40) -> str:
    """How two tree_manifest()s differ, readably ('' when they do not)."""
    lines = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            lines.append(f"only in {a_name}: {path} {a[path][0]}")
        elif path not in a:
            lines.append(f"only in {b_name}: {path} {b[path][0]}")
        elif a[path] != b[path]:
            fields = [f"{n} {x!r} vs {y!r}" for n, x, y in zip(MANIFEST_FIELDS, a[path], b[path]) if x != y]
            lines.append(f"differs: {path}: " + ", ".join(fields))
    if len(lines) > limit:
        lines = lines[:limit] + [f"... [{len(lines) - limit} more]"]
    return "\n".join(lines)
