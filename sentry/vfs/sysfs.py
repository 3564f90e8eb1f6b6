"""The sandbox's sysfs (mounted where `mount -t sysfs` asks; the default view has no /sys):
block/ only, a directory per loop device (sentry/vfs/loopdev.py)
with what LTP and losetup read of it: dev, size, ro, removable, queue/ (block sizes,
readahead) and, while the device is bound, loop/ (backing_file, offset, sizelimit,
autoclear, partscan, dio). Nothing of the host's /sys is shown; everything else in it
is absent (ENOENT), as it was before /sys existed. There is no stat file: the sandbox
does not count the device's I/O."""
from sentry.vfs.inode import FileSystem, SymlinkInode
from sentry.vfs.loopdev import LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LO_FLAGS_PARTSCAN, LOOP_MAJOR, SECTOR
from sentry.vfs.procfs import GenInode, ProcDir, StaticDir

SYSFS_MAGIC = 0x62656572


class _LoopDir(ProcDir):
    """/sys/block/loopN: its files made once, loop/ shown only while bound."""

    def __init__(self, fs, device):
        super().__init__(fs, 0o755)
        self.device = device
        d = device
        gen = lambda fn: GenInode(fs, lambda: (str(fn()) + "\n").encode())  # noqa: E731
        self.files = {
            b"dev": gen(lambda: f"{LOOP_MAJOR}:{d.number}"),
            b"size": gen(lambda: d.size() // SECTOR),
            b"ro": gen(lambda: int(d.readonly)),
            b"removable": gen(lambda: 0),
            b"range": gen(lambda: 1),
        }
        queue = StaticDir(fs, 0o755)
        for name, fn in ((b"logical_block_size", lambda: d.block_size), (b"physical_block_size", lambda: d.block_size),
                         (b"hw_sector_size", lambda: d.block_size), (b"minimum_io_size", lambda: d.block_size),
                         (b"optimal_io_size", lambda: 0), (b"rotational", lambda: 0),
                         (b"read_ahead_kb", lambda: d.ra_pages * 4), (b"discard_granularity", lambda: 0),
                         (b"dma_alignment", lambda: 511)):
            queue.add(name, gen(fn))
        self.files[b"queue"] = queue
        loop = StaticDir(fs, 0o755)
        for name, fn in ((b"backing_file", lambda: d.backing.path if d.bound else ""), (b"offset", lambda: d.offset),
                         (b"sizelimit", lambda: d.sizelimit),
                         (b"autoclear", lambda: int(bool(d.flags & LO_FLAGS_AUTOCLEAR))),
                         (b"partscan", lambda: int(bool(d.flags & LO_FLAGS_PARTSCAN))),
                         (b"dio", lambda: int(bool(d.flags & LO_FLAGS_DIRECT_IO)))):
            loop.add(name, gen(fn))
        self.loop = loop

    def children(self):
        if self.device.bound:
            return {**self.files, b"loop": self.loop}
        return self.files


class _BlockDir(ProcDir):
    """/sys/block: a directory per loop device there is."""

    def __init__(self, fs, loops):
        super().__init__(fs, 0o755)
        self.loops = loops
        self.made: dict = {}  # LoopDevice -> its _LoopDir (kept: stable inode numbers)

    def children(self):
        out = {}
        for number, device in sorted(self.loops.devices.items()):
            d = self.made.get(device)
            if d is None:
                d = self.made[device] = _LoopDir(self.fs, device)
            out[b"loop%d" % number] = d
        return out


class _DevBlockDir(ProcDir):
    """/sys/dev/block: MAJOR:MINOR links to each loop device's directory."""

    def __init__(self, fs, loops):
        super().__init__(fs, 0o755)
        self.loops = loops
        self.made: dict = {}

    def children(self):
        out = {}
        for number in sorted(self.loops.devices):
            name = b"%d:%d" % (LOOP_MAJOR, number)
            link = self.made.get(name)
            if link is None:
                link = self.made[name] = SymlinkInode(b"../../block/loop%d" % number, fs=self.fs)
            out[name] = link
        return out


def make_sysfs(loops):
    """The root of the sandbox's sysfs."""
    fs = FileSystem("sysfs", magic=SYSFS_MAGIC)
    root = StaticDir(fs, 0o555)
    root.add(b"block", _BlockDir(fs, loops))
    dev = root.add(b"dev", StaticDir(fs, 0o755))
    dev.add(b"block", _DevBlockDir(fs, loops))
    return root
