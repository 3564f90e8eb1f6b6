"""ctypes bindings for the host file calls hostfs needs and Python's os lacks.

Each takes a host descriptor the sentry holds (an inode's O_PATH fd or an open
file's fd) and single names only, as the rest of hostfs does; each raises
OSError as os functions do."""
import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)

AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = 0x100, 0x1000
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _check(ret):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(_fallocate(fd, mode, offset, length))


_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28
if _renameat2 is not None:
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)


def renameat2(old_dir: int, old: bytes, new_dir: int, new: bytes, flags: int) -> None:
    if _renameat2 is None:
        if flags:
            raise OSError(22, os.strerror(22))
        os.rename(old, new, src_dir_fd=old_dir, dst_dir_fd=new_dir)
        return
    _check(_renameat2(old_dir, old, new_dir, new, flags))


_utimensat = _libc.utimensat
_utimensat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int)


def set_times(fd: int, atime, mtime) -> None:
    """The times of the very object fd holds (an O_PATH fd, even of a symlink):
    each in ns, or None to leave it."""
    def ts(ns):
        return (0, UTIME_OMIT) if ns is None else divmod(ns, 1_000_000_000)
    times = struct.pack("<qqqq", *ts(atime), *ts(mtime))
    _check(_utimensat(fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))


_fstatfs = _libc.fstatfs
_fstatfs.argtypes = (ctypes.c_int, ctypes.c_char_p)


def fs_type(fd: int) -> int:
    """f_type of the host filesystem holding fd."""
    buf = ctypes.create_string_buffer(120)
    _check(_fstatfs(fd, buf))
    return struct.unpack_from("<q", buf.raw)[0]
