"""procfs and devfs without running a program: a VFS over a fake kernel whose
tasks carry just what /proc reads (sentry.task.Task's attributes)."""
import errno
import re
import time

import pytest

from sentry.caps import ROOT
from sentry.errors import Errno
from sentry.fdtable import FDTable
from sentry.mm import Vma
from sentry.task import DEFAULT_RLIMITS
from sentry.vfs import VFS
from sentry.vfs.file import (O_CREAT, O_DIRECTORY, O_RDONLY, O_RDWR, O_WRONLY, BufferStream)
from sentry.vfs.inode import Inode

EXE = "/bin/prog"
TEXT, HEAP, STACK = 0x400000, 0x600000, 0x7FFFFF7FF000


class FakeMM:
    def __init__(self):
        self.brk_start = HEAP
        self.vmas = [Vma(TEXT, TEXT + 0x1000, 1, EXE), Vma(TEXT + 0x1000, TEXT + 0x3000, 5, EXE),
                     Vma(TEXT + 0x3000, TEXT + 0x4000, 3, EXE),
                     Vma(HEAP, HEAP + 0x1000, 3, "[heap]"), Vma(HEAP + 0x1000, HEAP + 0x3000, 3, "[heap]"),
                     Vma(0x7FFFF7000000, 0x7FFFF7001000, 3), Vma(0x7FFFF7001000, 0x7FFFF7002000, 0),
                     Vma(STACK, STACK + (8 << 20), 3, "[stack]")]


class FakeCpu:
    def cpu_time_ns(self):
        return 250_000_000


class FakePlatform:
    name = "unicorn"


class FakeKernel:
    arch = "x86_64"
    platform = FakePlatform()

    def __init__(self):
        self.tasks = {}
        self.next_tid = 1
        self.hostname = b"sentry"
        self.boot_time = time.monotonic() - 12.5
        self.vfs = VFS(self.random_bytes, kernel=self)

    @staticmethod
    def random_bytes(n):
        return bytes(range(n))

    def add_task(self, tgid=None, **kw):
        t = FakeTask(self, self.next_tid, tgid, **kw)
        self.tasks[t.tid] = t
        self.next_tid += 1
        return t


class FakeTask:
    def __init__(self, kernel, tid, tgid=None, mm=None, fds=None):
        self.kernel, self.vfs = kernel, kernel.vfs
        self.tid, self.tgid = tid, tgid or tid
        self.ppid = 0
        self.cpu = FakeCpu()
        self.mm = mm or FakeMM()
        self.fds = fds or FDTable()
        self.exe_path = EXE
        self.argv, self.envp = [b"prog", b"arg one", b""], [b"PATH=/bin", b"A=b"]
        self.cwd = kernel.vfs.root_loc
        self.umask = 0o022
        self.uid = self.euid = self.gid = self.egid = 0
        self.fsuid, self.fsgid, self.groups, self.caps = 0, 0, None, ROOT  # what file permissions read
        self.sigactions, self.sigmask, self.pending_signals = {}, 0, 0
        self.rlimits = dict(DEFAULT_RLIMITS)
        self.comm = "prog"
        self.no_new_privs = False
        self.exit_status = self.blocked = None
        self.auxv = [(6, 4096), (9, TEXT + 0x1000)]


@pytest.fixture
def k():
    kernel = FakeKernel()
    kernel.add_task()
    return kernel


def vfs_of(k):
    return k.vfs, k.tasks[1]


def read(k, path, task=None):
    vfs = k.vfs
    f = vfs.open(task or k.tasks[1], -100, path.encode() if isinstance(path, str) else path, O_RDONLY, 0)
    out = b""
    while chunk := f.read(4096):
        out += chunk
    return out


def err(fn, *args):
    with pytest.raises(Errno) as e:
        fn(*args)
    return e.value.errno


def names(k, path, task=None):
    f = k.vfs.open(task or k.tasks[1], -100, path.encode(), O_RDONLY | O_DIRECTORY, 0)
    out = []
    f.getdents(1 << 16, lambda ino, off, kind, name: out.append(name) or b"x")
    return [n.decode() for n in out if n not in (b".", b"..")]


# --- the tree and the links --------------------------------------------------------------------

