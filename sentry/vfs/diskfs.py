"""The filesystems mount(2) makes: tmpfs (size=, nr_inodes=, mode=, uid=, gid=) and the
disk types ext2, ext3 and ext4 on a block device (a loop device, sentry/vfs/loopdev.py).

Both are memory trees with a capacity: a write that would pass the filesystem's free
blocks, or a new file past its free inodes, fails with ENOSPC, and statfs reports what
is left.

There is no ext2/ext4 driver. A disk filesystem is mounted from the image's superblock
(EXT4_SUPER_MAGIC, the features each type accepts, the block and inode counts): the
image must be what mkfs made and nothing more (a root and lost+found), and its tree is
then a memory tree that the sandbox keeps with the image (its backing file and UUID) for
its life, so that umount and a later mount see the same files. Nothing is written back
to the image. An image holding more than a fresh mkfs leaves is refused (EOPNOTSUPP,
with a note), since its files cannot be read.
"""
import errno as E
import struct

from sentry.errors import Errno
from sentry.vfs.inode import (ST_RDONLY, ST_VALID, TMPFS_MAGIC, DirInode, FifoInode, FileSystem, Inode,
                              RegularInode, StatFS, SymlinkInode)

EXT4_SUPER_MAGIC = 0xEF53
PAGE = 4096
DISK_TYPES = ("ext2", "ext3", "ext4")

# feature bits (fs/ext4/ext4.h)
COMPAT_HAS_JOURNAL = 0x4
INCOMPAT_FILETYPE, INCOMPAT_RECOVER, INCOMPAT_JOURNAL_DEV, INCOMPAT_META_BG = 0x2, 0x4, 0x8, 0x10
RO_COMPAT_SPARSE_SUPER, RO_COMPAT_LARGE_FILE, RO_COMPAT_BTREE_DIR = 0x1, 0x2, 0x4
EXT2_INCOMPAT_SUPP = INCOMPAT_FILETYPE | INCOMPAT_META_BG
EXT3_INCOMPAT_SUPP = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG
EXT2_RO_COMPAT_SUPP = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR
EXT4_INCOMPAT_SUPP = 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | \
    0x20000
EXT4_RO_COMPAT_SUPP = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x8000

# options each type accepts (a value after `=` is taken as given)
TMPFS_OPTIONS = {"size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol", "inode32", "inode64",
                 "noswap", "quota", "usrquota", "grpquota"}
EXT_OPTIONS = {"bsddf", "minixdf", "grpid", "bsdgroups", "nogrpid", "sysvgroups", "resgid", "resuid", "sb",
               "errors", "nouid32", "debug", "oldalloc", "orlov", "user_xattr", "nouser_xattr", "acl", "noacl",
               "noload", "norecovery", "commit", "min_batch_time", "max_batch_time", "journal_dev",
               "journal_path", "journal_checksum", "nojournal_checksum", "journal_async_commit", "abort", "data",
               "data_err", "barrier", "nobarrier", "i_version", "dax", "stripe", "delalloc", "nodelalloc",
               "auto_da_alloc", "noauto_da_alloc", "discard", "nodiscard", "init_itable", "noinit_itable",
               "block_validity", "noblock_validity", "dioread_lock", "dioread_nolock", "quota", "noquota",
               "usrquota", "grpquota", "prjquota", "jqfmt", "usrjquota", "grpjquota", "lazytime", "nolazytime",
               "inlinecrypt", "nombcache", "no_mbcache", "test_dummy_encryption", "check", "nocheck",
               "reservation", "noreservation", "journal_ioprio", "max_dir_size_kb", "bh", "nobh",
               "mb_optimize_scan", "prefetch_block_bitmaps", "nodiscard", "auto_da_alloc", "sysvgroups"}


