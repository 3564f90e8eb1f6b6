"""The sandbox's process tree: processes with virtual pids, parents and
children, process groups and sessions, zombies, and what wait4/waitid find.

Pids are the sandbox's own: the first program is pid 1 and nothing of the
host's numbering is visible. A process that ends stays a zombie until its
parent reaps it; its children go to the nearest subreaper or to pid 1."""
import time

from sentry.sched import WaitQueue

SIGCHLD = 17
OUTSIDE_SESSION = 0  # the first program's session id: its leader is outside the sandbox
# wait status encodings, as wait(2) reports them
WCOREFLAG = 0x80
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6


class Process:
    """One thread group. Its threads are Tasks; the first is the leader."""

    def __init__(self, kernel, pid: int, parent, pgid: int, sid: int):
        self.kernel = kernel
        self.pid = pid
        self.parent = parent          # a Process, or None for the sandbox's first one
        self.creator = None           # the parent's thread that made it (__WNOTHREAD, pdeathsig)
        self.children: list[Process] = []
        self.tasks = []
        self.pgid, self.sid = pgid, sid
        self.tty = None               # its controlling terminal (sentry/vfs/tty.py), or None
        self.exit_signal = SIGCHLD    # what the parent is sent when this one ends
        self.zombie = False
        self.exiting = False          # exit_group under way: its threads end together
        self.status = None            # the wait status once ended
        self.exited = None            # (code, signo, core) once ended
        self.stop_report = None       # a stop signal not yet reported to wait (WUNTRACED)
        self.cont_report = False      # a continue not yet reported (WCONTINUED)
        self.subreaper = False
        self.child_events = WaitQueue()  # parent's wait4/waitid sleepers
        self.exit_event = WaitQueue()    # pidfd pollers, vfork parents
        self.execed = False
        self.vfork_done = WaitQueue()    # a vfork parent waits here for exec or exit
        self.cpu_ns = 0                  # CPU time of its threads that have ended
        self.children_cpu_ns = 0         # CPU time of the children it reaped, and theirs
        self.maxrss_kb = 0               # its memory's peak before an exec or its end (sentry/rss.py)
        self.start_time = time.monotonic()  # (/proc/PID/stat's starttime, acct's btime)
        self.children_maxrss_kb = 0      # the largest peak of the children it reaped, and theirs

    @property
    def leader(self):
        return self.tasks[0] if self.tasks else None

    @property
    def ppid(self) -> int:
        return self.parent.pid if self.parent is not None else 0

    def __repr__(self):
        return f"Process({self.pid})"

    # --- job control, reported to the parent's wait -------------------------------------------
    def report_stop(self, sig: int) -> None:
        self.stop_report, self.cont_report = sig, False
        self._tell_parent(CLD_STOPPED, sig)
        console = getattr(self.kernel, "console", None) if self.parent is None else None
        if console is not None:
            console.init_stopped()  # the whole sandbox stopped: sentry stops too

    def report_continue(self) -> None:
        self.stop_report, self.cont_report = None, True
        self._tell_parent(CLD_CONTINUED, 18)

    def _tell_parent(self, code: int, status: int) -> None:
        parent = self.parent
        if parent is None or parent.zombie:
            return
        parent.child_events.notify()
        from sentry import signals
        leader = parent.leader
        # SIGCHLD for stops and continues unless the parent asked otherwise (SA_NOCLDSTOP)
        if leader is not None and not signals.nocldstop(leader):
            signals.send_process(parent, SIGCHLD, signals.child_info(self, code, status))


