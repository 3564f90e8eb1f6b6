"""procfs: /proc generated from the kernel's own objects, never read from the host.

The tree is made of three inode kinds: directories whose children are
computed (`ProcDir`), files whose bytes are generated when they are opened
(`GenInode`: the open file holds that snapshot, as a seq_file does), and
symlinks whose target depends on the task (`ProcLink`).

Per-process directories are bound to a Task: /proc/<pid>/status is generated
from that task whoever reads it. Only /proc/self and /proc/thread-self depend
on the reader: the walk passes the reading task to readlink().

"Magic links" (/proc/self, /proc/PID/{cwd,root,fd/N}) are followed by what
they name, not by re-walking their text: the walk calls `jump(task, here)` on
a symlink inode that has one (here = the Loc of the link's directory) and
continues from the Loc it returns. So /proc/self/fd/N reopens the very file
of fd N even when it was deleted, renamed, or is a pipe.

Writes behave as Linux's for root: per-process files open for writing and
refuse the write (EINVAL), global files refuse with EIO, read-only sysctls
refuse the open (EACCES); new names are ENOENT and removals EPERM.
/proc/sys/kernel/hostname and /proc/PID/comm can be written.
"""
import errno as E
import os
import stat as S
import time

from sentry.errors import Errno
from sentry.vfs import mounts
from sentry.vfs.file import O_ACCMODE, O_RDONLY, O_WRONLY, SEEK_CUR, SEEK_SET, File
from sentry.vfs.inode import FileSystem, Inode

PROC_SUPER_MAGIC = 0x9FA0
VIRTUAL_RAM = 4 << 30           # the sandbox's RAM, as sysinfo(2) reports it (syscalls/info.py)
RLIM_INFINITY = (1 << 64) - 1
CLK_TCK = 100
PAGE = 4096
O_CLOEXEC = 0o2000000
CAP_FULL = (1 << 41) - 1        # CAP_CHOWN .. CAP_CHECKPOINT_RESTORE (cap_last_cap 40)


# --- the open file -----------------------------------------------------------------------------

class ProcFile(File):
    """An open generated file: the bytes generated at open, with an offset.
    `writer(data)` takes writes when the file is writable; otherwise they fail
    with `write_errno`."""

    def __init__(self, inode, flags, path, data: bytes, writer=None, write_errno=E.EINVAL):
        super().__init__(inode, flags, path)
        self.data = data
        self.offset = 0
        self.writer = writer
        self.write_errno = write_errno

    def read(self, size):
        out = self.data[self.offset:self.offset + size]
        self.offset += len(out)
        return out

    def unread(self, data):
        self.offset -= len(data)

    def pread(self, size, offset):
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.data[offset:offset + size]

    def seek(self, offset, whence):
        if whence == SEEK_SET:
            pos = offset
        elif whence == SEEK_CUR:
            pos = self.offset + offset
        else:
            raise Errno(E.EINVAL)  # seq_file knows no end
        if pos < 0:
            raise Errno(E.EINVAL)
        self.offset = pos
        return pos

    def write(self, data):
        if self.writer is None:
            raise Errno(self.write_errno)
        return self.writer(bytes(data))

    def pwrite(self, data, offset):
        return self.write(data)


# --- inode kinds ---------------------------------------------------------------------------------

class _ProcInode(Inode):
    """What every procfs inode shares: attributes cannot change (chmod EPERM),
    times and truncation are accepted and change nothing, as Linux's proc.
    One of a process's own (`task` set) is owned by its effective ids, or by
    root while it is not dumpable, but for its directory (task_dump_owner)."""
    task = None

    def owner(self):
        task = self.task
        if task is None:
            return self.uid, self.gid
        if getattr(task, "dumpable", 1) != 1 and self.mode != S.S_IFDIR | 0o555:
            return 0, 0
        return getattr(task, "euid", 0), getattr(task, "egid", 0)

    def stat(self):
        self.uid, self.gid = self.owner()
        return self

    def chmod(self, mode):
        raise Errno(E.EPERM)

    def chown(self, uid, gid):
        raise Errno(E.EPERM)

    def set_times(self, atime, mtime):
        pass

    def truncate(self, length):
        if self.is_dir():
            raise Errno(E.EISDIR)


class GenInode(_ProcInode):
    """A file whose contents `gen()` makes at each open."""

    def __init__(self, fs, gen, mode=0o444, writer=None, write_errno=E.EINVAL, sysctl=False):
        super().__init__(S.S_IFREG | mode, fs)
        self.gen = gen
        self.writer = writer
        self.write_errno = write_errno
        self.sysctl = sysctl  # a sysctl's permission bits bind even root

    def open(self, flags, path):
        mode = flags & O_ACCMODE
        if mode != O_RDONLY and self.sysctl and not self.mode & 0o222:
            raise Errno(E.EACCES)
        if mode != O_WRONLY and self.sysctl and not self.mode & 0o444:
            raise Errno(E.EACCES)  # a write-only knob (vm/drop_caches)
        data = b"" if mode == O_WRONLY else self.gen()
        return ProcFile(self, flags, path, data, self.writer, self.write_errno)


class ProcLink(_ProcInode):
    """A symlink whose target `target(task)` is computed for the reading task;
    `jump(task, here) -> Loc` makes it a magic link (see the module doc)."""

    def __init__(self, fs, target, jump=None, mode=0o777, size=0, magic=None):
        super().__init__(S.S_IFLNK | mode, fs)
        self.target = target
        self.jump = jump
        self._size = size
        # Linux's magic links (RESOLVE_NO_MAGICLINKS refuses them): exe, cwd, root, fd/N;
        # /proc/self and /proc/thread-self are plain links to relative paths
        self.magic_link = jump is not None if magic is None else magic

    @property
    def size(self):
        return self._size

    def readlink(self, task):
        return self.target(task)


class ProcDir(_ProcInode):
    """A directory whose children `children()` computes; no names can be added
    or removed."""

    def __init__(self, fs, mode=0o555):
        super().__init__(S.S_IFDIR | mode, fs)
        self.nlink = 2

    def children(self) -> dict:
        return {}

    def lookup(self, name):
        return self.children().get(name)

    def entries(self):
        return [(name, i.ino, S.S_IFMT(i.mode)) for name, i in self.children().items()]

    def create(self, name, mode):
        raise Errno(E.ENOENT)

    mkdir = symlink = create

    def mknod(self, name, mode, *rest):
        raise Errno(E.ENOENT)

    def link(self, name, inode):
        raise Errno(E.ENOENT)

    def unlink(self, name):
        raise Errno(E.EPERM)

    rmdir = unlink

    def rename(self, name, new_dir, new_name, *flags):
        if getattr(new_dir, "fs", None) is not self.fs:
            raise Errno(E.EXDEV)
        # a new name cannot be looked up (ENOENT); two existing ones cannot be moved (EPERM)
        raise Errno(E.EPERM if new_dir.lookup(new_name) is not None else E.ENOENT)

    def exchange(self, name, new_dir, new_name):
        raise Errno(E.EPERM)

    def tmpfile(self, mode, linkable=True):
        raise Errno(E.EOPNOTSUPP)