def test_root_lists_processes_and_system_files(k):
    thread = k.add_task(tgid=1)   # a second thread of pid 1: not listed, still reachable
    other = k.add_task()
    got = names(k, "/proc")
    for want in ("1", str(other.tid), "self", "thread-self", "cpuinfo", "meminfo", "uptime", "loadavg",
                 "mounts", "version", "filesystems", "sys", "stat"):
        assert want in got
    assert str(thread.tid) not in got
    assert k.vfs.lookup(thread, -100, b"/proc/%d" % thread.tid, follow=False).is_dir()
    assert names(k, "/proc/1/task") == ["1", str(thread.tid)]
    assert b"Threads:\t2\n" in read(k, "/proc/1/status")
    assert err(k.vfs.lookup, k.tasks[1], -100, b"/proc/99") == errno.ENOENT
    assert err(k.vfs.lookup, k.tasks[1], -100, b"/proc/01") == errno.ENOENT


def test_self_is_the_reader(k):
    vfs, t1 = vfs_of(k)
    t2 = k.add_task()
    assert vfs.readlink(t1, -100, b"/proc/self") == b"1"
    assert vfs.readlink(t2, -100, b"/proc/self") == b"%d" % t2.tid
    assert vfs.readlink(t2, -100, b"/proc/thread-self") == b"%d/task/%d" % (t2.tid, t2.tid)
    assert vfs.lookup(t2, -100, b"/proc/self") is vfs.lookup(t2, -100, b"/proc/%d" % t2.tid)
    assert vfs.lookup(t2, -100, b"/proc/thread-self/comm") is not None
    t2.comm = "second"
    assert read(k, "/proc/self/comm", t2) == b"second\n"
    assert read(k, "/proc/self/comm", t1) == b"prog\n"


def test_exe_cwd_root_links(k):
    vfs, t = vfs_of(k)
    vfs.mkdir(t, -100, b"/tmp/work", 0o755)
    t.cwd = vfs.lookup_loc(t, -100, b"/tmp/work")
    assert vfs.readlink(t, -100, b"/proc/self/exe") == b"/bin/prog"
    assert vfs.readlink(t, -100, b"/proc/1/cwd") == b"/tmp/work"
    assert vfs.readlink(t, -100, b"/proc/1/root") == b"/"
    assert vfs.lookup(t, -100, b"/proc/self/cwd") is t.cwd[-1][1]
    assert vfs.lookup(t, -100, b"/proc/self/root/tmp") is vfs.lookup(t, -100, b"/tmp")
    assert vfs.lookup(t, -100, b"/proc/self/cwd/..") is vfs.lookup(t, -100, b"/tmp")
    # the cwd is reached as the object even after its name is gone
    vfs.unlink(t, -100, b"/tmp/work", rmdir=True)
    assert vfs.lookup(t, -100, b"/proc/self/cwd") is t.cwd[-1][1]


def test_bare_task_without_kernel():
    """A VFS made without a kernel still answers /proc/self for the reader."""
    class T:
        def __init__(self, vfs):
            self.cwd = vfs.root_loc
            self.exe_path = "/bin/prog"
            self.uid = self.gid = self.fsuid = self.fsgid = 0
            self.groups, self.caps = None, ROOT
    vfs = VFS(lambda n: bytes(n))
    assert vfs.readlink(T(vfs), -100, b"/proc/self/exe") == b"/bin/prog"


# --- per-process files --------------------------------------------------------------------------

def test_status(k):
    t = k.tasks[1]
    t.sigmask = 1 << 9                           # SIGUSR1 blocked
    t.sigactions = {12: (1).to_bytes(8, "little") + bytes(24),        # SIGUSR2 ignored
                    2: (0x401000).to_bytes(8, "little") + bytes(24)}  # SIGINT caught
    t.pending_signals = 1 << 9
    t.umask = 0o027
    t.ppid = 0
    st = read(k, "/proc/1/status").decode()
    fields = dict(line.split(":\t", 1) for line in st.splitlines())
    assert fields["Name"] == "prog" and fields["Pid"] == "1" and fields["Tgid"] == "1"
    assert fields["PPid"] == "0" and fields["Umask"] == "0027" and fields["State"] == "R (running)"
    assert fields["Uid"] == "0\t0\t0\t0" and fields["Gid"] == "0\t0\t0\t0"
    assert fields["SigBlk"] == "%016x" % (1 << 9)
    assert fields["SigPnd"] == "%016x" % (1 << 9)
    assert fields["SigIgn"] == "%016x" % (1 << 11)
    assert fields["SigCgt"] == "%016x" % (1 << 1)
    assert fields["SigQ"] == "1/4096"
    assert fields["Threads"] == "1" and fields["FDSize"] == "64"
    assert re.fullmatch(r" *\d+ kB", fields["VmSize"]) and re.fullmatch(r" *\d+ kB", fields["VmRSS"])
    assert int(fields["VmSize"].split()[0]) >= int(fields["VmRSS"].split()[0]) > 0
    assert fields["VmStk"].split()[0] == "8192"
    assert fields["CapEff"] == "000001ffffffffff"
    assert "Cpus_allowed" in fields and "Cpus_allowed_list" in fields
    t.blocked = object()
    assert b"State:\tS (sleeping)\n" in read(k, "/proc/1/status")


