"""The embedding API: Sandbox(...).run(argv) -> Result.

    from sentry import Sandbox, Limits, Mount
    box = Sandbox(mounts=[Mount("/srv/data", "/data")], limits=Limits(timeout=5, max_output=1 << 20))
    result = box.run(["/bin/sh", "-c", "wc -l /data/*"])
    result.exit_code, result.stdout, result.limit_hit

Every argument is checked when the object is made: a wrong one is a TypeError (wrong
kind) or ValueError (wrong value) whose message starts with the argument's name, never
a failure deep inside a run. `sentry run` builds on the same objects (sentry/cli.py).
docs/api.md is the full reference.
"""
import json
import math
import os
import signal
import time
from dataclasses import MISSING, dataclass, field, fields

from sentry.errors import SentryError
from sentry.lifecycle import Cancel, collect_after
from sentry.platform import PLATFORMS
from sentry.runner import Outcome, execute

__all__ = ["Sandbox", "Limits", "Result", "Mount"]



def _field(doc: str, *, default=MISSING, factory=MISSING):
    """A dataclass field with its documentation (shown by help() through _documented)."""
    return field(default=default, default_factory=factory, metadata={"doc": doc})


def _documented(cls):
    """cls's docstring followed by each field's: help(Result) then documents every field."""
    import textwrap
    lines = [f"{f.name}: {getattr(f.type, '__name__', f.type)}\n" + textwrap.indent(textwrap.fill(f.metadata["doc"], 76), "    ")
             for f in fields(cls) if "doc" in f.metadata]
    cls.__doc__ = (cls.__doc__ or "") + "\n\nFields:\n\n" + "\n".join(lines)
    return cls


def _number(owner: str, name: str, value, *, integer: bool, minimum: float):
    """value if it is None or a number >= minimum (an int when integer), else the caller's
    TypeError/ValueError naming owner.name."""
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{owner}.{name}: expected {'an int' if integer else 'a number'} or None, not {value!r}")
    if not (value >= minimum and math.isfinite(value)):
        raise ValueError(f"{owner}.{name}: expected a number of at least {minimum}, not {value!r}")
    return value


@_documented
@dataclass(frozen=True)
class Limits:
    """What one run may use; None leaves a limit at its default. Each limit a program can
    ask about shows inside through getrlimit/prlimit, as docker's --ulimit does."""

    timeout: float | None = _field(
        "Wall-clock seconds for the whole run; past it every task is killed (SIGKILL, exit "
        "137) and Result.limit_hit is 'timeout'.", default=None)
    cpu_time: float | None = _field(
        "CPU seconds (user + system) the sandbox's tasks may use together; past it every task "
        "is killed (SIGKILL) and limit_hit is 'cpu_time'. Inside: RLIMIT_CPU (its largest "
        "value: no one process can use more).", default=None)
    memory: int | None = _field(
        "Bytes of address space a process may map: mmap, brk and stack growth past it fail "
        "with ENOMEM and limit_hit is 'memory'. Inside: RLIMIT_AS. Also caps tmpfs_size.", default=None)
    max_procs: int | None = _field(
        "Tasks (processes and threads, zombies too) the sandbox may hold at once: fork and "
        "clone fail with EAGAIN beyond it and limit_hit is 'max_procs'. Inside: RLIMIT_NPROC. "
        "None: 4096 on ptrace, 1024 on unicorn (runner.DEFAULT_MAX_PROCS).", default=None)
    max_output: int | None = _field(
        "Bytes of stdout and stderr together that run() captures. Once it is reached the "
        "streams act as a pipe whose reader is gone: the write that reaches it is short, "
        "every later one fails with EPIPE and raises SIGPIPE (which ends the program unless "
        "it ignores, blocks or handles it), and limit_hit is 'output'. None: no cap.", default=None)
    max_open_files: int | None = _field(
        "File descriptors a process may hold (RLIMIT_NOFILE, soft and hard): open, dup, "
        "socket, pipe ... fail with EMFILE beyond it. None: Linux's defaults, 1024 (hard "
        "4096).", default=None)
    tmpfs_size: int | None = _field(
        "Bytes the sandbox's memory files (/tmp, /dev/shm, memfds, a rootfs's upper layer) "
        "may hold together: writes fail with ENOSPC beyond it, statfs shows it, limit_hit is "
        "'tmpfs'. None: 2 GiB, and never more than memory.", default=None)

    def __post_init__(self):
        for name, integer, minimum in (("timeout", False, 0), ("cpu_time", False, 0), ("memory", True, 1),
                                       ("max_procs", True, 1), ("max_output", True, 0),
                                       ("max_open_files", True, 1), ("tmpfs_size", True, 0)):
            value = _number("Limits", name, getattr(self, name), integer=integer, minimum=minimum)
            if name in ("timeout", "cpu_time") and value is not None and value <= 0:
                raise ValueError(f"Limits.{name}: expected a positive number of seconds, not {value!r}")

    def replace(self, **changes) -> "Limits":
        """A copy with some limits changed (checked as the constructor checks them)."""
        return Limits(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})

    def execute_args(self) -> dict:
        """These limits as runner.execute's keyword arguments."""
        return dict(timeout=self.timeout, cpu_time=self.cpu_time, memory=self.memory, max_procs=self.max_procs,
                    tmpfs_size=self.tmpfs_size, max_open_files=self.max_open_files)


