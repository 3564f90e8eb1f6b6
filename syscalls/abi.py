"""Linux ABI structures the handlers read and write: stat, statx, dirent64,
timespec, utsname, iovec. One place for layouts, per architecture."""
import errno as E
import stat as S
import struct

from sentry.errors import Errno

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EACCESS, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x200, 0x400
AT_NO_AUTOMOUNT, AT_EMPTY_PATH, AT_STATX_SYNC_TYPE = 0x800, 0x1000, 0x6000
IOV_MAX = 1024
MAX_RW_COUNT = 0x7FFFF000


def s32(v: int) -> int:
    """The low 32 bits of a raw argument as a C int (fds, dirfds, flags)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def s64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def _split_ns(ns: int):
    return ns // 1_000_000_000, ns % 1_000_000_000


_STAT_X86_64 = struct.Struct("<QQQIIIiQqqqqqqqqq24x")
_STAT_AARCH64 = struct.Struct("<QQIIIIQQqiiqqqqqqq8x")


def pack_stat(arch: str, st) -> bytes:
    """struct stat from an inode's stat() snapshot."""
    at, an = _split_ns(st.atime)
    mt, mn = _split_ns(st.mtime)
    ct, cn = _split_ns(st.ctime)
    blksize = getattr(st, "blksize", 4096)
    if arch == "x86_64":
        return _STAT_X86_64.pack(st.dev, st.ino, st.nlink, st.mode, st.uid, st.gid, 0,
                                 st.rdev, st.size, blksize, st.blocks, at, an, mt, mn, ct, cn)
    return _STAT_AARCH64.pack(st.dev, st.ino, st.mode, st.nlink, st.uid, st.gid,
                              st.rdev, 0, st.size, blksize, 0, st.blocks, at, an, mt, mn, ct, cn)


STATX_BASIC_STATS = 0x7FF
_STATX = struct.Struct("<IIQIIIHxxQQQQ" + "qI4x" * 4 + "IIIIQ")


def pack_statx(st, mask: int = 0, mnt_id: int = 0, attributes: int = 0, attributes_mask: int = 0) -> bytes:
    """struct statx: the basic stats, and what `mask` adds (the mount id)."""
    times = []
    for ns in (st.atime, st.ctime, st.ctime, st.mtime):  # atime, btime, ctime, mtime
        times += _split_ns(ns)
    head = _STATX.pack(STATX_BASIC_STATS | mask, getattr(st, "blksize", 4096), attributes, st.nlink, st.uid, st.gid, st.mode,
                       st.ino, st.size, st.blocks, attributes_mask, *times,
                       st.rdev >> 8, st.rdev & 0xFF, st.dev >> 8, st.dev & 0xFF, mnt_id)
    return head.ljust(256, b"\0")


_DIRENT_HEAD = struct.Struct("<QqHB")


def pack_dirent64(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    reclen = (_DIRENT_HEAD.size + len(name) + 1 + 7) & ~7
    return _DIRENT_HEAD.pack(ino, off, reclen, dtype) + name + bytes(reclen - _DIRENT_HEAD.size - len(name))


_TIMESPEC = struct.Struct("<qq")


def read_timespec(mm, addr: int) -> int:
    """A struct timespec as nanoseconds; EINVAL if malformed."""
    sec, nsec = _TIMESPEC.unpack(mm.read(addr, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise Errno(E.EINVAL)
    return sec * 1_000_000_000 + nsec


def write_timespec(mm, addr: int, ns: int) -> None:
    mm.write(addr, _TIMESPEC.pack(*_split_ns(ns)))


def write_timeval(mm, addr: int, ns: int) -> None:
    sec, nsec = _split_ns(ns)
    mm.write(addr, _TIMESPEC.pack(sec, nsec // 1000))


def read_iovec(mm, addr: int, count: int) -> list[tuple[int, int]]:
    if count < 0 or count > IOV_MAX:
        raise Errno(E.EINVAL)
    raw = mm.read(addr, 16 * count)
    iov = list(struct.iter_unpack("<QQ", raw))
    total = 0
    for _, length in iov:
        if length >= 1 << 63:
            raise Errno(E.EINVAL)
        total += length
    if total >= 1 << 63:
        raise Errno(E.EINVAL)
    return iov


def pack_utsname(*fields: bytes) -> bytes:
    return b"".join(f[:64].ljust(65, b"\0") for f in fields)


_STATFS = struct.Struct("<qqQQQQQiiqqq32x")


def pack_statfs(sf) -> bytes:
    """struct statfs (the same 120 bytes on x86-64 and aarch64); f_fsid is zero."""
    return _STATFS.pack(sf.type, sf.bsize, sf.blocks, sf.bfree, sf.bavail, sf.files, sf.ffree,
                        0, 0, sf.namelen, sf.bsize, sf.flags)


FLOCK = struct.Struct("<hh4xqqi4x")  # struct flock: l_type, l_whence, l_start, l_len, l_pid
OPEN_HOW = struct.Struct("<QQQ")     # struct open_how: flags, mode, resolve


def read_timespec_pair(mm, addr: int) -> list[tuple[int, int]]:
    """Two struct timespec as (sec, nsec), unchecked (utimensat's UTIME_NOW/OMIT live in nsec)."""
    raw = mm.read(addr, 32)
    return [_TIMESPEC.unpack_from(raw, 0), _TIMESPEC.unpack_from(raw, 16)]


def read_timeval_pair(mm, addr: int) -> list[int]:
    """Two struct timeval as ns; EINVAL if a tv_usec is out of range."""
    out = []
    raw = mm.read(addr, 32)
    for off in (0, 16):
        sec, usec = _TIMESPEC.unpack_from(raw, off)
        if not 0 <= usec < 1_000_000:
            raise Errno(E.EINVAL)
        out.append(sec * 1_000_000_000 + usec * 1000)
    return out


# open(2) flags whose bits differ on aarch64 (the sentry keeps x86-64's values inside):
# (aarch64, x86-64) for O_DIRECTORY, O_NOFOLLOW, O_DIRECT, O_LARGEFILE
_AARCH64_OPEN_BITS = ((0o40000, 0o200000), (0o100000, 0o400000), (0o200000, 0o40000), (0o400000, 0o100000))
_SWAPPED = 0o740000


def _translate(flags: int, inward: bool) -> int:
    out = flags & ~_SWAPPED
    for theirs, ours in _AARCH64_OPEN_BITS:
        if flags & (theirs if inward else ours):
            out |= ours if inward else theirs
    return out


def open_flags_in(arch: str, flags: int) -> int:
    """A program's open flags in the sentry's (x86-64) values."""
    return _translate(flags, True) if arch == "aarch64" else flags


def open_flags_out(arch: str, flags: int) -> int:
    """The sentry's open flags in the program's architecture's values (F_GETFL)."""
    return _translate(flags, False) if arch == "aarch64" else flags