def test_stat_statm_cmdline_environ_auxv_limits(k):
    stat = read(k, "/proc/1/stat")
    assert stat.startswith(b"1 (prog) R 0 1 1 0 -1 ") and stat.endswith(b"\n")
    rest = stat.rsplit(b")", 1)[1].split()
    assert len(rest) + 2 == 52
    assert int(rest[11]) == 25          # utime: 250 ms in clock ticks
    assert int(rest[23]) == TEXT + 0x1000 and int(rest[24]) == TEXT + 0x3000   # startcode, endcode
    statm = read(k, "/proc/1/statm").split()
    assert len(statm) == 7 and int(statm[0]) >= int(statm[1])
    assert read(k, "/proc/1/cmdline") == b"prog\0arg one\0\0"
    assert read(k, "/proc/1/environ") == b"PATH=/bin\0A=b\0"
    aux = read(k, "/proc/1/auxv")
    assert len(aux) == 48 and aux[:16] == (6).to_bytes(8, "little") + (4096).to_bytes(8, "little")
    assert aux[-16:] == bytes(16)
    limits = read(k, "/proc/1/limits").decode().splitlines()
    assert limits[0] == "Limit                     Soft Limit           Hard Limit           Units     "
    assert limits[4] == "Max stack size            8388608              unlimited            bytes     "
    assert limits[8] == "Max open files            1024                 4096                 files     "
    assert limits[14] == "Max nice priority         0                    0                    "


def test_maps(k):
    lines = read(k, "/proc/1/maps").decode().splitlines()
    assert lines[0].startswith("00400000-00401000 r--p 00000000 ")
    assert lines[1].startswith("00401000-00403000 r-xp 00001000 ")
    assert lines[2].startswith("00403000-00404000 rw-p 00003000 ")
    assert lines[3] == "00600000-00603000 rw-p 00000000 00:00 0" + " " * 34 + "[heap]"  # merged
    assert lines[4] == "7ffff7000000-7ffff7001000 rw-p 00000000 00:00 0 "
    assert lines[5] == "7ffff7001000-7ffff7002000 ---p 00000000 00:00 0 "
    assert lines[6].endswith(" [stack]") and lines[6].index("[stack]") == 73
    assert all(line.index(EXE) == 73 for line in lines[:3])


def test_comm_is_writable(k):
    t = k.tasks[1]
    f = k.vfs.open(t, -100, b"/proc/self/comm", O_WRONLY, 0)
    assert f.write(b"a-very-long-name-indeed\n") == 24
    assert t.comm == "a-very-long-nam"
    assert b"Name:\ta-very-long-nam\n" in read(k, "/proc/1/status")


# --- fd/ and fdinfo/ -----------------------------------------------------------------------------

def test_fd_links_and_reopen(k):
    vfs, t = vfs_of(k)
    f = vfs.open(t, -100, b"/tmp/data", O_CREAT | O_RDWR, 0o644)
    f.write(b"hello")
    fd = t.fds.install(f)
    assert names(k, "/proc/self/fd") == [str(fd)]  # the listing's own fd is not installed here
    assert vfs.readlink(t, -100, b"/proc/self/fd/%d" % fd) == b"/tmp/data"
    link = vfs.lookup(t, -100, b"/proc/self/fd/%d" % fd, follow=False)
    assert link.is_symlink() and link.mode & 0o777 == 0o700
    assert vfs.lookup(t, -100, b"/proc/self/fd/%d" % fd) is f.inode
    again = vfs.open(t, -100, b"/proc/self/fd/%d" % fd, O_RDONLY, 0)
    assert again is not f and again.inode is f.inode and again.read(10) == b"hello"
    assert again.path == "/tmp/data"
    # unlinked: the link says so, and still leads to the file
    vfs.unlink(t, -100, b"/tmp/data", rmdir=False)
    assert vfs.readlink(t, -100, b"/proc/self/fd/%d" % fd) == b"/tmp/data (deleted)"
    assert vfs.open(t, -100, b"/proc/self/fd/%d" % fd, O_RDONLY, 0).read(10) == b"hello"
    f.seek(3, 0)
    info = read(k, "/proc/self/fdinfo/%d" % fd).decode()
    assert info.startswith("pos:\t3\nflags:\t02\nmnt_id:\t21\nino:\t")
    t.fds.close(fd)
    assert err(vfs.lookup, t, -100, b"/proc/self/fd/%d" % fd) == errno.ENOENT
    assert err(vfs.lookup, t, -100, b"/proc/self/fdinfo/%d" % fd) == errno.ENOENT


