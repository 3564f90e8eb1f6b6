"""Kernel: one per sandbox. It owns the tasks, the filesystem and the event
loop that runs tasks on a platform and answers their syscalls."""
import _thread  # (threading's import is not on the start path)
import heapq
import os
import selectors
import stat as S
import time
from collections import deque

from sentry import keys, rss
from sentry import ipc
from sentry import ptrace_guest
from sentry.errors import Errno, SentryError
from sentry.fdtable import FDTable
from sentry.mm import MemoryManager
from sentry.platform import ExitStop, FaultStop, PreemptStop, SyscallStop
from sentry.sysctl import Sysctls
from sentry.process import ProcessTable
from sentry.sched import Resumed, TaskExit, Wait

CLONE_VM, CLONE_VFORK = 0x100, 0x4000
# what a new task takes from its creator with the ids: the namespaces (sentry/namespaces.py), the root
CREDENTIALS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups", "caps", "cap_bset",
               "cap_ambient", "securebits", "user_ns",
               "nsproxy", "root")
from sentry.task import Task
from sentry.vfs import VFS, writeaccess

MASK64 = (1 << 64) - 1
BELL = -1  # the selector key data of post()'s bell
RESTART_RESULTS = frozenset(-e & MASK64 for e in (512, 513, 514, 516))  # -ERESTARTSYS .. -ERESTART_RESTARTBLOCK
FD_POLL_EVERY = 0.005  # while tasks keep the loop busy, host fds are still looked at this often

SIGKILL_BIT = 1 << 8
SIGNAL_NAMES = {4: "SIGILL", 5: "SIGTRAP", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}