@_documented
@dataclass(frozen=True)
class Mount:
    """A host directory lent to the sandbox at an absolute guest path, read-only unless
    writable. Mount.parse("HOST:GUEST[:ro|rw]") reads the CLI's --mount form."""

    host: str = _field("The host directory (made absolute; it must exist when the Mount is made).")
    guest: str = _field("Where the sandbox sees it: an absolute path.")
    writable: bool = _field("True: the program's writes reach the host directory. False: EROFS.", default=False)

    def __post_init__(self):
        for name in ("host", "guest"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"Mount.{name}: expected a path, not {value!r}")
            value = os.fspath(value)
            if not isinstance(value, str) or not value or "\0" in value:
                raise ValueError(f"Mount.{name}: expected a non-empty str path, not {value!r}")
        if not isinstance(self.writable, bool):
            raise TypeError(f"Mount.writable: expected True or False, not {self.writable!r}")
        host, guest = os.path.abspath(os.fspath(self.host)), os.fspath(self.guest)
        if not guest.startswith("/"):
            raise ValueError(f"Mount.guest: {guest!r} is not an absolute path")
        if not os.path.isdir(host):
            raise ValueError(f"Mount.host: {host!r} is not a directory (only directories can be mounted)")
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "guest", os.path.normpath(guest))

    @classmethod
    def parse(cls, spec: str) -> "Mount":
        """A Mount from 'HOST:GUEST[:ro|rw]' (read-only unless rw), as `sentry run --mount`."""
        if not isinstance(spec, str):
            raise TypeError(f"mounts: expected a Mount or a 'HOST:GUEST[:ro|rw]' string, not {spec!r}")
        parts = spec.split(":")
        mode = parts.pop() if len(parts) == 3 else "ro"
        if len(parts) != 2 or mode not in ("ro", "rw") or not all(parts):
            raise ValueError(f"mounts: {spec!r}: expected 'HOST:GUEST[:ro|rw]'")
        try:
            return cls(parts[0], parts[1], mode == "rw")
        except ValueError as e:
            raise ValueError(f"mounts: {spec!r}: {e}") from None

    def as_view_mount(self) -> tuple:
        """(host, guest, readonly), what sentry/view.py's add_mounts takes."""
        return (self.host, self.guest, not self.writable)


