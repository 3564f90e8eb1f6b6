"""The character devices of /dev: null, zero, full, random, urandom."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import File


class NullFile(File):
    def read(self, size):
        return b""

    def write(self, data):
        return len(data)

    def pread(self, size, offset):
        return b""

    def pwrite(self, data, offset):
        return len(data)

    def seek(self, offset, whence):
        return 0


class ZeroFile(NullFile):
    def read(self, size):
        return bytes(size)

    def pread(self, size, offset):
        return bytes(size)

    def mmap_bytes(self, offset, length, prot, shared):
        return b""  # fresh anonymous pages are already zero


class FullFile(ZeroFile):
    def write(self, data):
        raise Errno(E.ENOSPC)

    def pwrite(self, data, offset):
        raise Errno(E.ENOSPC)


class RandomFile(NullFile):
    """Bytes from the kernel's random source (seeded under --seed)."""

    def __init__(self, inode, flags, path, random_bytes):
        super().__init__(inode, flags, path)
        self.random_bytes = random_bytes

    def read(self, size):
        return self.random_bytes(size)

    def pread(self, size, offset):
        return self.random_bytes(size)


def make_devices(dev_dir, random_bytes):
    """Populate a /dev directory inode."""
    from sentry.vfs.inode import DeviceInode
    specs = [("null", 1, 3, NullFile), ("zero", 1, 5, ZeroFile), ("full", 1, 7, FullFile)]
    for name, major, minor, cls in specs:
        inode = DeviceInode(major, minor, None)
        inode.opener = (lambda c, i, n: lambda flags: c(i, flags, "/dev/" + n))(cls, inode, name)
        dev_dir.add(name.encode(), inode)
    for name, minor in (("random", 8), ("urandom", 9)):
        inode = DeviceInode(1, minor, None)
        inode.opener = (lambda i, n: lambda flags: RandomFile(i, flags, "/dev/" + n, random_bytes))(inode, name)
        dev_dir.add(name.encode(), inode)
