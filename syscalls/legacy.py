"""Old calls Linux keeps for old programs: getdents(2) (struct linux_dirent), ustat(2) and
remap_file_pages(2) (emulated by Linux since 4.0, and so here, by mapping the file's pages
again). set_thread_area/get_thread_area are 32-bit programs' (syscalls/unoffered.py)."""
import errno as E
import os
import struct

from sentry.errors import Errno
from sentry.vfs.file import O_PATH
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

PAGE = 4096
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4

# --- getdents ---------------------------------------------------------------------------------------
_LINUX_DIRENT = struct.Struct("<QQH")  # d_ino, d_off, d_reclen, then d_name, a NUL, padding, d_type


def pack_linux_dirent(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    """struct linux_dirent: the type in the record's last byte (filldir)."""
    reclen = (_LINUX_DIRENT.size + len(name) + 2 + 7) & ~7
    body = _LINUX_DIRENT.pack(ino, off, reclen) + name
    return body + bytes(reclen - len(body) - 1) + bytes((dtype,))


@syscall("getdents", note="struct linux_dirent (d_type in each record's last byte), from the same directory "
         "reading as getdents64")
def getdents(t, fd, dirp, count):
    f = t.fds.get(s32(fd))
    if f.flags & O_PATH:
        raise Errno(E.EBADF)
    data = f.getdents(count & 0xFFFFFFFF, pack_linux_dirent)
    t.mm.write(dirp, data)
    from sentry.vfs.atime import file_accessed
    file_accessed(t.vfs, f)  # iterate_dir's
    return len(data)


# --- ustat ------------------------------------------------------------------------------------------
_USTAT = struct.Struct("<i4xQ6s6s4x")  # f_tfree, f_tinode, f_fname, f_fpack


def _filesystems(t):
    """(device number, a root inode) of each filesystem of the view: the root and the mounts."""
    vfs = t.vfs
    seen = [vfs.root] + list(t.nsproxy.mnt.mounts.values())
    for inode in seen:
        try:
            yield inode.stat().dev, inode
        except (Errno, OSError):
            continue


@syscall("ustat", status=PARTIAL, note="the free blocks and inodes of a filesystem of the sandbox's view, by its "
         "device number (statfs's figures); EINVAL for any other device, as Linux for one it has no "
         "superblock of; the names are empty, as Linux leaves them")
def ustat(t, dev, ubuf):
    dev &= 0xFFFFFFFF
    # the old 32-bit encoding (new_decode_dev)
    major, minor = (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)
    want = os.makedev(major, minor)
    for fs_dev, inode in _filesystems(t):
        if fs_dev == want:
            sf = inode.fs.statfs() if not hasattr(inode, "statfs") else inode.statfs()
            t.mm.write(ubuf, _USTAT.pack(min(sf.bfree, 0x7FFFFFFF), sf.ffree, b"", b""))
            return 0
    raise Errno(E.EINVAL)


# --- remap_file_pages -------------------------------------------------------------------------------
@syscall("remap_file_pages", note="Linux's emulation: the pages of a shared file mapping mapped again from another "
         "file offset (mmap MAP_SHARED|MAP_FIXED with the area's protection); EINVAL for a private or missing "
         "area, a non-zero prot, or a range past the area's file mappings")
def remap_file_pages(t, start, size, prot, pgoff, flags):
    if prot:
        raise Errno(E.EINVAL)
    start &= ~(PAGE - 1)
    size &= ~(PAGE - 1)
    if start + size <= start or start + size >= 1 << 64:
        raise Errno(E.EINVAL)
    if pgoff + (size >> 12) >= 1 << 64:
        raise Errno(E.EINVAL)
    mm = t.mm
    i = mm._find(start)
    if i < 0:
        raise Errno(E.EINVAL)
    vma = mm.vmas[i]
    if not vma.shared or vma.backing is None:
        raise Errno(E.EINVAL)
    end, j = vma.end, i
    while end < start + size:  # contiguous areas of the same file and kind
        j += 1
        if j >= len(mm.vmas):
            raise Errno(E.EINVAL)
        nxt = mm.vmas[j]
        if nxt.start != end or nxt.backing is not vma.backing or nxt.prot != vma.prot or not nxt.shared:
            raise Errno(E.EINVAL)
        end = nxt.end
    mm.map_shared(start, size, vma.prot, vma.backing, pgoff * PAGE, vma.name, vma.maywrite)
    return 0
