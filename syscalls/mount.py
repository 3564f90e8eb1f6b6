"""mount(2) and umount2(2) inside the sandbox, in Linux's order of checks: a new tmpfs,
proc, sysfs, devtmpfs or devpts (the sandbox's one of each), mqueue (the IPC namespace's);
ext2/ext3/ext4 on a loop device (sentry/vfs/diskfs.py);
bind mounts (MS_BIND, MS_REC), MS_MOVE, MS_REMOUNT (with MS_BIND: the mount's own flags),
the propagation flags; umount2 with MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW.

The mount table is the sandbox's one (sentry/vfs/mounts.py): the host's is never touched.
Its limits: every mount is private (MS_SHARED and MS_SLAVE are accepted, nothing
propagates); a mount is seen by every mount namespace of the sandbox; read-only-ness is
the filesystem's, so a bind mount made read-only is enforced only while it is the one
mount of its filesystem."""
import errno as E

from sentry.errors import Errno
from sentry.namespaces import ns_capable
from sentry.vfs import diskfs, loc_path, mounts, notify
from sentry.vfs.mounts import (MS_BIND, MS_MOVE, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOUSER, MS_PRIVATE,
                               MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE,
                               MS_STRICTATIME, MS_UNBINDABLE, PER_MOUNT)
from syscalls.abi import AT_FDCWD
from syscalls.registry import PARTIAL, syscall

PAGE = 4096
CAP_SYS_ADMIN = 21
MS_MGC_VAL, MS_MGC_MSK = 0xC0ED0000, 0xFFFF0000
MS_ATIME = MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME
PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE
MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW = 1, 2, 4, 8
PSEUDO_TYPES = {"proc": b"/proc", "devtmpfs": b"/dev", "devpts": b"/dev/pts"}  # the sandbox's one of each
NOUSER_TYPES = ("pipefs", "sockfs", "anon_inodefs", "nsfs", "bdev")


def _string(t, addr: int):
    return t.mm.read_cstring(addr).decode("latin-1") if addr else None


def _data(t, addr: int) -> str:
    """copy_mount_options: up to a page, as much as is readable; options end at a NUL."""
    if not addr:
        return ""
    raw = b""
    for size in (PAGE - addr % PAGE, PAGE):
        try:
            raw = bytes(t.mm.read(addr, size))
            break
        except Errno:
            if size == PAGE - addr % PAGE:
                raise
    return raw.split(b"\0")[0].decode("latin-1")


def may_mount(t) -> bool:
    return ns_capable(t, t.nsproxy.mnt.owner, CAP_SYS_ADMIN)


def mount_root_at(t, path: bytes):
    """The mount whose root is at path (path_mounted), or None."""
    for m in mounts.table(t.vfs):
        if m.path == path:
            return m
    return None


def _mnt_flags(flags: int) -> int:
    bits = flags & PER_MOUNT
    if not flags & MS_NOATIME:
        bits |= MS_RELATIME
    if flags & MS_STRICTATIME:
        bits &= ~(MS_RELATIME | MS_NOATIME)
    return bits & ~MS_STRICTATIME  # strictatime: neither relatime nor noatime


@syscall("mount", status=PARTIAL, note="tmpfs (size=, nr_inodes=, mode=, uid=, gid=), proc, sysfs, devtmpfs, "
         "devpts, mqueue; ext2/ext3/ext4 on a loop device: only an image just made by mkfs (root and lost+found), "
         "mounted as a memory tree the image keeps for the sandbox's life, nothing written back to it (an image "
         "with more: EOPNOTSUPP, no ext driver); MS_BIND/MS_REC, MS_MOVE, MS_REMOUNT (ro/rw, tmpfs size), "
         "MS_NOSUID/NODEV/NOEXEC/NOATIME; propagation accepted, every mount private; one table for all "
         "mount namespaces")
