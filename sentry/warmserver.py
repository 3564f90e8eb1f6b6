"""The warm server: the sentry process that holds one prepared program (sentry/warm.py).

`python -m sentry.warmserver FD`, started by warm.Prepared with a control socket at FD.
It runs the program as Sandbox.run would (runner.execute, in its main thread) until the
point calls start from: before its first instruction (until=None), its first read of
stdin ("stdin"), or the warm-start marker ("marker": prctl(WARM_OPTION), see
examples/warm/sentry_warm.h). There, inside that syscall, it parks the guest process
(sentry/platform/handover.py), says "ready", and serves: for each call it forks itself.
The fork, a call's own sentry, holds a copy of every kernel object as they were at that
point (the VFS and its memory files, fds, signals, limits, ...) and takes a copy of the
guest process; it then returns from the interrupted syscall into the kernel's loop,
with the call's stdin, and when the run ends sends the call's outcome and exits. The
server never runs guest code again: every call starts from the same state, and nothing
a call does (files, environment, processes, sockets) reaches the server or later calls.

Messages are pickles, each with an 8-byte length, between this process and warm.py.
"""
import errno as E
import os
import pickle
import signal
import socket
import stat as S
import struct
import sys
import time

MASK64 = (1 << 64) - 1
WARM_OPTION = 0x5357524D  # 'SWRM': prctl(WARM_OPTION, ...) is the marker; Linux answers EINVAL
O_PATH = 0o10000000
SEEK_DATA, SEEK_HOLE = 3, 4


