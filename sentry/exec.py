"""execve: from a path in the sandbox's view to a new image in a task.

Everything that can fail with an errno (lookup, permissions, `#!` lines, ELF
checks, the interpreter) happens in `prepare`, before the point of no
return; `commit` then replaces the task's image, as Linux's execve does."""
import errno as E
import os
import stat as S

from sentry.errors import Errno

AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, AT_FDCWD = 0x1000, 0x100, -100
BINPRM_BUF_SIZE = 256      # how much of a `#!` line Linux reads
MAX_INTERP_DEPTH = 5       # `#!` scripts naming `#!` scripts: five, then ELOOP, as Linux
MAX_ARG_STRLEN = 32 * 4096
ARG_MAX = 2 * 1024 * 1024  # the room argv and envp get (a quarter of the 8 MiB stack)
SIG_IGN = 1


class Prepared:
    __slots__ = ("plan", "exe_path", "argv", "envp", "inode")

    def __init__(self, plan, exe_path, argv, envp, inode=None):
        self.plan, self.exe_path, self.argv, self.envp = plan, exe_path, argv, envp
        self.inode = inode  # the executable the new image runs (writers refused while it does)


def _open_exec(task, dirfd: int, path: bytes, flags: int):
    """(inode, its path in the sandbox: what /proc/PID/exe shows) of an executable file, or Errno."""
    vfs = task.vfs
    if not path:
        if not flags & AT_EMPTY_PATH:
            raise Errno(E.ENOENT)
        f = task.fds.get(dirfd)
        inode, name = f.inode, f.path
    else:
        from sentry.vfs import loc_path
        found = vfs.find(task, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW)
        inode = found.inode
        if inode is None:
            raise Errno(E.ENOENT)
        name = loc_path(found.loc).decode(errors="surrogateescape")
    if S.S_ISLNK(inode.mode):
        raise Errno(E.ELOOP)
    _may_exec(task, inode, name)
    return inode, name


def _may_exec(task, inode, name=None) -> None:
    """A regular file the caller may execute (EACCES; its root needs some execute bit), on
    a mount that allows it (EACCES, path_noexec: both may_open's), and nobody has open for
    writing (ETXTBSY, deny_write_access, after the open). Reading it is not asked: the
    kernel reads it for the program."""
    from sentry.vfs import mounts, perm, writeaccess
    if not S.S_ISREG(inode.mode):
        raise Errno(E.EACCES)
    perm.permission(task, inode, perm.MAY_EXEC)
    if name is not None and mounts.flags_at(task.vfs, os.fsencode(name or "/")) & mounts.MS_NOEXEC:
        raise Errno(E.EACCES)  # path_noexec: a file on a noexec mount
    writeaccess.of(task.kernel).may_exec(inode)


def _read_head_and_all(kernel, inode, name):
    try:
        return kernel.read_whole(inode, name)
    except Errno as e:
        raise Errno(e.errno) from None


def _shebang(data: bytes):
    """(interpreter, optional argument or None) of a `#!` line, or ENOEXEC."""
    line = data[2:BINPRM_BUF_SIZE].split(b"\n", 1)[0].strip(b" \t")
    if not line:
        raise Errno(E.ENOEXEC)
    parts = line.replace(b"\t", b" ").split(b" ", 1)
    interp = parts[0]
    arg = parts[1].strip(b" \t") if len(parts) > 1 else b""
    return interp, (arg or None)


def prepare(task, dirfd: int, path: bytes, argv: list, envp: list, flags: int = 0) -> Prepared:
    import loader
    kernel = task.kernel
    if not argv:
        argv = [b""]  # a NULL or empty argv: Linux (5.18+) gives the program argc 1, argv[0] ""
    if sum(len(a) + 1 for a in argv) + sum(len(e) + 1 for e in envp) > ARG_MAX:
        raise Errno(E.E2BIG)
    if any(len(a) >= MAX_ARG_STRLEN for a in argv) or any(len(e) >= MAX_ARG_STRLEN for e in envp):
        raise Errno(E.E2BIG)
    # The name the program is run by (AT_EXECFN, and a script's argument): a name relative
    # to a directory fd is /dev/fd/N/name, as Linux's; after exec it is out of reach if
    # that fd is close-on-exec, so a script run that way fails (ENOENT), as on Linux.
    inaccessible = False
    if dirfd == AT_FDCWD or path.startswith(b"/"):
        filename = path
    else:
        filename = b"/dev/fd/%d" % dirfd + (b"/" + path if path else b"")
        inaccessible = dirfd in task.fds.cloexec
    execfn = filename
    for _ in range(MAX_INTERP_DEPTH + 1):
        inode, name = _open_exec(task, dirfd, path, flags)
        data = _read_head_and_all(kernel, inode, name)
        if data[:2] != b"#!":
            break
        if inaccessible:
            raise Errno(E.ENOENT)
        interp, arg = _shebang(data)
        # The script is passed by the name it was run by; its interpreter comes first.
        argv = [interp] + ([arg] if arg else []) + [filename] + list(argv[1:])
        path, dirfd, flags, filename = interp, AT_FDCWD, 0, interp
    else:
        raise Errno(E.ELOOP)
    info = _parse(kernel, inode, data, E.ENOEXEC)
    if info.machine != kernel.arch:
        raise Errno(E.ENOEXEC)
    interp = None
    if info.interp:  # PT_INTERP comes from the sandbox's own view, never the host's
        try:
            iinode = task.vfs.lookup(task, -100, info.interp.encode())
        except Errno:
            raise Errno(E.ENOENT) from None
        _may_exec(task, iinode)
        idata = kernel.read_whole(iinode, info.interp)
        interp = (_parse(kernel, iinode, idata, E.ELIBBAD), idata, info.interp)
    try:
        plan = loader.plan_image(info, data, path=name, argv=argv, envp=envp, execfn=execfn,
                                 random_bytes=kernel.random_bytes(16), hwcap=kernel.platform_hwcap(),
                                 hwcap2=0, interp=interp)
    except loader.LoadError:
        raise Errno(E.ENOEXEC) from None
    return Prepared(plan, name, argv, envp, inode)