def mount(t, source, target, fstype, flags, data):
    flags &= 0xFFFFFFFF
    fstype_s = _string(t, fstype)
    source_s = _string(t, source)
    data_s = _data(t, data)
    name = t.mm.read_cstring(target)
    found = t.vfs.find(t, AT_FDCWD, name)
    if found.inode is None or found.inode.is_symlink():
        raise Errno(E.ENOENT)  # (a magic link's O_PATH file of a link: no place to mount on)
    path = loc_path(found.loc)
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        flags &= ~MS_MGC_MSK
    if flags & MS_NOUSER:
        raise Errno(E.EINVAL)
    if not may_mount(t):
        raise Errno(E.EPERM)
    mnt_flags = _mnt_flags(flags)
    if flags & MS_REMOUNT and not flags & MS_ATIME:
        here = mount_root_at(t, path)
        if here is not None:
            mnt_flags = mnt_flags & ~MS_ATIME | here.flags & (MS_NOATIME | MS_NODIRATIME | MS_RELATIME)
    if flags & (MS_REMOUNT | MS_BIND) == MS_REMOUNT | MS_BIND:
        return _reconfigure_mount(t, path, mnt_flags)
    if flags & MS_REMOUNT:
        return remount(t, path, flags, mnt_flags, data_s)
    if flags & MS_BIND:
        return _bind(t, source_s, found, path, bool(flags & MS_REC))
    if flags & PROPAGATION:
        kind = flags & ~(MS_REC | MS_SILENT)
        if mount_root_at(t, path) is None or kind & (kind - 1):
            raise Errno(E.EINVAL)
        return 0  # every mount of the sandbox stays private
    if flags & MS_MOVE:
        return _move(t, source_s, found, path)
    return _new_mount(t, fstype_s, source_s, found, path, flags, mnt_flags, data_s)


# --- a new filesystem ------------------------------------------------------------------------------
def _new_mount(t, fstype, source, found, path, flags, mnt_flags, data) -> int:
    if not fstype:
        raise Errno(E.EINVAL)
    check_type(fstype)
    root, source_name, super_options, device = make_superblock(t, fstype, source, data,
                                                               bool(flags & mounts.MS_RDONLY))
    here = mount_root_at(t, path)
    if here is not None and here.fs is root.fs:
        raise Errno(E.EBUSY)  # the same filesystem over its own root
    if not found.inode.is_dir():
        raise Errno(E.ENOTDIR)
    info = mounts.state(t.vfs).new(root, source_name, fstype, mnt_flags, sb_options(root.fs, super_options),
                                   device=device)
    attach(t, path, root, info)
    return 0


def check_type(fstype: str) -> None:
    """get_fs_type: ENODEV for a type the sandbox has not; EINVAL for one no one may mount."""
    if fstype not in {name for _, name in mounts.FILESYSTEMS}:
        raise Errno(E.ENODEV)
    if fstype in NOUSER_TYPES:
        raise Errno(E.EINVAL)


def parse_data(fstype: str, data: str) -> None:
    """The type's options: EINVAL for one it does not know."""
    if fstype in diskfs.DISK_TYPES:
        diskfs.parse_options(data, diskfs.EXT_OPTIONS)
    elif fstype == "tmpfs":
        diskfs.tmpfs_options(diskfs.parse_options(data, diskfs.TMPFS_OPTIONS))


