"""Loop block devices of the sandbox: /dev/loop-control and /dev/loopN (loop(4)).

A loop device is bound to an open file of the sandbox (LOOP_SET_FD, LOOP_CONFIGURE) and
its reads and writes go to that file, at the device's offset and within its size limit:
mkfs run inside the sandbox writes a real image into the sandbox's file. The host's loop
driver is never involved. The block-device ioctls (BLKGETSIZE64, BLKSSZGET, ...) answer
for every loop device; a device with nothing bound reads as empty, as Linux's.

Each loop device also keeps what the sandbox mounted from it (sentry/vfs/diskfs.py): the
tree of a disk filesystem lives for the sandbox's life with the image it was made on.
"""
import errno as E
import os
import stat as S
import struct

from sentry.errors import Errno
from sentry.vfs.file import O_ACCMODE, O_RDONLY, SEEK_CUR, SEEK_END, SEEK_SET, File

LOOP_MAJOR, MISC_MAJOR, LOOP_CTRL_MINOR = 7, 10, 237
MIN_COUNT = 8  # CONFIG_BLK_DEV_LOOP_MIN_COUNT: loop0..7 exist from the start
MAX_MINOR = 1 << 20
CAP_SYS_ADMIN = 21
SECTOR = 512
PAGE = 4096

LOOP_SET_FD, LOOP_CLR_FD, LOOP_SET_STATUS, LOOP_GET_STATUS = 0x4C00, 0x4C01, 0x4C02, 0x4C03
LOOP_SET_STATUS64, LOOP_GET_STATUS64, LOOP_CHANGE_FD, LOOP_SET_CAPACITY = 0x4C04, 0x4C05, 0x4C06, 0x4C07
LOOP_SET_DIRECT_IO, LOOP_SET_BLOCK_SIZE, LOOP_CONFIGURE = 0x4C08, 0x4C09, 0x4C0A
LOOP_CTL_ADD, LOOP_CTL_REMOVE, LOOP_CTL_GET_FREE = 0x4C80, 0x4C81, 0x4C82
BLKROSET, BLKROGET, BLKRRPART, BLKGETSIZE, BLKFLSBUF = 0x125D, 0x125E, 0x125F, 0x1260, 0x1261
BLKRASET, BLKRAGET, BLKFRASET, BLKFRAGET = 0x1262, 0x1263, 0x1264, 0x1265
BLKSSZGET, BLKBSZGET, BLKBSZSET, BLKGETSIZE64 = 0x1268, 0x80081270, 0x40081271, 0x80081272
BLKDISCARD, BLKIOMIN, BLKIOOPT, BLKALIGNOFF, BLKPBSZGET = 0x1277, 0x1278, 0x1279, 0x127A, 0x127B
BLKDISCARDZEROES, BLKSECDISCARD, BLKROTATIONAL, BLKZEROOUT, BLKGETDISKSEQ = 0x127C, 0x127D, 0x127E, 0x127F, 0x80081280

LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN, LO_FLAGS_DIRECT_IO = 1, 4, 8, 16
SETTABLE_FLAGS = LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN          # LOOP_SET_STATUS_SETTABLE_FLAGS
CLEARABLE_FLAGS = LO_FLAGS_AUTOCLEAR                            # LOOP_SET_STATUS_CLEARABLE_FLAGS
CONFIGURE_FLAGS = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN | LO_FLAGS_DIRECT_IO
LO_NAME_SIZE, LO_KEY_SIZE = 64, 32

# struct loop_info64; struct loop_info (x86-64: __kernel_old_dev_t is an unsigned long); struct loop_config
_INFO64 = struct.Struct("<QQQQQIIII64s64s32s2Q")
_INFO = struct.Struct("<i4xQQQiiii64s32s2Q4s4x")
_CONFIG = struct.Struct("<II")  # fd, block_size; then a loop_info64 and 64 reserved bytes
CONFIG_SIZE = _CONFIG.size + _INFO64.size + 64


def rdev(minor: int) -> int:
    """The loop device's number as the sandbox encodes st_rdev (major << 8 | minor)."""
    return LOOP_MAJOR << 8 | minor


