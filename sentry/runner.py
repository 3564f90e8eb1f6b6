"""Running one program in a fresh sandbox: what `sentry run` and the
embedding API (sentry/api.py) share. Kept free of heavy imports: it is on
the start path of every `sentry run`."""
import errno as E
import os
import stat as S
import time
from typing import NamedTuple

from sentry.errors import SentryError


class Outcome(NamedTuple):
    exit_code: int          # the program's status (0-255)
    signo: int              # the signal that ended it, or 0
    limit_hit: str | None   # "timeout", "cpu_time", "memory", "max_procs" or "tmpfs" when a limit was reached
    peak_memory: int        # the largest address space a process mapped plus the memory files' peak, in bytes
    ended_by: str | None = None  # why sentry killed everything from outside (the console's second Ctrl-C, ...)
    user_ns: int = 0        # CPU time of every task that ran, in the program's own code
    system_ns: int = 0      # ... and on its behalf (the sentry answering its calls, the host kernel's)

# Tasks (processes and threads) a sandbox may hold at once when --max-procs is not given:
# a fork bomb ends here with EAGAIN, the host's process count (ptrace: a host process or
# thread per task) and the sentry's memory (unicorn: an emulator per process, ~1 MB) bounded,
# with room for programs that run a thousand workers (LTP's futex_cmp_requeue01 does).
DEFAULT_MAX_PROCS = {"ptrace": 4096, "unicorn": 1024}


def default_max_procs(platform: str | None) -> int:
    from sentry import platform as platforms
    return DEFAULT_MAX_PROCS.get(platform or platforms.default_platform(), 1024)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def read_program(path: str) -> bytes:
    """A host file's bytes, for a program copied into the sandbox (lend_program)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (before any --timeout runs)
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            st = os.fstat(f.fileno())
            if not S.S_ISREG(st.st_mode):
                raise SentryError(f"{path}: not a regular file", 126)
            return f.read()
    except OSError as e:
        raise SentryError(f"{path}: {e.strerror}", 126) from None


def environment(items) -> dict:
    """The program's environment as docker run gives one: PATH, HOSTNAME (None: the
    kernel's hostname, filled in once it exists), HOME, then NAME=VALUE items; an item
    naming a variable already there replaces its value in place."""
    from sentry.view import HOME
    env = {b"PATH": DEFAULT_PATH.encode(), b"HOSTNAME": None, b"HOME": HOME.encode()}
    for item in items:
        name, _, value = item.partition(b"=")
        env[name] = value
    return env


def find_program(view, program: str, search_path: bytes, workdir: str, host_cwd=None) -> tuple[str, bytes]:
    """PROGRAM as the sandbox sees it, after its view, mounts and working directory are
    set up: a bare name through the sandbox's PATH, a path relative to the working
    directory or absolute. A path the sandbox does not see but the host has (absolute,
    or relative to host_cwd when that is the working directory) gets its directory lent
    first. (the path to execute, its first bytes: enough for its ELF header), or a one-line
    SentryError: 127 not found, 126 cannot execute."""
    from sentry.errors import Errno
    if not program:
        raise SentryError("'': command not found", 127)
    if "/" not in program:
        refused = None
        for d in os.fsdecode(search_path).split(":"):
            candidate = f"{d}/{program}" if d else program  # an empty entry: the working directory
            try:
                inode = view.lookup(candidate, workdir)
            except Errno:
                continue
            if not S.S_ISREG(inode.mode):
                continue  # a directory of that name: on, as a shell goes
            if inode.mode & 0o111:
                return candidate, _head(inode, candidate)
            refused = refused or candidate
        if refused:
            raise SentryError(f"{refused}: Permission denied", 126)
        raise SentryError(f"{program}: command not found in the sandbox's PATH", 127)
    try:
        inode = view.lookup(program, workdir)
    except Errno as e:
        host = program if program.startswith("/") else host_cwd and os.path.join(host_cwd, program)
        if e.errno != E.ENOENT or not host or not os.path.exists(host):
            raise _lookup_error(program, e) from None
        from sentry.view import lend_program
        lend_program(view, os.path.normpath(host), read_program)
        try:
            inode = view.lookup(program, workdir)
        except Errno as e:
            raise _lookup_error(program, e) from None
    if inode.is_dir():
        raise SentryError(f"{program}: Is a directory", 126)
    if not S.S_ISREG(inode.mode):
        raise SentryError(f"{program}: not a regular file", 126)
    if not inode.mode & 0o111:
        raise SentryError(f"{program}: Permission denied", 126)
    return program, _head(inode, program)


def _head(inode, path: str) -> bytes:
    """A program's first bytes (its whole is read once, when the kernel loads it)."""
    f = inode.open(0, path)
    try:
        return bytes(f.pread(64, 0))
    finally:
        f.close()


