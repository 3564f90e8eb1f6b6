"""Memory: brk(2), mmap(2), munmap(2), mprotect(2), mremap(2), madvise(2), msync(2)."""
import errno as E

from sentry.errors import Errno
from sentry.mm import MAP_ANONYMOUS, MAP_SHARED, PROT_WRITE
from sentry.vfs.file import O_PATH
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall


@syscall("brk")
def brk(t, addr):
    return t.mm.set_brk(addr)


@syscall("mmap", status=PARTIAL, note="MAP_SHARED maps the file's own pages (a host file's, or a memory "
         "file's memfd): coherent between mappers and with read()/write(). Gaps: MAP_PRIVATE file mappings are "
         "copies made at mmap time (later writes to the file are not seen: POSIX leaves it open); pages wholly "
         "past the end of a memory file, or of a host file under unicorn, read as zero where Linux raises "
         "SIGBUS; MAP_HUGETLB answers ENOMEM (no huge pages)")
def mmap(t, addr, length, prot, flags, fd, offset):
    flags &= 0xFFFFFFFF
    file = None
    if not flags & MAP_ANONYMOUS:
        file = t.fds.get(s32(fd))
        if file.flags & O_PATH or not file.readable:
            raise Errno(E.EACCES)
        if flags & MAP_SHARED and prot & PROT_WRITE and not file.writable:  # MAP_SHARED(_VALIDATE)
            raise Errno(E.EACCES)
    return t.mm.mmap(addr, length, prot, flags, file, offset)


@syscall("munmap")
def munmap(t, addr, length):
    t.mm.munmap(addr, length)
    return 0


@syscall("mprotect")
def mprotect(t, addr, length, prot):
    t.mm.mprotect(addr, length, prot)
    return 0


@syscall("mremap", status=PARTIAL, note="MREMAP_DONTUNMAP answers EINVAL")
def mremap(t, old, old_len, new_len, flags, new):
    return t.mm.mremap(old, old_len, new_len, flags, new)


@syscall("madvise", status=PARTIAL, note="MADV_DONTNEED zeroes private pages (shared ones read back from "
         "their file), MADV_REMOVE punches the file of a shared mapping; other advice is accepted and ignored")
def madvise(t, addr, length, advice):
    t.mm.madvise(addr, length, s32(advice))
    return 0


@syscall("msync", note="shared mappings are the file's own pages, so read() and write() see stores at once; "
         "MS_SYNC fsyncs a host file")
def msync(t, addr, length, flags):
    t.mm.msync(addr, length, s32(flags))
    return 0
