"""Kernel: one per sandbox. It owns the tasks, the filesystem and the event
loop that runs tasks on a platform and answers their syscalls."""
import heapq
import os
import selectors
import time

from sentry.errors import Errno, SentryError
from sentry.fdtable import FDTable
from sentry.mm import MemoryManager
from sentry.platform import ExitStop, FaultStop, SyscallStop
from sentry.sched import TaskExit, Wait
from sentry.task import Task
from sentry.vfs import VFS

SIGNAL_NAMES = {4: "SIGILL", 5: "SIGTRAP", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}


class Kernel:
    def __init__(self, platform, *, log, seed=None, strace=None, root=None, timeout=None, memory=None,
                 cpu_time=None):
        self.platform = platform
        self.arch = platform.arch
        self.log = log
        self._rng = None
        if seed is not None:
            import random  # only under --seed: keeps the common start lighter
            self._rng = random.Random(seed)
        self.vfs = VFS(self.random_bytes, kernel=self, root=root)
        self.tasks: dict[int, Task] = {}
        self.next_tid = 1
        self.hostname = b"sentry"
        self.boot_time = time.monotonic()
        self.runq: list[Task] = []
        self.timers: list = []  # heap of (deadline, seq, task)
        self.selector = selectors.DefaultSelector()
        self.exit_status = None  # (code, signo) of the first program
        self._logged = set()
        self.timeout = timeout    # wall-clock seconds for the whole run, or None
        self.deadline = None
        self.limit_hit = None     # "timeout", "cpu_time" or "memory" once a limit was reached
        self.cpu_time = cpu_time  # CPU seconds a process may use, or None
        self.memory = memory      # bytes of address space per process (--memory), or None
        self.peak_memory = 0      # the largest address space a process of this run mapped
        from syscalls.dispatch import Dispatcher
        self.dispatch = Dispatcher(self.arch, log, strace)

    def log_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            self.log(message)

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
        info, data = self.load_elf(path, path)
        if info.machine != self.arch:
            raise SentryError(f"{path}: exec format error: an {info.machine} program, "
                              f"this sandbox runs {self.arch}", 126)
        interp = None
        if info.interp:  # PT_INTERP comes from the sandbox's own view, never the host's
            interp = (*self.load_elf(info.interp, f"{path}: its interpreter {info.interp}"), info.interp)
        try:
            plan = loader.plan_image(info, data, path=path, argv=argv, envp=envp, execfn=path.encode(),
                                     random_bytes=self.random_bytes(16), hwcap=self.platform_hwcap(),
                                     hwcap2=0, interp=interp)
        except loader.LoadError as e:
            raise SentryError(f"{path}: {e}", 126) from None
        space, cpu = self.platform.new_process()
        try:
            mm = MemoryManager(space, mmap_base=plan.mmap_base, brk=plan.brk, limit=self.memory)
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
        task = Task(self, self.next_tid, cpu, mm, fds, path, argv, envp)
        task.auxv = plan.auxv  # what /proc/PID/auxv shows
        task.cwd = cwd_loc
        self.next_tid += 1
        self.tasks[task.tid] = task
        self.runq.append(task)
        return task

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

    def load_elf(self, path: str, label: str):
        """(ElfInfo, bytes) of the file at path in the sandbox's view; a one-line
        SentryError starting with label (127 if missing, 126 if not executable)."""
        import loader
        import stat as S
        try:
            inode = self.vfs.lookup(None, -100, path.encode())
        except Errno as e:
            raise SentryError(f"{label}: {os.strerror(e.errno)}", 127) from None
        if not S.S_ISREG(inode.mode):
            raise SentryError(f"{label}: {os.strerror(21 if inode.is_dir() else 13)}", 126)
        data = self.read_whole(inode, path)
        try:
            return loader.parse_elf(data), data
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
            stop = threading.Event()
            watchdog = threading.Thread(target=self._watch, args=(stop,), daemon=True, name="sentry-watchdog")
            watchdog.start()
        try:
            while self.tasks:
                if self.limit_hit:
                    for task in list(self.tasks.values()):
                        self.exit_group(task, 0, 9)
                    break
                if self.runq:
                    try:
                        self._run_task(self.runq.pop(0))
                    except SentryError:
                        if not self.limit_hit:
                            raise  # else: a limit killed the host process mid-injection
                    if self.runq:
                        self._poll_events(0)
                else:
                    self._poll_events(None)
        finally:
            if watchdog is not None:
                stop.set()
            for task in list(self.tasks.values()):
                self._reap(task)
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
            elif limit_ns is not None and any(t.cpu.cpu_time_ns() >= limit_ns for t in list(self.tasks.values())):
                hit = "cpu_time"
            if hit:
                self.limit_hit = hit
                for task in list(self.tasks.values()):
                    task.cpu.interrupt()
                return

    def _run_task(self, task: Task) -> None:
        """Run one task until it blocks or ends, answering its syscalls."""
        cpu, dispatch = task.cpu, self.dispatch
        stop = task.pending_stop
        task.pending_stop = None
        while True:
            if stop is None:
                stop = cpu.run()
            if stop.__class__ is SyscallStop:
                try:
                    ret = dispatch(task, stop.nr, stop.args)
                except Wait as w:
                    self._park(task, stop, w)
                    return
                except TaskExit:
                    return
                cpu.set_result(ret)
                stop = None
                continue
            if stop.__class__ is FaultStop:
                self.log(f"{task.comm}[{task.tid}] killed by {SIGNAL_NAMES.get(stop.signo, stop.signo)}"
                         f" at pc {stop.pc:#x}{': ' + stop.reason if stop.reason else ''}")
                self.exit_group(task, 0, stop.signo)
                return
            if stop.__class__ is ExitStop:
                self.exit_group(task, 0, stop.signo or 9)
                return
            raise AssertionError(f"unknown stop {stop!r}")

    def _park(self, task: Task, stop, w: Wait) -> None:
        task.blocked, task.pending_stop = w, stop
        if w.fd is not None:
            self.selector.register(w.fd, w.events, task)
        if w.deadline is not None:
            heapq.heappush(self.timers, (w.deadline, task.tid, task))

    def _wake(self, task: Task, timed_out: bool) -> None:
        w = task.blocked
        task.blocked = None
        if w.fd is not None:
            self.selector.unregister(w.fd)
        if timed_out:
            task.cpu.set_result(w.timeout_result)
            task.pending_stop = None
        self.runq.append(task)

    def _poll_events(self, timeout) -> None:
        now = time.monotonic()
        if self.deadline is not None:  # never sleep past the run's own limit
            left = max(0.0, self.deadline - now)
            timeout = left if timeout is None else min(timeout, left)
        if self.timers:
            wait = max(0.0, self.timers[0][0] - now)
            timeout = wait if timeout is None else min(timeout, wait)
        if self.selector.get_map():
            for key, _ in self.selector.select(timeout):
                self._wake(key.data, False)
        elif timeout:
            time.sleep(timeout)
        elif timeout is None and not self.timers:
            raise SentryError("deadlock: every task is waiting and nothing can wake them")
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, task = heapq.heappop(self.timers)
            if task.blocked is not None and task.blocked.deadline is not None:
                self._wake(task, True)

    # --- ending -----------------------------------------------------------------------------
    def exit_group(self, task: Task, code: int, signo: int = 0) -> None:
        task.exit_status = (code & 0xFF, signo)
        if self.exit_status is None:
            self.exit_status = task.exit_status
        self._reap(task)

    def _reap(self, task: Task) -> None:
        if self.tasks.pop(task.tid, None) is None:
            return
        self.peak_memory = max(self.peak_memory, task.mm.peak)
        if task.mm.limit_refused and self.limit_hit is None:
            self.limit_hit = "memory"
        task.fds.close_all()
        task.mm.space.close()
        if task.exit_status is None:
            task.exit_status = (0, 9)
            if self.exit_status is None:
                self.exit_status = task.exit_status
