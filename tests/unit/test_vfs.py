"""The path walk and the tmpfs operations, without running a program."""
import errno
import types

import pytest

from sentry.caps import ROOT
from sentry.errors import Errno
from sentry.vfs import VFS, loc_path
from sentry.vfs.file import O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_WRONLY
from sentry.vfs.inode import DirInode, SymlinkInode


class T:
    """Just what the VFS asks of a task."""
    def __init__(self, vfs):
        self.cwd = vfs.root_loc
        self.umask = 0o022
        self.exe_path = "/bin/prog"
        self.uid = self.gid = self.fsuid = self.fsgid = 0  # root, with every capability
        self.groups, self.caps = None, ROOT
        self.kernel = types.SimpleNamespace()  # where the VFS keeps per-sandbox tables (write access)


@pytest.fixture
def fs():
    vfs = VFS(lambda n: bytes(n))
    return vfs, T(vfs)


def err(fn, *args):
    with pytest.raises(Errno) as e:
        fn(*args)
    return e.value.errno


def test_create_read_back(fs):
    vfs, t = fs
    f = vfs.open(t, -100, b"/tmp/a", O_CREAT | O_RDWR, 0o666)
    f.write(b"hello")
    assert vfs.lookup(t, -100, b"/tmp/a").mode & 0o777 == 0o644   # umask applied
    assert vfs.open(t, -100, b"/tmp/../tmp/./a", O_RDONLY, 0).read(10) == b"hello"
    assert err(vfs.open, t, -100, b"/tmp/a", O_CREAT | O_EXCL | O_WRONLY, 0) == errno.EEXIST


def test_errors(fs):
    vfs, t = fs
    vfs.open(t, -100, b"/tmp/f", O_CREAT | O_WRONLY, 0o600)
    assert err(vfs.lookup, t, -100, b"/nope") == errno.ENOENT
    assert err(vfs.lookup, t, -100, b"/tmp/f/x") == errno.ENOTDIR
    assert err(vfs.lookup, t, -100, b"/tmp/f/") == errno.ENOTDIR
    assert err(vfs.lookup, t, -100, b"") == errno.ENOENT
    assert err(vfs.open, t, -100, b"/tmp", O_WRONLY, 0) == errno.EISDIR
    assert err(vfs.open, t, -100, b"/tmp/f", O_DIRECTORY, 0) == errno.ENOTDIR
    assert err(vfs.lookup, t, -100, b"/" + b"x" * 256) == errno.ENAMETOOLONG
    assert err(vfs.mkdir, t, -100, b"/tmp", 0o755) == errno.EEXIST
    vfs.mkdir(t, -100, b"/tmp/d", 0o755)
    vfs.open(t, -100, b"/tmp/d/x", O_CREAT | O_WRONLY, 0o600)
    assert err(vfs.unlink, t, -100, b"/tmp/d", True) == errno.ENOTEMPTY
    assert err(vfs.unlink, t, -100, b"/tmp/d", False) == errno.EISDIR
    assert err(vfs.unlink, t, -100, b"/tmp/f", True) == errno.ENOTDIR


def test_dotdot_stops_at_root(fs):
    vfs, t = fs
    assert vfs.lookup(t, -100, b"/../../..") is vfs.root
    t.cwd = vfs.lookup_loc(t, -100, b"/tmp")
    assert vfs.lookup(t, -100, b"../../../dev") is vfs.lookup(t, -100, b"/dev")


def test_symlinks_and_loops(fs):
    vfs, t = fs
    tmp = vfs.lookup(t, -100, b"/tmp")
    tmp.add(b"to_dev", SymlinkInode(b"../dev"))
    tmp.add(b"loop", SymlinkInode(b"loop"))
    assert vfs.lookup(t, -100, b"/tmp/to_dev/null") is vfs.lookup(t, -100, b"/dev/null")
    assert isinstance(vfs.lookup(t, -100, b"/tmp/to_dev", follow=False), SymlinkInode)
    assert err(vfs.lookup, t, -100, b"/tmp/loop") == errno.ELOOP
    assert err(vfs.open, t, -100, b"/tmp/to_dev", O_NOFOLLOW, 0) == errno.ELOOP
    assert vfs.readlink(t, -100, b"/proc/self/exe") == b"/bin/prog"


def test_getdents_and_paths(fs):
    vfs, t = fs
    vfs.add_file("/work/bin/prog", b"\x7fELF")
    t.cwd = vfs.lookup_loc(t, -100, b"/work/bin/../bin")
    assert isinstance(t.cwd[-1][1], DirInode) and loc_path(t.cwd) == b"/work/bin"
    f = vfs.open(t, -100, b"/work/bin", O_RDONLY | O_DIRECTORY, 0)
    names = []
    f.getdents(4096, lambda ino, off, kind, name: names.append(name) or b"x" * 24)
    assert names == [b".", b"..", b"prog"]


def test_mounts_and_host_symlinks_stay_inside(fs, tmp_path):
    """A host directory lent at /data: `..` and host symlinks never leave the view."""
    from sentry.vfs.hostfs import HostFS
    vfs, t = fs
    (tmp_path / "lent").mkdir()
    (tmp_path / "secret").write_text("host secret")
    (tmp_path / "lent" / "file").write_text("ok")
    (tmp_path / "lent" / "up").symlink_to("../secret")
    (tmp_path / "lent" / "abs").symlink_to(str(tmp_path / "secret"))
    (tmp_path / "lent" / "dev").symlink_to("/dev")
    vfs.mount(b"/data", HostFS(str(tmp_path / "lent"), readonly=True).root)
    assert vfs.open(t, -100, b"/data/file", O_RDONLY, 0).read(10) == b"ok"
    assert err(vfs.lookup, t, -100, b"/data/up") == errno.ENOENT        # ../secret: /secret in the view
    assert err(vfs.lookup, t, -100, b"/data/abs") == errno.ENOENT       # the host path means nothing here
    assert vfs.lookup(t, -100, b"/data/dev/null") is vfs.lookup(t, -100, b"/dev/null")  # the sandbox's /dev
    assert vfs.lookup(t, -100, b"/data/../data/..") is vfs.root
    assert err(vfs.open, t, -100, b"/data/new", O_CREAT | O_WRONLY, 0o644) == errno.EROFS
    assert err(vfs.mkdir, t, -100, b"/data/d", 0o755) == errno.EROFS
    assert not (tmp_path / "lent" / "new").exists()
