"""Host fds passed into a traced process (sentry/platform/ptrace.py): MAP_SHARED
mappings of them and reads straight into guest memory; the process holds only
its socket end and the fds passed, each closed once the sentry lets go of it."""
import os

import pytest

from sentry.errors import Errno
from sentry.vfs.backing import new_memory, of_host_fd

R, W = 1, 2


@pytest.fixture
def proc():
    from sentry.platform.ptrace import PtracePlatform
    p, cpu = PtracePlatform().new_process()
    yield p
    p.close()


def fds_of(p) -> set:
    return {int(fd) for fd in os.listdir(f"/proc/{p.pid}/fd")}


def test_the_process_starts_with_its_socket_end_only(proc):
    assert fds_of(proc) == {proc._guest_sock}


def test_shared_mapping_is_the_backings_pages(proc):
    b = new_memory("t", 0x2000)
    proc.map_file(0x10000, 0x2000, R | W, b, 0)
    proc.map_file(0x20000, 0x1000, R, b, 0x1000)  # the same fd, passed once
    assert len(fds_of(proc)) == 2
    proc.write(0x11000, b"from the guest side")
    assert os.pread(b.fd, 19, 0x1000) == b"from the guest side"
    assert proc.read(0x20000, 4) == b"from"
    os.pwrite(b.fd, b"FROM", 0x1000)
    assert proc.read(0x11000, 4) == b"FROM"


def test_read_only_fd_cannot_be_mapped_writable(proc, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 0x1000)
    fd = os.open(p, os.O_RDONLY)
    b = of_host_fd(fd, writable=False)
    os.close(fd)
    with pytest.raises(Errno):
        proc.map_file(0x10000, 0x1000, R | W, b, 0)  # refused by the host kernel itself
    proc.map_file(0x10000, 0x1000, R, b, 0)
    assert proc.read(0x10000, 1) == b"x"


def test_passed_fds_are_closed_after_the_sentry_lets_go(proc):
    b = new_memory("t", 0x1000)
    proc.map_file(0x10000, 0x1000, R | W, b, 0)
    passed = fds_of(proc) - {proc._guest_sock}
    assert len(passed) == 1
    del b  # the mapping stays (the host keeps the file), the fd goes at the next pass
    b2 = new_memory("u", 0x1000)
    proc.map_file(0x20000, 0x1000, R | W, b2, 0)
    now = fds_of(proc) - {proc._guest_sock}
    assert len(now) == 1 and len(proc._passed) == 1  # the first one was closed
    assert os.readlink(f"/proc/{proc.pid}/fd/{now.pop()}").startswith("/memfd:u")


# --- mirrors: the guest's fd number, for reads passed through to the host -------------------
def _host_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(name.encode() * 100)
    fd = os.open(p, os.O_RDONLY)
    b = of_host_fd(fd, writable=False)
    os.close(fd)
    return str(p), b


def test_mirror_puts_the_file_at_the_guests_number(proc, tmp_path):
    path, b = _host_file(tmp_path, "first")
    n = max(fds_of(proc)) + 5  # a number no fd of the process has
    assert proc.mirror(b, n)
    assert os.readlink(f"/proc/{proc.pid}/fd/{n}") == path
    assert proc.mirror(b, n)  # already there: nothing injected
    path2, b2 = _host_file(tmp_path, "second")
    assert proc.mirror(b2, n)  # the guest's fd n is another file now: replaced
    assert os.readlink(f"/proc/{proc.pid}/fd/{n}") == path2


def test_mirror_never_takes_the_sentrys_own_fds(proc, tmp_path):
    _, b = _host_file(tmp_path, "mine")
    assert not proc.mirror(b, proc._guest_sock)
    _, other = _host_file(tmp_path, "other")
    passed = proc._guest_fd(other)
    assert not proc.mirror(b, passed)  # the copy of another file sits there
    assert not proc.mirror(b, 1 << 20)


def test_mirror_is_closed_after_the_sentry_lets_go(proc, tmp_path):
    _, b = _host_file(tmp_path, "gone")
    n = max(fds_of(proc)) + 5
    assert proc.mirror(b, n)
    b.release()
    _, b2 = _host_file(tmp_path, "next")
    proc._guest_fd(b2)  # the next pass closes what the sentry let go of
    assert n not in fds_of(proc)