class StaticDir(ProcDir):
    def __init__(self, fs, mode=0o555):
        super().__init__(fs, mode)
        self.kids: dict[bytes, Inode] = {}

    def add(self, name: bytes, inode: Inode) -> Inode:
        self.kids[name] = inode
        if inode.is_dir():
            self.nlink += 1
        return inode

    def children(self):
        return self.kids


class _Reopen(Inode):
    """What /proc/PID/fd/N leads to when the file's own inode cannot be opened
    again (the sandbox's stdio streams, pipes): opening it gives the same
    stream, as Linux gives a new file on the same pipe."""

    def __init__(self, file):  # no Inode.__init__: it takes the file's identity, not a new ino
        inode = file.stat_inode()
        self.file = file
        self.fs, self.ino, self.mode = inode.fs, inode.ino, inode.mode
        self.uid, self.gid, self.nlink, self.rdev = inode.uid, inode.gid, inode.nlink, inode.rdev
        self.atime, self.mtime, self.ctime = inode.atime, inode.mtime, inode.ctime
        self.xattrs, self.iflags = None, 0  # Inode's slots (listxattr of /proc/self/fd/0 read them)

    def stat(self):
        return self.file.stat_inode().stat()

    def truncate(self, length):
        pass

    def open(self, flags, path):
        from sentry.vfs.file import HostStream
        f = self.file
        reopen = getattr(f, "reopen", None)
        if reopen is not None:
            return reopen(flags)
        if isinstance(f, HostStream):
            return HostStream(f.inode, f.host_fd, flags)
        return f  # the same open stream, as a dup


def _reopenable(inode) -> bool:
    return type(inode).open is not Inode.open


# --- the filesystem ---------------------------------------------------------------------------

class ProcFS:
    """One per VFS. `kernel` gives the tasks and the system's figures; without
    one (unit tests) only /proc/self of the reading task and the global files
    exist."""

    def __init__(self, vfs, kernel=None):
        self.vfs = vfs
        self.kernel = kernel
        self.fs = FileSystem("proc", magic=PROC_SUPER_MAGIC)
        self.root = ProcRoot(self)


class ProcRoot(StaticDir):
    def __init__(self, procfs: ProcFS):
        super().__init__(procfs.fs)
        self.procfs = procfs
        self.task_dirs: dict[int, "TaskDir"] = {}
        fs = self.fs
        self.add(b"self", ProcLink(fs, lambda t: b"%d" % _pid_of(t), jump=self._jump_self, magic=False))
        self.add(b"thread-self", ProcLink(fs, lambda t: b"%d/task/%d" % (_pid_of(t), _tid_of(t)),
                                          jump=self._jump_thread_self, magic=False))
        self.add(b"mounts", ProcLink(fs, lambda t: b"self/mounts"))
        glob = {
            b"cpuinfo": gen_cpuinfo, b"meminfo": gen_meminfo, b"uptime": gen_uptime,
            b"loadavg": gen_loadavg, b"version": gen_version, b"filesystems": gen_filesystems,
            b"stat": gen_stat, b"cmdline": lambda k: b"BOOT_IMAGE=/sentry ro quiet\n",
            b"swaps": lambda k: b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
            b"devices": gen_devices, b"config.gz": config_gz,
        }
        for name, gen in glob.items():
            self.add(name, GenInode(fs, (lambda g: lambda: g(self.procfs.kernel))(gen), write_errno=E.EIO))
        self.add(b"sys", make_sys(procfs))
        from sentry.vfs.proclocks import gen_locks
        self.add(b"locks", GenInode(fs, lambda: gen_locks(getattr(self.procfs.vfs, "locks", None), self.procfs.kernel),
                                    write_errno=E.EIO))
        from sentry.ipc.proc import sysvipc_dir
        self.add(b"sysvipc", sysvipc_dir(fs, lambda: self.procfs.kernel))
        # the sandbox's keys (sentry/keys.py): /proc/keys shows what the reader may view
        for name, gen in ((b"keys", lambda k: k.keys.proc_keys(k.current)),
                          (b"key-users", lambda k: k.keys.proc_key_users())):
            self.add(name, GenInode(fs, (lambda g: lambda: g(self.procfs.kernel) if self.procfs.kernel else b"")(gen),
                                    write_errno=E.EIO))

    # /proc/self and /proc/thread-self lead straight to the reader's directories
    def _jump_self(self, task, here):
        if task is None:
            raise Errno(E.ENOENT)
        leader = self._leader(task)
        return here + ((b"%d" % _pid_of(task), self.task_dir(leader)),)

    def _jump_thread_self(self, task, here):
        loc = self._jump_self(task, here)
        tasks = loc[-1][1].lookup(b"task")
        tid = b"%d" % _tid_of(task)
        return loc + ((b"task", tasks), (tid, tasks.task_dir(task)))

    def _leader(self, task):
        kernel = self.procfs.kernel
        pid = _pid_of(task)
        if kernel is not None and pid != _tid_of(task):
            return kernel.tasks.get(pid, task)
        return task

    def task_dir(self, task) -> "TaskDir":
        d = self.task_dirs.get(_tid_of(task))
        if d is None or d.task is not task:
            d = self.task_dirs[_tid_of(task)] = TaskDir(self.procfs, task, with_threads=True)
        return d

    def _tasks(self) -> dict:
        """Live tasks by tid, and the leaders of zombies (listed until reaped, state Z)."""
        kernel = self.procfs.kernel
        if kernel is None:
            return {}
        tasks = kernel.tasks
        # zombies, and processes whose first thread has exited (pthread_exit in main): the
        # pid shows another of its threads, as Linux keeps the leader until the group ends
        extra = {p.pid: p.leader for p in getattr(kernel, "procs", {}).values()
                 if p.leader is not None and (p.zombie or p.pid not in tasks)}
        return {**tasks, **extra} if extra else tasks

    def lookup(self, name):
        inode = self.kids.get(name)
        if inode is not None or not name.isdigit() or name.startswith(b"0"):
            return inode
        task = self._tasks().get(int(name))  # a thread's tid works too, unlisted, as in Linux
        return self.task_dir(task) if task is not None else None

    def children(self):
        tasks = self._tasks()
        for tid in [t for t in self.task_dirs if t not in tasks]:
            del self.task_dirs[tid]
        pids = {b"%d" % t.tgid: self.task_dir(t) for tid, t in sorted(tasks.items()) if t.tgid == tid}
        return {**self.kids, **pids}


def _pid_of(task) -> int:
    return getattr(task, "tgid", None) or getattr(task, "tid", 1)


def _tid_of(task) -> int:
    return getattr(task, "tid", None) or _pid_of(task)


# --- /proc/<pid> ---------------------------------------------------------------------------------