@_documented
@dataclass
class Result:
    """What one run did. exit_code is as a shell reports it; the times are seconds."""

    exit_code: int = _field("The program's exit status (0-255), or 128+N when signal N ended it.")
    signal: int = _field("The signal that ended the program (9 when a limit killed it), or 0.")
    stdout: bytes = _field("What it wrote to stdout (at most Limits.max_output together with stderr).")
    stderr: bytes = _field("What it wrote to stderr; the sentry's own messages are in log, never here.")
    cpu_time: float = _field(
        "CPU seconds of the sandbox's own tasks, every process and thread that ran, summed: "
        "user_time + system_time (never the embedding process's time).")
    wall_time: float = _field("Seconds from the start of run() to its end.")
    peak_memory: int = _field(
        "Bytes: the largest address space one of its processes mapped, plus the most its "
        "memory files (/tmp, /dev/shm, memfds) held at once.")
    limit_hit: str | None = _field(
        "Which limit the run reached: 'timeout', 'cpu_time', 'memory', 'max_procs', 'output', "
        "'tmpfs'; None when none was.", default=None)
    user_time: float = _field(
        "CPU seconds running the program's own code (the host's user time of the traced "
        "threads on ptrace; the emulator's on unicorn).", default=0.0)
    system_time: float = _field(
        "CPU seconds spent on the program's behalf: the sentry answering its syscalls, and on "
        "ptrace the host kernel's time in its threads.", default=0.0)
    output_truncated: bool = _field(
        "True when max_output was reached: writes past it failed (EPIPE, SIGPIPE).", default=False)
    log: list = _field("The sentry's own messages (unsupported syscalls, ...), never in stderr.", factory=list)

    def to_dict(self, output: bool = True) -> dict:
        """The Result as JSON-ready values: stdout and stderr as text when they are UTF-8,
        else base64 under stdout_base64 / stderr_base64; their sizes as stdout_size and
        stderr_size. output=False leaves the bytes out (the sizes stay)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("stdout", "stderr")}
        for name in ("stdout", "stderr"):
            data = getattr(self, name)
            d[f"{name}_size"] = len(data)
            if output:
                try:
                    d[name] = data.decode()
                except UnicodeDecodeError:
                    import base64
                    d[f"{name}_base64"] = base64.b64encode(data).decode()
        return d

    def to_json(self, output: bool = True) -> str:
        """to_dict() as one line of JSON."""
        return json.dumps(self.to_dict(output), separators=(",", ":"))

    @classmethod
    def from_outcome(cls, outcome: Outcome, wall_time: float, stdout: bytes = b"", stderr: bytes = b"",
                     output_capped: bool = False, log=None) -> "Result":
        """A Result from what runner.execute returned (the API and `sentry run --json` share
        it); output_capped: the output streams reached Limits.max_output."""
        limit = outcome.limit_hit
        if output_capped and limit not in ("timeout", "cpu_time"):  # (those ended the run; the others did not)
            limit = "output"
        signo = int(outcome.signo)
        return cls(exit_code=128 + signo if signo else int(outcome.exit_code), signal=signo,
                   stdout=stdout, stderr=stderr, cpu_time=(outcome.user_ns + outcome.system_ns) / 1e9,
                   wall_time=wall_time, peak_memory=outcome.peak_memory, limit_hit=limit,
                   user_time=outcome.user_ns / 1e9, system_time=outcome.system_ns / 1e9,
                   output_truncated=output_capped, log=list(log or []))


def _str_map(name: str, env) -> dict:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"{name}: expected a dict of str to str, not {env!r}")
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{name}: expected str names and values, not {k!r}: {v!r}")
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise ValueError(f"{name}: {k!r} is not a variable name (or its value holds a NUL)")
    return dict(env)


def _workdir(name: str, value):
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected an absolute path str or None, not {value!r}")
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{name}: {value!r} is not an absolute path in the sandbox")
    return value


def _argv(argv) -> list:
    """run()'s argv: a str is one program path, else a non-empty list of str or bytes."""
    if isinstance(argv, (str, bytes)):
        argv = [argv]
    if not isinstance(argv, (list, tuple)) or not argv:
        raise TypeError(f"argv: expected a program path or a non-empty list, not {argv!r}")
    for a in argv:
        if not isinstance(a, (str, bytes, os.PathLike)):
            raise TypeError(f"argv: expected str or bytes items, not {a!r}")
    argv = [os.fsencode(a) for a in argv]
    if any(b"\0" in a for a in argv) or not argv[0]:
        raise ValueError("argv: an empty program name or a NUL in an argument")
    return argv


def _stdin(stdin) -> bytes:
    """run()'s stdin: bytes, or a binary file object read whole before the run."""
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return bytes(stdin)
    if hasattr(stdin, "read"):
        data = stdin.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"stdin: a file object opened in binary mode, not one that reads {type(data).__name__}")
        return bytes(data)
    raise TypeError(f"stdin: expected bytes or a binary file object, not {stdin!r}")


