"""The overlay over a host directory: copy-up, whiteouts, opaque directories; the host never changes."""
import errno
import hashlib
import os

import pytest

from sentry.errors import Errno
from sentry.vfs.hostfs import HostFS
from sentry.vfs.overlay import OverlayFS


def tree_hash(root) -> str:
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(d, name)
            h.update(p.encode() + b"\0" + (os.readlink(p).encode() if os.path.islink(p) else open(p, "rb").read()))
        h.update(d.encode())
    return h.hexdigest()


@pytest.fixture
def ov(tmp_path):
    lower = tmp_path / "lower"
    (lower / "dir" / "sub").mkdir(parents=True)
    (lower / "file").write_bytes(b"lower file")
    (lower / "dir" / "a").write_bytes(b"a")
    (lower / "dir" / "sub" / "deep").write_bytes(b"deep")
    (lower / "link").symlink_to("file")
    before = tree_hash(lower)
    fs = OverlayFS(HostFS(str(lower), readonly=True).root)
    yield fs.root
    assert tree_hash(lower) == before, "the overlay changed the host directory"


def names(d):
    return sorted(n for n, _, _ in d.entries())


def read(inode):
    return bytes(inode.open(0, "").pread(100, 0))


def test_reads_come_from_below(ov):
    assert names(ov) == [b"dir", b"file", b"link"]
    assert read(ov.lookup(b"file")) == b"lower file"
    assert ov.lookup(b"link").readlink(None) == b"file"
    assert names(ov.lookup(b"dir")) == [b"a", b"sub"]


def test_write_copies_up(ov):
    f = ov.lookup(b"file").open(2, "")   # O_RDWR
    f.pwrite(b"UPPER", 0)
    assert read(ov.lookup(b"file")) == b"UPPER file"


def test_create_unlink_whiteout(ov):
    d = ov.lookup(b"dir")
    d.create(b"new", 0o644)
    assert names(d) == [b"a", b"new", b"sub"]
    d.unlink(b"a")
    assert d.lookup(b"a") is None and names(d) == [b"new", b"sub"]
    d.create(b"a", 0o600)                # a new file where a whiteout was
    assert read(d.lookup(b"a")) == b""
    with pytest.raises(Errno) as e:
        d.create(b"a", 0o600)
    assert e.value.errno == errno.EEXIST


def test_rmdir_and_opaque_recreate(ov):
    d = ov.lookup(b"dir")
    with pytest.raises(Errno) as e:
        d.rmdir(b"sub")
    assert e.value.errno == errno.ENOTEMPTY
    d.lookup(b"sub").unlink(b"deep")
    d.rmdir(b"sub")
    assert d.lookup(b"sub") is None
    d.mkdir(b"sub", 0o755)
    assert names(d.lookup(b"sub")) == []  # opaque: the lower one's entries stay hidden


def test_rename_file_and_lower_dir(ov):
    ov.rename(b"file", ov.lookup(b"dir"), b"moved")
    assert ov.lookup(b"file") is None
    assert read(ov.lookup(b"dir").lookup(b"moved")) == b"lower file"
    with pytest.raises(Errno) as e:
        ov.rename(b"dir", ov, b"dir2")
    assert e.value.errno == errno.EXDEV