def make_superblock(t, fstype: str, source, data: str, readonly: bool):
    """vfs_get_tree: (root inode, source as /proc/mounts shows it, the filesystem's own
    options, the loop device or None) of a new filesystem of fstype."""
    device = None
    super_options = ""
    if fstype in diskfs.DISK_TYPES:
        diskfs.parse_options(data, diskfs.EXT_OPTIONS)
        from sentry import caps
        if not caps.has(t, CAP_SYS_ADMIN):
            raise Errno(E.EPERM)  # not a filesystem a user namespace may mount
        device = _block_device(t, source)
        if not readonly and device.readonly:
            raise Errno(E.EACCES)
        for m in mounts.table(t.vfs):
            held = m.state.device if m.state is not None else None
            if held is device and m.fstype != fstype:
                raise Errno(E.EBUSY)  # the device is claimed by another filesystem type
        root = diskfs.mount_disk(t.vfs.devices.loops, device, fstype, data, readonly,
                                 getattr(t.kernel, "log_once", None))
        source_name = source
    elif fstype == "tmpfs":
        root, super_options = diskfs.make_tmpfs(data)
        source_name = source or "none"
    elif fstype == "sysfs":  # the sandbox's one (sentry/vfs/sysfs.py: the loop devices), made on first mount
        from sentry.vfs.sysfs import make_sysfs
        devices = t.vfs.devices
        if getattr(devices, "sysfs", None) is None:
            devices.sysfs = make_sysfs(devices.loops)
        root = devices.sysfs
        source_name = source or "sysfs"
    elif fstype in PSEUDO_TYPES:
        root = t.vfs.mounts.get(PSEUDO_TYPES[fstype])
        if root is None:
            raise Errno(E.ENODEV)
        source_name = source or fstype
    else:  # mqueue: the caller's IPC namespace's queues (sentry/ipc/mqueue.py)
        root = t.ipc_ns.mqueue.root
        source_name = source or "mqueue"
    if fstype == "tmpfs" or fstype in diskfs.DISK_TYPES:
        root.fs.readonly = readonly
    return root, source_name, super_options, device


def attach(t, path: bytes, root, info) -> None:
    """Mount root at path with its record info (those already at the place stay on the one beneath)."""
    info.under = frozenset(_users(t, path))
    mounts.add(t.vfs, path, root, info)
    if info.device is not None:
        count_device(t, info.device)


def sb_options(fs, extra: str) -> str:
    return ("ro" if fs.readonly else "rw") + ("," + extra if extra else "")


def _block_device(t, source):
    """lookup_bdev of a disk filesystem's source: ENOTBLK for what is not a block device,
    EACCES on a nodev mount, ENXIO for numbers the sandbox has no device of."""
    import stat as S
    if not source:
        raise Errno(E.EINVAL)
    found = t.vfs.find(t, AT_FDCWD, source.encode("latin-1"))
    if found.inode is None:
        raise Errno(E.ENOENT)
    if not S.S_ISBLK(found.inode.mode):
        raise Errno(E.ENOTBLK)
    if mounts.flags_at(t.vfs, loc_path(found.loc)) & MS_NODEV:
        raise Errno(E.EACCES)
    device = t.vfs.devices.loops.of_rdev(found.inode.rdev)
    if device is None:
        raise Errno(E.ENXIO)
    return device


def count_device(t, device) -> None:
    """How many mounts hold a loop device (LOOP_CLR_FD's autoclear waits for them)."""
    device.mounts = sum(1 for m in mounts.table(t.vfs) if m.state is not None and m.state.device is device)
    device.released()


# --- changing a mount ------------------------------------------------------------------------------
def _writers(t, fs) -> bool:
    """Is a file of fs open for writing (a remount read-only is then EBUSY)?"""
    seen = set()
    for task in list(t.kernel.tasks.values()):
        fds = getattr(task, "fds", None)
        if fds is None or id(fds) in seen:
            continue
        seen.add(id(fds))
        for f in list(fds.files.values()):
            if getattr(f.inode, "fs", None) is fs and f.writable and not f.inode.is_dir():
                return True
    return False


def _set_readonly(t, fs, readonly: bool) -> None:
    if readonly and not fs.readonly and _writers(t, fs):
        raise Errno(E.EBUSY)
    fs.readonly = readonly


def _reconfigure_mount(t, path, mnt_flags) -> int:
    """MS_REMOUNT|MS_BIND: the mount's own flags, the filesystem untouched."""
    here = mount_root_at(t, path)
    if here is None:
        raise Errno(E.EINVAL)
    info = here.state
    set_mount_readonly(t, path, bool(mnt_flags & MS_RDONLY))
    info.flags = mnt_flags
    mounts.changed(t.vfs)
    return 0