class TaskDir(ProcDir):
    """/proc/<pid> (with task/) and /proc/<pid>/task/<tid> (without), for one task."""

    def __init__(self, procfs, task, with_threads: bool):
        super().__init__(procfs.fs)
        self.procfs = procfs
        self.task = task
        self.with_threads = with_threads
        self.kids = None

    def children(self):
        if self.kids is None:
            self.kids = self._build()
        return self.kids

    def _build(self):
        fs, task, procfs = self.fs, self.task, self.procfs
        kids = {}

        def gen(fn, mode=0o444, writer=None):
            return GenInode(fs, lambda: fn(task), mode, writer)

        kids[b"exe"] = ProcLink(fs, lambda t: os.fsencode(task.exe_path), magic=True)
        kids[b"cwd"] = ProcLink(fs, lambda t: _loc_path(task.cwd), jump=lambda t, here: task.cwd)
        kids[b"root"] = ProcLink(fs, lambda t: b"/", jump=lambda t, here: here[:1])
        kids[b"fd"] = FdDir(procfs, task)
        kids[b"fdinfo"] = FdInfoDir(procfs, task)
        kids[b"maps"] = gen(lambda t: gen_maps(procfs, t))
        from sentry.vfs import procmm  # smaps, pagemap, coredump_filter
        kids[b"smaps"] = gen(lambda t: procmm.gen_smaps(t, map_lines(procfs, t)))
        kids[b"smaps_rollup"] = gen(procmm.gen_smaps_rollup)
        kids[b"pagemap"] = procmm.pagemap_inode(fs, task)
        kids[b"coredump_filter"] = procmm.coredump_filter_inode(fs, task)
        kids[b"status"] = gen(gen_status)
        kids[b"stat"] = gen(gen_task_stat)
        kids[b"statm"] = gen(gen_statm)
        kids[b"cmdline"] = gen(lambda t: b"".join(a + b"\0" for a in t.argv))
        kids[b"environ"] = gen(lambda t: b"".join(e + b"\0" for e in t.envp), 0o400)
        kids[b"comm"] = gen(lambda t: t.comm.encode(errors="replace") + b"\n", 0o644,
                            writer=lambda data: _set_comm(task, data))
        kids[b"auxv"] = gen(gen_auxv, 0o400)
        from sentry.vfs.mountpoll import MountsInode  # pollable: EPOLLPRI after a change
        kids[b"mounts"] = MountsInode(fs, lambda: gen_mounts(procfs.vfs), procfs.vfs)
        kids[b"mountinfo"] = MountsInode(fs, lambda: gen_mountinfo(procfs.vfs), procfs.vfs)
        kids[b"limits"] = gen(gen_limits)
        kids[b"cgroup"] = gen(lambda t: b"0::/\n")
        kids[b"oom_score"] = gen(lambda t: b"0\n")
        kids[b"oom_score_adj"] = gen(lambda t: b"%d\n" % getattr(t, "oom_score_adj", 0), 0o644,
                                     writer=lambda data: _set_oom_score_adj(task, data))
        kids[b"loginuid"] = gen(lambda t: b"4294967295", 0o644, writer=_accept_int)
        kids[b"sessionid"] = gen(lambda t: b"4294967295")
        kids[b"personality"] = gen(lambda t: b"%08x\n" % getattr(t, "personality", 0), 0o400)
        kids[b"wchan"] = gen(lambda t: b"0")
        kids[b"io"] = gen(gen_io, 0o400)
        if self.with_threads:
            kids[b"task"] = ThreadsDir(procfs, task)
        if getattr(task, "nsproxy", None) is not None:  # ns/, uid_map, gid_map, setgroups, timens_offsets
            from sentry.vfs.nsfs import proc_files
            kids.update(proc_files(procfs, task))
        for kid in kids.values():
            kid.task = task  # owned by the process
        self.nlink = 2 + sum(1 for i in kids.values() if i.is_dir())
        return kids


class ThreadsDir(ProcDir):
    """/proc/<pid>/task: one directory per thread of the process."""

    def __init__(self, procfs, task):
        super().__init__(procfs.fs)
        self.procfs = procfs
        self.task = task
        self.dirs: dict[int, TaskDir] = {}

    def threads(self) -> list:
        kernel = self.procfs.kernel
        pid = _pid_of(self.task)
        if kernel is None:
            return [self.task]
        found = [t for tid, t in sorted(kernel.tasks.items()) if t.tgid == pid]
        proc = getattr(self.task, "proc", None)
        leader = proc.leader if proc is not None else None
        if leader is not None and leader.tid == pid and leader not in found:
            found.insert(0, leader)  # a first thread that exited while others run on: a zombie
        return found or [self.task]

    def task_dir(self, task) -> TaskDir:
        d = self.dirs.get(_tid_of(task))
        if d is None or d.task is not task:
            d = self.dirs[_tid_of(task)] = TaskDir(self.procfs, task, with_threads=False)
        return d

    def children(self):
        return {b"%d" % _tid_of(t): self.task_dir(t) for t in self.threads()}


class FdDir(ProcDir):
    """/proc/<pid>/fd: a magic link per descriptor."""

    def __init__(self, procfs, task):
        super().__init__(procfs.fs, 0o500)
        self.procfs = procfs
        self.task = task
        self.links: dict[int, tuple] = {}  # fd -> (file, link inode)

    @property
    def size(self):
        return len(self.task.fds.files)

    def _link(self, fd: int, file):
        cached = self.links.get(fd)
        if cached is not None and cached[0] is file:
            return cached[1]
        mode = (0o400 if file.readable else 0) | (0o200 if file.writable else 0) | 0o100
        link = ProcLink(self.fs, lambda t: self._target(fd), jump=lambda t, here: self._jump(t, here, fd),
                        mode=mode, size=64)
        self.links[fd] = (file, link)
        return link

    def _file(self, fd: int):
        f = self.task.fds.files.get(fd)
        if f is None:
            raise Errno(E.ENOENT)
        return f

    def _target(self, fd: int) -> bytes:
        return os.fsencode(file_link_text(self._file(fd)))

    def _jump(self, task, here, fd: int):
        f = self._file(fd)
        if f.loc is not None:
            return f.loc
        inode = f.inode if _reopenable(f.inode) else _Reopen(f)
        return _file_loc(self.procfs.vfs, task, here, b"%d" % fd, f, inode)

    def lookup(self, name):
        if not name.isdigit():
            return None
        f = self.task.fds.files.get(int(name))
        return self._link(int(name), f) if f is not None and name == b"%d" % int(name) else None

    def children(self):
        files = dict(self.task.fds.files)
        for fd in [fd for fd in self.links if fd not in files]:
            del self.links[fd]
        return {b"%d" % fd: self._link(fd, f) for fd, f in sorted(files.items())}


