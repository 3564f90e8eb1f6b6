"""cachestat(2) (Linux 6.5): how much of a file's range is in the page cache.

The sandbox's memory files (tmpfs, /dev/shm, memfds, the ext trees on loop devices)
are their page cache: every page of the range that holds the file's data is cached,
none is dirty or under writeback (nothing is written back anywhere), none evicted.
A lent host file's pages are the host's cache, which the sandbox does not show: its
range reads as cached too (the sentry reads it through the host's cache). Anything
else (a pipe, a socket, a device) has an empty mapping: all zeros."""
import errno as E
import stat as S
import struct

from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

PAGE_SHIFT = 12
_RANGE = struct.Struct("<QQ")      # struct cachestat_range: off, len
_STAT = struct.Struct("<QQQQQ")    # nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted
ULONG_MAX = (1 << 64) - 1


@syscall("cachestat", status=PARTIAL, note="a regular file's pages within its size count as cached (memory files "
         "are their own cache; a lent host file's cache is the host's and reads as cached), never dirty, under "
         "writeback or evicted; other files all zeros")
def cachestat(t, fd, cstat_range, cstat, flags):
    off, length = _RANGE.unpack(t.mm.read(cstat_range, _RANGE.size))
    if flags:
        raise Errno(E.EINVAL)
    f = t.fds.get(s32(fd))
    first = off >> PAGE_SHIFT
    last = ULONG_MAX if length == 0 else (off + length - 1) >> PAGE_SHIFT
    cached = 0
    inode = f.stat_inode()
    if S.S_ISREG(inode.mode) or S.S_ISBLK(inode.mode):
        size = inode.stat().size
        if size > 0:
            end = min(last, (size - 1) >> PAGE_SHIFT)
            cached = max(0, end - first + 1)
    t.mm.write(cstat, _STAT.pack(cached, 0, 0, 0, 0))
    return 0