def send(sock, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(struct.pack("<Q", len(data)) + data)


def recv(sock):
    """The next message, or None at EOF."""
    head = _exactly(sock, 8)
    if head is None:
        return None
    body = _exactly(sock, struct.unpack("<Q", head)[0])
    return None if body is None else pickle.loads(body)


def _exactly(sock, n: int):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Refused(Exception):
    """The program's state at the stop cannot be copied for calls (a ValueError for the caller)."""


class Server:
    def __init__(self, ctl, spec: dict):
        self.ctl = ctl
        self.until = spec["until"]
        self.limits = spec["limits"]  # the calls' Limits; the prepare phase runs without time limits
        self.kernel = self.task = None
        self.log = []
        self.output = None   # the api's OutputCap: the stdout and stderr streams
        self.stdin = None
        self.conn = None     # in a call's sentry: the call's own socket
        self.stopped_ns = 0
        self.host_files = []  # _host_files(): what each call's sentry must own
        self.parked = None    # handover.park's record of the parked guest process
        self.done = None      # in a call's sentry: closed when its guest is gone (the next call may start)

    # --- in the server, while the program starts ---------------------------------------
    def started(self, kernel, task) -> None:
        """runner.execute's hook, just before the kernel's loop runs the program."""
        self.kernel, self.task = kernel, task
        self.stdin = task.fds.get(0)
        kernel.watch_fd(self.ctl.fileno(), 1, self._caller_gone)  # (EVENT_READ: only its EOF comes now)
        if self.limits.cpu_time is not None:  # shown from the start, enforced per call
            n = -int(-self.limits.cpu_time // 1)
            task.rlimits[0] = (n, n)  # RLIMIT_CPU
        if self.until is None:
            self.freeze()
        elif self.until == "stdin":
            stdin = self.stdin

            def read(size):
                del stdin.read  # (the class's read from now on)
                self.freeze()
                return stdin.read(size)
            stdin.read = read
        else:
            dispatch = kernel.dispatch

            def marker(t, nr, entry, args):
                if entry is not None and entry.name == "prctl" and args[0] & 0xFFFFFFFF == WARM_OPTION:
                    dispatch.watch = None
                    self.freeze()
                    return -E.EINVAL & MASK64  # as Linux: the same program runs anywhere
                return None
            dispatch.watch = marker

    def freeze(self) -> None:
        """The point calls start from. In the server this never returns: it serves calls
        until the control socket closes. In each call's sentry (a fork) it returns, and the
        program goes on as if it had only now reached this point."""
        from sentry.platform import handover
        self.stopped_ns = time.perf_counter_ns()
        kernel, task = self.kernel, self.task
        kernel.watch_fd(self.ctl.fileno(), 0, None)
        try:
            self._check()
        except Refused as e:
            send(self.ctl, {"refused": str(e)})
            os._exit(0)
        _preload(kernel.platform.name)
        self.host_files = _host_files()
        import gc
        gc.collect()
        gc.freeze()  # what is here stays out of every call's collections: their pages stay shared, not copied
        self.parked = handover.park(kernel.platform, task.mm.space, task.cpu)
        send(self.ctl, {"ready": True, "stdout": self._taken(1), "stderr": self._taken(2), "log": list(self.log)})
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(self.ctl, 1, 1)
            except OSError:
                fds = []
            if not fds:
                os._exit(0)  # the owner closed or ended: the parked process dies with its keeper
            done_r, done_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(done_r)
                self.done = done_w
                try:
                    self._become_call(fds[0])
                except BaseException as e:  # never on into the kernel's loop with a guest not ours
                    _report(self.conn, e)
                    os._exit(1)
                return
            os.close(fds[0])
            os.close(done_w)
            # One call at a time: the calls share the parked process and its fd-passing
            # socket. The call's sentry closes its end once its guest is gone (finish), or
            # dies; its own exit (its memory let go) overlaps the next call.
            os.read(done_r, 1)
            os.close(done_r)
            _reap_calls()

    def _caller_gone(self, _events) -> None:
        """The control socket is readable while the program starts: its owner closed it or
        ended (a prepare timeout, a killed embedding process). Nothing is left running."""
        try:
            if self.ctl.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.kernel.end_everything("warm start: its owner is gone")

    def _check(self) -> None:
        kernel, task = self.kernel, self.task
        if len(kernel.tasks) != 1 or len([t for t in task.proc.tasks if t.exit_status is None]) != 1:
            raise Refused(f"the program has {len(kernel.tasks)} tasks (threads or processes) at the point "
                          "calls would start from: a warm start copies one single-threaded process")
        if kernel.hostnet is not None:
            raise Refused("a warm start holds no host sockets (net='host' or publish)")
        for v in task.mm.vmas:
            backing = getattr(v, "backing", None)
            if backing is not None and backing.memory:
                raise Refused("the program maps a memory file shared (MAP_SHARED of /tmp, /dev/shm, a memfd "
                              "or shared anonymous memory): calls would share its pages")

    def _taken(self, n: int) -> bytes:
        """What output stream n (1, 2) holds, and emptied: calls start with nothing written."""
        f = self.output.streams[n - 1]
        data = bytes(f.data)
        f.data = bytearray()
        return data

    # --- in a call's sentry --------------------------------------------------------------
    def _become_call(self, fd: int) -> None:
        from sentry.platform import handover
        self.ctl.close()
        self.conn = conn = socket.socket(fileno=fd)
        request = recv(conn)
        if request is None:
            os._exit(0)
        kernel, task = self.kernel, self.task
        timeout = request["timeout"]
        if timeout is not None:
            signal.alarm(int(timeout) + 30)  # a backstop: the sentry itself stuck ends with its call
        _own_host_files(self.host_files)
        _own_selector(kernel)
        space, cpu = handover.copy(kernel.platform, task.mm.space, task.cpu, self.parked)
        task.cpu, task.mm.space, cpu.task, space.cpu = cpu, space, task, cpu
        if self.until is not None:  # the interrupted syscall's time counts from now (the dispatcher adds since its start)
            task.sys_ns = getattr(task, "sys_ns", 0) - (time.perf_counter_ns() - self.stopped_ns)
        for name in ("ended_user_ns", "ended_system_ns"):
            if hasattr(kernel, name):
                setattr(kernel, name, 0)
        self.log.clear()
        self.stdin.data, self.stdin.pos = bytearray(request["stdin"]), 0
        for f in self.output.streams:
            f.data = bytearray()
        self.output.used, self.output.hit = 0, False
        kernel.cpu_time = self.limits.cpu_time
        if timeout is not None:
            kernel.timeout = timeout
            kernel.deadline = time.monotonic() + timeout
        # (_thread: threading's start() waits until the thread runs, a scheduler's round on a busy host)
        import _thread
        import threading
        if timeout is not None or kernel.cpu_time is not None:
            _thread.start_new_thread(kernel._watch, (threading.Event(),))
        _thread.start_new_thread(_watch_caller, (kernel, conn))

    def finish(self, outcome) -> None:
        """In a call's sentry, its run over: the outcome to the caller, and exit."""
        from sentry import runner
        kernel = self.kernel
        user_ns, system_ns = getattr(outcome, "user_ns", 0), getattr(outcome, "system_ns", 0)
        if hasattr(runner, "cpu_used"):  # this process's own CPU time is the call's (its clock began at the fork)
            user_ns, system_ns = runner.cpu_used(kernel, time.thread_time_ns())
        streams = self.output.streams
        os.close(self.done)  # its guest is gone: the next call may start
        send(self.conn, {"outcome": tuple(outcome._replace(user_ns=user_ns, system_ns=system_ns)
                                          if hasattr(outcome, "user_ns") else outcome),
                         "stdout": bytes(streams[0].data), "stderr": bytes(streams[1].data),
                         "capped": self.output.hit, "log": list(self.log)})


def _reap_calls() -> None:
    """Collect the calls' sentries that have exited (and the keeper, should it end)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _report(conn, e: BaseException) -> None:
    """A call's sentry could not start the call: one line for its caller."""
    import traceback
    traceback.print_exc()  # (to the server's stderr, which warm.Prepared shows with its errors)
    if conn is not None:
        try:
            send(conn, {"error": f"warm call: {type(e).__name__}: {e}", "exit_code": 125})
        except OSError:
            pass


def _watch_caller(kernel, conn) -> None:
    """A call's sentry ends the call when its caller closes the call's socket or ends: the
    caller sends nothing after the request, so recv returns only then."""
    try:
        conn.recv(1)
    except OSError:
        pass
    # as the watchdog ends a run: flagged, every task stopped from here (a running emulation
    # too, which a post would not stop), the loop woken
    kernel.end_everything("warm call: the caller is gone")
    for task in list(kernel.tasks.values()):
        task.cpu.interrupt()
    kernel.post(lambda: None)


def _preload(platform: str) -> None:
    """Import now what a run may import late (the kernel imports many modules where first
    needed: a task's end, a signal, a socket): once here, rather than in every call's
    sentry, which would compile them again (nothing caches bytecode under
    PYTHONDONTWRITEBYTECODE)."""
    import importlib
    import pkgutil
    import threading  # noqa: F401  (a call's watchdog)
    import sentry
    import syscalls
    skip = ("sentry.cli", "sentry.console", "sentry.__main__", "sentry.testrunner", "sentry.warm",
            "sentry.platform.unicorn" if platform != "unicorn" else "sentry.platform.ptrace")
    for package in (sentry, syscalls):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.startswith(skip):
                try:
                    importlib.import_module(info.name)
                except Exception:
                    pass  # (one a run never needs)


def _host_files() -> list:
    """(fd, kind, open flags) of this process's host fds that a call's sentry must own: each
    has an open file (one offset) shared with every fork, and a memfd's bytes are shared
    too. Looked at once, in the server, whose fds do not change while it serves."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            flags = _fcntl_getfl(fd)
            if flags & O_PATH:
                continue
            st = os.fstat(fd)
            if not (S.S_ISREG(st.st_mode) or S.S_ISDIR(st.st_mode)):
                continue
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (listdir's own fd, closed by now)
        if target.startswith("/proc/") or target.startswith("/memfd:sentry-stub"):
            continue
        kind = "memfd" if target.startswith("/memfd:") else "dir" if S.S_ISDIR(st.st_mode) else "file"
        found.append((fd, kind, flags, target[len("/memfd:"):].split(" (deleted)")[0]))
    return found


def _own_host_files(files) -> None:
    """In a call's sentry: _host_files()'s fds get open files of their own (at the same
    offsets), a memfd a copy of its bytes, so that the call's reads and writes are its own."""
    for fd, kind, flags, name in files:
        inheritable = os.get_inheritable(fd)
        if kind == "memfd":
            new = _memfd_copy(fd, name, os.fstat(fd).st_size)
        else:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
            keep = flags & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_NOATIME | os.O_DIRECT)
            if kind == "dir":
                keep = os.O_RDONLY | os.O_DIRECTORY | (flags & os.O_NONBLOCK)
            new = os.open(f"/proc/self/fd/{fd}", keep | os.O_CLOEXEC)
            os.lseek(new, pos, os.SEEK_SET)
        os.dup2(new, fd, inheritable=inheritable)
        os.close(new)


def _memfd_copy(fd: int, name: str, size: int) -> int:
    new = os.memfd_create(name, os.MFD_CLOEXEC)
    os.ftruncate(new, size)
    pos = 0
    while pos < size:  # the data extents only: a sparse file stays sparse
        try:
            start = os.lseek(fd, pos, SEEK_DATA)
        except OSError:
            break  # ENXIO: only a hole is left
        end = os.lseek(fd, start, SEEK_HOLE)
        while start < end:
            n = os.copy_file_range(fd, new, end - start, start, start)
            if n <= 0:
                break
            start += n
        pos = end
    return new


def _fcntl_getfl(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _own_selector(kernel) -> None:
    """The kernel's loop waits on an epoll of its own: the inherited one is the server's
    (one kernel object for both processes)."""
    import selectors
    old = kernel.selector
    new = selectors.DefaultSelector()
    for key in list(old.get_map().values()):
        new.register(key.fd, key.events, key.data)
    kernel.selector = new
    old.close()


def main(fd: int) -> None:
    from sentry.errors import SentryError
    from sentry.runner import execute
    ctl = socket.socket(fileno=fd)
    spec = recv(ctl)
    if spec is None:
        return
    box = spec["sandbox"]
    server = Server(ctl, spec)
    try:
        prepare_limits = box.limits.replace(timeout=None, cpu_time=None)  # (no watchdog thread in a process that forks)
        stdio, server.output = box._stdio(b"", prepare_limits.max_output)
        args = box._execute_args(spec["env"], spec["workdir"], prepare_limits, server.log.append)
        outcome = execute(os.fsdecode(spec["argv"][0]), spec["argv"][1:], **args, stdio=stdio,
                          started=server.started)
    except SentryError as e:
        if server.conn is None:
            send(ctl, {"error": str(e), "exit_code": e.exit_code})
        else:
            send(server.conn, {"error": str(e), "exit_code": e.exit_code})
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(1)
    try:
        if server.conn is None:  # the program ended before the point calls start from
            streams = server.output.streams
            send(ctl, {"ended": tuple(outcome), "stdout": bytes(streams[0].data),
                       "stderr": bytes(streams[1].data), "log": list(server.log)})
        else:
            server.finish(outcome)
    except OSError:
        pass  # the caller is gone
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]))