def test_fd_of_a_directory_and_a_stream(k):
    vfs, t = vfs_of(k)
    d = t.fds.install(vfs.open(t, -100, b"/tmp", O_RDONLY | O_DIRECTORY, 0))
    assert vfs.lookup_loc(t, -100, b"/proc/self/fd/%d" % d) == vfs.lookup_loc(t, -100, b"/tmp")
    out = BufferStream(Inode(0), O_WRONLY)
    t.fds.install_at(1, out)
    assert vfs.readlink(t, -100, b"/proc/self/fd/1") == b"pipe:[%d]" % out.inode.ino
    assert vfs.lookup(t, -100, b"/proc/self/fd/1", follow=False).mode & 0o777 == 0o300
    # /dev/stdout reopens the very stream
    g = vfs.open(t, -100, b"/dev/stdout", O_WRONLY | O_CREAT | 0o1000, 0o666)
    g.write(b"through /dev/stdout\n")
    assert bytes(out.data) == b"through /dev/stdout\n"


# --- mounts and the system files ------------------------------------------------------------------

def test_mounts(k):
    mounts = read(k, "/proc/self/mounts").decode().splitlines()
    assert mounts[0] == "tmpfs / tmpfs rw,relatime 0 0"
    assert "devtmpfs /dev devtmpfs rw,nosuid,relatime,mode=755 0 0" in mounts
    assert "tmpfs /dev/shm tmpfs rw,relatime 0 0" in mounts
    assert "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0" in mounts
    assert read(k, "/proc/mounts") == read(k, "/proc/self/mounts")
    info = [line.split() for line in read(k, "/proc/1/mountinfo").decode().splitlines()]
    ids = {row[4]: (row[0], row[1]) for row in info}
    assert ids["/"][0] == "21"
    assert ids["/dev/shm"][1] == ids["/dev"][0] and ids["/proc"][1] == ids["/"][0]
    assert all(row[6] == "-" for row in info)


def test_system_files(k):
    k.add_task()
    mem = read(k, "/proc/meminfo").decode()
    assert mem.startswith("MemTotal:        4194304 kB\nMemFree:   ")
    assert read(k, "/proc/loadavg") == b"0.00 0.00 0.00 1/2 2\n"
    up, idle = map(float, read(k, "/proc/uptime").split())
    assert 12 <= up < 100 and idle >= up
    assert read(k, "/proc/version").startswith(b"Linux version 6.8.0-sentry ")
    cpu = read(k, "/proc/cpuinfo").decode()
    # the sandbox's virtual CPU (sentry/vcpu.py), here from the host's cpuid: the fake platform has none
    assert cpu.startswith("processor\t: 0\nvendor_id\t: ") and "model name\t: sentry virtual CPU\n" in cpu
    assert " sse2 " in cpu and " hypervisor " not in cpu
    stat = read(k, "/proc/stat").decode()
    assert stat.startswith("cpu  ") and "\ncpu0 " in stat and re.search(r"\nbtime \d+\n", stat)
    assert read(k, "/proc/sys/kernel/hostname") == b"sentry\n"
    assert read(k, "/proc/sys/kernel/osrelease") == b"6.8.0-sentry\n"
    assert read(k, "/proc/sys/kernel/pid_max") == b"4194304\n"
    assert read(k, "/proc/sys/vm/overcommit_memory") == b"0\n"
    assert read(k, "/proc/sys/fs/file-max").strip().isdigit()
    assert re.fullmatch(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n",
                        read(k, "/proc/sys/kernel/random/boot_id"))
    assert read(k, "/proc/sys/kernel/random/boot_id") == read(k, "/proc/sys/kernel/random/boot_id")


# --- what cannot be done -----------------------------------------------------------------------