def _parse(kernel, inode, data: bytes, errno: int):
    """loader.parse_elf, remembered per file version for the sandbox's lifetime: a shell
    that runs the same program a thousand times parses (and hashes) it once."""
    import loader
    st = inode.stat()
    key = (inode.dev, st.ino, st.mtime, st.ctime, len(data))
    info = kernel.elf_infos.get(key)
    if info is None:
        try:
            info = parse_elf(inode, data)
        except loader.LoadError:
            raise Errno(errno) from None
        kernel.elf_infos[key] = info
    return info


# A host file's version -> its ElfInfo, for every sandbox of this process: a program the
# host lends (python3, ld.so, busybox) is hashed once per process, not once per run (the
# sha256 of python3's 7 MB cost each FaaS call ~4 ms). The version is the host's own
# identity of the file (never the sandbox's numbering) with its size and ctime, which any
# change to it moves.
_HOST_ELF_INFOS: dict = {}
_HOST_ELF_INFOS_MAX = 256


def parse_elf(inode, data: bytes):
    """loader.parse_elf(data) (LoadError if it cannot run), remembered per host file."""
    import loader
    from sentry.vfs.hostfs import HostInode
    if not isinstance(inode, HostInode):
        return loader.parse_elf(data)  # the sandbox's own files are its own
    try:
        st = os.fstat(inode.fd)
    except OSError:
        return loader.parse_elf(data)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    info = _HOST_ELF_INFOS.get(key)
    if info is None or st.st_size != len(data):
        info = loader.parse_elf(data)
        if st.st_size == len(data):  # (read while it changed: not remembered)
            if len(_HOST_ELF_INFOS) >= _HOST_ELF_INFOS_MAX:
                _HOST_ELF_INFOS.clear()
            _HOST_ELF_INFOS[key] = info
    return info


def commit(task, prepared: Prepared) -> None:
    """The point of no return: the task's old image goes, the new one is built."""
    from sentry.mm import MemoryManager
    from sentry.vfs import writeaccess
    kernel = task.kernel
    plan = prepared.plan
    if len(task.proc.tasks) > 1 or task.tid != task.proc.pid:
        kernel.end_other_threads(task)
    if task.fds.users > 1:  # a table shared by CLONE_FILES: the new image has its own
        old, task.fds = task.fds, task.fds.copy()
        old.release()
    old_mm = task.mm
    kernel.peak_memory = max(kernel.peak_memory, old_mm.peak)
    from sentry import rss
    rss.note(task)  # ru_maxrss keeps the old image's peak (exec_mmap's setmax_mm_hiwater_rss)
    if old_mm.users > 1:  # memory shared with a vfork parent (CLONE_VM): the image gets its own
        old_mm.users -= 1
        space, cpu = kernel.platform.new_process()
        task.cpu.end_thread()
    else:
        space, cpu = kernel.platform.exec_process(old_mm.space, task.cpu)
        writeaccess.exe_released(kernel, old_mm)  # the old image's executable may be written again
    if cpu is not task.cpu:
        cpu.task = task
        task.cpu = cpu
    mm = MemoryManager(space, mmap_base=plan.mmap_base, brk=plan.brk, limit=kernel.memory,
                       sysctl=kernel.sysctl)
    mm.as_limit = task.as_limit()  # RLIMIT_AS survives exec
    mm.coredump_filter = old_mm.coredump_filter  # so does the dump filter (mm_init)
    if prepared.inode is not None:
        writeaccess.exe_taken(kernel, mm, prepared.inode)  # ETXTBSY for its writers from now on
    task.mm = mm
    if not old_mm.users:
        from sentry.ipc import detach_all
        detach_all(old_mm)  # its shared memory attachments close
    try:
        mm.load(plan)
        cpu.set_entry(plan.entry, plan.sp)
    except Errno:
        # Past the point of no return Linux kills the process: so do we.
        kernel.note(f"{task.comm}[{task.tid}]: execve of {prepared.exe_path}: cannot map the new image")
        kernel.exit_group(task, 0, 9)
        from sentry.sched import TaskExit
        raise TaskExit from None
    task.fds.close_on_exec()
    task.exec_credentials()
    task.exe_path = prepared.exe_path
    task.argv, task.envp = prepared.argv, prepared.envp
    task.auxv = plan.auxv
    task.comm = prepared.exe_path.rsplit("/", 1)[-1][:15]
    # Handlers do not survive the image they pointed into; ignored signals stay ignored.
    task.sigactions = {sig: raw for sig, raw in task.sigactions.items()
                       if int.from_bytes(raw[:8], "little") == SIG_IGN}
    if hasattr(task, "altstack"):
        task.altstack = None
    task.cpuid_faulting = False  # as Linux's arch_setup_new_exec (the TSC mode stays)
    from sentry import signals
    signals.on_exec(task)  # and the POSIX timers go, the restart block too
    task.clear_child_tid = 0
    proc = task.proc
    proc.execed = True
    proc.vfork_done.notify()