class ProcessTable:
    """Every process of one sandbox by pid, and the pid allocator."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.procs: dict[int, Process] = {}
        self.last_pid = 0
        self.accounting = 0  # pid namespaces with an acct(2) file: each process's end is recorded

    def new_pid(self) -> int:
        """The next free pid after the last, wrapping at kernel/pid_max (sentry/sysctl.py);
        a number still naming a process group or session is not free."""
        from sentry.sysctl import next_pid

        def taken(pid):
            return pid in self.procs or pid in self.kernel.tasks \
                or any(p.pgid == pid or p.sid == pid for p in self.procs.values())
        self.last_pid = next_pid(self.last_pid, self.kernel.sysctl.pid_max, taken)
        return self.last_pid

    def create(self, parent) -> Process:
        pid = self.new_pid()
        if parent is None:
            # The first program is a job of whoever started sentry: the leader of a group of its
            # own, in a session led from outside the sandbox (0: no pid of the sandbox's), as a
            # program a shell runs is (it may setpgid itself; setsid, as a group leader, not).
            proc = Process(self.kernel, pid, None, pid, OUTSIDE_SESSION)
        else:
            proc = Process(self.kernel, pid, parent, parent.pgid, parent.sid)
            proc.tty = parent.tty
            parent.children.append(proc)
        self.procs[pid] = proc
        return proc

    def get(self, pid: int):
        return self.procs.get(pid)

    def in_group(self, pgid: int) -> list:
        return [p for p in self.procs.values() if p.pgid == pgid and not p.zombie]

    # --- ending -----------------------------------------------------------------------------
    def ended(self, proc: Process, code: int, signo: int, core: bool = False) -> None:
        """proc's last thread is gone: it becomes a zombie its parent can reap, its
        children are adopted, and its parent hears of it."""
        proc.zombie = True
        proc.exited = (code, signo, core)
        proc.status = (signo | (WCOREFLAG if core else 0)) if signo else (code & 0xFF) << 8
        if self.accounting:
            from sentry.acct import process_ended
            process_ended(proc)  # before the parent hears of it, as Linux's do_exit
        proc.exit_event.notify()
        proc.vfork_done.notify()
        if getattr(proc, "pid_ns", None) is not None and proc.pid_ns.level:
            from sentry.namespaces import process_ended
            process_ended(proc)  # a pid namespace's 1: the rest of it is killed
        if proc.tty is not None and proc.pid == proc.sid:
            proc.tty.leader_exited(proc)
        self._adopt_children(proc)
        parent = proc.parent
        if parent is None:
            self.reap(proc)
            return
        from sentry import signals
        leader = parent.leader
        if proc.exit_signal == SIGCHLD and leader is not None and signals.reaps_automatically(leader):
            self.reap(proc)  # SIGCHLD ignored or SA_NOCLDWAIT: no zombie, as Linux
            parent.child_events.notify()
            return
        parent.child_events.notify()
        if proc.exit_signal and leader is not None:
            cld = CLD_DUMPED if core else CLD_KILLED if signo else CLD_EXITED
            signals.send_process(parent, proc.exit_signal, signals.child_info(proc, cld, signo or code))

    def _adopt_children(self, proc: Process) -> None:
        if not proc.children:
            return
        reaper = proc.parent
        while reaper is not None and not (reaper.subreaper and not reaper.zombie):
            reaper = reaper.parent
        if reaper is None:
            from sentry.namespaces import child_reaper  # a pid namespace's 1 (or the sandbox's)
            reaper = child_reaper(proc) or self.procs.get(1)
            if reaper is proc or reaper is None or reaper.zombie:
                reaper = None
        from sentry import signals
        for child in proc.children:
            child.parent = reaper
            child.exit_signal = SIGCHLD  # reparent_leader: "We don't want people slaying init."
            for t in child.tasks:
                if t.pdeathsig:
                    signals.send(t, t.pdeathsig)
            if reaper is None:
                if child.zombie:
                    self.procs.pop(child.pid, None)
                continue
            reaper.children.append(child)
            child.creator = next((t for t in reaper.tasks if t.exit_status is None), None)
            if child.zombie:
                reaper.child_events.notify()
        proc.children = []

    def thread_ended(self, task) -> None:
        """A thread ended while its process lives on: the children it made now belong to
        another of its threads, and each that asked for PR_SET_PDEATHSIG gets it, as on
        Linux, where a child's parent is a thread."""
        from sentry import signals
        heir = next((t for t in task.proc.tasks if t is not task and t.exit_status is None), None)
        for child in task.proc.children:
            if child.creator is task:
                child.creator = heir
                for t in child.tasks:
                    if t.pdeathsig and t.exit_status is None:
                        signals.send(t, t.pdeathsig)

    def reap(self, proc: Process) -> None:
        """Release a zombie's pid (wait4 found it, or nobody will)."""
        self.procs.pop(proc.pid, None)
        if proc.parent is not None and proc in proc.parent.children:
            proc.parent.children.remove(proc)
