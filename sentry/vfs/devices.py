"""devfs: the sandbox's /dev. The character devices null, zero, full, random,
urandom and tty (the caller's controlling terminal: ENXIO without one), the
stdin/stdout/stderr and fd links into /proc/self/fd, shm/ (a memory
filesystem of its own) and pts/, where the VFS mounts a devpts of the
sandbox's own (its terminal, when `sentry run` was started on one, and the
slaves of the pseudo-terminals /dev/ptmx makes: sentry/vfs/tty.py).

The loop devices (sentry/vfs/loopdev.py): loop-control and the block devices loop0..7
(more on LOOP_CTL_ADD). Every device is in the sandbox's `DeviceTable` by its kind and
numbers: a node made by mknod(2) anywhere opens the sandbox's own device of those
numbers (never the host's), and ENXIO when it has none, as Linux."""
import errno as E
import os
import stat as S

from sentry.errors import Errno
from sentry.vfs.file import File
from sentry.vfs.inode import FileSystem, Inode


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


class DeviceNode(Inode):
    """A character or block device node: opening it opens the sandbox's device of its
    numbers (DeviceTable), ENXIO when there is none."""
    __slots__ = ("table",)

    def __init__(self, kind: int, major: int, minor: int, table, mode=0o666, fs=None):
        super().__init__(kind | (mode & 0o7777), fs, rdev=(major << 8) | minor)
        self.table = table

    def open(self, flags, path):
        return self.table.open(self, flags, path)


class DeviceTable:
    """The sandbox's devices by (kind, major, minor), and the /dev directory that holds
    a node for each one it names."""

    def __init__(self, dev_dir):
        self.dev_dir = dev_dir
        self.openers: dict = {}  # (S_IFCHR or S_IFBLK, major, minor) -> opener(inode, flags, path)
        self.vfs = None          # set by the VFS: a node on a nodev mount does not open
        self.loops = None        # sentry/vfs/loopdev.py's Loops
        self.sysfs = None        # the sysfs root mount -t sysfs shows (sentry/vfs/sysfs.py)

    def add(self, kind: int, major: int, minor: int, opener, name: bytes = None, mode: int = 0o666):
        self.openers[(kind, major, minor)] = opener
        if name is not None:
            self.dev_dir.add(name, DeviceNode(kind, major, minor, self, mode, fs=self.dev_dir.fs))

    def add_block(self, major, minor, opener, name=None, mode=0o660):
        self.add(S.S_IFBLK, major, minor, opener, name, mode)

    def remove(self, kind: int, major: int, minor: int, name: bytes = None) -> None:
        self.openers.pop((kind, major, minor), None)
        node = self.dev_dir.children.get(name) if name is not None else None
        if isinstance(node, DeviceNode) and node.rdev == (major << 8) | minor:
            del self.dev_dir.children[name]

    def open(self, inode, flags: int, path: str):
        rdev = inode.rdev
        if self.vfs is not None and path:
            from sentry.vfs import mounts
            if mounts.flags_at(self.vfs, os.fsencode(path)) & mounts.MS_NODEV:
                raise Errno(E.EACCES)
        opener = self.openers.get((S.S_IFMT(inode.mode), rdev >> 8, rdev & 0xFF))
        if opener is None:
            raise Errno(E.ENXIO)
        return opener(inode, flags, path)


CAP_MKNOD = 27


def make_node(task, table: DeviceTable, directory, name: bytes, mode: int, dev: int):
    """mknod of a character or block device node in a memory directory: CAP_MKNOD's (a
    whiteout, char 0:0, is anyone's), EPERM where the filesystem keeps no such nodes."""
    from sentry import caps
    kind = S.S_IFMT(mode)
    major, minor = (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)  # new_decode_dev
    if not (kind == S.S_IFCHR and dev == 0) and not caps.has(task, CAP_MKNOD):
        raise Errno(E.EPERM)
    new = getattr(directory, "_new", None)
    if new is None or not hasattr(directory, "children"):
        raise Errno(E.EPERM)
    return new(name, DeviceNode(kind, major, minor & 0xFF, table, mode & 0o7777, fs=directory.fs))


def make_devices(dev_dir, random_bytes, table=None):
    """Populate a /dev directory inode (and its DeviceTable)."""
    table = table or DeviceTable(dev_dir)
    specs = [("null", 1, 3, NullFile), ("zero", 1, 5, ZeroFile), ("full", 1, 7, FullFile)]
    for name, major, minor, cls in specs:
        table.add(S.S_IFCHR, major, minor, (lambda c: lambda i, flags, path: c(i, flags, path))(cls), name.encode())
    for name, minor in (("random", 8), ("urandom", 9)):
        table.add(S.S_IFCHR, 1, minor, lambda i, flags, path: RandomFile(i, flags, path, random_bytes), name.encode())
    return table


def make_devfs(random_bytes, kernel=None):
    """The /dev filesystem's root, and the root of its shm filesystem (mounted
    at /dev/shm by the VFS, so that it is a filesystem of its own)."""
    from sentry.vfs.inode import DeviceInode, DirInode, SymlinkInode
    from sentry.vfs.tty import open_controlling, open_ptmx
    from sentry.vfs.loopdev import LOOP_CTRL_MINOR, MISC_MAJOR, LoopControlFile, Loops
    devfs = FileSystem("devtmpfs")  # one per sandbox, as its tmpfs mounts
    root = DirInode(0o755, fs=devfs)
    table = make_devices(root, random_bytes)
    tty = DeviceInode(5, 0, lambda flags: open_controlling(kernel, tty, flags))
    root.add(b"tty", tty)
    table.add(S.S_IFCHR, 5, 0, lambda inode, flags, path: open_controlling(kernel, inode, flags))
    table.add(S.S_IFCHR, 5, 2, lambda inode, flags, path: open_ptmx(kernel, inode, flags), b"ptmx", 0o666)
    devfs.devices = table
    table.loops = Loops(table)
    table.add(S.S_IFCHR, MISC_MAJOR, LOOP_CTRL_MINOR,
              lambda inode, flags, path: LoopControlFile(inode, flags, path, table.loops), b"loop-control", 0o660)
    for inode in root.children.values():
        inode.fs = devfs
    for n, name in enumerate((b"stdin", b"stdout", b"stderr")):
        root.add(name, SymlinkInode(b"/proc/self/fd/%d" % n, fs=devfs))
    root.add(b"fd", SymlinkInode(b"/proc/self/fd", fs=devfs))
    root.add(b"pts", DirInode(0o755, fs=devfs))
    root.add(b"shm", DirInode(0o1777, fs=devfs))  # where the shm filesystem is mounted
    shm = DirInode(0o1777, fs=FileSystem("tmpfs"))
    return root, shm