@_documented
@dataclass
class Sandbox:
    """An isolated place to run programs. Each run() starts from a clean state: a fresh
    kernel, filesystem view and process tree; nothing one run writes is seen by the next
    unless it is in a writable Mount. Several may run at once, from threads."""

    rootfs: str | None = _field(
        "A host directory as the root: read-only below, the writes kept in memory. None: the "
        "host's system directories read-only.", default=None)
    mounts: list = _field("Host directories lent: Mount objects or 'HOST:GUEST[:ro|rw]' strings.", factory=list)
    net: str = _field(
        "'none': the sandbox's own loopback only; 'host': also what the host reaches.", default="none")
    limits: Limits = _field("What each run may use (Limits).", factory=Limits)
    platform: str | None = _field(
        "'ptrace' (native speed, x86-64 hosts) or 'unicorn' (emulated); None: the host's "
        "default.", default=None)
    seed: int | None = _field(
        "Seeds getrandom, /dev/urandom and AT_RANDOM, for runs that repeat; None: the host's "
        "randomness.", default=None)
    publish: list = _field(
        "'[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]' strings, as docker run -p.", factory=list)
    workdir: str | None = _field("The working directory in the sandbox (absolute); None: /.", default=None)
    env: dict = _field(
        "Variables every run gets over the defaults PATH, HOSTNAME and HOME; nothing of the "
        "host's environment is passed.", factory=dict)

    def __post_init__(self):
        if self.rootfs is not None:
            if not isinstance(self.rootfs, (str, os.PathLike)):
                raise TypeError(f"rootfs: expected a host directory path or None, not {self.rootfs!r}")
            self.rootfs = os.fspath(self.rootfs)
            if not os.path.isdir(self.rootfs):
                raise ValueError(f"rootfs: {self.rootfs!r} is not a directory")
        if isinstance(self.mounts, (str, Mount)) or not isinstance(self.mounts, (list, tuple)):
            raise TypeError(f"mounts: expected a list of Mount or 'HOST:GUEST[:ro|rw]', not {self.mounts!r}")
        self.mounts = [m if isinstance(m, Mount) else Mount.parse(m) for m in self.mounts]
        if self.limits is None:
            self.limits = Limits()
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits: expected a Limits, not {self.limits!r}")
        if self.platform is not None and self.platform not in PLATFORMS:
            raise ValueError(f"platform: {self.platform!r}: expected one of {', '.join(PLATFORMS)} or None")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"seed: expected an int or None, not {self.seed!r}")
        self.workdir = _workdir("workdir", self.workdir)
        self.env = _str_map("env", self.env)
        self._network()  # wrong values are the caller's ValueError now, not a failed run later

    def _network(self):
        """(net, the parsed publish records), or ValueError naming the argument."""
        if self.net not in ("none", "host"):
            raise ValueError(f"net: {self.net!r}: expected 'none' or 'host'")
        if isinstance(self.publish, str) or not isinstance(self.publish, (list, tuple)):
            raise TypeError(f"publish: {self.publish!r}: expected a list of '[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]'")
        if not self.publish:
            return self.net, []  # (sentry.net's import, ~10 ms, only for a run that needs it)
        from sentry.net.publish import parse
        return self.net, [parse(spec) for spec in self.publish]  # (ValueError: "publish '...': ...")

    def run(self, argv, stdin=b"", env=None, workdir=None, timeout=None, cancel=None) -> Result:
        """Run argv in a fresh sandbox and wait for it to end.

        argv: a program path (a str), or a list whose first item is looked up in the sandbox
        (a name through its PATH, or a path; a host path it does not see is lent read-only).
        stdin: bytes, or a binary file object read whole first. env: variables over the
        Sandbox's env. workdir: this run's working directory over the Sandbox's. timeout:
        this run's wall-clock limit over Limits.timeout. cancel: a sentry.lifecycle.Cancel
        whose cancel(), from any thread, ends the run (every task killed; exit 137).

        A program the sandbox cannot start (not found, not executable) raises SentryError;
        everything the program does is in the Result."""
        argv = _argv(argv)
        stdin = _stdin(stdin)
        env = {**self.env, **_str_map("env", env)}
        workdir = _workdir("workdir", workdir) or self.workdir
        limits = self.limits if timeout is None else self.limits.replace(timeout=timeout)
        start = time.monotonic()
        log = []
        stdio, output = self._stdio(stdin, limits.max_output)
        outcome = _in_own_thread(execute, os.fsdecode(argv[0]), argv[1:],
                                 **self._execute_args(env, workdir, limits, log.append), stdio=stdio,
                                 cancel=cancel or Cancel())
        return Result.from_outcome(outcome, time.monotonic() - start, bytes(output.streams[0].data),
                                   bytes(output.streams[1].data), output.hit, log)

    def _execute_args(self, env: dict, workdir, limits: Limits, log) -> dict:
        """runner.execute's keyword arguments for one run (stdio aside): what a warm start
        (sentry/warm.py) shares with run()."""
        net, published = self._network()
        return dict(env=[f"{k}={v}".encode() for k, v in env.items()], platform=self.platform, seed=self.seed,
                    log=log, rootfs=self.rootfs, mounts=[m.as_view_mount() for m in self.mounts],
                    workdir=workdir, net=net, publish=published, **limits.execute_args())

    @staticmethod
    def _stdio(stdin: bytes, max_output):
        """(the stdio factories for runner.execute, the OutputCap whose streams capture
        stdout and stderr once the kernel makes them)."""
        from sentry.vfs.file import O_RDONLY, O_WRONLY, BufferStream, OutputCap
        from sentry.vfs.inode import Inode
        cap = OutputCap(max_output)

        def stream(flags, data=b"", sink=None):
            def make(kernel):
                f = BufferStream(Inode(0), flags, data, sink)
                if sink is not None:
                    sink.streams.append(f)
                return f
            return make
        return [stream(O_RDONLY, stdin), stream(O_WRONLY, sink=cap), stream(O_WRONLY, sink=cap)], cap


    async def run_async(self, argv, **kwargs) -> Result:
        """run() for asyncio: the same arguments and Result, the run in a thread of its
        own (the event loop never blocks; many may run at once). Cancelling the awaiting
        task ends the sandbox, every process killed and its memory and host sockets
        released, before CancelledError reaches the caller (sentry/lifecycle.py)."""
        from sentry.lifecycle import run_in_thread
        return await run_in_thread(lambda cancel: self.run(argv, cancel=cancel, **kwargs))

    def prepare(self, argv, until=None, env=None, workdir=None, timeout=None) -> "Prepared":
        """Load argv once for warm starts and return a sentry.warm.Prepared whose run(stdin=,
        timeout=) starts each call from the same state: until=None just loaded, "stdin" at
        its first read of stdin, "marker" at its warm-start marker (SENTRY_WARM_MARKER() of
        examples/warm/sentry_warm.h). A call sees nothing of earlier calls. env, workdir:
        as run()'s, fixed for every call; timeout: how long the program may take to reach
        the point (Limits.timeout, else 60 s). docs/warm.md says what a call may observe."""
        from sentry.warm import Prepared
        return Prepared(self, argv, until=until, env=env, workdir=workdir, timeout=timeout)


