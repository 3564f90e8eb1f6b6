"""The sandbox's mount table as Linux shows it: ids, parents, types and options of
each mount, for /proc/PID/mountinfo and mounts, fdinfo's mnt_id, statx's mount
ids, statmount(2) and listmount(2); and the filesystem types the sandbox has
(/proc/filesystems, sysfs(2)).

The table is the VFS's own (`vfs.root_loc` and `vfs.mounts`: the mounts made when the
sandbox starts, and those mount(2) makes and umount2(2) removes, syscalls/mount.py);
what each mount is beyond its root inode (ids, source, type, per-mount flags, the
superblock's options) is kept here (`State`), made on first sight for the mounts the
sandbox started with. Each mount has Linux's two ids: the small one mountinfo shows
(`id`, the lowest free from 21 as on a booted machine) and the 64-bit one that is
never reused (`unique_id`, past MNT_UNIQUE_ID_OFFSET as Linux's). The root's parent
is a mount no one sees (mountinfo's 20), as a container's root is mounted over a
hidden one. A mount made over another hides it until it is unmounted (`shadowed`).
"""
import itertools
import os
from typing import NamedTuple

FIRST_MNT_ID = 21
MNT_UNIQUE_ID_OFFSET = 1 << 32  # unique ids start past every old 32-bit id
HIDDEN_PARENT_UNIQUE = MNT_UNIQUE_ID_OFFSET + 1  # the root's parent (FIRST_MNT_ID - 1)
PROC_SUPER_MAGIC, TMPFS_MAGIC, EXT4_SUPER_MAGIC = 0x9FA0, 0x01021994, 0xEF53

# The filesystem types the sandbox's kernel has, in /proc/filesystems' order (nodev: needs no device);
# the disk ones are sentry/vfs/diskfs.py's
FILESYSTEMS = [("nodev", "sysfs"), ("nodev", "tmpfs"), ("nodev", "proc"), ("nodev", "devtmpfs"),
               ("nodev", "pipefs"), ("nodev", "devpts"), ("", "ext3"), ("", "ext2"), ("", "ext4"),
               ("nodev", "mqueue")]

# mount(2)'s flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
MS_MANDLOCK, MS_DIRSYNC, MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME = 0x40, 0x80, 0x100, 0x400, 0x800
MS_BIND, MS_MOVE, MS_REC, MS_SILENT, MS_POSIXACL = 0x1000, 0x2000, 0x4000, 0x8000, 0x10000
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 0x20000, 0x40000, 0x80000, 0x100000
MS_RELATIME, MS_KERNMOUNT, MS_I_VERSION, MS_STRICTATIME, MS_LAZYTIME = 0x200000, 0x400000, 0x800000, 0x1000000, \
    0x2000000
MS_NOUSER = 1 << 31
# what belongs to the mount rather than to its filesystem (MNT_* in Linux)
PER_MOUNT = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | \
    MS_STRICTATIME | MS_NOSYMFOLLOW