class LoopDevice:
    """One /dev/loopN: unbound, or bound to an open file."""

    def __init__(self, number: int):
        self.number = number
        self.backing = None        # the bound File
        self.offset = 0
        self.sizelimit = 0
        self.flags = 0
        self.file_name = b""
        self.crypt_name = b""
        self.block_size = SECTOR
        self.capacity = 0          # bytes, fixed when bound (LOOP_SET_CAPACITY re-reads it)
        self.opens = 0             # open files of the device
        self.mounts = 0            # mounts holding it (sentry/vfs/diskfs.py)
        self.readonly_set = False  # BLKROSET
        self.ra_pages = 32         # readahead (BLKRASET/BLKRAGET): the block layer's 128 KiB

    @property
    def bound(self) -> bool:
        return self.backing is not None

    @property
    def readonly(self) -> bool:
        return bool(self.flags & LO_FLAGS_READ_ONLY) or self.readonly_set

    @property
    def rdev(self) -> int:
        return rdev(self.number)

    def _backing_size(self) -> int:
        inode = self.backing.stat_inode()
        return inode.stat().size

    def compute_capacity(self) -> None:
        size = max(0, self._backing_size() - self.offset)
        if self.sizelimit and self.sizelimit < size:
            size = self.sizelimit
        self.capacity = size - size % SECTOR

    def size(self) -> int:
        return self.capacity if self.bound else 0

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size())
        if offset >= end:
            return b""
        return bytes(self.backing.pread(end - offset, self.offset + offset))

    def write(self, offset: int, data) -> int:
        if self.readonly:
            raise Errno(E.EPERM)
        room = self.size() - offset
        if room <= 0:
            raise Errno(E.ENOSPC)
        data = bytes(data[:room])
        done = 0
        while done < len(data):
            done += self.backing.pwrite(data[done:], self.offset + offset + done)
        return done

    # --- binding ----------------------------------------------------------------------
    def bind(self, task, fd: int, opened_for_write: bool, flags: int = 0, block_size: int = 0) -> None:
        """loop_configure: LOOP_SET_FD and LOOP_CONFIGURE."""
        backing = task.fds.get(fd)  # EBADF
        if self.bound:
            raise Errno(E.EBUSY)
        mode = backing.stat_inode().stat().mode
        if not (S.S_ISREG(mode) or S.S_ISBLK(mode)):
            raise Errno(E.EINVAL)
        if isinstance(backing, LoopFile) and _loops_back_to(backing.device, self):
            raise Errno(E.EINVAL)  # a loop on itself (loop_validate_file)
        if block_size and not _valid_block_size(block_size):
            raise Errno(E.EINVAL)
        if flags & ~CONFIGURE_FLAGS:
            raise Errno(E.EINVAL)
        self.flags = flags
        if not backing.writable or not opened_for_write or getattr(backing.inode.fs, "readonly", False):
            self.flags |= LO_FLAGS_READ_ONLY
        self.backing = backing
        backing.fd_refs = getattr(backing, "fd_refs", 0) + 1  # the device holds the file, as Linux's lo_backing_file
        self.block_size = block_size or SECTOR
        self.file_name = os.fsencode(backing.path or "")[:LO_NAME_SIZE - 1]
        self.compute_capacity()
        if self.flags & LO_FLAGS_DIRECT_IO and self.offset % self.block_size:
            self.flags &= ~LO_FLAGS_DIRECT_IO

    def clear(self) -> None:
        """LOOP_CLR_FD: unbind now, or when the last holder lets go (LO_FLAGS_AUTOCLEAR)
        while it is open elsewhere or mounted."""
        if not self.bound:
            raise Errno(E.ENXIO)
        if self.opens + self.mounts > 1:
            self.flags |= LO_FLAGS_AUTOCLEAR
            return
        self.unbind()

    def unbind(self) -> None:
        if self.backing is not None:
            from sentry.fdtable import drop_ref
            drop_ref(self.backing)
        self.backing = None
        self.offset = self.sizelimit = self.flags = self.capacity = 0
        self.file_name = self.crypt_name = b""
        self.block_size = SECTOR
        self.readonly_set = False

    def released(self) -> None:
        """A holder (an open file or a mount) let go: autoclear when none is left."""
        if self.bound and self.flags & LO_FLAGS_AUTOCLEAR and self.opens + self.mounts == 0:
            self.unbind()

    # --- status ----------------------------------------------------------------------
    def status64(self) -> bytes:
        if not self.bound:
            raise Errno(E.ENXIO)
        inode = self.backing.stat_inode()
        st = inode.stat()
        return _INFO64.pack(st.dev, st.ino, st.rdev, self.offset, self.sizelimit, self.number, 0, 0, self.flags,
                            self.file_name.ljust(LO_NAME_SIZE, b"\0"), self.crypt_name.ljust(LO_NAME_SIZE, b"\0"),
                            bytes(LO_KEY_SIZE), 0, 0)

    def status_old(self) -> bytes:
        if not self.bound:
            raise Errno(E.ENXIO)
        st = self.backing.stat_inode().stat()
        if self.offset > 0x7FFFFFFF:
            raise Errno(E.EOVERFLOW)
        return _INFO.pack(self.number, st.dev, st.ino, st.rdev, self.offset, 0, 0, self.flags,
                          self.file_name.ljust(LO_NAME_SIZE, b"\0"), bytes(LO_KEY_SIZE), 0, 0, bytes(4))

    def set_status(self, offset: int, sizelimit: int, flags: int, file_name: bytes, crypt_name: bytes,
                   key_size: int) -> None:
        """loop_set_status: offset, size limit, names and the settable flags."""
        if not self.bound:
            raise Errno(E.ENXIO)
        if key_size > LO_KEY_SIZE:
            raise Errno(E.EINVAL)
        if (offset != self.offset or sizelimit != self.sizelimit) and self.mounts:
            raise Errno(E.EBUSY)
        self.offset, self.sizelimit = offset, sizelimit
        self.flags = (self.flags & ~CLEARABLE_FLAGS) | (flags & SETTABLE_FLAGS)
        self.file_name = file_name.split(b"\0")[0][:LO_NAME_SIZE - 1]
        self.crypt_name = crypt_name.split(b"\0")[0][:LO_NAME_SIZE - 1]
        self.compute_capacity()


