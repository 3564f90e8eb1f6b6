"""devfs: the sandbox's /dev. The character devices null, zero, full, random,
urandom and tty (the caller's controlling terminal: ENXIO without one), the
stdin/stdout/stderr and fd links into /proc/self/fd, shm/ (a memory
filesystem of its own) and pts/, where the VFS mounts a devpts of the
sandbox's own (its one terminal, when `sentry run` was started on one:
sentry/vfs/tty.py). There is no ptmx: the sandbox cannot make pseudo-terminals,
and opening /dev/ptmx fails with ENOENT."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import File
from sentry.vfs.inode import FileSystem


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

    shared_name = "/dev/zero (deleted)"  # what /proc/PID/maps names a shared mapping of it

    def backing(self):
        """MAP_SHARED of /dev/zero: shared anonymous memory, as Linux gives."""
        from sentry.vfs.backing import new_memory
        return new_memory("dev/zero")


class FullFile(ZeroFile):
    def write(self, data):
        raise Errno(E.ENOSPC)

    def pwrite(self, data, offset):
        raise Errno(E.ENOSPC)


RNDGETENTCNT = 0x80045200
# RNDADDTOENTCNT, RNDADDENTROPY, RNDZAPENTCNT, RNDCLEARPOOL, RNDRESEEDCRNG: CAP_SYS_ADMIN's
RND_ADMIN = (0x40045201, 0x40085203, 0x5204, 0x5206, 0x5207)
CAP_SYS_ADMIN = 21


class RandomFile(NullFile):
    """Bytes from the kernel's random source (seeded under --seed)."""

    def __init__(self, inode, flags, path, random_bytes):
        super().__init__(inode, flags, path)
        self.random_bytes = random_bytes

    def ioctl(self, task, request, arg):
        """random(4)'s ioctls: the pool is always full (256 bits, as /proc/sys/kernel/random/
        entropy_avail says, and as Linux 5.18+ reports once seeded); crediting, adding to or
        clearing it is the privileged no-op it is for a sandbox whose source is the host's."""
        if request == RNDGETENTCNT:
            task.mm.write_u32(arg, 256)
            return 0
        if request in RND_ADMIN:
            from sentry import caps
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EPERM)
            return 0
        raise Errno(E.EINVAL)  # random_ioctl's default

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


def make_devfs(random_bytes, kernel=None):
    """The /dev filesystem's root, and the root of its shm filesystem (mounted
    at /dev/shm by the VFS, so that it is a filesystem of its own)."""
    from sentry.vfs.inode import DeviceInode, DirInode, SymlinkInode
    from sentry.vfs.tty import open_controlling
    devfs = FileSystem("devtmpfs")  # one per sandbox, as its tmpfs mounts
    root = DirInode(0o755, fs=devfs)
    make_devices(root, random_bytes)
    tty = DeviceInode(5, 0, lambda flags: open_controlling(kernel, tty, flags))
    root.add(b"tty", tty)
    for inode in root.children.values():
        inode.fs = devfs
    for n, name in enumerate((b"stdin", b"stdout", b"stderr")):
        root.add(name, SymlinkInode(b"/proc/self/fd/%d" % n, fs=devfs))
    root.add(b"fd", SymlinkInode(b"/proc/self/fd", fs=devfs))
    root.add(b"pts", DirInode(0o755, fs=devfs))
    root.add(b"shm", DirInode(0o1777, fs=devfs))  # where the shm filesystem is mounted
    shm = DirInode(0o1777, fs=FileSystem("tmpfs"))
    return root, shm