def remount(t, path, flags, mnt_flags, data) -> int:
    here = mount_root_at(t, path)
    if here is None:
        raise Errno(E.EINVAL)
    info = here.state
    fs = here.fs
    if info.fstype == "tmpfs" and isinstance(fs, diskfs.SizedFileSystem):
        diskfs.remount_tmpfs(here.root, data)
        opts = diskfs.parse_options(data, diskfs.TMPFS_OPTIONS)
        if opts:
            words = [w for w in info.super_options.split(",")[1:] if w.split("=")[0] not in opts]
            words += [f"size={fs.total_blocks * PAGE // 1024}k" if k in ("size", "nr_blocks") else f"{k}={v}"
                      for k, v in opts.items()]
            info.super_options = sb_options(fs, ",".join(words))
    elif info.fstype in diskfs.DISK_TYPES:
        diskfs.parse_options(data, diskfs.EXT_OPTIONS)
        if not flags & MS_RDONLY and info.device is not None and info.device.readonly:
            raise Errno(E.EACCES)
    if not ns_capable(t, t.nsproxy.mnt.owner, CAP_SYS_ADMIN):
        raise Errno(E.EPERM)
    if fs is not t.vfs.root.fs and not getattr(fs, "name", "").startswith("host:"):
        _set_readonly(t, fs, bool(flags & MS_RDONLY))
    elif not flags & MS_RDONLY and fs.readonly:
        raise Errno(E.EACCES)  # what the user lent read-only stays so
    info.super_options = ("ro" if fs.readonly else "rw") + info.super_options[2:]
    info.flags = mnt_flags
    mounts.changed(t.vfs)
    return 0


def _bind(t, source, found, path, recursive: bool) -> int:
    if not source:
        raise Errno(E.EINVAL)
    src = t.vfs.find(t, AT_FDCWD, source.encode("latin-1"))
    if src.inode is None:
        raise Errno(E.ENOENT)
    if src.inode.is_dir() != found.inode.is_dir():
        raise Errno(E.ENOTDIR)
    src_path = loc_path(src.loc)
    origin = mounts.mount_at(t.vfs, src_path)
    st = mounts.state(t.vfs)
    binds = [(path, src.inode, origin, root_path_of(origin, src_path))]
    if recursive:
        for below in mounts.below(t.vfs, src_path):
            m = next(m for m in mounts.table(t.vfs) if m.path == below)
            binds.append((path.rstrip(b"/") + below[len(src_path.rstrip(b"/")):], m.root, m, m.root_path))
    for where, root, m, rpath in binds:
        info = st.new(root, m.source, m.fstype, m.flags, m.super_options, rpath,
                      device=m.state.device if m.state is not None else None)
        info.under = frozenset(_users(t, where))
        mounts.add(t.vfs, where, root, info)
        if info.device is not None:
            count_device(t, info.device)
    return 0


def root_path_of(origin, place: bytes) -> bytes:
    """What a bind mount of place shows of its filesystem (mountinfo's root): the place
    within the mount origin it is on, below that mount's own root."""
    sub = place[len(origin.path.rstrip(b"/")):] if origin.path != b"/" else place
    if sub in (b"", b"/"):
        return origin.root_path
    return origin.root_path.rstrip(b"/") + sub


def set_mount_readonly(t, path: bytes, readonly: bool) -> None:
    """A mount's own read-only flag changes: enforced on its filesystem where it is the
    filesystem's one mount (read-only-ness is the filesystem's here)."""
    here = mount_root_at(t, path)
    if here is None:
        return
    sharing = sum(1 for m in mounts.table(t.vfs) if m.fs is here.fs)
    if sharing == 1 and here.fs is not t.vfs.root.fs and not getattr(here.fs, "name", "").startswith("host:"):
        _set_readonly(t, here.fs, readonly)


def _move(t, source, found, path) -> int:
    if not source:
        raise Errno(E.EINVAL)
    src = t.vfs.find(t, AT_FDCWD, source.encode("latin-1"))
    if src.inode is None:
        raise Errno(E.ENOENT)
    src_path = loc_path(src.loc)
    if src_path == b"/" or mount_root_at(t, src_path) is None:
        raise Errno(E.EINVAL)
    if src.inode.is_dir() != found.inode.is_dir():
        raise Errno(E.ENOTDIR)
    if path == src_path or path.startswith(src_path + b"/"):
        raise Errno(E.ELOOP)
    mounts.move(t.vfs, src_path, path)
    return 0


