"""The file syscalls of issue 4, differentially: each fixture runs natively
(the oracle) and under `sentry run`, and stdout, exit status and stderr must
match, for every variant and platform.

- names, attrs, sizes, copyrw, locks, fdops work in a fresh directory under
  /tmp (the sandbox's is memory, the host's a disk: the fixtures print only
  what both must agree on).
- mounts works in a host directory on another filesystem (the host's
  /dev/shm) that the sandbox gets with --mount HOST:HOST:rw, and across it and
  /tmp: EXDEV, and the calls on host-backed files.
- rofs tries every change on a read-only mount: natively in a private mount
  namespace where the directory is bound read-only (the fixture refuses to
  run where the directory is writable), in the sandbox a :ro --mount or the
  default view's /etc.
- What the sandbox answers on purpose where the host would do otherwise is
  checked against expectations, sandbox only: attrs' "set" mode (extended
  attributes are stored: fixtures/xattrs.c is their differential test).
- The lock table and the walk's openat2 options, without running a program.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass

import pytest

import harness
from harness import PLATFORMS, VARIANTS

TMP = "{tmp}"  # a fresh /tmp path, the same for the native and the sandboxed run


@dataclass(frozen=True)
class Case:
    fixture: str
    args: tuple[str, ...] = (TMP,)
    id: str = ""
    expect: tuple[bytes, ...] = ()  # must appear in the native stdout
    timeout: float = harness.RUN_TIMEOUT

    @property
    def name(self) -> str:
        return f"{self.fixture}-{self.id}" if self.id else self.fixture


CASES = [
    Case("names", expect=(b"rename dir into itself: -1 EINVAL\n", b"renameat2 exchange: 0\n",
                          b"linkat tmpfile: 0\n", b"chain of 41: -1 ELOOP\n", b"mknod fifo: 0\n",
                          b"rmdir root: -1 EBUSY\n", b"done\n")),
    Case("attrs", expect=(b"fchmodat2 nofollow on a link: -1 ENOTSUP\n", b"f: uid=1234 gid=5678 mode=0644\n",
                          b"f omit: atime=1000.000000500 mtime=3000.000000000\n", b"getxattr: -1 ENODATA\n",
                          b"done\n")),
    Case("sizes", expect=(b"ftruncate read-only fd: -1 EINVAL\n", b"punch hole: 0\n", b"fsync /dev/null: -1 EINVAL\n",
                          b"SEEK_HOLE 0: 10\n", b"statfs: bsize=4096 namelen=255", b"done\n")),
    Case("copyrw", expect=(b"preadv2 at -1: 10\n", b"pwrite O_APPEND: 2\n", b"copy with offsets: 4\n",
                           b"copy overlapping: -1 EINVAL\n", b"done\n")),
    Case("locks", expect=(b"ofd query: write whence=0 start=0 len=10 pid=self\n",
                          b"a exclusive (b lost its lock): 0\n", b"after close of both: unlocked", b"done\n")),
    Case("fdops", expect=(b"beneath dotdot out: -1 EXDEV\n", b"in-root dotdot stays: ok reg\n",
                          b"no-magiclinks: -1 ELOOP\n", b"no-xdev into /proc: -1 EXDEV\n",
                          b"close_range middle: 0\n", b"F_GET_SEALS exec: 62\n", b"done\n")),
]
_ids = [c.name for c in CASES]
assert len(set(_ids)) == len(_ids), "duplicate case ids"
FIXTURES = {c.fixture for c in CASES} | {"mounts", "rofs"}  # every fixture this file runs


def _args(case: Case, make_tmp) -> list[str]:
    tmp = None
    out = []
    for a in case.args:
        if a == TMP:
            tmp = tmp or make_tmp(case.fixture)
            a = tmp
        out.append(a)
    return out


def _check_native(label: str, run: harness.Run, expect=()) -> None:
    assert not run.timed_out, f"native {label} timed out"
    assert run.status == 0, f"native {label}: exit {run.status}\nstderr:\n{run.stderr_text()}"
    assert b"fixture error" not in run.stdout + run.stderr, f"native {label}:\n{run.stderr_text()}"
    for e in expect:
        assert e in run.stdout, (f"native {label}: {e!r} not in stdout:\n"
                                 f"{harness._clip(run.stdout.decode(errors='replace'))}")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_native(case: Case, variant: str, host_tmp_path_cleanup):
    """The fixture itself behaves as intended on the host kernel."""
    prog = harness.build(case.fixture, variant)
    run = harness.run_native(prog, _args(case, host_tmp_path_cleanup))
    _check_native(case.name, run, case.expect)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_differential(case: Case, variant: str, platform: str, host_tmp_path_cleanup):
    prog = harness.build(case.fixture, variant)
    args = _args(case, host_tmp_path_cleanup)
    # The working directory `/` on both sides: a call from it into /tmp (names' linkat of the
    # cwd) crosses no mount in either, as it would from a lent directory in the sandbox (EXDEV).
    native = harness.run_native(prog, args, cwd="/")
    _check_native(case.name, native, case.expect)
    sandbox = harness.run_sandbox(platform, prog, args, timeout=case.timeout, options=["--no-cwd"])
    harness.compare(native, sandbox, label=f"{case.name} ({variant})")


# --- a host directory lent read-write, and EXDEV across it -----------------------------------
SHM = "/dev/shm"


@pytest.fixture
def shm_dir():
    """An empty host directory on another filesystem than /tmp (the host's tmpfs /dev/shm)."""
    if not os.path.isdir(SHM) or os.stat(SHM).st_dev == os.stat("/tmp").st_dev:
        pytest.fail(f"{SHM} is not a filesystem of its own on this host")
    path = f"{SHM}/sentry-test-mnt-{uuid.uuid4().hex[:12]}"
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# On purpose: through a rw mount the sandbox makes no FIFO or socket node on the host (EPERM)
HOST_NODES = ((b"mknod fifo: 0\n", b"mknod fifo: -1 EPERM\n"), (b"mknod sock: 0\n", b"mknod sock: -1 EPERM\n"),
              (b"mnt-ls: fifo fifo\n", b""), (b"mnt-ls: sock sock\n", b""), (b"list: 13\n", b"list: 11\n"))


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_mounts(variant, platform, shm_dir, host_tmp_path_cleanup):
    prog = harness.build("mounts", variant)
    args = [shm_dir, host_tmp_path_cleanup("mounts")]
    native = harness.run_native(prog, args)
    _check_native("mounts", native, (b"rename mount to tmp: -1 EXDEV\n", b"mount f_type=0x1021994 rdonly=0",
                                     b"SEEK_DATA 0: 524288\n", b"linkat it: 0\n", b"done\n"))
    assert os.listdir(shm_dir) == [], "the native run left files in the mount"
    for line, refused in HOST_NODES:
        native.stdout = native.stdout.replace(line, refused)
    sandbox = harness.run_sandbox(platform, prog, args, options=["--mount", f"{shm_dir}:{shm_dir}:rw"])
    harness.compare(native, sandbox, label=f"mounts ({variant})")
    assert os.listdir(shm_dir) == [], "the sandboxed run left files in the mount"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_large_transfers_on_a_rw_mount(variant, platform, tmp_path):
    """fixtures/bigio.c on a host file: the sizes where the platform moves the bytes
    between the host file and guest memory itself (pread64/pwrite64 in the traced
    process, preadv/pwritev on unicorn's host pages), faults part way included."""
    from test_fixtures import BIGIO_EXPECT
    prog = harness.build("bigio", variant)
    target = str(tmp_path / "big")
    native = harness.run_native(prog, [target])
    _check_native("bigio", native, BIGIO_EXPECT)
    sandbox = harness.run_sandbox(platform, prog, [target], options=["--mount", f"{tmp_path}:{tmp_path}:rw"])
    harness.compare(native, sandbox, label=f"bigio on a rw mount ({variant})")
    assert os.listdir(tmp_path) == [], "the sandboxed run left files in the mount"


# --- read-only mounts ----------------------------------------------------------------------------
RO_SCRIPT = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'


def _native_read_only(directory: str, prog, args) -> harness.Run:
    """Run prog natively where directory is bound read-only (a private mount namespace)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.fail("a read-only bind mount for the native run needs unshare and root")
    probe = subprocess.run([unshare, "-m", "--", "/bin/sh", "-c", RO_SCRIPT, "sh", directory, "/bin/true"],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"cannot bind {directory} read-only: {probe.stderr.decode(errors='replace').strip()}")
    return harness.run_native(unshare, ["-m", "--", "/bin/sh", "-c", RO_SCRIPT, "sh", directory, str(prog), *args])


def _tree_digest(root: str) -> str:
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(d, name))
            h.update(f"{d}/{name} {st.st_mode:o} {st.st_size} {st.st_mtime_ns} {st.st_nlink}\n".encode())
    return h.hexdigest()


ROFS_EXPECT = (b"rdonly: 1\n", b"mkdir: -1 EROFS\n", b"mkdir existing dir: -1 EEXIST\n",
               b"unlink missing: -1 EROFS\n", b"rename to tmp: -1 EXDEV\n", b"truncate dir: -1 EISDIR\n",
               b"access write: -1 EROFS\n", b"open read-only truncating: -1 EROFS\n", b"done\n")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_read_only_mount(variant, platform, tmp_path, host_tmp_path_cleanup):
    """A host directory lent :ro refuses every change with EROFS, as a read-only bind mount does."""
    ro = str(tmp_path / "ro")
    os.makedirs(f"{ro}/sub")
    (tmp_path / "ro" / "file").write_text("read-only\n")
    (tmp_path / "ro" / "sub" / "inner").write_text("x\n")
    before = _tree_digest(ro)
    prog = harness.build("rofs", variant)
    args = [ro, "file", "sub", host_tmp_path_cleanup("rofs")]
    native = _native_read_only(ro, prog, args)
    _check_native("rofs", native, ROFS_EXPECT)
    sandbox = harness.run_sandbox(platform, prog, args, options=["--mount", f"{ro}:{ro}:ro"])
    harness.compare(native, sandbox, label=f"rofs ({variant})")
    assert _tree_digest(ro) == before, "the read-only directory changed on the host"


def _etc_subdir() -> str:
    for name in sorted(os.listdir("/etc")):
        p = os.path.join("/etc", name)
        if os.path.isdir(p) and not os.path.islink(p) and os.listdir(p):
            return name
    pytest.fail("no non-empty directory in /etc")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_read_only_etc(variant, platform, host_tmp_path_cleanup):
    """The default view lends /etc read-only: every change is EROFS (the expectation
    comes from the read-only bind of test_read_only_mount; the host's /etc itself is
    never handed to a program that tries to change it natively)."""
    assert os.path.isfile("/etc/passwd"), "no /etc/passwd on this host"
    listing = sorted(os.listdir("/etc"))
    passwd = os.stat("/etc/passwd")
    prog = harness.build("rofs", variant)
    args = ["/etc", "passwd", _etc_subdir(), host_tmp_path_cleanup("rofs-etc")]
    sandbox = harness.run_sandbox(platform, prog, args)
    harness.check_sentry_sane(sandbox)
    for line in ROFS_EXPECT:
        assert line in sandbox.stdout, f"{line!r} not in the sandbox's output:\n{sandbox.stdout.decode()}"
    assert sorted(os.listdir("/etc")) == listing
    after = os.stat("/etc/passwd")
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (passwd.st_size, passwd.st_mtime_ns, passwd.st_ino)


# --- what the sandbox answers on purpose ---------------------------------------------------------
@pytest.mark.parametrize("platform", PLATFORMS)
def test_setxattr_stores(platform, host_tmp_path_cleanup):
    prog = harness.build("attrs", "glibc-static")
    run = harness.run_sandbox(platform, prog, [host_tmp_path_cleanup("xattr"), "set"])
    harness.check_sentry_sane(run)
    assert run.status == 0 and run.stdout == (
        b"setxattr: 0\nlsetxattr: -1 EEXIST\nfsetxattr: 0\n"
        b"setxattr unknown namespace: -1 ENOTSUP\n"), f"{run.stdout!r}\n{run.stderr_text()}"


def test_compatibility_table_names_the_file_syscalls():
    """Each syscall of this work has a handler on both architectures, with a note when partial."""
    from syscalls.registry import PARTIAL, table_for
    from syscalls.tables import BY_ARCH
    names = ("rename renameat renameat2 link linkat symlink symlinkat chmod fchmod fchmodat fchmodat2 chown "
             "fchown lchown fchownat utimensat utime utimes futimesat truncate ftruncate fallocate fsync "
             "fdatasync sync syncfs sync_file_range statfs fstatfs flock close_range copy_file_range preadv2 "
             "pwritev2 openat2 mknod mknodat memfd_create getxattr lgetxattr fgetxattr listxattr llistxattr "
             "flistxattr setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr fadvise64").split()
    for arch in BY_ARCH:
        table = dict(zip(BY_ARCH[arch], table_for(arch)))
        for name in names:
            if name not in table:
                continue  # aarch64 has only the *at forms
            entry = table[name]
            assert entry is not None, f"{name} has no handler on {arch}"
            assert entry.status != PARTIAL or entry.note, f"{name} is partial without a note"


# --- pure pieces: the lock table, the walk's openat2 options ------------------------------------
def test_lock_table_splits_and_merges():
    from sentry.vfs.locks import F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, LockTable
    t, me, other, key = LockTable(), object(), object(), (1, 2)
    t.set(key, me, F_WRLCK, 0, 9, 1, False)
    t.set(key, me, F_RDLCK, 4, 4, 1, False)
    spans = sorted((l.start, l.end, l.kind) for l in t.records[key])
    assert spans == [(0, 3, F_WRLCK), (4, 4, F_RDLCK), (5, 9, F_WRLCK)]
    t.set(key, me, F_WRLCK, 4, 4, 1, False)
    assert [(l.start, l.end) for l in t.records[key]] == [(0, 9)]
    assert t.conflict(key, other, F_RDLCK, 9, OFFSET_MAX).start == 0
    assert t.conflict(key, me, F_WRLCK, 0, 9) is None
    with pytest.raises(Exception) as e:
        t.set(key, other, F_RDLCK, 5, 5, 2, True)
    assert e.value.errno == errno.EAGAIN
    t.set(key, me, F_UNLCK, 0, OFFSET_MAX, 1, False)
    assert key not in t.records


def test_walk_resolve_options():
    from sentry.errors import Errno
    from sentry.vfs import (RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV, VFS)
    from sentry.vfs.inode import DirInode, FileSystem, SymlinkInode

    class T:
        umask = 0o022
        exe_path = "/bin/prog"
        uid = euid = fsuid = gid = egid = fsgid = 0
        groups = ()

    vfs = VFS(lambda n: bytes(n))
    t = T()
    t.cwd = vfs.root_loc
    top = vfs.makedirs(b"/tmp/top")
    top.add(b"d", DirInode()).add(b"up", SymlinkInode(b"../.."))
    top.add(b"abs", SymlinkInode(b"/tmp"))
    start = vfs.walk(t, vfs.root_loc, b"/tmp/top").loc

    def err(path, resolve):
        with pytest.raises(Errno) as e:
            vfs.walk(t, start, path, resolve=resolve)
        return e.value.errno

    assert err(b"d/up", RESOLVE_BENEATH) == errno.EXDEV
    assert err(b"abs", RESOLVE_BENEATH) == errno.EXDEV
    assert err(b"/tmp", RESOLVE_BENEATH) == errno.EXDEV
    assert err(b"abs", RESOLVE_NO_SYMLINKS) == errno.ELOOP
    assert vfs.walk(t, start, b"d/up", resolve=RESOLVE_IN_ROOT).inode is top
    assert vfs.walk(t, start, b"../../..", resolve=RESOLVE_IN_ROOT).inode is top
    assert vfs.walk(t, start, b"abs", resolve=RESOLVE_IN_ROOT).inode is None  # /tmp under top: absent
    other = DirInode(fs=FileSystem("other"))
    vfs.mount(b"/tmp/top/m", other)
    assert vfs.walk(t, start, b"m").inode is other
    assert err(b"m", RESOLVE_NO_XDEV) == errno.EXDEV


def test_aarch64_open_flags_are_translated():
    from syscalls.abi import open_flags_in, open_flags_out
    # aarch64: O_DIRECTORY 040000, O_NOFOLLOW 0100000, O_DIRECT 0200000, O_LARGEFILE 0400000
    assert open_flags_in("aarch64", 0o40000 | 0o100000 | 2) == 0o200000 | 0o400000 | 2
    assert open_flags_in("aarch64", 0o400000) == 0o100000  # O_LARGEFILE, never O_NOFOLLOW
    for flags in (0, 0o40000, 0o100000, 0o200000, 0o400000, 0o740000 | 0o2000102):
        assert open_flags_out("aarch64", open_flags_in("aarch64", flags)) == flags
        assert open_flags_in("x86_64", flags) == flags