class FdInfoDir(ProcDir):
    """/proc/<pid>/fdinfo: pos, flags and mnt_id of each descriptor."""

    def __init__(self, procfs, task):
        super().__init__(procfs.fs)
        self.procfs = procfs
        self.task = task
        self.infos: dict[int, tuple] = {}

    def _info(self, fd: int, file):
        cached = self.infos.get(fd)
        if cached is not None and cached[0] is file:
            return cached[1]
        inode = GenInode(self.fs, lambda: gen_fdinfo(self.procfs, self.task, fd))
        self.infos[fd] = (file, inode)
        return inode

    def lookup(self, name):
        if not name.isdigit() or name != b"%d" % int(name):
            return None
        f = self.task.fds.files.get(int(name))
        return self._info(int(name), f) if f is not None else None

    def children(self):
        files = dict(self.task.fds.files)
        for fd in [fd for fd in self.infos if fd not in files]:
            del self.infos[fd]
        return {b"%d" % fd: self._info(fd, f) for fd, f in sorted(files.items())}


def file_link_text(f) -> str:
    """What readlink of /proc/PID/fd/N says: the path, ` (deleted)` once the
    file has no name, or the `pipe:[ino]` / `anon_inode:[...]` forms."""
    path = f.path or "anon_inode:[%s]" % type(f).__name__.lower()
    if path.startswith("/") and f.inode.nlink == 0 and f.loc is None:
        return path + " (deleted)"
    return path


def _loc_path(loc) -> bytes:
    return b"/" + b"/".join(name for name, _ in loc[1:])


def _file_loc(vfs, task, here, link_name: bytes, f, inode):
    """A Loc ending at `inode` for an open file that keeps no place of its own:
    under its path's directory when that still exists, else under the link's."""
    path = os.fsencode(f.path or "")
    if path.startswith(b"/"):
        parent, _, name = path.rpartition(b"/")
        if name:
            try:
                found = vfs.walk(task, here[:1], parent or b"/")
                if found.inode is not None and found.inode.is_dir():
                    return found.loc + ((name, inode),)
            except Errno:
                pass
    return here + ((link_name, inode),)


def _set_comm(task, data: bytes) -> int:
    task.comm = data.split(b"\n", 1)[0][:15].decode(errors="replace")
    return len(data)


def _set_oom_score_adj(task, data: bytes) -> int:
    """The process's OOM score adjustment, -1000..1000: kept by each of its threads (new tasks
    inherit it: sentry/kernel.py _inherit_sched) and shown; the sandbox kills nothing for memory."""
    try:
        value = int(data.strip() or b"x")
    except ValueError:
        raise Errno(E.EINVAL) from None
    if not -1000 <= value <= 1000:
        raise Errno(E.EINVAL)
    for thread in task.proc.tasks:
        thread.oom_score_adj = value
    return len(data)


def _accept_int(data: bytes) -> int:
    try:
        int(data.strip() or b"x")
    except ValueError:
        raise Errno(E.EINVAL) from None
    return len(data)


# --- generators: one process ---------------------------------------------------------------------

def _vmas(task):
    mm = getattr(task, "mm", None)
    return list(mm.vmas) if mm is not None else []


class MemFigures:
    """The figures status/statm/stat give, in bytes, from the task's mappings.
    Resident memory is not tracked page by page: every accessible mapping
    counts as resident except the stack, of which the first 132 kB do."""

    def __init__(self, task):
        exe = getattr(task, "exe_path", "")
        self.size = self.rss = self.file_rss = self.exe = self.lib = self.data = self.stack = 0
        for v in _vmas(task):
            n = v.end - v.start
            self.size += n
            if v.name == "[stack]":
                self.stack += n
                self.rss += min(n, 132 << 10)
                continue
            if v.prot:
                self.rss += n
                if v.name.startswith("/"):
                    self.file_rss += n
            if v.name == exe and v.prot & 4:
                self.exe += n
            elif v.name.startswith("/") and v.prot & 4:
                self.lib += n
            elif v.prot & 2 and not v.shared:
                self.data += n


def _kb(n: int) -> str:
    return "%8d kB" % (n >> 10)


def _state(task) -> str:
    if getattr(task, "exit_status", None) is not None:
        return "Z (zombie)"
    if getattr(task, "blocked", None) is not None:
        return "S (sleeping)"
    return "R (running)"


def _sig_sets(task):
    """(ignored, caught) signal bitmaps from the task's dispositions."""
    from sentry.signals import SIG_DFL, SIG_IGN, handler_of
    ign = cgt = 0
    for sig in getattr(task, "sigactions", {}):
        h = handler_of(task, sig)
        if h == SIG_IGN:
            ign |= 1 << (sig - 1)
        elif h != SIG_DFL:
            cgt |= 1 << (sig - 1)
    return ign, cgt


def _threads(task) -> int:
    kernel = getattr(task, "kernel", None)
    if kernel is None:
        return 1
    return sum(1 for t in kernel.tasks.values() if t.tgid == task.tgid) or 1


def _ncpus() -> int:
    return os.cpu_count() or 1


def _cpumask(n: int) -> str:
    """Linux's %*pb: 32-bit groups in hex, comma-separated, the first unpadded."""
    mask = (1 << n) - 1
    groups = []
    while True:
        groups.append(mask & 0xFFFFFFFF)
        mask >>= 32
        if not mask:
            break
    groups.reverse()
    return ",".join(["%x" % groups[0]] + ["%08x" % g for g in groups[1:]])


def _ids(task, kind):
    real = getattr(task, kind, 0)
    eff = getattr(task, "e" + kind, real)
    saved = getattr(task, "s" + kind, eff)
    fs = getattr(task, "fs" + kind, eff)
    return real, eff, saved, fs


def _nspid(task, kind: str):
    """A task's numbers from the sandbox's pid namespace down to its own (sentry/namespaces.py)."""
    if getattr(task, "proc", None) is None or getattr(task.proc, "pid_ns", None) is None:
        return task.tgid if kind == "tgid" else task.tid
    from sentry.namespaces import nspid_line
    return nspid_line(task, kind)


def _locked(task) -> int:
    locked = getattr(getattr(task, "mm", None), "locked_bytes", None)
    return locked() if locked is not None else 0


