"""Memory files in a memfd (sentry/vfs/inode.py, sentry/vfs/backing.py): once a
file is mapped shared, read/write/truncate go to the memfd, whose host size only
grows (a mapping of it never faults in the sentry) and whose bytes past the
file's end stay zero."""
import errno
import os

import pytest

from sentry.errors import Errno
from sentry.vfs import backing as B
from sentry.vfs.file import O_RDONLY, O_RDWR
from sentry.vfs.inode import F_SEAL_WRITE, RegularInode

PAGE = 4096


def test_bytes_move_into_the_memfd_and_stay_coherent():
    inode = RegularInode(0o644, b"hello world")
    f = inode.open(O_RDWR, "/f")
    b = f.backing()
    assert inode.data is None and inode.backing is b and b.memory and b.writable
    assert os.pread(b.fd, 11, 0) == b"hello world" and inode.size == 11
    f.pwrite(b"HELLO", 0)
    assert os.pread(b.fd, 5, 0) == b"HELLO"        # a write reaches what mappings map
    os.pwrite(b.fd, b"W", 6)                       # a store through a mapping...
    assert bytes(f.pread(11, 0)) == b"HELLO World"  # ...is what read() sees
    assert f.read_backing() == (b, 11)
    assert inode.open(O_RDONLY, "/f").backing() is b  # one memfd per file


def test_host_size_covers_mappings_and_the_tail_stays_zero():
    inode = RegularInode(0o644, b"x" * 100)
    b = inode.open(O_RDWR, "/f").backing()
    b.cover(3 * PAGE)                               # a mapping of 3 pages
    assert os.fstat(b.fd).st_size == 3 * PAGE and inode.size == 100
    os.pwrite(b.fd, b"junk", 200)                   # stored past the end through a mapping
    assert bytes(inode.read(0, 1000)) == b"x" * 100  # read stops at the file's end
    inode.truncate(300)                             # growing shows zeros, not the junk
    assert bytes(inode.read(100, 200)) == bytes(200)
    inode.truncate(50)                              # shrinking: the memfd keeps its size
    assert inode.size == 50 and os.fstat(b.fd).st_size == 3 * PAGE
    assert os.pread(b.fd, 50, 50) == bytes(50)
    inode.write(2 * PAGE, b"far")                   # a gap reads as zeros
    assert inode.size == 2 * PAGE + 3 and bytes(inode.read(50, 10)) == bytes(10)
    assert bytes(inode.read(2 * PAGE, 10)) == b"far"
    inode.fallocate(0x3, 0, 2 * PAGE)               # PUNCH_HOLE | KEEP_SIZE
    assert bytes(inode.read(2 * PAGE - 1, 4)) == b"\0far"[:4] and inode.size == 2 * PAGE + 3
    inode.fallocate(0, 0, 5 * PAGE)
    assert inode.size == 5 * PAGE and os.fstat(b.fd).st_size >= 5 * PAGE


def test_seals_still_apply_in_the_memfd():
    inode = RegularInode(0o644, b"abc")
    inode.open(O_RDWR, "/f").backing()
    inode.seals = F_SEAL_WRITE
    with pytest.raises(Errno) as e:
        inode.write(0, b"x")
    assert e.value.errno == errno.EPERM


class Holder:
    def __init__(self):
        self.forgotten = []

    def forget(self, backing):
        self.forgotten.append(backing)


def test_backing_closes_when_the_last_reference_goes_and_tells_its_holders():
    b = B.new_memory("t", PAGE)
    fd = b.fd
    h = Holder()
    b.hold(h)
    del b
    assert len(h.forgotten) == 1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_host_file_backing_is_a_dup_that_outlives_the_open_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"data")
    fd = os.open(p, os.O_RDONLY)
    b = B.of_host_fd(fd, writable=False)
    os.close(fd)
    assert b.fd != fd and not b.memory and not b.writable and b.size() == 4
    assert os.pread(b.fd, 4, 0) == b"data"
    st = os.stat(p)
    assert b.key == (st.st_dev, st.st_ino)


def test_shrink_watchers_hear_of_host_truncations(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10000)

    class W:
        heard = []

        def file_shrunk(self, key, size):
            self.heard.append((key, size))

    w = W()
    B.watch_shrinks(w)
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 10)
        B.host_file_shrunk(fd)
    finally:
        os.close(fd)
    st = os.stat(p)
    assert ((st.st_dev, st.st_ino), 10) in w.heard