class Kernel:
    def __init__(self, platform, *, log, note=None, seed=None, strace=None, root=None, timeout=None,
                 memory=None, cpu_time=None, max_procs=None):
        self.platform = platform
        self.arch = platform.arch
        self.log = log
        self._rng = None
        if seed is not None:
            import random  # only under --seed: keeps the common start lighter
            self._rng = random.Random(seed)
        self.vfs = VFS(self.random_bytes, kernel=self, root=root)
        self.tasks: dict[int, Task] = {}
        self.sysctl = Sysctls()  # /proc/sys's enforced knobs (pid_max, nr_open, ...)
        self.ptable = ProcessTable(self)
        self.procs = self.ptable.procs
        self.hostname = b"sentry"
        self.boot_time = time.monotonic()
        self.runq: deque[Task] = deque()   # tasks to continue: woken, or just made
        self.timers: list = []  # heap of (deadline, seq, Timer)
        self._timer_seq = 0
        self.selector = selectors.DefaultSelector()
        self.fd_waiters: dict[int, dict] = {}  # host fd -> {task: events}
        self.fd_watchers: dict[int, object] = {}  # host fd -> fn(events): the sentry's own (sentry/net/hostnet.py)
        self.hostnet = None  # --net host / --publish: the host sockets the sentry holds (sentry/net/hostnet.py)
        self._last_fd_poll = 0.0
        self.current = None      # the task whose syscall is being answered
        self.elf_infos = {}      # (dev, ino, mtime, size) -> parsed ElfInfo, for execve
        self.exit_status = None  # (code, signo) of the first program
        self._logged = set()
        self.timeout = timeout    # wall-clock seconds for the whole run, or None
        self.deadline = None
        self.limit_hit = None     # "timeout", "cpu_time" or "memory" once a limit was reached
        self.limit_reached = None  # "max_procs" or "memory" once a fork or memory was refused (the run goes on)
        self.cpu_time = cpu_time  # CPU seconds a process may use, or None
        self.memory = memory      # bytes of address space per process (--memory), or None
        self.peak_memory = 0      # the largest address space a process of this run mapped
        self.max_procs = max_procs  # processes the sandbox may hold at once (--max-procs), or None
        self.rlimit_ceilings = {}  # resource -> the most a hard limit may be raised to (runner.show_limits)
        self.ended_user_ns = 0     # CPU time of the tasks released so far (runner.cpu_used)
        self.ended_system_ns = 0
        from sentry.futex import Futexes
        self.futexes = Futexes()
        from sentry.ipc.namespace import IpcNamespace
        self.ipc_ns = IpcNamespace()  # the sandbox's first IPC namespace (sentry/ipc)
        from sentry.keys import KeyRegistry
        self.keys = KeyRegistry(self)  # the sandbox's keys and keyrings (keyctl(2))
        self.note = note or log   # the sentry's diagnostics (unsupported calls, crashes): a log, not the program's
        from syscalls.dispatch import Dispatcher
        self.dispatch = Dispatcher(self.arch, self.note, strace)
        self.console = None       # sentry/console.py's Console under `sentry run`: the host terminal and signals
        self.ended_by = None      # why the sentry killed everything from outside (a second Ctrl-C, ...)
        self._posted = deque()    # what post() asked the loop to run
        self._bell = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)  # rung by post(): wakes a loop in select
        self._bell_lock = _thread.allocate_lock()  # post() from other threads vs the run closing the bell

    def log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            self.note(message)

    def post(self, fn) -> None:
        """Run fn() in the loop soon. Safe from any thread (a console's signal thread, an
        embedding program): it only queues fn, rings the loop's bell (a loop in select) and
        has the platform stop a running task (a loop waiting for one to stop)."""
        self._posted.append(fn)
        with self._bell_lock:  # never a write to the bell's fd number once the run closed it
            if self._bell is None:
                return  # the run is over
            try:
                os.write(self._bell[1], b"\0")
            except OSError:
                pass  # full: already rung
            self.platform.wake()

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            posted.popleft()()

    def end_everything(self, reason: str) -> None:
        """Kill every task now, from outside (the user's second Ctrl-C, a SIGTERM's grace
        period over): the run ends as by SIGKILL and `ended_by` says why."""
        if self.ended_by is None:
            self.ended_by = reason

    def random_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n) if self._rng else os.urandom(n)

    # --- starting a program -------------------------------------------------------------
    def spawn(self, path: str, argv: list[bytes], envp: list[bytes], stdio, cwd=None) -> Task:
        """Load the program at `path` (in the sandbox's filesystem) as a new process."""
        import loader
        cwd_loc = self.vfs.root_loc
        if cwd:
            try:
                cwd_loc = self.vfs.lookup_loc(None, -100, os.path.join("/", cwd).encode())
            except Errno as e:
                raise SentryError(f"--workdir {cwd}: {os.strerror(e.errno)}") from None
        path, argv, label = self._script_interpreter(path, argv, cwd_loc)
        execfn, path = path, self._real_path(path, cwd_loc)
        info, data = self.load_elf(path, label, cwd_loc)
        if info.machine != self.arch:
            raise SentryError(f"{path}: exec format error: an {info.machine} program, "
                              f"this sandbox runs {self.arch}", 126)
        interp = None
        if info.interp:  # PT_INTERP comes from the sandbox's own view, never the host's
            # ... and, as Linux's open_exec, a relative one from the working directory
            interp = (*self.load_elf(info.interp, f"{path}: its interpreter {info.interp}", cwd_loc),
                      info.interp)
        try:
            plan = loader.plan_image(info, data, path=path, argv=argv, envp=envp, execfn=execfn.encode(),
                                     random_bytes=self.random_bytes(16), hwcap=self.platform_hwcap(),
                                     hwcap2=0, interp=interp)
        except loader.LoadError as e:
            raise SentryError(f"{path}: {e}", 126) from None
        space, cpu = self.platform.new_process()
        try:
            mm = MemoryManager(space, mmap_base=plan.mmap_base, brk=plan.brk, limit=self.memory,
                               sysctl=self.sysctl)
            mm.load(plan)
            cpu.set_entry(plan.entry, plan.sp)
        except Errno as e:
            space.close()
            raise SentryError(f"{path}: cannot map the program's image: {os.strerror(e.errno)}"
                              + (f" (--memory {self.memory})" if self.memory else ""), 126) from None
        except BaseException:
            space.close()
            raise
        fds = FDTable()
        for fd, f in enumerate(stdio):
            fds.install_at(fd, f)
        proc = self.ptable.create(None)
        task = Task(self, proc.pid, cpu, mm, fds, path, argv, envp)
        task.auxv = plan.auxv  # what /proc/PID/auxv shows
        task.cwd = cwd_loc
        if getattr(task, "ipc_ns", None) is None:
            task.ipc_ns = self.ipc_ns
        self.adopt(task, proc)
        self.runq.append(task)
        return task

    @property
    def next_tid(self) -> int:
        return self.ptable.last_pid + 1

    def adopt(self, task: Task, proc) -> None:
        """Make task a thread of proc and one of the kernel's tasks."""
        task.proc = proc
        proc.tasks.append(task)
        task.cpu.task = task
        self.tasks[task.tid] = task

    def _find(self, path: str, cwd_loc, follow: bool = True):
        """Walk path in the sandbox's view, a relative one from cwd_loc (the first
        program's working directory: no task exists yet)."""
        start = self.vfs.root_loc if path.startswith("/") else cwd_loc
        return self.vfs.walk(None, start, os.fsencode(path), follow)

    def _real_path(self, path: str, cwd_loc) -> str:
        """path with its symlinks resolved in the sandbox's view, as execve names the
        program (/proc/self/exe, and so ld.so's $ORIGIN); path itself if it does not resolve
        (load_elf reports that)."""
        from sentry.vfs import loc_path
        try:
            found = self._find(path, cwd_loc)
        except Errno:
            return path
        if found.inode is None:
            return path
        return loc_path(found.loc).decode(errors="surrogateescape")

    def _script_interpreter(self, path: str, argv: list[bytes], cwd_loc):
        """(path, argv, label) to run for a `#!` script, as execve does (nested up to 4
        deep); label names the file for an error about it."""
        from sentry.exec import BINPRM_BUF_SIZE, MAX_INTERP_DEPTH, _shebang
        label = script = path
        for _ in range(MAX_INTERP_DEPTH + 1):
            try:
                found = self._find(path, cwd_loc)
                inode = found.inode
                head = b""
                if inode and S.S_ISREG(inode.mode):
                    f = inode.open(0, path)
                    try:
                        head = f.pread(BINPRM_BUF_SIZE, 0)
                    finally:
                        f.close()  # a host file's fd is closed only by close(), never by its collection
            except Errno:
                return path, argv, label  # load_elf reports it
            if bytes(head[:2]) != b"#!":
                return path, argv, label
            try:
                interp, arg = _shebang(bytes(head))
            except Errno:
                raise SentryError(f"{script}: exec format error: an empty #! line", 126) from None
            argv = [interp] + ([arg] if arg else []) + [os.fsencode(path)] + list(argv[1:])
            path = os.fsdecode(interp)
            label = f"{script}: its interpreter {path}"
        raise SentryError(f"{script}: too many levels of #! interpreters", 126)

    @staticmethod
    def read_whole(inode, path: str) -> bytes:
        f = inode.open(0, path)
        try:
            chunks, offset = [], 0
            while True:
                chunk = f.pread(1 << 24, offset)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                offset += len(chunk)
        finally:
            f.close()

    def load_elf(self, path: str, label: str, cwd_loc):
        """(ElfInfo, bytes) of the file at path in the sandbox's view (a relative path from
        cwd_loc); a one-line SentryError starting with label (127 if missing, 126 if not
        executable)."""
        import loader
        try:
            inode = self._find(path, cwd_loc).inode
            if inode is None:
                raise Errno(2)
        except Errno as e:
            raise SentryError(f"{label}: {os.strerror(e.errno)}", 127) from None
        if not S.S_ISREG(inode.mode):
            raise SentryError(f"{label}: {os.strerror(21 if inode.is_dir() else 13)}", 126)
        data = self.read_whole(inode, path)
        from sentry.exec import parse_elf
        try:
            return parse_elf(inode, data), data
        except loader.LoadError as e:
            raise SentryError(f"{label}: {e}", 126) from None

    def platform_hwcap(self) -> int:
        if self.platform.name == "ptrace":
            import ctypes
            getauxval = ctypes.CDLL(None).getauxval
            getauxval.restype = ctypes.c_ulong
            return getauxval(16)
        return 0x178BFBFF if self.arch == "x86_64" else 0xFF

    # --- the loop -------------------------------------------------------------------------
    def run(self):
        """Run until every task has ended; returns (exit_code, signo) of the first program."""
        watchdog = None
        if self.timeout is not None or self.cpu_time is not None:
            import threading
            if self.timeout is not None:
                self.deadline = time.monotonic() + self.timeout
            watch_over = threading.Event()
            watchdog = threading.Thread(target=self._watch, args=(watch_over,), daemon=True,
                                        name="sentry-watchdog")
        events = self.platform.event_fd()  # readable when a task stops (ptrace), or None
        if events is not None:
            self.selector.register(events, selectors.EVENT_READ, None)
        self.selector.register(self._bell[0], selectors.EVENT_READ, BELL)
        if watchdog is not None:
            watchdog.start()  # after event_fd(): the thread inherits its signal mask
        platform, runq, tasks, posted = self.platform, self.runq, self.tasks, self._posted
        try:
            while tasks:
                if posted:
                    self._run_posted()
                if self.limit_hit or self.ended_by:
                    init = self.procs.get(1)
                    self._end_all_but(init)
                    if init is not None and init.leader is not None and init.leader.exit_status is None:
                        self.exit_group(init.leader, 0, 9)
                    break
                while runq:
                    task = runq.popleft()
                    if task.exit_status is None and task.blocked is None:
                        self._continue(task)
                if not tasks:
                    break
                if self.timers or self.fd_waiters or self.fd_watchers:
                    now = time.monotonic()
                    if self.timers and self.timers[0][0] <= now:
                        self._fire_timers(now)
                        continue
                    if (self.fd_waiters or self.fd_watchers) and now - self._last_fd_poll > FD_POLL_EVERY:
                        self._poll_events(0)
                        if runq:
                            continue
                    got = platform.next_stop(False)
                else:
                    got = platform.next_stop(not runq)
                if got is not None:
                    cpu, stop = got
                    if stop.__class__ is SyscallStop and cpu.task.exit_status is None:
                        self._syscall(cpu.task, stop)  # the hot path, without _handle's dispatch
                    else:
                        self._handle(cpu.task, stop)
                elif not runq:
                    self._poll_events(None)
        finally:
            if watchdog is not None:
                watch_over.set()
            init = self.procs.get(1)
            self._end_all_but(init)
            for task in list(tasks.values()):
                task.proc.exiting = True
                self._release(task)
            if events is not None:
                self.selector.unregister(events)
            self.selector.unregister(self._bell[0])
            with self._bell_lock:
                bell, self._bell = self._bell, None
            for fd in bell:
                os.close(fd)
            platform.close_events()
            if self.hostnet is not None:
                self.hostnet.close()  # every host socket and listener, with the sandbox
        return self.exit_status

    def _watch(self, stop) -> None:
        """The watchdog thread of a run with a time limit. It only flags the run and
        interrupts the running tasks; the loop then ends them as SIGKILL would."""
        limit_ns = self.cpu_time * 1e9 if self.cpu_time is not None else None
        while True:
            wait = 0.05 if limit_ns is not None else None  # CPU time is sampled; wall time is a deadline
            if self.deadline is not None:
                left = max(0.0, self.deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            if stop.wait(wait):
                return
            hit = None
            if self.deadline is not None and time.monotonic() >= self.deadline:
                hit = "timeout"
            elif limit_ns is not None and self._cpu_used_ns() >= limit_ns:
                hit = "cpu_time"
            if hit:
                self.limit_hit = hit
                tasks = list(self.tasks.values())
                for task in tasks:
                    task.cpu.interrupt()
                for task in tasks:  # what each used, while its host thread (killed, not reaped) can tell
                    task.cpu.cpu_time_ns()
                return

    def _cpu_used_ns(self) -> int:
        """CPU time of every task of the run together, ended ones too: what --cpu-time bounds
        (a fork bomb of spinners is bounded as one spinner is)."""
        return (self.ended_user_ns + self.ended_system_ns
                + sum(t.cpu.cpu_time_ns() + getattr(t, "sys_ns", 0) for t in list(self.tasks.values())))

    # --- one task's way through the loop ---------------------------------------------------
    def _continue(self, task: Task) -> None:
        """A ready task: run its syscall again (woken), finish it (timed out,
        interrupted), or just let it run."""
        stop = task.pending_stop
        if stop is not None:
            task.pending_stop = None
            self._syscall(task, stop)
            return
        result = task.pending_result
        if result is not None:
            task.pending_result = None
            nr, value = result
            task.cpu.set_result(value)
            if task.ptrace is not None and ptrace_guest.syscall_exit(task, nr, value):
                return  # parked at its syscall-exit stop
            self._to_user(task, nr, value)
            return
        self._to_user(task, None, None)

    def _handle(self, task: Task, stop) -> None:
        """A stop the platform reported for task."""
        if task.exit_status is not None:
            return  # it ended while it ran (killed by another task)
        cls = stop.__class__
        if cls is SyscallStop:
            self._syscall(task, stop)
        elif cls is PreemptStop:
            self._to_user(task, None, None)
        elif cls is FaultStop:
            from sentry import signals
            fault = getattr(signals, "fault", None)
            if fault is None:
                self.note(f"{task.comm}[{task.tid}] killed by {SIGNAL_NAMES.get(stop.signo, stop.signo)}"
                         f" at pc {stop.pc:#x}{': ' + stop.reason if stop.reason else ''}")
                self.exit_group(task, 0, stop.signo)
                return
            self.current = task
            try:
                fault(task, stop)
            except TaskExit:
                return
            finally:
                self.current = None
            self._to_user(task, None, None)
        elif cls is ExitStop:
            self.exit_group(task, 0, stop.signo or 9)
        else:
            raise AssertionError(f"unknown stop {stop!r}")

    def _syscall(self, task: Task, stop) -> None:
        self.current = task
        # What the platform does to the address space during this call (ptrace: injected
        # syscalls) goes through this thread, stopped at the call, whichever thread it is.
        task.mm.space.cpu = task.cpu
        try:
            if task.ptrace is None:
                ret = self.dispatch(task, stop.nr, stop.args)
            else:  # its syscall-entry stop first, then the call as the tracer left it
                ret = ptrace_guest.traced_syscall(self.dispatch, task, stop)
        except Wait as w:
            self._park(task, stop, w)
            return
        except TaskExit:
            return
        except Resumed:  # the call runs on the host (a passed-through read): nothing to answer
            ret = None
        finally:
            self.current = None
        if task.restart_state is not None:
            task.restart_state = None  # the call is done: what it kept across waits goes
        if task.held_files is not None:
            task.release_held()
        if task.exit_status is not None or ret is None:
            return  # it ended during its own call (a signal it sent its group), or runs on
        if task.ptrace is not None and ptrace_guest.syscall_exit(task, stop.nr, ret):
            return  # parked at its syscall-exit stop
        # (Task.sigpending, inline: every call ends here)
        if (task.pending_signals | task.sigshared.pending) & ~task.sigmask or task.saved_sigmask is not None:
            task.cpu.set_result(ret)
            self._to_user(task, stop.nr, ret)
        else:
            task.cpu.answer(ret)  # set the result and resume: the hot path's last step

    def _to_user(self, task: Task, nr, ret) -> None:
        """Let the task run on, delivering its pending signals first. A call a signal
        interrupted (a -ERESTART* result) goes there too when the signal is no longer
        pending for it (another thread took it): it is restarted, as Linux does."""
        if task.sigpending() or ret is not None and (ret & MASK64) in RESTART_RESULTS:
            from sentry import signals
            self.current = task
            try:
                signals.deliver(task, nr, ret)
            except Wait as w:
                self._park(task, None, w)
                return
            except TaskExit:
                return
            finally:
                self.current = None
            if task.exit_status is not None:
                return
        task.cpu.resume()

    # --- waiting --------------------------------------------------------------------------------
    def _park(self, task: Task, stop, w: Wait) -> None:
        task.blocked, task.pending_stop = w, stop
        using = task.using
        if using is not None:
            task.using = None
            if using[2] is task.syscall_args:  # a socket call waits: it holds its socket
                task.hold_file(using[0], using[1])
        task.wait_token += 1
        for q in w.queues:
            if task not in q.waiters:  # a queue named twice (two fds of one pipe) holds it once
                q.waiters.append(task)
        for fd, events in w.fds:
            waiters = self.fd_waiters.get(fd)
            if waiters is None:
                waiters = self.fd_waiters[fd] = {}
                waiters[task] = events
                self.selector.register(fd, events, fd)
            else:
                waiters[task] = waiters.get(task, 0) | events
                self.selector.modify(fd, _union(waiters), fd)
        if w.deadline is not None:
            token = task.wait_token
            self.call_at(w.deadline, lambda: self._timed_out(task, token))

    def _unpark(self, task: Task) -> Wait:
        w = task.blocked
        task.blocked = None
        for q in w.queues:
            try:
                q.waiters.remove(task)
            except ValueError:
                pass
        for fd, _ in w.fds:
            waiters = self.fd_waiters.get(fd)
            if waiters is not None and waiters.pop(task, None) is not None:
                if waiters:
                    self.selector.modify(fd, _union(waiters), fd)
                else:
                    del self.fd_waiters[fd]
                    self.selector.unregister(fd)
        return w

    def wake(self, task: Task) -> None:
        """What task waited for has happened: its syscall runs again."""
        if task.blocked is not None:
            w = self._unpark(task)
            if w.wake_result is not None:
                stop = task.pending_stop
                task.pending_stop = None
                task.restart_state = None  # the call is done
                if task.held_files is not None:
                    task.release_held()
                task.pending_result = (stop.nr if stop is not None else None, w.wake_result & MASK64)
            self.runq.append(task)

    def _timed_out(self, task: Task, token: int) -> None:
        if task.blocked is not None and task.wait_token == token:
            stop = task.pending_stop
            w = self._unpark(task)
            task.pending_stop = None
            task.restart_state = None  # the call is done
            if task.held_files is not None:
                task.release_held()
            task.pending_result = (stop.nr if stop is not None else None, w.timeout_result & MASK64)
            self.runq.append(task)

    def interrupt(self, task: Task) -> None:
        """A signal wants the task's attention: end its wait (the syscall returns
        the Wait's interrupt result), or stop it if it is running."""
        w = task.blocked
        if w is not None:
            if not w.interruptible and not (w.killable and task.pending_signals & SIGKILL_BIT):
                return
            stop = task.pending_stop
            self._unpark(task)
            task.pending_stop = None
            task.restart_state = None
            if task.held_files is not None:
                task.release_held()
            if stop is not None:
                value = w.on_interrupt(task) if w.on_interrupt is not None else w.interrupt_result
                task.pending_result = (stop.nr, value & MASK64)
            self.runq.append(task)
        elif task is not self.current:
            task.cpu.request_stop()

    def watch_fd(self, fd: int, events: int, fn) -> None:
        """Call fn(ready events) from the loop while the sentry's own host fd is ready for
        `events` (selectors EVENT_READ/EVENT_WRITE; 0 stops watching). Never a task's fd."""
        if not events:
            if self.fd_watchers.pop(fd, None) is not None:
                self.selector.unregister(fd)
        elif fd in self.fd_watchers:
            self.fd_watchers[fd] = fn
            self.selector.modify(fd, events, fn)
        else:
            self.fd_watchers[fd] = fn
            self.selector.register(fd, events, fn)

    def call_at(self, deadline: float, fn) -> "Timer":
        """Run fn() in the loop at time.monotonic() == deadline (or soon after)."""
        timer = Timer(fn)
        self._timer_seq += 1
        heapq.heappush(self.timers, (deadline, self._timer_seq, timer))
        return timer

    def _fire_timers(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.fn()

    def _poll_events(self, timeout) -> None:
        """Wait for a host fd, a timer or (ptrace) a task stop, at most `timeout` seconds."""
        now = time.monotonic()
        self._last_fd_poll = now
        if self.deadline is not None:  # never sleep past the run's own limit
            left = max(0.0, self.deadline - now)
            timeout = left if timeout is None else min(timeout, left)
        if self.timers:
            wait = max(0.0, self.timers[0][0] - now)
            timeout = wait if timeout is None else min(timeout, wait)
        busy = self.platform.busy()
        if busy == "now":
            timeout = 0  # tasks are ready to run on the emulator
        elif busy:
            # A stop is announced on the platform's event fd; should that wake-up go to
            # another thread of an embedding program, look again soon all the same.
            timeout = 0.05 if timeout is None else min(timeout, 0.05)
        if timeout is None and not self.fd_waiters and not self.fd_watchers and not self.timers \
                and self.console is None:
            # (with a console, the user's Ctrl-C, SIGCONT or SIGTERM may still come)
            raise SentryError("deadlock: every task is waiting and nothing can wake them")
        for key, ready in self.selector.select(timeout):
            fd = key.data
            if fd is None:
                self.platform.drain_events()
                continue
            if fd.__class__ is not int:  # a watcher's callback
                fd(ready)
                continue
            if fd == BELL:
                try:
                    while os.read(self._bell[0], 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            for task in list(self.fd_waiters.get(fd, ())):
                self.wake(task)
        if self.timers:
            self._fire_timers(time.monotonic())

    # --- new processes ---------------------------------------------------------------------------
    def fork(self, task: Task, *, flags: int = 0, exit_signal: int = 17, stack: int = 0, tls=None,
             share_files: bool = False, parent=None) -> Task:
        """A new process copied from task's (stopped at its fork/clone syscall): memory,
        registers (the child's syscall returns 0), files, dispositions, mask."""
        self._may_add_task(task)
        if not share_files:
            task.fds.check_copy(self.sysctl.nr_open)
        if flags & CLONE_VM:  # vfork, posix_spawn: the child runs in the parent's memory
            mm = task.mm
            cpu = self.platform.clone_thread(mm.space, task.cpu, process=True)
            mm.users += 1
        else:
            space, cpu = self.platform.fork_process(task.mm.space, task.cpu, task.mm.areas())
            try:
                mm = task.mm.forked(space)
            except BaseException:
                space.close()
                raise
            writeaccess.exe_forked(self, task.mm, mm)  # the child runs the same executable (ETXTBSY)
        fds = task.fds.share() if share_files else task.fds.copy()
        proc = self.ptable.create(parent or task.proc)
        proc.creator = task if parent is None else (parent.tasks[0] if parent.tasks else None)
        child = Task(self, proc.pid, cpu, mm, fds, task.exe_path, task.argv, task.envp)
        for name in ("cwd", "umask", *CREDENTIALS, "sigmask", "comm", "auxv", "no_new_privs", "dumpable",
                     "seccomp_mode", "seccomp_filter"):
            setattr(child, name, getattr(task, name))
        if flags & 0x200:  # CLONE_FS: one root, working directory and umask for both
            child.fs = task.fs
        _inherit_sched(task, child)
        keys.on_clone(task, child, thread=False)
        child.sigactions = dict(task.sigactions)
        child.rlimits = dict(task.rlimits)
        if flags & (CLONE_VM | CLONE_VFORK) != CLONE_VM:  # a CLONE_VM child starts without it, as Linux
            child.altstack = task.altstack
        proc.exit_signal = exit_signal
        ipc.on_fork(task, child, flags)
        if stack:
            cpu.set_sp(stack)
        if tls is not None:
            cpu.set_tls(tls)
        self.adopt(child, proc)
        if child.rlimits.get(0, (-1, -1))[0] != (1 << 64) - 1:  # RLIMIT_CPU: the child's own CPU time counts
            from sentry.timers import cpu_limit_changed
            cpu_limit_changed(child)
        self.runq.append(child)
        return child

    def _may_add_task(self, task: Task) -> None:
        """EAGAIN when one more task (process or thread) would pass RLIMIT_NPROC or --max-procs.
        Threads count, as for Linux's RLIMIT_NPROC, and so do zombies until reaped."""
        live = len(self.tasks) + sum(1 for p in self.procs.values() if p.zombie)
        if self.max_procs is not None and live >= self.max_procs:  # first: the run reports it
            if self.limit_hit is None:
                self.limit_reached = "max_procs"
            raise Errno(11)  # EAGAIN
        if live >= task.rlimits.get(6, (4096, 4096))[0]:  # RLIMIT_NPROC
            raise Errno(11)

    def clone_thread(self, task: Task, *, share_files: bool = True, share_fs: bool = True,
                     stack: int = 0, tls=None) -> Task:
        """A new thread of task's process (clone with CLONE_THREAD): the same memory, signal
        handlers and shared signal state, limits, and (CLONE_FILES, CLONE_FS) descriptors and
        working directory; its own registers (the clone returns 0 in it), stack, TLS and mask."""
        from sentry import signals
        self._may_add_task(task)
        if not share_files:
            task.fds.check_copy(self.sysctl.nr_open)
        tid = self.ptable.new_pid()
        cpu = self.platform.clone_thread(task.mm.space, task.cpu)
        task.mm.users += 1
        child = Task(self, tid, cpu, task.mm, task.fds.share() if share_files else task.fds.copy(),
                     task.exe_path, task.argv, task.envp)
        if share_fs:
            child.fs = task.fs
        else:
            child.cwd, child.umask = task.cwd, task.umask
        for name in (*CREDENTIALS, "comm", "auxv", "no_new_privs", "dumpable", "seccomp_mode", "seccomp_filter"):
            setattr(child, name, getattr(task, name))
        _inherit_sched(task, child)
        keys.on_clone(task, child, thread=True)
        child.rlimits = task.rlimits  # per process
        signals.on_clone(task, child, thread=True)
        ipc.on_thread(task, child)
        if stack:
            cpu.set_sp(stack)
        if tls is not None:
            cpu.set_tls(tls)
        self.adopt(child, task.proc)
        self.runq.append(child)
        return child

    # --- ending -----------------------------------------------------------------------------
    def exit_thread(self, task: Task, code: int) -> None:
        """exit(2): the task ends; its process ends with it only if it was the last thread."""
        if not any(t is not task and t.exit_status is None for t in task.proc.tasks):
            self.exit_group(task, code)  # (the process's status is the last thread's, as on Linux)
            return
        task.exit_status = (code & 0xFF, 0)
        self._release(task)

    def end_other_threads(self, task: Task) -> None:
        """execve from a threaded process: every other thread ends, and the caller takes
        the leader's tid (the process's pid), as Linux's de_thread does."""
        proc = task.proc
        for t in list(proc.tasks):
            if t is not task and t.exit_status is None:
                t.exit_status = (0, 9)
                self._release(t)
        proc.tasks[:] = [task]
        if task.tid != proc.pid:
            del self.tasks[task.tid]
            task.tid = proc.pid
            self.tasks[task.tid] = task

    def exit_group(self, task: Task, code: int, signo: int = 0, core: bool = False) -> None:
        """The task's whole process ends: with exit code `code`, or killed by `signo`."""
        proc = task.proc
        if proc.pid == 1:
            if self.exit_status is None:
                self.exit_status = (code & 0xFF, signo)
            # The sandbox's init ends: like a pid namespace's, everything else ends with it,
            # and first (on ptrace the host's namespace init cannot finish dying while
            # processes of its namespace are left for its tracer to reap).
            self._end_all_but(proc)
        proc.exiting = True
        for t in list(proc.tasks):
            t.exit_status = (code & 0xFF, signo)
            self._release(t)
        self.ptable.ended(proc, code & 0xFF, signo, core)

    def _end_all_but(self, keep) -> None:
        kill_all = getattr(self.platform, "kill_all", None)  # all at once, then each released
        if kill_all is not None:
            kill_all([t.cpu for t in self.tasks.values() if t.proc is not keep and t.exit_status is None])
        for other in list(self.tasks.values()):
            if other.proc is not keep and other.exit_status is None:
                other.exit_status = (0, 9)
                other.proc.exiting = True
                self._release(other)
                if not other.proc.zombie:
                    self.ptable.ended(other.proc, 0, 9)

    def _release(self, task: Task) -> None:
        """Let go of everything the task holds: its thread (host thread or CPU context), and
        when it is its process's last, the memory and the rest."""
        if self.tasks.pop(task.tid, None) is None:
            return
        if task.ptrace is not None or task.traces:
            ptrace_guest.on_release(task)
        if task.blocked is not None:
            self._unpark(task)
        if task.held_files is not None:
            task.release_held()
        proc, mm, tasks = task.proc, task.mm, self.tasks
        from sentry import threads
        threads.release_futexes(task, mm.users > 1)  # the robust list, clear_child_tid
        cpu_ns = task.cpu.cpu_time_ns()  # while the host thread can still tell
        proc.cpu_ns += cpu_ns
        from sentry.sched import host_stime_ns
        stime = host_stime_ns(task.cpu)
        system_ns = getattr(task, "sys_ns", 0) + stime  # (sched.task_system_ns)
        proc.sys_ns = getattr(proc, "sys_ns", 0) + system_ns
        self.ended_user_ns += max(0, cpu_ns - stime)  # (schedstat's time holds the host's stime)
        self.ended_system_ns += system_ns
        task.fds.release()
        mm.users -= 1
        ipc.on_exit(task, mm if not mm.users else None)  # semaphore undo, shared memory detach
        if not mm.users:
            writeaccess.exe_released(self, mm)  # its executable may be written again
        if mm.users:  # the memory lives on, in sibling threads or a CLONE_VM relative
            siblings = sum(1 for t in proc.tasks if tasks.get(t.tid) is t)
            if not proc.exiting:
                if siblings:
                    self.ptable.thread_ended(task)
                task.cpu.end_thread()
                if siblings and task.tid != proc.pid:
                    proc.tasks.remove(task)  # (the first thread stays a zombie until the group ends)
            elif mm.users != siblings:
                task.cpu.end_thread()  # others use the memory: end this thread on its own
            # (else the process is ending and its last thread's release closes it all)
            return
        self.peak_memory = max(self.peak_memory, task.mm.peak)
        rss.note(task)  # ru_maxrss, while the memory is still there to measure
        if task.mm.limit_refused and self.limit_reached is None:
            self.limit_reached = "memory"  # reported; the run goes on (limit_hit would end it all)
        task.mm.space.close()
        if task.exit_status is None:
            task.exit_status = (0, 9)
            if self.exit_status is None and task.proc.pid == 1:
                self.exit_status = task.exit_status


def _inherit_sched(parent: Task, child: Task) -> None:
    """A new task's CPU affinity, scheduling policy, nice value and I/O priority
    (syscalls/sched.py), memory policy (syscalls/mempolicy.py), personality
    (syscalls/info.py), timer slack (prctl) and OOM score adjustment (/proc/PID/oom_score_adj)
    are its creator's; the creator's current slack is also its default. SCHED_RESET_ON_FORK is not inherited and
    gives the child SCHED_OTHER for a real-time or deadline policy, 0 for a negative nice value."""
    for name in ("sched_affinity", "sched_policy", "sched_prio", "sched_deadline", "sched_nice", "ioprio",
                 "mempolicy", "personality", "oom_score_adj"):
        if hasattr(parent, name):
            setattr(child, name, getattr(parent, name))
    if getattr(parent, "sched_reset_on_fork", False):
        if getattr(parent, "sched_policy", 0) in (1, 2, 6):  # SCHED_FIFO, SCHED_RR, SCHED_DEADLINE
            child.sched_policy, child.sched_prio, child.sched_deadline = 0, 0, None
        if getattr(parent, "sched_nice", 0) < 0:
            child.sched_nice = 0
    if hasattr(parent, "timer_slack_ns"):
        child.timer_slack_ns = child.timer_slack_default = parent.timer_slack_ns
    for name in ("tsc_sigsegv", "cpuid_faulting"):  # the thread's CPU controls (syscalls/cpuctl.py)
        if hasattr(parent, name):
            setattr(child, name, getattr(parent, name))


class Timer:
    __slots__ = ("fn", "cancelled")

    def __init__(self, fn):
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _union(waiters: dict) -> int:
    events = 0
    for e in waiters.values():
        events |= e
    return events