def gen_status(task) -> bytes:
    from sentry import seccomp
    m = MemFigures(task)
    ign, cgt = _sig_sets(task)
    pending = getattr(task, "pending_signals", 0)
    fds = getattr(getattr(task, "fds", None), "files", {})
    fdsize = 64
    while fdsize < (max(fds) + 1 if fds else 0):
        fdsize *= 2
    uids, gids = _ids(task, "uid"), _ids(task, "gid")
    eff, prm, inh = getattr(task, "caps", (CAP_FULL, CAP_FULL, 0))  # sentry/caps.py
    pgid = getattr(task, "pgid", task.tgid)
    sid = getattr(task, "sid", task.tgid)
    sigq_max = getattr(task, "rlimits", {}).get(11, (4096, 4096))[0]
    n = _ncpus()
    groups = " ".join(str(g) for g in getattr(task, "groups", None) or ())
    lines = [
        f"Name:\t{task.comm}",
        f"Umask:\t{task.umask:04o}",
        f"State:\t{_state(task)}",
        f"Tgid:\t{task.tgid}",
        "Ngid:\t0",
        f"Pid:\t{task.tid}",
        f"PPid:\t{task.ppid}",
        f"TracerPid:\t{task.ptrace.tracer.tid if getattr(task, 'ptrace', None) is not None else 0}",
        "Uid:\t%d\t%d\t%d\t%d" % uids,
        "Gid:\t%d\t%d\t%d\t%d" % gids,
        f"FDSize:\t{fdsize}",
        f"Groups:\t{groups} ",
        f"NStgid:\t{_nspid(task, 'tgid')}",
        f"NSpid:\t{_nspid(task, 'tid')}",
        f"NSpgid:\t{pgid}",
        f"NSsid:\t{sid}",
        "Kthread:\t0",
        f"VmPeak:\t{_kb(m.size)}",
        f"VmSize:\t{_kb(m.size)}",
        f"VmLck:\t{_kb(_locked(task))}",
        f"VmPin:\t{_kb(0)}",
        f"VmHWM:\t{_kb(m.rss)}",
        f"VmRSS:\t{_kb(m.rss)}",
        f"RssAnon:\t{_kb(m.rss - m.file_rss)}",
        f"RssFile:\t{_kb(m.file_rss)}",
        f"RssShmem:\t{_kb(0)}",
        f"VmData:\t{_kb(m.data)}",
        f"VmStk:\t{_kb(m.stack)}",
        f"VmExe:\t{_kb(m.exe)}",
        f"VmLib:\t{_kb(m.lib)}",
        f"VmPTE:\t{_kb(max(4096, (m.rss // PAGE) * 8))}",
        f"VmSwap:\t{_kb(0)}",
        f"HugetlbPages:\t{_kb(0)}",
        "CoreDumping:\t0",
        "THP_enabled:\t1",
        f"Threads:\t{_threads(task)}",
        f"SigQ:\t{bin(pending).count('1')}/{sigq_max}",
        f"SigPnd:\t{pending:016x}",
        f"ShdPnd:\t{0:016x}",
        f"SigBlk:\t{getattr(task, 'sigmask', 0):016x}",
        f"SigIgn:\t{ign:016x}",
        f"SigCgt:\t{cgt:016x}",
        f"CapInh:\t{inh:016x}",
        f"CapPrm:\t{prm:016x}",
        f"CapEff:\t{eff:016x}",
        f"CapBnd:\t{getattr(task, 'cap_bset', CAP_FULL):016x}",
        f"CapAmb:\t{getattr(task, 'cap_ambient', 0) & prm & inh:016x}",
        f"NoNewPrivs:\t{int(bool(getattr(task, 'no_new_privs', False)))}",
        f"Seccomp:\t{getattr(task, 'seccomp_mode', 0)}",
        f"Seccomp_filters:\t{seccomp.filter_count(task)}",
        "Speculation_Store_Bypass:\tthread vulnerable",
        "SpeculationIndirectBranch:\tconditional enabled",
        f"Cpus_allowed:\t{_cpumask(n)}",
        f"Cpus_allowed_list:\t{'0' if n == 1 else f'0-{n - 1}'}",
        "Mems_allowed:\t00000001",
        "Mems_allowed_list:\t0",
        "voluntary_ctxt_switches:\t0",
        "nonvoluntary_ctxt_switches:\t0",
    ]
    return ("\n".join(lines) + "\n").encode(errors="replace")


def _cpu_ticks(task) -> int:
    try:
        return task.cpu.cpu_time_ns() * CLK_TCK // 1_000_000_000
    except Exception:  # a task without a cpu (or one already gone)
        return 0


def _start_ticks(task) -> int:
    kernel = getattr(task, "kernel", None)
    if kernel is None:
        return 0
    start = getattr(getattr(task, "proc", None), "start_time", kernel.boot_time)
    from sentry import clock
    # on the sandbox's boottime clock (sentry/clock.py), in clock ticks
    return max(0, clock.of(kernel).monotonic_to_sandbox(start) * CLK_TCK // 1_000_000_000)


def _exe_span(task, writable: bool):
    """(start, end) of the program's text or data mappings, or (0, 0)."""
    exe = getattr(task, "exe_path", None)
    spans = [(v.start, v.end) for v in _vmas(task)
             if v.name == exe and bool(v.prot & 2) == writable and (writable or v.prot & 4)]
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)


def gen_task_stat(task) -> bytes:
    m = MemFigures(task)
    ign, cgt = _sig_sets(task)
    code = _exe_span(task, False)
    data = _exe_span(task, True)
    stack = [v for v in _vmas(task) if v.name == "[stack]"]
    mm = getattr(task, "mm", None)
    brk = getattr(mm, "brk_start", 0)
    rlim_as = getattr(task, "rlimits", {}).get(5, (RLIM_INFINITY,))[0]
    comm = task.comm.encode(errors="replace")
    nice = getattr(task, "sched_nice", 0)  # setpriority(2), syscalls/sched.py
    fields = [
        _state(task)[0].encode(), task.ppid,
        getattr(task, "pgid", task.tgid), getattr(task, "sid", task.tgid),
        0, -1,                                   # tty_nr, tpgid
        0x400000,                                # flags: PF_RANDOMIZE... as a plain process
        0, 0, 0, 0,                              # minflt cminflt majflt cmajflt
        _cpu_ticks(task), 0, 0, 0,               # utime stime cutime cstime
        20 + nice, nice, _threads(task), 0,      # priority nice num_threads itrealvalue
        _start_ticks(task), m.size, m.rss // PAGE, rlim_as,
        code[0], code[1], stack[0].end - 8 * PAGE if stack else 0,
        0, 0,                                    # kstkesp kstkeip (hidden, as Linux)
        getattr(task, "pending_signals", 0), getattr(task, "sigmask", 0), ign, cgt,
        0, 0, 0, 17, 0, 0, getattr(task, "sched_policy", 0), 0, 0, 0,  # wchan nswap cnswap exit_signal processor
                                                                        # rt_prio policy blkio guest cguest
        data[0], data[1], brk,
        0, 0, 0, 0,                              # arg_start arg_end env_start env_end
        0,                                       # exit_code
    ]
    rest = b" ".join(f if isinstance(f, bytes) else b"%d" % f for f in fields)
    return b"%d (%s) %s\n" % (task.tid, comm, rest)


