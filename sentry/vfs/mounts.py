"""The sandbox's mount table as Linux shows it: ids, parents, types and options of
each mount, for /proc/PID/mountinfo and mounts, fdinfo's mnt_id, statx's mount
ids, statmount(2) and listmount(2); and the filesystem types the sandbox has
(/proc/filesystems, sysfs(2)).

The table is the VFS's own (`vfs.root_loc` and `vfs.mounts`, made when the sandbox
starts and never changed after: mount(2) is refused). Each mount has Linux's two ids:
the small one mountinfo shows (`id`, from 21 as on a booted machine) and the 64-bit
one that is never reused (`unique_id`, past MNT_UNIQUE_ID_OFFSET as Linux's). The
root's parent is a mount no one sees (mountinfo's 20), as a container's root is
mounted over a hidden one.
"""
import os
from typing import NamedTuple

FIRST_MNT_ID = 21
MNT_UNIQUE_ID_OFFSET = 1 << 32  # unique ids start past every old 32-bit id
HIDDEN_PARENT_UNIQUE = MNT_UNIQUE_ID_OFFSET + 1  # the root's parent (FIRST_MNT_ID - 1)
PROC_SUPER_MAGIC, TMPFS_MAGIC, EXT4_SUPER_MAGIC = 0x9FA0, 0x01021994, 0xEF53

# The filesystem types the sandbox's kernel has, in /proc/filesystems' order (nodev: needs no device)
FILESYSTEMS = [("nodev", "sysfs"), ("nodev", "tmpfs"), ("nodev", "proc"), ("nodev", "devtmpfs"),
               ("nodev", "pipefs"), ("nodev", "devpts"), ("", "ext4"), ("nodev", "mqueue")]

# statmount's mnt_attr (MOUNT_ATTR_*) of the per-mount options mountinfo shows
_ATTR_OF_OPTION = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8, "noatime": 0x10, "strictatime": 0x20,
                   "nodiratime": 0x80}


class Mount(NamedTuple):
    id: int              # mountinfo's (reused) id
    unique_id: int       # never reused: statx STATX_MNT_ID_UNIQUE, statmount, listmount
    parent_id: int
    parent_unique_id: int
    path: bytes          # where it is mounted, from the sandbox's root
    root: object         # the inode at its root
    source: str
    fstype: str
    options: str         # per-mount options (mountinfo's sixth field)

    @property
    def fs(self):
        return self.root.fs

    @property
    def readonly(self) -> bool:
        return self.fs.readonly

    @property
    def attr(self) -> int:
        """MOUNT_ATTR_* of its options (relatime is 0)."""
        bits = 0
        for option in self.options.split(","):
            bits |= _ATTR_OF_OPTION.get(option, 0)
        return bits

    def covers(self, path: bytes) -> bool:
        """Is path at or below this mount's place?"""
        return path == self.path or path.startswith(self.path.rstrip(b"/") + b"/")


def describe(fs) -> tuple[str, str, str]:
    """(source, type, options) of a filesystem as /proc/mounts shows it."""
    ro = "ro" if fs.readonly else "rw"
    if fs.magic == PROC_SUPER_MAGIC:
        return "proc", "proc", "rw,nosuid,nodev,noexec,relatime"
    if fs.name == "devtmpfs":
        return "devtmpfs", "devtmpfs", ro + ",nosuid,relatime,mode=755"
    if fs.name.startswith("host:"):
        # a host directory lent to the sandbox; statfs calls it ext4 (EXT4_SUPER_MAGIC)
        return "none", "ext4" if fs.magic == EXT4_SUPER_MAGIC else "hostfs", ro + ",relatime"
    if fs.magic == TMPFS_MAGIC:
        return "tmpfs", "tmpfs", ro + ",relatime"
    return "none", fs.name.split(":")[0] or "none", ro + ",relatime"


_cache: dict = {}


def table(vfs) -> list[Mount]:
    """Every mount, the root first, then in the order they were made (a parent before
    its children); each one's parent is the deepest mount above its place."""
    key = (id(vfs.root), *((path, id(inode)) for path, inode in vfs.mounts.items()))
    cached = _cache.get(id(vfs))
    if cached is not None and cached[0] == key:
        return cached[1]
    rows = [(b"/", vfs.root)] + list(vfs.mounts.items())
    out: list[Mount] = []
    for i, (path, inode) in enumerate(rows):
        parent = None
        for other in out:
            if other.covers(path) and (parent is None or len(other.path) > len(parent.path)):
                parent = other
        source, fstype, options = describe(inode.fs)
        out.append(Mount(FIRST_MNT_ID + i, HIDDEN_PARENT_UNIQUE + 1 + i,
                         parent.id if parent else FIRST_MNT_ID - 1,
                         parent.unique_id if parent else HIDDEN_PARENT_UNIQUE,
                         path, inode, source, fstype, options))
    if len(_cache) > 16:  # sandboxes come and go in one process (the embedding API)
        _cache.clear()
    _cache[id(vfs)] = (key, out)
    return out


def mount_at(vfs, path: bytes) -> Mount:
    """The mount a place (an absolute path in the sandbox's tree) is on; the root's
    for what has no place (a pipe, a socket)."""
    rows = table(vfs)
    best = rows[0]
    for m in rows:
        if m.covers(path) and len(m.path) > len(best.path):
            best = m
    return best


def mount_of_file(vfs, f) -> Mount:
    """The mount an open file was opened on (by the path it was opened at)."""
    return mount_at(vfs, os.fsencode(f.path or "/"))


def by_unique_id(vfs, unique_id: int):
    for m in table(vfs):
        if m.unique_id == unique_id:
            return m
    return None


def reachable(m: Mount, root: bytes) -> bool:
    """Is mount m seen from a task whose root is the place root (Linux's
    is_path_reachable from its fs root): is it mounted at or below it?"""
    return root == b"/" or m.path == root or m.path.startswith(root + b"/")


def relative_to(path: bytes, root: bytes):
    """path as a task whose root is root names it, or None if it is outside."""
    if root == b"/":
        return path
    if path == root:
        return b"/"
    if path.startswith(root + b"/"):
        return path[len(root):]
    return None
