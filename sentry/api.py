"""The embedding API: Sandbox(...).run(argv) -> Result."""
import os
import time
from dataclasses import dataclass, field

from sentry.errors import SentryError
from sentry.runner import execute


@dataclass
class Limits:
    memory: int | None = None
    cpu_time: float | None = None
    timeout: float | None = None
    max_procs: int | None = None    # tasks at once; None: runner.DEFAULT_MAX_PROCS
    max_output: int | None = None
    tmpfs_size: int | None = None   # what the memory files may hold; None: 2 GiB (--memory at most)


@dataclass
class Result:
    exit_code: int          # as a shell reports it: the status, or 128+signal
    signal: int             # the signal that killed the program, or 0
    stdout: bytes
    stderr: bytes
    cpu_time: float
    wall_time: float
    peak_memory: int
    limit_hit: str | None = None
    log: list = field(default_factory=list)  # the sentry's own messages (unsupported syscalls, ...), never in stderr


@dataclass
class Sandbox:
    """An isolated place to run programs; each run() starts from a clean state."""
    rootfs: str | None = None
    mounts: list = field(default_factory=list)
    net: str = "none"       # "none": its own loopback only; "host": what the host reaches (sentry/net/hostnet.py)
    limits: Limits = field(default_factory=Limits)
    platform: str | None = None
    seed: int | None = None
    publish: list = field(default_factory=list)  # "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]", as docker run -p

    def __post_init__(self):
        self._network()  # wrong values are the caller's ValueError now, not a failed run later

    def _network(self):
        """(net, the parsed publish records), or ValueError naming the argument."""
        from sentry.net.publish import parse
        if self.net not in ("none", "host"):
            raise ValueError(f"net={self.net!r}: expected 'none' or 'host'")
        if isinstance(self.publish, str) or not isinstance(self.publish, (list, tuple)):
            raise ValueError(f"publish={self.publish!r}: expected a list of '[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]'")
        return self.net, [parse(spec) for spec in self.publish]  # (ValueError: "publish '...': ...")

    def run(self, argv, stdin: bytes = b"", env=None) -> Result:
        """Run argv (argv[0] looked up in the sandbox: its PATH, or a path from /).
        env: variables over the defaults PATH, HOSTNAME and HOME (runner.environment);
        nothing of the host's environment is passed."""
        from sentry.vfs.file import O_RDONLY, O_WRONLY, BufferStream
        from sentry.vfs.inode import Inode
        net, published = self._network()
        out, err, log = [], [], []
        limit = self.limits.max_output

        def stream(flags, data=b"", sink=None):
            def make(kernel):
                f = BufferStream(Inode(0), flags, data, limit)
                if sink is not None:
                    sink.append(f)
                return f
            return make

        env_items = [f"{k}={v}".encode() for k, v in (env or {}).items()]
        start, cpu0 = time.monotonic(), time.process_time()
        code, signo, limit, peak, _ = _in_own_thread(
            execute, argv[0], [os.fsencode(a) for a in argv[1:]], env=env_items,
            platform=self.platform, seed=self.seed, log=log.append,
            rootfs=self.rootfs, mounts=list(self.mounts), timeout=self.limits.timeout,
            memory=self.limits.memory, cpu_time=self.limits.cpu_time, max_procs=self.limits.max_procs,
            net=net, publish=published,
            tmpfs_size=self.limits.tmpfs_size,
            stdio=[stream(O_RDONLY, stdin), stream(O_WRONLY, sink=out), stream(O_WRONLY, sink=err)])
        truncated = any(f.truncated for f in out + err)
        return Result(exit_code=128 + signo if signo else code, signal=signo,
                      stdout=bytes(out[0].data), stderr=bytes(err[0].data),
                      cpu_time=time.process_time() - cpu0, wall_time=time.monotonic() - start,
                      peak_memory=peak, limit_hit=limit or ("max_output" if truncated else None), log=log)


def _in_own_thread(fn, *args, **kw):
    """Run fn in a thread of its own and return what it returns (or raise what it
    raises). The sandbox's kernel then never touches the caller's thread: the
    ptrace platform pins its tracer thread to one CPU, blocks SIGCHLD in it and
    reaps only that thread's tracees (waitpid __WNOTHREAD), so the embedding
    program's own children and CPU placement are left alone."""
    import threading
    box = {}

    def body():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e
    t = threading.Thread(target=body, name="sentry-kernel")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