CALLER_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGALRM, signal.SIGWINCH}


def _in_own_thread(fn, *args, **kw):
    """Run fn in a thread of its own and return what it returns (or raise what it
    raises). The sandbox's kernel then never touches the caller's thread: the
    ptrace platform pins its tracer thread to one CPU, blocks SIGCHLD in it and
    reaps only that thread's tracees (waitpid __WNOTHREAD), so the embedding
    program's own children and CPU placement are left alone. If the caller's wait
    is interrupted (Ctrl-C's KeyboardInterrupt), the run's kw["cancel"] ends the
    sandbox first: nothing of it outlives the exception."""
    import threading
    box = {}
    # An Event, not Thread.join: a join interrupted by KeyboardInterrupt marks the thread
    # stopped while it runs (CPython 3.11), and the second join would not wait.
    done = threading.Event()

    def body():
        # The caller's signals (Ctrl-C, a TERM) go to the caller's threads: a signal the OS
        # gave this thread would only set Python's flag, and the main thread's wait would
        # never wake to raise it
        signal.pthread_sigmask(signal.SIG_BLOCK, CALLER_SIGNALS)
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e
        else:
            collect_after(box["value"])  # (fn's frame is gone: what it made is garbage now)
        finally:
            done.set()
    threading.Thread(target=body, name="sentry-kernel").start()
    try:
        # In slices: a signal that another of the caller's threads took (Linux may give a
        # process's signal to any thread not blocking it) only sets Python's flag, which
        # the main thread looks at when its wait returns, not while it blocks
        while not done.wait(0.1):
            pass
    except BaseException:
        if kw.get("cancel") is not None:
            kw["cancel"].cancel("interrupted")
            while not done.wait(1.0):  # (again while it runs on: a post can meet a loop not yet waiting)
                kw["cancel"].cancel("interrupted")
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]