def _valid_block_size(size: int) -> bool:
    return SECTOR <= size <= PAGE and size & (size - 1) == 0


def _loops_back_to(device, target) -> bool:
    """Would binding a loop device's file to target make a loop of loops?"""
    seen = 0
    while device is not None and seen < 64:
        if device is target:
            return True
        backing = device.backing
        device = backing.device if isinstance(backing, LoopFile) else None
        seen += 1
    return False


class Loops:
    """The sandbox's loop devices, by number, and the /dev directory their nodes live in."""

    def __init__(self, table):
        self.table = table  # sentry/vfs/devices.py's DeviceTable
        self.devices: dict[int, LoopDevice] = {}
        self.trees: dict = {}  # what sentry/vfs/diskfs.py keeps of each image's filesystem
        for n in range(MIN_COUNT):
            self.add(n)

    def add(self, number: int) -> int:
        if number in self.devices:
            raise Errno(E.EEXIST)
        if number >= MAX_MINOR:
            raise Errno(E.EINVAL)
        device = LoopDevice(number)
        self.devices[number] = device
        self.table.add_block(LOOP_MAJOR, number, lambda inode, flags, path: LoopFile(inode, flags, path, device),
                             b"loop%d" % number, 0o660)
        return number

    def remove(self, number: int) -> int:
        device = self.devices.get(number)
        if device is None:
            raise Errno(E.ENODEV)
        if device.bound or device.opens or device.mounts:
            raise Errno(E.EBUSY)
        del self.devices[number]
        self.table.remove(S.S_IFBLK, LOOP_MAJOR, number, b"loop%d" % number)
        return 0

    def get_free(self) -> int:
        for number in sorted(self.devices):
            if not self.devices[number].bound:
                return number
        number = 0
        while number in self.devices:
            number += 1
        return self.add(number)

    def of_rdev(self, rdev_: int):
        """The loop device of a block device number, or None."""
        if rdev_ >> 8 != LOOP_MAJOR:
            return None
        return self.devices.get(rdev_ & 0xFF)