# --- umount ----------------------------------------------------------------------------------------
def _users(t, path: bytes, fs=None):
    """The ids of the cwds, roots and open files (of fs, when given) at or below path."""
    prefix = path.rstrip(b"/") + b"/"

    def inside(place: bytes) -> bool:
        return place == path or place.startswith(prefix)

    found, seen = set(), set()
    for task in list(t.kernel.tasks.values()):
        tfs = getattr(task, "fs", None)
        if tfs is not None:
            if inside(loc_path(tfs.cwd)):
                found.add(id(tfs.cwd))
            if tfs.root is not None and tfs.root != t.vfs.root_loc and inside(loc_path(tfs.root)):
                found.add(id(tfs.root))
        fds = getattr(task, "fds", None)
        if fds is None or id(fds) in seen:
            continue
        seen.add(id(fds))
        for f in list(fds.files.values()):
            where = getattr(f, "loc", None)
            place = loc_path(where) if where is not None else (f.path or "").encode("latin-1", "replace")
            if (fs is None or getattr(f.inode, "fs", None) is fs) and inside(place):
                found.add(id(f))
    return found


def _busy(t, m) -> bool:
    """Is mount m in use as Linux judges it: a mount below it, an open file, a task's cwd or
    root in it (not those that were there before it was made: they are on the mount beneath)?"""
    if mounts.below(t.vfs, m.path):
        return True
    return bool(_users(t, m.path) - m.state.under)


@syscall("umount2", status=PARTIAL, note="MNT_FORCE (as a plain umount: no filesystem here can be forced), "
         "MNT_DETACH (gone at once, with what is below it), MNT_EXPIRE (EAGAIN, then gone), UMOUNT_NOFOLLOW; "
         "EBUSY for a mount below, an open file, a cwd or a root in it")
def umount2(t, target, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW):
        raise Errno(E.EINVAL)
    if not may_mount(t):
        raise Errno(E.EPERM)
    name = t.mm.read_cstring(target)
    st = mounts.state(t.vfs)
    expiring, st.expiring = st.expiring, False  # umount's own lookup is no use of the mount
    try:
        found = t.vfs.find(t, AT_FDCWD, name, follow=not flags & UMOUNT_NOFOLLOW)
    finally:
        st.expiring = expiring
    if found.inode is None:
        raise Errno(E.ENOENT)
    path = loc_path(found.loc)
    m = mount_root_at(t, path)
    if m is None or found.inode.is_symlink():
        raise Errno(E.EINVAL)
    if flags & MNT_FORCE:
        from sentry import caps
        if not caps.has(t, CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
    if flags & MNT_EXPIRE:
        if path == b"/" or flags & (MNT_FORCE | MNT_DETACH):
            raise Errno(E.EINVAL)
        if _busy(t, m):
            raise Errno(E.EBUSY)
        if not m.state.expiry_mark:
            m.state.expiry_mark = True
            mounts.state(t.vfs).expiring = True
            raise Errno(E.EAGAIN)
    if path == b"/" or path == loc_path(t.vfs.root_of(t)):
        raise Errno(E.EBUSY if not flags & MNT_DETACH else E.EINVAL)
    if flags & MNT_DETACH:
        for below in reversed(mounts.below(t.vfs, path)):
            _unmount(t, below)
    elif _busy(t, m):
        raise Errno(E.EBUSY)
    _unmount(t, path)
    return 0


def _unmount(t, path: bytes) -> None:
    info = mounts.remove(t.vfs, path)
    if info.device is not None:
        count_device(t, info.device)
    fs = info.root.fs
    if notify.marks and not any(m.fs is fs for m in mounts.table(t.vfs)):
        notify.unmounted(fs)  # its last mount went: watches hear IN_UNMOUNT
