"""File handles (name_to_handle_at(2), open_by_handle_at(2)): an opaque name of an inode
that outlives paths, as exportfs gives NFS servers.

A handle holds what shmem_encode_fh puts there (a generation, the inode number in two
halves: 16 bytes, type FILEID_INO32_GEN) and nothing of the sandbox's own; the sandbox
remembers, per filesystem and inode number, the inode a handle was made for and where it
was, so that a handle decodes while that inode lives (else ESTALE, as a handle whose
inode was freed). Filesystems without export operations (proc, devpts, nsfs, mqueue, pipes
and sockets) give only AT_HANDLE_FID handles, which name but never open (exportfs's
generic 8-byte encoding)."""
import errno as E
import itertools
import struct

from sentry.errors import Errno

MAX_HANDLE_SZ = 128
FILEID_INO32_GEN = 1
FILEID_INVALID = 255
FILEID_IS_CONNECTABLE, FILEID_IS_DIR = 0x10000, 0x20000
HANDLE = struct.Struct("<IIII")  # generation, ino low, ino high, 0 (shmem_encode_fh)
FID = struct.Struct("<II")       # ino, generation (export_encode_fh's FILEID_INO32_GEN)
UNEXPORTABLE = {"proc", "devpts", "nsfs", "mqueue"}


class Remembered:
    __slots__ = ("generation", "inode", "path")

    def __init__(self, generation: int, inode, path: bytes):
        self.generation, self.inode, self.path = generation, inode, path


class Handles:
    """The inodes handles were made for, by (filesystem's device, inode number)."""

    def __init__(self):
        self.known: dict[tuple, Remembered] = {}
        self._generations = itertools.count(1)

    def encode(self, inode, path: bytes, fid: bool) -> tuple[int, bytes]:
        """(handle_type, handle bytes) of inode found at path; EOPNOTSUPP where its
        filesystem cannot be exported and fid (AT_HANDLE_FID: a name only) was not asked."""
        fs = inode.fs
        exportable = fs is not None and fs.name not in UNEXPORTABLE
        if not exportable:
            if not fid:
                raise Errno(E.EOPNOTSUPP)
            return FILEID_INO32_GEN, FID.pack(inode.ino & 0xFFFFFFFF, 0)
        key = (fs.dev, inode.ino)
        seen = self.known.get(key)
        if seen is None or seen.inode is not inode and _gone(seen.inode):
            seen = self.known[key] = Remembered(next(self._generations), inode, path)
        else:
            seen.inode, seen.path = inode, path
        return FILEID_INO32_GEN, HANDLE.pack(seen.generation, inode.ino & 0xFFFFFFFF, inode.ino >> 32, 0)

    def decode(self, fs, handle_type: int, data: bytes) -> Remembered:
        """What a handle names on filesystem fs (the mount descriptor's), or ESTALE."""
        if fs is None or fs.name in UNEXPORTABLE or handle_type & 0xFFFF != FILEID_INO32_GEN \
                or len(data) < HANDLE.size:
            raise Errno(E.ESTALE)
        generation, lo, hi, _ = HANDLE.unpack_from(data)
        seen = self.known.get((fs.dev, lo | hi << 32))
        if seen is None or seen.generation != generation or _gone(seen.inode):
            raise Errno(E.ESTALE)
        return seen


def _gone(inode) -> bool:
    """Freed, as far as a handle can tell: no name holds it any more."""
    return getattr(inode, "nlink", 1) <= 0


def of(kernel) -> Handles:
    table = getattr(kernel, "file_handles", None)
    if table is None:
        table = kernel.file_handles = Handles()
    return table