class SizedFileSystem(FileSystem):
    """A memory filesystem with a capacity: blocks of `bsize` bytes and inodes, both counted."""

    def __init__(self, name, magic, blocks, inodes, bsize=PAGE, dev=None):
        super().__init__(name, magic=magic)
        if dev is not None:
            self.dev = dev
        self.bsize = bsize
        self.total_blocks, self.total_inodes = blocks, inodes
        self.free_blocks, self.free_inodes = blocks, inodes
        self.used_bytes = 0

    def charge(self, growth: int) -> None:
        """growth more (or, negative, fewer) bytes of file data: ENOSPC past the free blocks."""
        used = self.used_bytes + growth
        blocks = -(-used // self.bsize)
        if growth > 0 and blocks > self.free_blocks:
            raise Errno(E.ENOSPC)
        self.used_bytes = max(0, used)

    def new_inode(self) -> None:
        if self.free_inodes <= 0:
            raise Errno(E.ENOSPC)
        self.free_inodes -= 1

    def freed_inode(self, inode) -> None:
        self.free_inodes += 1
        if isinstance(inode, SizedFile):
            self.charge(-inode.charged)

    def statfs(self) -> StatFS:
        bfree = max(0, self.free_blocks - -(-self.used_bytes // self.bsize))
        return StatFS(self.magic, blocks=self.total_blocks, bfree=bfree, files=self.total_inodes,
                      ffree=self.free_inodes, flags=ST_VALID | (ST_RDONLY if self.readonly else 0), bsize=self.bsize)


class ExtFileSystem(SizedFileSystem):
    """A disk filesystem's superblock: figures from the image, the tree in memory."""

    def __init__(self, name, sb, dev):
        super().__init__(name, EXT4_SUPER_MAGIC, sb.blocks, sb.inodes, sb.block_size, dev)
        self.free_blocks, self.free_inodes = sb.free_blocks, sb.free_inodes
        self.reserved = sb.reserved_blocks
        self.uuid = sb.uuid

    def statfs(self) -> StatFS:
        sf = super().statfs()
        sf.bavail = max(0, sf.bfree - self.reserved)
        return sf


class SizedFile(RegularInode):
    """A file whose data is charged to its filesystem's capacity. As on tmpfs and ext, a hole
    costs nothing: a write past the end is charged what it writes (not the gap before it), a
    truncate up nothing, fallocate what it adds; `charged` is what the file holds."""
    __slots__ = ("charged",)

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.charged = 0

    def has_xattrs(self) -> bool:
        return True  # tmpfs and ext2/3/4 both keep extended attributes

    def _charge(self, n: int) -> None:
        if n:
            self.fs.charge(n)  # ENOSPC before anything changes
            self.charged += n

    def check_write(self, offset: int, length: int) -> None:
        super().check_write(offset, length)
        self.fs.check_writable()
        grow = offset + length - self.size
        if grow > 0:
            self._charge(min(grow, length))

    def _resize(self, length: int, allocate: bool = False) -> None:
        if allocate and length > self.size:
            self._charge(length - self.size)
        super()._resize(length, allocate)
        if self.charged > length:  # what was cut off goes back
            self.fs.charge(length - self.charged)
            self.charged = length


class SizedDir(DirInode):
    """A directory whose new files are counted against its filesystem's inodes."""
    __slots__ = ()

    def has_xattrs(self) -> bool:
        return True

    def _new(self, name, inode):
        self.fs.check_writable()
        if name in self.children:
            raise Errno(E.EEXIST)
        self.fs.new_inode()
        return self.add(name, inode)

    def create(self, name, mode):
        return self._new(name, SizedFile(mode & 0o7777, fs=self.fs))

    def mkdir(self, name, mode):
        return self._new(name, SizedDir(mode & 0o7777, fs=self.fs))

    def symlink(self, name, target):
        return self._new(name, SymlinkInode(target, fs=self.fs))

    def mknod(self, name, mode):
        import stat as S
        kind = S.S_IFMT(mode)
        if kind == S.S_IFREG:
            return self.create(name, mode & 0o7777)
        if kind == S.S_IFIFO:
            return self._new(name, FifoInode(mode & 0o7777, fs=self.fs))
        if kind == S.S_IFSOCK:
            return self._new(name, Inode(mode, fs=self.fs))
        raise Errno(E.EPERM)

    def tmpfile(self, mode, linkable=True):
        self.fs.check_writable()
        self.fs.new_inode()
        inode = SizedFile(mode & 0o7777, fs=self.fs)
        inode.nlink = 0
        inode.linkable = linkable
        return inode

    def unlink(self, name):
        inode = self.children.get(name)
        super().unlink(name)
        if inode is not None and inode.nlink == 0:
            self.fs.freed_inode(inode)

    def rmdir(self, name):
        inode = self.children.get(name)
        super().rmdir(name)
        if inode is not None:
            self.fs.freed_inode(inode)


# --- tmpfs ---------------------------------------------------------------------------------------
def parse_options(data: str, known: set) -> dict:
    """key[=value],... : EINVAL for a key the type does not know."""
    out = {}
    for word in data.split(","):
        if not word:
            continue
        key, _, value = word.partition("=")
        if key not in known:
            raise Errno(E.EINVAL)
        out[key] = value
    return out


def _size(text: str, total: int) -> int:
    """memparse with tmpfs's % of memory."""
    if not text:
        raise Errno(E.EINVAL)
    if text.endswith("%"):
        try:
            return total * int(text[:-1]) // 100
        except ValueError:
            raise Errno(E.EINVAL) from None
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}
    unit = mult.get(text[-1].lower(), 1)
    digits = text[:-1] if text[-1].lower() in mult else text
    try:
        return int(digits, 0) * unit
    except ValueError:
        raise Errno(E.EINVAL) from None


TMPFS_DEFAULT_BYTES = 2 << 30  # the sandbox's fixed figure (FileSystem.statfs)


def tmpfs_options(opts: dict) -> tuple[int, int, int, int, int]:
    """(blocks, inodes, mode, uid, gid) of tmpfs options."""
    blocks, inodes, mode, uid, gid = TMPFS_DEFAULT_BYTES // PAGE, 1 << 20, 0o1777, 0, 0
    if "size" in opts:
        blocks = -(-_size(opts["size"], TMPFS_DEFAULT_BYTES) // PAGE)
    if "nr_blocks" in opts:
        blocks = _size(opts["nr_blocks"], TMPFS_DEFAULT_BYTES // PAGE)
    if "nr_inodes" in opts:
        inodes = _size(opts["nr_inodes"], 1 << 20)
    try:
        if "mode" in opts:
            mode = int(opts["mode"], 8) & 0o7777
        if "uid" in opts:
            uid = int(opts["uid"])
        if "gid" in opts:
            gid = int(opts["gid"])
    except ValueError:
        raise Errno(E.EINVAL) from None
    return blocks or 1 << 40, inodes or 1 << 40, mode, uid, gid


def make_tmpfs(data: str):
    """A new tmpfs's root and its superblock options as /proc/mounts shows them."""
    opts = parse_options(data, TMPFS_OPTIONS)
    blocks, inodes, mode, uid, gid = tmpfs_options(opts)
    fs = SizedFileSystem("tmpfs", TMPFS_MAGIC, blocks, inodes)
    root = SizedDir(mode, fs=fs)
    root.init_owner(uid, gid)
    return root, tmpfs_super_options(fs, mode, uid, gid, "size" in opts or "nr_blocks" in opts,
                                     "nr_inodes" in opts)


def tmpfs_super_options(fs, mode, uid, gid, sized, inodes_given) -> str:
    words = []
    if sized:
        words.append("size=%dk" % (fs.total_blocks * PAGE // 1024))
    if inodes_given:
        words.append("nr_inodes=%d" % fs.total_inodes)
    if mode != 0o1777:
        words.append("mode=%o" % mode)
    if uid:
        words.append("uid=%d" % uid)
    if gid:
        words.append("gid=%d" % gid)
    return ",".join(words)


def remount_tmpfs(root, data: str) -> None:
    """tmpfs's reconfigure: size= and nr_inodes= change (EINVAL below what is in use)."""
    opts = parse_options(data, TMPFS_OPTIONS)
    fs = root.fs
    if "size" in opts or "nr_blocks" in opts:
        blocks = tmpfs_options(opts)[0]
        if -(-fs.used_bytes // PAGE) > blocks:
            raise Errno(E.EINVAL)
        fs.total_blocks = fs.free_blocks = blocks
    if "nr_inodes" in opts:
        inodes = tmpfs_options(opts)[1]
        used = fs.total_inodes - fs.free_inodes
        if used > inodes:
            raise Errno(E.EINVAL)
        fs.total_inodes, fs.free_inodes = inodes, inodes - used


# --- ext2/3/4 --------------------------------------------------------------------------------------
class Superblock:
    """The fields of an ext2/3/4 superblock (at byte 1024 of the device) that mount needs."""
    _HEAD = struct.Struct("<IIIIIII")  # inodes, blocks_lo, r_blocks_lo, free_blocks_lo, free_inodes, first_data, log

    def __init__(self, raw: bytes):
        (self.inodes, blocks_lo, r_lo, free_lo, self.free_inodes, _, log_block) = self._HEAD.unpack_from(raw, 0)
        self.magic, self.state = struct.unpack_from("<HH", raw, 56)
        self.rev_level, = struct.unpack_from("<I", raw, 76)
        self.first_ino, self.inode_size = struct.unpack_from("<IH", raw, 84)
        self.compat, self.incompat, self.ro_compat = struct.unpack_from("<III", raw, 92)
        self.uuid = bytes(raw[104:120])
        blocks_hi, r_hi, free_hi = struct.unpack_from("<III", raw, 0x150)
        wide = self.incompat & 0x80  # 64bit
        self.blocks = blocks_lo | (blocks_hi << 32 if wide else 0)
        self.reserved_blocks = r_lo | (r_hi << 32 if wide else 0)
        self.free_blocks = free_lo | (free_hi << 32 if wide else 0)
        self.block_size = 1024 << log_block if log_block < 7 else 0
        if self.rev_level == 0:
            self.first_ino = 11

    def fits(self, fstype: str, readonly: bool) -> bool:
        """Would Linux's ext4 driver mount it as fstype (ext4_feature_set_ok)?"""
        if fstype == "ext2":
            incompat, ro_compat = EXT2_INCOMPAT_SUPP, EXT2_RO_COMPAT_SUPP
        elif fstype == "ext3":
            incompat, ro_compat = EXT3_INCOMPAT_SUPP, EXT2_RO_COMPAT_SUPP
        else:
            incompat, ro_compat = EXT4_INCOMPAT_SUPP, EXT4_RO_COMPAT_SUPP
        if self.incompat & ~incompat:
            return False
        return readonly or not self.ro_compat & ~ro_compat

    @property
    def fresh(self) -> bool:
        """Only what mkfs makes: the reserved inodes and lost+found (the first ordinary one)."""
        return self.inodes - self.free_inodes <= self.first_ino and not self.incompat & INCOMPAT_RECOVER


def read_superblock(device) -> Superblock:
    """EINVAL as Linux for what is not an ext2/3/4 filesystem (too small, no magic)."""
    raw = device.read(1024, 1024)
    if len(raw) < 1024:
        raise Errno(E.EINVAL)
    sb = Superblock(raw)
    if sb.magic != EXT4_SUPER_MAGIC or not sb.block_size or not sb.blocks or sb.blocks * sb.block_size > \
            device.size() + sb.block_size:
        raise Errno(E.EINVAL)
    return sb


def mount_disk(loops, device, fstype: str, data: str, readonly: bool, note=None):
    """The root of the ext tree on a loop device: the one kept for its image, or a fresh
    one (root and lost+found) for an image just made by mkfs."""
    parse_options(data, EXT_OPTIONS)
    sb = read_superblock(device)
    if not sb.fits(fstype, readonly):
        raise Errno(E.EINVAL)
    backing = device.backing.stat_inode()
    key = (backing.fs.dev, backing.ino, sb.uuid)
    kept = loops.trees.get(key)
    if kept is not None:
        kept.fs.name = fstype
        kept.fs.dev = device.rdev
        return kept
    if not sb.fresh:
        if note is not None:
            note(f"mount: {fstype} image on loop{device.number} holds files beyond a fresh mkfs; the sandbox "
                 "has no ext driver to read them (EOPNOTSUPP)")
        raise Errno(E.EOPNOTSUPP)
    fs = ExtFileSystem(fstype, sb, device.rdev)
    root = SizedDir(0o755, fs=fs)
    lost = SizedDir(0o700, fs=fs)
    root.add(b"lost+found", lost)
    loops.trees[key] = root
    return root
