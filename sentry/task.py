"""Task: one thread of a sandboxed program, as the syscall handlers see it."""
from sentry import caps, keys
from sentry.signals import init_task as init_signals

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_AS = 9

# What a fresh sandboxed process starts with (soft, hard), as Linux's defaults,
# keyed by Linux's RLIMIT_* numbers: CPU, FSIZE, DATA, STACK, CORE, RSS, NPROC,
# NOFILE, MEMLOCK, AS, LOCKS, SIGPENDING, MSGQUEUE, NICE, RTPRIO, RTTIME.
DEFAULT_RLIMITS = {
    0: (RLIM_INFINITY, RLIM_INFINITY),
    1: (RLIM_INFINITY, RLIM_INFINITY),
    2: (RLIM_INFINITY, RLIM_INFINITY),
    3: (8 << 20, RLIM_INFINITY),
    4: (0, RLIM_INFINITY),
    5: (RLIM_INFINITY, RLIM_INFINITY),
    6: (4096, 4096),
    7: (1024, 4096),
    8: (8 << 20, 8 << 20),
    9: (RLIM_INFINITY, RLIM_INFINITY),
    10: (RLIM_INFINITY, RLIM_INFINITY),
    11: (4096, 4096),
    12: (819200, 819200),
    13: (0, 0),
    14: (0, 0),
    15: (RLIM_INFINITY, RLIM_INFINITY),
}


class FsContext:
    """What CLONE_FS shares between tasks: the working directory, the umask and the root
    (chroot)."""
    __slots__ = ("cwd", "umask", "root")

    def __init__(self, cwd, umask: int = 0o022, root=None):
        self.cwd = cwd  # a Loc: the frames from the root
        self.umask = umask
        self.root = root  # a Loc after chroot(2); None: the sandbox's root


class Task:
    def __init__(self, kernel, tid: int, cpu, mm, fds, exe_path: str, argv, envp):
        self.kernel = kernel
        self.vfs = kernel.vfs
        self.tid = tid
        self.proc = None          # its Process (sentry/process.py), set by Kernel.adopt
        self.cpu = cpu
        self.mm = mm
        self.fds = fds
        self.exe_path = exe_path
        self.argv, self.envp = argv, envp
        self.fs = FsContext(kernel.vfs.root_loc)
        # the sandbox's own ids (syscalls/creds.py); files are checked against the fs ids and
        # the supplementary groups (sentry/vfs/perm.py)
        self.uid = self.euid = self.suid = self.fsuid = 0
        self.gid = self.egid = self.sgid = self.fsgid = 0
        self.groups = None  # supplementary groups once set (setgroups); None: none but gid
        self.caps = caps.ROOT  # capability sets (sentry/caps.py)
        self.cap_bset, self.cap_ambient, self.securebits = caps.CAP_FULL, 0, 0  # prctl's (syscalls/creds.py)
        # its namespaces and user namespace (sentry/namespaces.py)
        from sentry.namespaces import initial
        self.nsproxy, self.user_ns = initial(kernel)
        # signal state (sentry/signals.py): sigactions, sigmask, pending_signals, sigqueue,
        # sigshared (the process's), altstack, saved_sigmask, restart_block...
        init_signals(self)
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.rlimits = dict(DEFAULT_RLIMITS)
        self.comm = exe_path.rsplit("/", 1)[-1][:15]
        self.pdeathsig = 0
        self.dumpable = 1
        self.no_new_privs = False
        self.seccomp_mode, self.seccomp_filter = 0, None  # strict mode, filters (sentry/seccomp.py)
        self.keys = keys.NO_KEYRINGS  # its keyrings (sentry/keys.py), inherited as Linux's cred
        self.exit_status = None   # (code, signo) once ended
        self.blocked = None       # the Wait it is parked on
        self.pending_stop = None  # the syscall stop to run again when woken
        self.pending_result = None  # (nr, value): a syscall to finish with value when it runs
        self.restart_state = None  # what a call that waits keeps until it runs again (progress)
        self.wait_token = 0       # tells a stale timer from the wait it was set for
        self.held_files = None    # [(fd, file)] a waiting call holds open, as Linux's fdget
        self.using = None         # (fd, socket, the call's args) a socket call looked up
        self.syscall_args = ()
        self.sys_ns = 0           # the sentry's time answering its calls (syscalls/dispatch.py)
        self.vfork_parent = None  # the Process held until this vfork child execs or exits
        self.ptrace = None        # its Tracee while a task of the sandbox traces it (sentry/ptrace_guest.py)
        self.traces = False       # it has traced a task (its end detaches them)

    @property
    def cwd(self):
        return self.fs.cwd

    @cwd.setter
    def cwd(self, loc) -> None:
        self.fs.cwd = loc

    @property
    def root(self):
        return self.fs.root

    @root.setter
    def root(self, loc) -> None:
        self.fs.root = loc

    @property
    def ipc_ns(self):
        """Its System V IPC namespace (sentry/ipc)."""
        return self.nsproxy.ipc

    @ipc_ns.setter
    def ipc_ns(self, ns) -> None:
        self.nsproxy = self.nsproxy.copy(ipc=ns)

    @property
    def umask(self) -> int:
        return self.fs.umask

    @umask.setter
    def umask(self, mask: int) -> None:
        self.fs.umask = mask

    @property
    def tgid(self) -> int:
        return self.proc.pid

    @property
    def ppid(self) -> int:
        return self.proc.ppid

    @property
    def pgid(self) -> int:
        return self.proc.pgid

    @property
    def sid(self) -> int:
        return self.proc.sid

    def exec_credentials(self) -> None:
        """What execve does to the ids (set-user-ID programs are not honoured): the saved
        and fs ids become the effective ones; root's capabilities are renewed, anyone
        else's go."""
        self.suid = self.fsuid = self.euid
        self.sgid = self.fsgid = self.egid
        caps.after_exec(self)
        keys.on_exec(self)  # the thread and process keyrings go

    def hold_file(self, fd: int, file) -> None:
        """A call on fd waits: the file stays open until the call ends, even if fd is closed
        (or reused) meanwhile, and a read, write, recv or accept goes on with it."""
        held = self.held_files
        if held is None:
            held = self.held_files = []
        elif any(f is file for _, f in held):
            return
        file.fd_refs = getattr(file, "fd_refs", 0) + 1
        held.append((fd, file))

    def held(self, fd: int):
        """The file a waiting call holds for fd, or None."""
        for n, f in self.held_files or ():
            if n == fd:
                return f
        return None

    def release_held(self) -> None:
        from sentry.fdtable import drop_ref
        held, self.held_files = self.held_files, None
        for _, file in held:
            drop_ref(file)

    def as_limit(self):
        """RLIMIT_AS's soft limit in bytes, or None when there is none (the MemoryManager's as_limit)."""
        soft = self.rlimits[RLIMIT_AS][0]
        return None if soft == RLIM_INFINITY else soft

    def sigpending(self) -> bool:
        """Is a signal waiting that this task should take before it runs on? (hot path:
        the task's own pending set, which also carries the job-control bit 64, and the
        process's shared one, less the blocked mask)"""
        return bool((self.pending_signals | self.sigshared.pending) & ~self.sigmask) \
            or self.saved_sigmask is not None  # a call's own mask is to be put back (signals.set_wait_mask)