def gen_statm(task) -> bytes:
    m = MemFigures(task)
    return b"%d %d %d %d 0 %d 0\n" % (m.size // PAGE, m.rss // PAGE, m.file_rss // PAGE,
                                       m.exe // PAGE, (m.data + m.stack) // PAGE)


def gen_maps(procfs, task) -> bytes:
    out = [line for _, line in map_lines(procfs, task)]
    return ("\n".join(out) + "\n").encode(errors="replace") if out else b""


def map_lines(procfs, task) -> list:
    """(area, line) for each area as /proc/PID/maps shows it. Linux's format: start-end
    perms offset dev inode, the name at column 73. A file mapping's offset is the one mmap
    was given; for the mappings the loader made it is counted from the first mapping of
    that file."""
    vfs = procfs.vfs
    ids: dict[str, tuple] = {}
    first: dict[str, int] = {}
    out = []
    vmas = []
    for v in _vmas(task):  # the record merges as Linux; a record that did not is merged here
        prev = vmas[-1] if vmas else None
        if (prev is not None and not v.name.startswith("/") and prev.end == v.start and prev.name == v.name
                and prev.prot == v.prot and prev.shared == v.shared and getattr(v, "backing", None) is None
                and getattr(prev, "backing", None) is None and getattr(prev, "flags", 0) == getattr(v, "flags", 0)):
            vmas[-1] = v.part(prev.start, v.end) if hasattr(v, "part") else v
            vmas[-1].start = prev.start
        else:
            vmas.append(v)
    for v in vmas:
        name = v.name
        dev = ino = offset = 0
        if name.startswith("/"):
            if name not in ids:
                ids[name] = _file_id(vfs, task, name)
                first[name] = v.start
            dev, ino = ids[name]
            offset = v.start - first[name] if v.offset is None else v.offset
        perms = ("r" if v.prot & 1 else "-") + ("w" if v.prot & 2 else "-") + \
                ("x" if v.prot & 4 else "-") + ("s" if v.shared else "p")
        line = "%08x-%08x %s %08x %02x:%02x %d " % (v.start, v.end, perms, offset,
                                                     os.major(dev), os.minor(dev), ino)
        if name:
            line = line.ljust(73) + name
        out.append((v, line))
    return out


def _file_id(vfs, task, name: str):
    try:
        st = vfs.lookup(task, -100, os.fsencode(name.removesuffix(" (deleted)"))).stat()
        return st.dev, st.ino
    except (Errno, OSError):
        return 0, 0


def gen_auxv(task) -> bytes:
    pairs = list(getattr(task, "auxv", None) or [])
    return b"".join(a.to_bytes(8, "little") + (b & (1 << 64) - 1).to_bytes(8, "little")
                    for a, b in pairs + [(0, 0)])


LIMIT_NAMES = [("Max cpu time", "seconds"), ("Max file size", "bytes"), ("Max data size", "bytes"),
               ("Max stack size", "bytes"), ("Max core file size", "bytes"),
               ("Max resident set", "bytes"), ("Max processes", "processes"),
               ("Max open files", "files"), ("Max locked memory", "bytes"),
               ("Max address space", "bytes"), ("Max file locks", "locks"),
               ("Max pending signals", "signals"), ("Max msgqueue size", "bytes"),
               ("Max nice priority", ""), ("Max realtime priority", ""),
               ("Max realtime timeout", "us")]


def gen_limits(task) -> bytes:
    from sentry.task import DEFAULT_RLIMITS
    limits = getattr(task, "rlimits", DEFAULT_RLIMITS)
    out = ["%-25s %-20s %-20s %-10s\n" % ("Limit", "Soft Limit", "Hard Limit", "Units")]
    for i, (name, unit) in enumerate(LIMIT_NAMES):
        soft, hard = limits.get(i, (RLIM_INFINITY, RLIM_INFINITY))
        line = "%-25s %-20s %-20s " % (name, "unlimited" if soft == RLIM_INFINITY else soft,
                                      "unlimited" if hard == RLIM_INFINITY else hard)
        if unit:
            line += "%-10s" % unit
        out.append(line + "\n")
    return "".join(out).encode()


def gen_io(task) -> bytes:
    return (b"rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: 0\nwrite_bytes: 0\n"
            b"cancelled_write_bytes: 0\n")


def gen_fdinfo(procfs, task, fd: int) -> bytes:
    f = task.fds.files.get(fd)
    if f is None:
        raise Errno(E.ENOENT)
    pos = getattr(f, "offset", None)
    if not isinstance(pos, int):
        pos = getattr(f, "pos", 0) if isinstance(getattr(f, "pos", 0), int) else 0
    flags = f.flags | (O_CLOEXEC if fd in task.fds.cloexec else 0)
    ino = f.stat_inode().ino
    extra = getattr(f, "fdinfo", None)  # a kind's own lines (an inotify file's watches)
    return b"pos:\t%d\nflags:\t0%o\nmnt_id:\t%d\nino:\t%d\n" % (
        pos, flags, mount_id_of(procfs.vfs, f), ino) + (extra() if extra is not None else b"")


# --- mounts -------------------------------------------------------------------------------------

def mount_id_of(vfs, f) -> int:
    return mounts.mount_of_file(vfs, f).id


def _mangle(path: bytes) -> bytes:
    for ch, esc in ((b"\\", b"\\134"), (b" ", b"\\040"), (b"\t", b"\\011"), (b"\n", b"\\012")):
        path = path.replace(ch, esc)
    return path


def gen_mounts(vfs) -> bytes:
    out = []
    for m in mounts.table(vfs):
        extra = m.super_options.partition(",")[2]  # the filesystem's own options follow the mount's
        opts = m.options + ("," + extra if extra else "")
        out.append(b"%s %s %s %s 0 0\n" % (m.source.encode(), _mangle(m.path), m.fstype.encode(), opts.encode()))
    return b"".join(out)


def gen_mountinfo(vfs) -> bytes:
    out = []
    for m in mounts.table(vfs):
        dev = m.fs.dev
        out.append(b"%d %d %d:%d %s %s %s - %s %s %s\n" % (
            m.id, m.parent_id, os.major(dev), os.minor(dev), _mangle(m.root_path), _mangle(m.path),
            m.options.encode(), m.fstype.encode(), m.source.encode(), (m.super_options or "rw").encode()))
    return b"".join(out)


# --- generators: the whole system ---------------------------------------------------------------

def _uptime(kernel) -> float:
    """The sandbox's CLOCK_BOOTTIME in seconds (sentry/clock.py), never the host's."""
    if kernel is None:
        return 0.0
    from sentry import clock
    return clock.uptime_ns(kernel) / 1e9


def gen_uptime(kernel) -> bytes:
    from sentry import clock
    # the reader's boottime, with its time namespace's offset (sentry/namespaces.py)
    up = clock.uptime_ns(kernel, getattr(kernel, "current", None)) / 1e9 if kernel is not None else 0.0
    # seconds and hundredths as Linux prints a timespec: a negative uptime (a boottime offset
    # below the sandbox's age) has whole seconds rounded down and positive hundredths
    sec, hundredths = divmod(int(up * 100), 100)
    return b"%d.%02d %.2f\n" % (sec, hundredths, max(0.0, up) * _ncpus())


def gen_loadavg(kernel) -> bytes:
    tasks = len(kernel.tasks) if kernel is not None else 1
    last = kernel.next_tid - 1 if kernel is not None else 1
    return b"0.00 0.00 0.00 1/%d %d\n" % (max(tasks, 1), last)


def _release() -> tuple[bytes, bytes]:
    try:
        from syscalls.info import KERNEL_RELEASE
    except ImportError:
        KERNEL_RELEASE = b"6.8.0-sentry"
    return KERNEL_RELEASE, b"#1 SMP PREEMPT sentry"


def config_gz(kernel) -> bytes:
    from sentry.kconfig import config_gz
    return config_gz()


def gen_version(kernel) -> bytes:
    release, version = _release()
    return b"Linux version %s (sentry@sentry) (gcc version 12.2.0) %s\n" % (release, version)


def gen_filesystems(kernel) -> bytes:
    return "".join(f"{a}\t{b}\n" for a, b in mounts.FILESYSTEMS).encode()


def gen_devices(kernel) -> bytes:
    return (b"Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n  5 /dev/tty\n  5 /dev/console\n"
            b"  5 /dev/ptmx\n136 pts\n\nBlock devices:\n")


def _memory_used(kernel) -> int:
    """Bytes mapped by the sandbox's processes (each address space once),
    as sysinfo(2) counts them."""
    if kernel is None:
        return 0
    seen, used = set(), 0
    for t in kernel.tasks.values():
        if id(t.mm) not in seen:
            seen.add(id(t.mm))
            used += sum(v.end - v.start for v in t.mm.vmas)
    return used


def gen_meminfo(kernel) -> bytes:
    total = VIRTUAL_RAM >> 10
    free = max(0, VIRTUAL_RAM - _memory_used(kernel)) >> 10
    rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free), ("Buffers", 0),
            ("Cached", 0), ("SwapCached", 0), ("Active", total - free), ("Inactive", 0),
            ("Active(anon)", total - free), ("Inactive(anon)", 0), ("Active(file)", 0),
            ("Inactive(file)", 0), ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 0),
            ("SwapFree", 0), ("Zswap", 0), ("Zswapped", 0), ("Dirty", 0), ("Writeback", 0),
            ("AnonPages", total - free), ("Mapped", 0), ("Shmem", 0), ("KReclaimable", 0),
            ("Slab", 0), ("SReclaimable", 0), ("SUnreclaim", 0), ("KernelStack", 0),
            ("PageTables", 0), ("SecPageTables", 0), ("NFS_Unstable", 0), ("Bounce", 0),
            ("WritebackTmp", 0), ("CommitLimit", total), ("Committed_AS", total - free),
            ("VmallocTotal", 34359738367), ("VmallocUsed", 0), ("VmallocChunk", 0),
            ("Percpu", 0), ("HardwareCorrupted", 0), ("AnonHugePages", 0),
            ("ShmemHugePages", 0), ("ShmemPmdMapped", 0), ("FileHugePages", 0),
            ("FilePmdMapped", 0)]
    out = ["%-16s%8d kB\n" % (name + ":", kb) for name, kb in rows]
    out += ["HugePages_Total:       0\n", "HugePages_Free:        0\n", "HugePages_Rsvd:        0\n",
            "HugePages_Surp:        0\n", "Hugepagesize:       2048 kB\n", "Hugetlb:               0 kB\n",
            "DirectMap4k:     %8d kB\n" % total]
    return "".join(out).encode()