def test_writes_and_names_fail_as_linux(k):
    vfs, t = vfs_of(k)
    assert err(vfs.open(t, -100, b"/proc/self/status", O_WRONLY, 0).write, b"x") == errno.EINVAL
    assert err(vfs.open(t, -100, b"/proc/cpuinfo", O_RDWR, 0).write, b"x") == errno.EIO
    assert err(vfs.open, t, -100, b"/proc/sys/kernel/osrelease", O_WRONLY, 0) == errno.EACCES
    assert err(vfs.open, t, -100, b"/proc/new", O_CREAT | O_WRONLY, 0o644) == errno.ENOENT
    assert err(vfs.open, t, -100, b"/proc/self/new", O_CREAT | O_WRONLY, 0o644) == errno.ENOENT
    assert err(vfs.mkdir, t, -100, b"/proc/new", 0o755) == errno.ENOENT
    assert err(vfs.unlink, t, -100, b"/proc/self/status", False) == errno.EPERM
    assert err(vfs.unlink, t, -100, b"/proc/self/fd", True) == errno.EPERM
    assert err(vfs.open, t, -100, b"/proc/self", O_WRONLY, 0) == errno.EISDIR
    assert err(vfs.lookup(t, -100, b"/proc/self/status").chmod, 0o644) == errno.EPERM
    f = vfs.open(t, -100, b"/proc/self/status", O_RDONLY, 0)
    assert err(f.seek, 0, 2) == errno.EINVAL
    assert f.seek(5, 0) == 5 and f.read(3) == f.pread(3, 5) == read(k, "/proc/self/status")[5:8]
    # the sandbox's own hostname can be set, as root can on Linux
    w = vfs.open(t, -100, b"/proc/sys/kernel/hostname", O_WRONLY, 0)
    assert w.write(b"box\n") == 4 and k.hostname == b"box"


# --- devfs ----------------------------------------------------------------------------------------

def test_devfs(k):
    vfs, t = vfs_of(k)
    got = names(k, "/dev")
    for want in ("null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout", "stderr", "fd",
                 "shm", "pts"):
        assert want in got
    assert "ptmx" in got  # (opening it makes a host pseudo-terminal: tests/test_pty.py, fixtures/ptys.c)
    assert err(vfs.open, t, -100, b"/dev/tty", O_RDWR, 0) == errno.ENXIO
    assert vfs.readlink(t, -100, b"/dev/stderr") == b"/proc/self/fd/2"
    assert vfs.readlink(t, -100, b"/dev/fd") == b"/proc/self/fd"
    assert names(k, "/dev/pts") == []
    f = vfs.open(t, -100, b"/dev/shm/seg", O_CREAT | O_RDWR, 0o600)
    f.write(b"shared")
    assert vfs.open(t, -100, b"/dev/shm/seg", O_RDONLY, 0).read(10) == b"shared"
    shm, tmp = vfs.lookup(t, -100, b"/dev/shm"), vfs.lookup(t, -100, b"/tmp")
    assert shm.fs is not tmp.fs and shm.mode & 0o7777 == 0o1777
    assert err(shm.rename, b"seg", tmp, b"seg") == errno.EXDEV
    assert vfs.open(t, -100, b"/dev/zero", O_RDONLY, 0).read(4) == bytes(4)


def test_magic_links_are_marked(k):
    vfs, t = vfs_of(k)
    t.fds.install(vfs.open(t, -100, b"/tmp", O_RDONLY | O_DIRECTORY, 0))
    for path in (b"/proc/self/exe", b"/proc/self/cwd", b"/proc/self/root", b"/proc/self/fd/0"):
        assert vfs.lookup(t, -100, path, follow=False).magic_link, path
    for path in (b"/proc/self", b"/proc/thread-self", b"/proc/mounts", b"/dev/stdout"):
        assert not vfs.lookup(t, -100, path, follow=False).magic_link, path


def test_rename_and_new_names_in_proc(k):
    vfs, t = vfs_of(k)
    d = vfs.lookup(t, -100, b"/proc/self")
    assert err(d.rename, b"status", d, b"new") == errno.ENOENT
    assert err(d.rename, b"status", d, b"stat") == errno.EPERM
    assert err(d.rename, b"status", vfs.lookup(t, -100, b"/tmp"), b"x") == errno.EXDEV
    assert err(d.symlink, b"l", b"x") == errno.ENOENT
    assert err(d.tmpfile, 0o600) == errno.EOPNOTSUPP
