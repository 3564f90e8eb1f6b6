"""Memory: brk(2), mmap(2), munmap(2), mprotect(2), mremap(2), madvise(2)."""
import errno as E

from sentry.errors import Errno
from sentry.mm import MAP_ANONYMOUS, MAP_SHARED, PROT_WRITE
from sentry.vfs.file import O_PATH
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall


@syscall("brk")
def brk(t, addr):
    return t.mm.set_brk(addr)


@syscall("mmap", status=PARTIAL, note="file mappings are private copies: MAP_SHARED of a file does not write back yet; MAP_SHARED|MAP_ANONYMOUS is not shared across fork yet")
def mmap(t, addr, length, prot, flags, fd, offset):
    flags &= 0xFFFFFFFF
    file = None
    if not flags & MAP_ANONYMOUS:
        file = t.fds.get(s32(fd))
        if file.flags & O_PATH or not file.readable:
            raise Errno(E.EACCES)
        if flags & 3 == MAP_SHARED and prot & PROT_WRITE and not file.writable:
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


@syscall("madvise", status=PARTIAL, note="MADV_DONTNEED/REMOVE zero the pages; other advice is accepted and ignored")
def madvise(t, addr, length, advice):
    t.mm.madvise(addr, length, s32(advice))
    return 0