def gen_stat(kernel) -> bytes:
    n = _ncpus()
    up = _uptime(kernel)
    idle = int(up * CLK_TCK)
    btime = int(time.time() - up)
    busy = sum(_cpu_ticks(t) for t in kernel.tasks.values()) if kernel is not None else 0
    cpu = lambda name, u, i: b"%s %d 0 0 %d 0 0 0 0 0 0\n" % (name, u, i)
    out = [cpu(b"cpu ", busy, idle * n)]
    out += [cpu(b"cpu%d" % i, busy if i == 0 else 0, idle) for i in range(n)]
    procs = kernel.next_tid - 1 if kernel is not None else 1
    running = sum(1 for t in kernel.tasks.values() if t.blocked is None) if kernel is not None else 1
    blocked = (len(kernel.tasks) - running) if kernel is not None else 0
    out.append(b"intr 0\nctxt 0\nbtime %d\nprocesses %d\nprocs_running %d\nprocs_blocked %d\n"
               b"softirq 0 0 0 0 0 0 0 0 0 0 0\n" % (btime, procs, max(running, 1), blocked))
    return b"".join(out)


AARCH64_CPU = """BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd0c
CPU revision\t: 1"""


def gen_cpuinfo(kernel) -> bytes:
    """x86-64: the sandbox's virtual CPU (sentry/vcpu.py), the one its cpuid describes."""
    if getattr(kernel, "arch", "x86_64") == "x86_64":
        from sentry import vcpu
        return vcpu.of(kernel).cpuinfo().encode()
    return "".join(f"processor\t: {i}\n{AARCH64_CPU}\n\n" for i in range(_ncpus())).encode()


# --- /proc/sys ----------------------------------------------------------------------------------

def _int_sysctl(fs, owner, attr: str) -> "GenInode":
    """A sysctl holding one int >= 0 in owner.attr (proc_dointvec_minmax, extra1 = 0)."""
    def write(data):
        try:
            value = int(bytes(data).split()[0])
        except (ValueError, IndexError):
            raise Errno(E.EINVAL) from None
        if not 0 <= value <= 0x7FFFFFFF:
            raise Errno(E.EINVAL)
        setattr(owner, attr, value)
        return len(data)
    return GenInode(fs, lambda: b"%d\n" % getattr(owner, attr), 0o644, writer=write, sysctl=True)


def _minmax_writer(lo: int, hi: int):
    """A writer that accepts one integer in [lo, hi] (proc_dointvec_minmax) and keeps nothing."""
    def write(data):
        try:
            value = int(bytes(data).split()[0])
        except (ValueError, IndexError):
            raise Errno(E.EINVAL) from None
        if not lo <= value <= hi:
            raise Errno(E.EINVAL)
        return len(data)
    return write


def _max_map_count(fs, kernel_of) -> "GenInode":
    """vm/max_map_count: the most areas a process may have (proc_dointvec_minmax, >= 0)."""
    from sentry.mm import MAX_MAP_COUNT

    def read():
        k = kernel_of()
        return b"%d\n" % (k.sysctl.max_map_count if k is not None else MAX_MAP_COUNT)

    def write(data):
        try:
            value = int(bytes(data).split()[0])
        except (ValueError, IndexError):
            raise Errno(E.EINVAL) from None
        if not 0 <= value <= 0x7FFFFFFF:
            raise Errno(E.EINVAL)
        if kernel_of() is not None:
            kernel_of().sysctl.max_map_count = value
        return len(data)
    return GenInode(fs, read, 0o644, writer=write, sysctl=True)