_OPTION_OF_FLAG = ((MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"), (MS_NOSYMFOLLOW, "nosymfollow"),
                   (MS_NOATIME, "noatime"), (MS_NODIRATIME, "nodiratime"), (MS_RELATIME, "relatime"))

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
    flags: int = 0       # the per-mount MS_* flags
    super_options: str = "rw"  # the filesystem's (mountinfo's last field)
    root_path: bytes = b"/"    # what of its filesystem it shows (a bind mount's directory)
    state: object = None       # its MountState

    @property
    def fs(self):
        return self.root.fs

    @property
    def readonly(self) -> bool:
        return bool(self.flags & MS_RDONLY) or self.fs.readonly

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
    if fs.name == "sysfs":
        return "sysfs", "sysfs", "rw,nosuid,nodev,noexec,relatime"
    if fs.name == "devtmpfs":
        return "devtmpfs", "devtmpfs", ro + ",nosuid,relatime,mode=755"
    if fs.name.startswith("host:"):
        # a host directory lent to the sandbox; statfs calls it ext4 (EXT4_SUPER_MAGIC)
        return "none", "ext4" if fs.magic == EXT4_SUPER_MAGIC else "hostfs", ro + ",relatime"
    if fs.magic == TMPFS_MAGIC:
        return "tmpfs", "tmpfs", ro + ",relatime"
    return "none", fs.name.split(":")[0] or "none", ro + ",relatime"


class MountState:
    """What a mount is beyond its root inode."""
    __slots__ = ("root", "id", "unique_id", "source", "fstype", "flags", "super_options", "root_path", "device",
                 "expiry_mark", "under")

    def __init__(self, root, id, unique_id, source, fstype, flags, super_options, root_path=b"/", device=None):
        self.root, self.id, self.unique_id = root, id, unique_id
        self.source, self.fstype, self.flags = source, fstype, flags
        self.super_options, self.root_path, self.device = super_options, root_path, device
        self.expiry_mark = False  # umount2(MNT_EXPIRE) asked once and nothing used it since
        # ids of the cwds, roots and open files already at its place when it was made: they are
        # on the mount beneath (Linux's path holds its mount), so they do not keep it busy
        self.under = frozenset()


def flags_of_options(options: str) -> int:
    words = set(options.split(","))
    bits = MS_RDONLY if "ro" in words else 0
    for flag, word in _OPTION_OF_FLAG:
        if word in words:
            bits |= flag
    return bits


def options_of_flags(flags: int) -> str:
    return ",".join(["ro" if flags & MS_RDONLY else "rw"] + [w for f, w in _OPTION_OF_FLAG if flags & f])


class State:
    """The mount table's own records of one VFS."""

    def __init__(self):
        self.info: dict[bytes, MountState] = {}
        self.shadowed: dict[bytes, list] = {}  # path -> [(root inode, MountState)] it hides, oldest first
        self.uniques = itertools.count(HIDDEN_PARENT_UNIQUE + 1)
        self.version = 0
        self.nosymfollow = False  # has any mount MS_NOSYMFOLLOW (the walk asks only then)
        self.expiring = False     # has umount2(MNT_EXPIRE) marked any (the walk clears marks only then)
        self.table = None         # (key, the rows table() built for it): kept by the VFS, never beyond it

    def free_id(self) -> int:
        used = {m.id for m in self.info.values()} | {m.id for rows in self.shadowed.values() for _, m in rows}
        n = FIRST_MNT_ID
        while n in used:
            n += 1
        return n

    def new(self, root, source, fstype, flags, super_options, root_path=b"/", device=None) -> MountState:
        return MountState(root, self.free_id(), next(self.uniques), source, fstype, flags, super_options,
                          root_path, device)


def state(vfs) -> State:
    st = getattr(vfs, "_mount_state", None)
    if st is None:
        st = vfs._mount_state = State()
    return st


def _state_of(vfs, st: State, path: bytes, inode) -> MountState:
    info = st.info.get(path)
    if info is None or info.root is not inode:
        source, fstype, options = describe(inode.fs)
        flags = flags_of_options(options)
        known = {"ro", "rw"} | {word for _, word in _OPTION_OF_FLAG}
        own = [word for word in options.split(",") if word not in known]  # the filesystem's (mode=755)
        info = st.info[path] = st.new(inode, source, fstype, flags,
                                      ",".join(["ro" if inode.fs.readonly else "rw"] + own))
    return info


def table(vfs) -> list[Mount]:
    """Every mount, the root first, then in the order they were made (a parent before
    its children); each one's parent is the deepest mount above its place."""
    st = state(vfs)
    key = (st.version, id(vfs.root), *((path, id(inode)) for path, inode in vfs.mounts.items()))
    cached = st.table
    if cached is not None and cached[0] == key:
        return cached[1]
    rows = [(b"/", vfs.root)] + list(vfs.mounts.items())
    out: list[Mount] = []
    for path, inode in rows:
        parent = None
        for other in out:
            if other.covers(path) and (parent is None or len(other.path) > len(parent.path)):
                parent = other
        info = _state_of(vfs, st, path, inode)
        out.append(Mount(info.id, info.unique_id,
                         parent.id if parent else FIRST_MNT_ID - 1,
                         parent.unique_id if parent else HIDDEN_PARENT_UNIQUE,
                         path, inode, info.source, info.fstype,
                         options_of_flags(info.flags | (MS_RDONLY if inode.fs.readonly else 0)), info.flags,
                         info.super_options, info.root_path, info))
    st.table = (key, out)  # (a module-level cache kept ended sandboxes' files alive: their tmpfs, host fds)
    return out


def changed(vfs) -> None:
    st = state(vfs)
    st.version += 1
    poll = getattr(st, "poll", None)  # /proc/PID/mounts pollers (sentry/vfs/mountpoll.py)
    if poll is not None:
        poll.notify()
    st.nosymfollow = any(i.flags & MS_NOSYMFOLLOW for i in st.info.values())


def entered(vfs, path: bytes) -> None:
    """The walk went into the mount at path: it is in use, so an umount2(MNT_EXPIRE) mark
    on it goes (Linux's mntput)."""
    st = getattr(vfs, "_mount_state", None)
    if st is not None and st.expiring:
        info = st.info.get(path)
        if info is not None:
            info.expiry_mark = False


def no_symfollow(vfs, path: bytes) -> bool:
    """Is the link at path on a nosymfollow mount (the walk then refuses it: ELOOP)?"""
    st = getattr(vfs, "_mount_state", None)
    return st is not None and st.nosymfollow and bool(flags_at(vfs, path) & MS_NOSYMFOLLOW)


def add(vfs, path: bytes, root, info: MountState) -> None:
    """Mount root at path (an existing directory's place), over what is there."""
    st = state(vfs)
    table(vfs)  # give the mounts already there their records first
    old = vfs.mounts.pop(path, None)
    if old is not None:
        st.shadowed.setdefault(path, []).append((old, st.info[path]))
    vfs.mounts[path] = root
    st.info[path] = info
    changed(vfs)


def add_beneath(vfs, path: bytes, root, info: MountState) -> None:
    """Mount root just beneath the mount at path (MOVE_MOUNT_BENEATH): it shows when that
    one is unmounted."""
    st = state(vfs)
    table(vfs)
    st.shadowed.setdefault(path, []).append((root, info))
    changed(vfs)


def remove(vfs, path: bytes) -> MountState:
    """Unmount what is at path: what it hid comes back."""
    st = state(vfs)
    info = st.info.pop(path)
    del vfs.mounts[path]
    hidden = st.shadowed.get(path)
    if hidden:
        root, old = hidden.pop()
        if not hidden:
            del st.shadowed[path]
        vfs.mounts[path] = root
        st.info[path] = old
    changed(vfs)
    return info


def move(vfs, old_path: bytes, new_path: bytes) -> None:
    """MS_MOVE: the mount at old_path and those below it go to new_path."""
    st = state(vfs)
    table(vfs)
    moving = [p for p in vfs.mounts if p == old_path or p.startswith(old_path + b"/")]
    for p in moving:
        root, info = vfs.mounts[p], st.info[p]
        remove(vfs, p)
        add(vfs, new_path + p[len(old_path):], root, info)


def below(vfs, path: bytes) -> list[bytes]:
    """The mount points strictly below path, outermost first."""
    prefix = path.rstrip(b"/") + b"/"
    return sorted((p for p in vfs.mounts if p.startswith(prefix)), key=len)


# statfs's f_flags of the per-mount flags (calculate_f_flags): ST_* where they differ from MS_*
_ST_OF = ((MS_RDONLY, 0x1), (MS_NOSUID, 0x2), (MS_NODEV, 0x4), (MS_NOEXEC, 0x8), (MS_NOATIME, 0x400),
          (MS_NODIRATIME, 0x800), (MS_RELATIME, 0x1000), (MS_NOSYMFOLLOW, 0x2000))


def statfs_flags(vfs, path: bytes, sf) -> object:
    """sf (a filesystem's StatFS) with the flags of the mount at path added to f_flags."""
    flags = flags_at(vfs, path)
    for ms, st in _ST_OF:
        if flags & ms:
            sf.flags |= st
    return sf


def flags_at(vfs, path: bytes) -> int:
    """The per-mount MS_* flags of the mount a place is on."""
    return mount_at(vfs, path).flags


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