class LoopControlFile(File):
    """/dev/loop-control: finds, adds and removes loop devices (CAP_SYS_ADMIN's)."""

    def __init__(self, inode, flags, path, loops: Loops):
        super().__init__(inode, flags, path)
        self.loops = loops

    def ioctl(self, task, request, arg):
        from sentry.namespaces import ns_capable
        if request not in (LOOP_CTL_ADD, LOOP_CTL_REMOVE, LOOP_CTL_GET_FREE):
            raise Errno(E.ENOSYS)  # loop_control_ioctl's default
        if not ns_capable(task, _init_user_ns(task), CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
        number = arg & 0xFFFFFFFF if arg < (1 << 63) else -1
        if request == LOOP_CTL_GET_FREE:
            return self.loops.get_free()
        if number < 0 or arg > 0x7FFFFFFF:
            raise Errno(E.EINVAL)
        if request == LOOP_CTL_ADD:
            return self.loops.add(number)
        return self.loops.remove(number)

    def read(self, size):
        raise Errno(E.EINVAL)

    def write(self, data):
        raise Errno(E.EINVAL)


def _init_user_ns(task):
    ns = task.user_ns
    while ns.parent is not None:
        ns = ns.parent
    return ns


class LoopFile(File):
    """An open /dev/loopN: a block device with a position."""

    def __init__(self, inode, flags, path, device: LoopDevice):
        super().__init__(inode, flags, path)
        self.device = device
        self.offset = 0
        if flags & O_ACCMODE != O_RDONLY and device.readonly:
            raise Errno(E.EROFS)  # blkdev_open of a read-only device for writing
        device.opens += 1

    def close(self) -> None:
        self.device.opens -= 1
        self.device.released()

    def pread(self, size, offset):
        if offset < 0:
            raise Errno(E.EINVAL)
        return self.device.read(offset, size)

    def pwrite(self, data, offset):
        if offset < 0:
            raise Errno(E.EINVAL)
        if not data:
            return 0
        return self.device.write(offset, data)

    def read(self, size):
        data = self.pread(size, self.offset)
        self.offset += len(data)
        return data

    def unread(self, data):
        self.offset -= len(data)

    def write(self, data):
        n = self.pwrite(data, self.offset)
        self.offset += n
        return n

    def seek(self, offset, whence):
        base = {SEEK_SET: 0, SEEK_CUR: self.offset, SEEK_END: self.device.size()}.get(whence)
        if base is None:
            raise Errno(E.EINVAL)
        if base + offset < 0:
            raise Errno(E.EINVAL)
        self.offset = base + offset
        return self.offset

    def fsync(self, datasync):
        if self.device.bound:
            self.device.backing.fsync(datasync)

    def fallocate(self, mode, offset, length):
        raise Errno(E.EOPNOTSUPP)

    # --- ioctls --------------------------------------------------------------------------
    def ioctl(self, task, request, arg):
        d = self.device
        mm = task.mm
        if request == LOOP_SET_FD:
            d.bind(task, arg & 0xFFFFFFFF if arg < 0x80000000 else -1, self.writable)
            return 0
        if request == LOOP_CONFIGURE:
            raw = mm.read(arg, CONFIG_SIZE)
            fd, block_size = _CONFIG.unpack_from(raw)
            info = _INFO64.unpack_from(raw, _CONFIG.size)
            if info[8] & ~CONFIGURE_FLAGS:
                raise Errno(E.EINVAL)
            d.bind(task, fd if fd < 0x80000000 else -1, self.writable, info[8], block_size)
            d.offset, d.sizelimit = info[3], info[4]
            d.file_name = info[9].split(b"\0")[0][:LO_NAME_SIZE - 1] or d.file_name
            d.crypt_name = info[10].split(b"\0")[0][:LO_NAME_SIZE - 1]
            d.compute_capacity()
            return 0
        if request == LOOP_CHANGE_FD:
            if not d.bound:
                raise Errno(E.ENXIO)
            if not d.readonly:
                raise Errno(E.EINVAL)  # only a read-only device may change its file
            new = task.fds.get(arg & 0xFFFFFFFF)
            if new.stat_inode().stat().size != d._backing_size():
                raise Errno(E.EINVAL)
            from sentry.fdtable import drop_ref
            new.fd_refs = getattr(new, "fd_refs", 0) + 1
            drop_ref(d.backing)
            d.backing = new
            return 0
        if request == LOOP_CLR_FD:
            d.clear()
            return 0
        if request in (LOOP_SET_STATUS64, LOOP_SET_STATUS):
            if request == LOOP_SET_STATUS64:
                info = _INFO64.unpack(mm.read(arg, _INFO64.size))
                offset, sizelimit, flags, key_size, name, crypt = info[3], info[4], info[8], info[7], info[9], info[10]
            else:
                info = _INFO.unpack(mm.read(arg, _INFO.size))
                offset = info[4] & 0xFFFFFFFFFFFFFFFF  # an int widened to __u64, as loop_info_to_info64
                offset, sizelimit, flags, key_size, name, crypt = offset, 0, info[7], info[6], info[8], b""
            d.set_status(offset, sizelimit, flags, name, crypt, key_size)
            return 0
        if request == LOOP_GET_STATUS64:
            if not arg:
                raise Errno(E.EINVAL)
            mm.write(arg, d.status64())
            return 0
        if request == LOOP_GET_STATUS:
            if not arg:
                raise Errno(E.EINVAL)
            mm.write(arg, d.status_old())
            return 0
        if request == LOOP_SET_CAPACITY:
            if not d.bound:
                raise Errno(E.ENXIO)
            d.compute_capacity()
            return 0
        if request == LOOP_SET_DIRECT_IO:
            if not d.bound:
                raise Errno(E.ENXIO)
            if arg and d.offset % d.block_size:
                raise Errno(E.EINVAL)
            d.flags = d.flags | LO_FLAGS_DIRECT_IO if arg else d.flags & ~LO_FLAGS_DIRECT_IO
            return 0
        if request == LOOP_SET_BLOCK_SIZE:
            if not d.bound:
                raise Errno(E.ENXIO)
            if not _valid_block_size(arg):
                raise Errno(E.EINVAL)
            d.block_size = arg
            return 0
        return self._block_ioctl(task, request, arg)

    def _block_ioctl(self, task, request, arg):
        """blkdev_ioctl's answers for a loop device."""
        from sentry import caps
        d = self.device
        mm = task.mm
        if request == BLKGETSIZE64:
            mm.write(arg, struct.pack("<Q", d.size()))
        elif request == BLKGETSIZE:
            mm.write(arg, struct.pack("<Q", d.size() // SECTOR))
        elif request in (BLKSSZGET, BLKPBSZGET, BLKIOMIN):
            mm.write(arg, struct.pack("<I", d.block_size))
        elif request == BLKBSZGET:
            mm.write(arg, struct.pack("<i", _soft_block_size(d)))
        elif request == BLKBSZSET:
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EACCES)
            size = struct.unpack("<i", mm.read(arg, 4))[0]
            if not (d.block_size <= size <= PAGE) or size & (size - 1):
                raise Errno(E.EINVAL)
        elif request in (BLKIOOPT, BLKALIGNOFF, BLKDISCARDZEROES, BLKROTATIONAL):
            mm.write(arg, struct.pack("<I", 0))
        elif request == BLKROGET:
            mm.write(arg, struct.pack("<i", int(d.readonly)))
        elif request == BLKROSET:
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EACCES)
            d.readonly_set = bool(struct.unpack("<i", mm.read(arg, 4))[0])
        elif request == BLKFLSBUF:
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EACCES)
        elif request == BLKRRPART:
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EACCES)
            raise Errno(E.EINVAL)  # no partition table is scanned (disk_scan_partitions)
        elif request in (BLKRASET, BLKFRASET):
            if not caps.has(task, CAP_SYS_ADMIN):
                raise Errno(E.EACCES)
            d.ra_pages = arg * SECTOR // PAGE
        elif request in (BLKRAGET, BLKFRAGET):
            if not arg:
                raise Errno(E.EINVAL)
            mm.write(arg, struct.pack("<Q", d.ra_pages * PAGE // SECTOR))
        elif request == BLKGETDISKSEQ:
            mm.write(arg, struct.pack("<Q", d.number + 1))
        elif request in (BLKDISCARD, BLKSECDISCARD, BLKZEROOUT):
            if not self.writable:
                raise Errno(E.EBADF)
            raise Errno(E.EOPNOTSUPP)  # no discard: mkfs writes what it needs zeroed
        else:
            raise Errno(E.ENOTTY)
        return 0


def _soft_block_size(d: LoopDevice) -> int:
    """set_init_blocksize: the largest power of two up to a page that divides the size."""
    size = d.size()
    bsize = d.block_size
    while bsize < PAGE and size % (bsize * 2) == 0:
        bsize *= 2
    return bsize