def _lookup_error(program: str, e) -> SentryError:
    return SentryError(f"{program}: {os.strerror(e.errno)}", 127 if e.errno in (E.ENOENT, E.ENOTDIR) else 126)


def execute(program: str, args, *, env=(), platform=None, stdio, log, seed=None, strace=None,
            workdir=None, host_cwd=None, mounts=(), rootfs=None, arch=None, timeout=None, memory=None,
            cpu_time=None, max_procs=None, tmpfs_size=None, max_open_files=None, console=None, note=None,
            net="none", publish=(), cancel=None, started=None) -> Outcome:
    """Run one program in a fresh sandbox. host_cwd: a host directory to lend (view.lend_cwd)
    as the working directory, unless workdir names one; env: NAME=VALUE items over the
    defaults (environment()); arch: the architecture PROGRAM must be; console: `sentry run`'s
    sentry/console.py Console (the host terminal and signals); note: where the sentry's
    diagnostics go (unsupported syscalls, crash reports), log by default; tmpfs_size: what
    the sandbox's memory files may hold together (sentry/vfs/budget.py), --memory at most;
    cancel: a sentry/lifecycle.py Cancel that ends the run from another thread; started:
    fn(kernel, task) called just before the loop runs the program (a warm start, sentry/warmserver.py)."""
    from sentry import platform as platforms
    from sentry.kernel import Kernel
    from sentry.view import add_mounts, default_view, lend_cwd, rootfs_view
    if max_procs is not None and max_procs < 1:
        raise SentryError(f"--max-procs {max_procs}: at least 1 (the program itself)")
    if tmpfs_size is not None and tmpfs_size < 0:
        raise SentryError(f"--tmpfs-size {tmpfs_size}: a size in bytes")
    if max_open_files is not None and max_open_files < 1:
        raise SentryError(f"--max-open-files {max_open_files}: at least 1")
    view = rootfs_view(rootfs) if rootfs else default_view()
    if net == "host":
        from sentry.view import host_resolver
        host_resolver(view)
    if workdir:
        workdir, host_cwd = os.path.join("/", workdir), None
    elif host_cwd and not rootfs:
        workdir = lend_cwd(view, host_cwd)
    else:
        workdir, host_cwd = "/", None
    add_mounts(view, mounts)
    from sentry.errors import Errno
    try:
        view.probe.lookup_loc(None, -100, os.fsencode(workdir))
    except Errno as e:
        raise SentryError(f"--workdir {workdir}: {os.strerror(e.errno)}") from None
    envp = environment(env)
    path, data = find_program(view, program, envp[b"PATH"], workdir, host_cwd if workdir == host_cwd else None)
    actual = _elf_machine(data)
    if arch and actual != arch:
        raise SentryError(f"{program}: an {actual} program, not {arch}", 126)
    plat = platforms.create(platform or platforms.default_platform(), actual)
    kernel = Kernel(plat, log=log, note=note, seed=seed, strace=strace, root=view.root, timeout=timeout,
                    memory=memory, cpu_time=cpu_time, max_procs=default_max_procs(plat.name) if max_procs is None else max_procs)
    if console is not None:
        console.attach(kernel)
    if cancel is not None:
        cancel.attach(kernel)
    try:
        view.lay(kernel.vfs)
        if envp[b"HOSTNAME"] is None:
            envp[b"HOSTNAME"] = kernel.hostname
        argv = [os.fsencode(program)] + list(args)
        task = kernel.spawn(path, argv, [k + b"=" + v for k, v in envp.items()], [f(kernel) for f in stdio],
                            cwd=workdir)
        show_limits(kernel, task, memory=memory, cpu_time=cpu_time, max_procs=max_procs,
                    max_open_files=max_open_files)
        if net == "host" or publish:
            from sentry.net.hostnet import attach
            attach(kernel, net == "host", publish)  # closed when the kernel's run ends
        if console is not None:
            console.started(task)
    except BaseException:
        abandon(kernel, cancel)
        raise
    from sentry.vfs import budget
    files = budget.MemoryBudget(min(budget.DEFAULT_TMPFS_SIZE if tmpfs_size is None else tmpfs_size,
                                    memory if memory is not None else 1 << 62))
    budget.enter(files)  # from here on, what the program's files hold is charged to this run
    thread_ns = time.thread_time_ns()
    try:
        if started is not None:
            started(kernel, task)
        code, signo = kernel.run()
    finally:
        budget.enter(None)
        if cancel is not None:
            cancel.detach()
    user_ns, system_ns = cpu_used(kernel, time.thread_time_ns() - thread_ns)
    return Outcome(code, signo, kernel.limit_hit or kernel.limit_reached or ("tmpfs" if files.refused else None),
                   kernel.peak_memory + files.peak, kernel.ended_by, user_ns, system_ns)