def make_sys(procfs) -> StaticDir:
    fs = procfs.fs

    def kernel():
        return procfs.kernel

    def const(text):
        return lambda: text

    def ro(value):
        return GenInode(fs, value if callable(value) else const(value), 0o444, sysctl=True)

    def hostname():
        k = kernel()
        return (k.hostname if k is not None else b"sentry") + b"\n"

    def set_hostname(data):
        name = data.split(b"\n", 1)[0]
        if len(name) > 64:
            raise Errno(E.EINVAL)
        if kernel() is not None:
            kernel().hostname = name
        return len(data)

    def domainname():
        k = kernel()
        return getattr(k, "domainname", b"(none)") + b"\n"  # setdomainname(2), syscalls/info.py

    def set_domain(data):
        name = data.split(b"\n", 1)[0]
        if len(name) > 64:
            raise Errno(E.EINVAL)
        if kernel() is not None:
            kernel().domainname = name
        return len(data)

    def random_uuid():
        k = kernel()
        raw = bytearray(k.random_bytes(16) if k is not None else os.urandom(16))
        raw[6] = raw[6] & 0x0F | 0x40
        raw[8] = raw[8] & 0x3F | 0x80
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}\n".encode()

    boot_id = []

    def get_boot_id():
        if not boot_id:
            boot_id.append(random_uuid())
        return boot_id[0]

    release, version = _release()
    sys_dir = StaticDir(fs)
    kern = sys_dir.add(b"kernel", StaticDir(fs))
    kern.add(b"hostname", GenInode(fs, hostname, 0o644, writer=set_hostname, sysctl=True))
    kern.add(b"domainname", GenInode(fs, domainname, 0o644, writer=set_domain, sysctl=True))
    for name, value in ((b"osrelease", release + b"\n"), (b"ostype", b"Linux\n"),
                        (b"version", version + b"\n"),
                        (b"threads-max", b"%d\n" % 4096), (b"ngroups_max", b"65536\n"),
                        (b"cap_last_cap", b"40\n"), (b"overflowuid", b"65534\n"),
                        (b"overflowgid", b"65534\n"), (b"randomize_va_space", b"0\n"),
                        (b"core_pattern", b"core\n"), (b"printk", b"4\t4\t1\t7\n"),
                        (b"tainted", b"0\n"), (b"panic", b"0\n")):
        kern.add(name, ro(value))
    keys_dir = kern.add(b"keys", StaticDir(fs))  # the key quotas and timers (sentry/keys.py)
    for name in (b"maxkeys", b"maxbytes", b"root_maxkeys", b"root_maxbytes", b"gc_delay",
                 b"persistent_keyring_expiry"):
        n = name.decode()
        keys_dir.add(name, GenInode(fs, (lambda n: lambda: kernel().keys.read_sysctl(n) if kernel() else b"")(n),
                                    0o644, writer=(lambda n: lambda d: kernel().keys.write_sysctl(n, d))(n),
                                    sysctl=True))
    rnd = kern.add(b"random", StaticDir(fs))
    rnd.add(b"boot_id", ro(get_boot_id))
    rnd.add(b"uuid", ro(random_uuid))
    rnd.add(b"entropy_avail", ro(b"256\n"))
    rnd.add(b"poolsize", ro(b"256\n"))
    vm = sys_dir.add(b"vm", StaticDir(fs))
    for name, value in ((b"overcommit_memory", b"0\n"), (b"overcommit_ratio", b"50\n"),
                        (b"mmap_min_addr", b"65536\n"),
                        (b"swappiness", b"60\n"), (b"overcommit_kbytes", b"0\n")):
        vm.add(name, ro(value))
    vm.add(b"max_map_count", _max_map_count(fs, kernel))  # enforced by sentry/mm.py
    # the sandbox keeps no page cache of its own (the host's is the host's): a valid request
    # (1-4, proc_dointvec_minmax) is accepted and has nothing to drop; write-only, as Linux's
    vm.add(b"drop_caches", GenInode(fs, const(b""), 0o200, writer=_minmax_writer(1, 4), sysctl=True))
    fsd = sys_dir.add(b"fs", StaticDir(fs))
    for name, value in ((b"file-max", b"9223372036854775807\n"), (b"file-nr", b"0\t0\t9223372036854775807\n"),
                        (b"protected_symlinks", b"1\n"), (b"protected_hardlinks", b"1\n")):
        fsd.add(name, ro(value))
    from sentry.aio import AIO_MAX_NR, count as aio_count  # Linux AIO's requests (sentry/aio.py)
    fsd.add(b"aio-nr", ro(lambda: b"%d\n" % aio_count(kernel())))
    fsd.add(b"aio-max-nr", ro(b"%d\n" % AIO_MAX_NR))
    from sentry.ipc.proc import add_sysctls
    add_sysctls(fs, kern, fsd, kernel)  # the IPC namespace's knobs (sentry/ipc/proc.py)
    from sentry.sysctl import add_knobs
    add_knobs(fs, kern, fsd, kernel)  # pid_max, ns_last_pid, nr_open, the pipe limits (sentry/sysctl.py)
    # kept and enforced: inotify's limits (sentry/vfs/notify.py), the lease break time (vfs/locks.py)
    inotify = fsd.add(b"inotify", StaticDir(fs))
    for name in (b"max_user_watches", b"max_user_instances", b"max_queued_events"):
        inotify.add(name, _int_sysctl(fs, procfs.vfs.notify, name.decode()))
    fsd.add(b"lease-break-time", _int_sysctl(fs, procfs.vfs.locks, "lease_break_time"))
    fan = fsd.add(b"fanotify", StaticDir(fs))
    for name in (b"max_queued_events", b"max_user_groups", b"max_user_marks"):
        fan.add(name, _int_sysctl(fs, procfs.vfs.notify, "fanotify_" + name.decode()))
    net = sys_dir.add(b"net", StaticDir(fs))
    core = net.add(b"core", StaticDir(fs))
    core.add(b"somaxconn", ro(b"4096\n"))
    ipv4 = net.add(b"ipv4", StaticDir(fs))
    ipv4.add(b"ip_local_port_range", ro(b"32768\t60999\n"))
    # each network namespace's own interface settings (kept, not acted on: lo has no
    # neighbours to forward to or filter from), read and written in the reader's namespace
    conf = ipv4.add(b"conf", StaticDir(fs))
    for dev in (b"all", b"default", b"lo"):
        d = conf.add(dev, StaticDir(fs))
        for name, value in _NET_CONF.items():
            d.add(name, _netns_sysctl(fs, kernel, b"ipv4/conf/%s/%s" % (dev, name), value))
    return sys_dir


# net.ipv4.conf.*: Linux's defaults for lo in a new namespace
_NET_CONF = {b"tag": 0, b"forwarding": 0, b"rp_filter": 0, b"accept_redirects": 1, b"send_redirects": 1,
             b"accept_source_route": 1, b"secure_redirects": 1, b"shared_media": 1, b"proxy_arp": 0,
             b"log_martians": 0, b"arp_ignore": 0, b"arp_announce": 0, b"disable_policy": 0,
             b"disable_xfrm": 0, b"route_localnet": 0, b"mc_forwarding": 0}


def _netns_sysctl(fs, kernel_of, key: bytes, default: int) -> "GenInode":
    """An integer kept per network namespace (the reader's: Linux's net sysctls are per netns)."""
    def values():
        k = kernel_of()
        task = k.current if k is not None else None
        ns = getattr(getattr(task, "nsproxy", None), "net", None)
        return ns.sysctl if ns is not None else {}

    def write(data):
        try:
            value = int(bytes(data).split()[0])
        except (ValueError, IndexError):
            raise Errno(E.EINVAL) from None
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise Errno(E.EINVAL)
        values()[key] = value
        return len(data)
    return GenInode(fs, lambda: b"%d\n" % values().get(key, default), 0o644, writer=write, sysctl=True)