def abandon(kernel, cancel=None) -> None:
    """The program could not be started (not an ELF, a published port taken, ...): the
    kernel's run, told to end at once, kills what was made and closes what it holds (its
    bell's fds, host sockets), so that a failed start leaves nothing either."""
    kernel.end_everything("the program could not be started")
    try:
        kernel.run()
    except Exception as e:  # the start's own error is the one to report
        kernel.note(f"ending a sandbox whose program could not start: {e}")
    finally:
        if cancel is not None:
            cancel.detach()


def show_limits(kernel, task, *, memory, cpu_time, max_procs, max_open_files) -> None:
    """The limits the run was given as the first program's rlimits, soft and hard, which its
    children inherit (as docker's --ulimit): RLIMIT_NPROC --max-procs, RLIMIT_AS --memory,
    RLIMIT_CPU --cpu-time (whole seconds, up), RLIMIT_NOFILE max_open_files. The sentry
    enforces the first three itself whatever a program sets; the descriptor limit is the
    rlimit, so no process may raise its hard limit past it, root included (a container
    without CAP_SYS_RESOURCE)."""
    from sentry.task import RLIMIT_AS
    RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_NOFILE = 0, 6, 7
    shown = {RLIMIT_NPROC: max_procs, RLIMIT_AS: memory,
             RLIMIT_CPU: None if cpu_time is None else -int(-cpu_time // 1), RLIMIT_NOFILE: max_open_files}
    for resource, value in shown.items():
        if value is not None:
            task.rlimits[resource] = (value, value)
    if cpu_time is not None:
        from sentry.timers import cpu_limit_changed
        cpu_limit_changed(task)
    if max_open_files is not None:
        kernel.rlimit_ceilings[RLIMIT_NOFILE] = max_open_files
        task.fds.limit = min(max_open_files, kernel.sysctl.nr_open)
    task.mm.as_limit = task.as_limit()


def cpu_used(kernel, thread_ns: int) -> tuple[int, int]:
    """(user, system) nanoseconds of CPU the run's tasks used, all of them summed, the
    ended ones (Kernel.ended_user_ns, ended_system_ns) and any still there. On unicorn the
    guest ran in this thread: its CPU time over the run (thread_ns) is the total, shared as
    the emulator's time and the sentry's answering were (both measured in elapsed time,
    which a busy host stretches)."""
    from sentry.sched import host_stime_ns, task_system_ns
    user, system = kernel.ended_user_ns, kernel.ended_system_ns
    for task in list(kernel.tasks.values()):
        stime = host_stime_ns(task.cpu)
        user += max(0, task.cpu.cpu_time_ns() - stime)
        system += task_system_ns(task)
    if kernel.platform.name == "unicorn":
        user = thread_ns * user // max(1, user + system)
        system = thread_ns - user
    return user, system


def _elf_machine(data: bytes) -> str:
    """The architecture an ELF asks for, from its header alone (the loader checks the rest)."""
    if data[:4] == b"\x7fELF" and len(data) >= 20:
        machine = int.from_bytes(data[18:20], "little")
        return {62: "x86_64", 183: "aarch64"}.get(machine, "x86_64")
    return "x86_64"
