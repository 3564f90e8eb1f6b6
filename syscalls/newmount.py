"""The new mount API (Linux 5.2+): fsopen, fsconfig, fsmount, fspick, move_mount,
open_tree and mount_setattr, in Linux's order of checks, over the sandbox's mount table
(sentry/vfs/mounts.py) and the filesystems mount(2) makes (syscalls/mount.py). A mount
held by a file descriptor is detached until move_mount attaches it; every mount is
private (MOUNT_ATTR propagation and MOVE_MOUNT_SET_GROUP are accepted, nothing
propagates)."""
import errno as E
import struct

from sentry.errors import Errno
from sentry.vfs import loc_path, mounts
from sentry.vfs.fscontext import AWAITING_MOUNT, CREATE_PARAMS, FAILED, RECONF_PARAMS, FsContextFile, MountFile
from syscalls import mount as mountcalls
from syscalls.abi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, s32
from syscalls.registry import PARTIAL, syscall

PAGE = 4096
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 1, 1, 0o2000000
FSPICK_CLOEXEC, FSPICK_SYMLINK_NOFOLLOW, FSPICK_NO_AUTOMOUNT, FSPICK_EMPTY_PATH = 1, 2, 4, 8
AT_NO_AUTOMOUNT, AT_RECURSIVE = 0x800, 0x8000
(FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_SET_BINARY, FSCONFIG_SET_PATH, FSCONFIG_SET_PATH_EMPTY,
 FSCONFIG_SET_FD, FSCONFIG_CMD_CREATE, FSCONFIG_CMD_RECONFIGURE, FSCONFIG_CMD_CREATE_EXCL) = range(9)
MOVE_MOUNT_F_SYMLINKS, MOVE_MOUNT_F_AUTOMOUNTS, MOVE_MOUNT_F_EMPTY_PATH = 0x1, 0x2, 0x4
MOVE_MOUNT_T_SYMLINKS, MOVE_MOUNT_T_AUTOMOUNTS, MOVE_MOUNT_T_EMPTY_PATH = 0x10, 0x20, 0x40
MOVE_MOUNT_SET_GROUP, MOVE_MOUNT_BENEATH, MOVE_MOUNT__MASK = 0x100, 0x200, 0x377
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
MOUNT_ATTR__ATIME, MOUNT_ATTR_RELATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x70, 0x0, 0x10, 0x20
MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_IDMAP, MOUNT_ATTR_NOSYMFOLLOW = 0x80, 0x100000, 0x200000
FSMOUNT_VALID_FLAGS = (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
                       | MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW)
MOUNT_SETATTR_VALID_FLAGS = FSMOUNT_VALID_FLAGS | MOUNT_ATTR_IDMAP
MOUNT_ATTR_SIZE_VER0 = 32
_MS_OF_ATTR = ((MOUNT_ATTR_RDONLY, mounts.MS_RDONLY), (MOUNT_ATTR_NOSUID, mounts.MS_NOSUID),
               (MOUNT_ATTR_NODEV, mounts.MS_NODEV), (MOUNT_ATTR_NOEXEC, mounts.MS_NOEXEC),
               (MOUNT_ATTR_NODIRATIME, mounts.MS_NODIRATIME), (MOUNT_ATTR_NOSYMFOLLOW, mounts.MS_NOSYMFOLLOW))
_ATIME_OF_ATTR = {MOUNT_ATTR_RELATIME: mounts.MS_RELATIME, MOUNT_ATTR_NOATIME: mounts.MS_NOATIME,
                  MOUNT_ATTR_STRICTATIME: mounts.MS_STRICTATIME}
ATIME_FLAGS = mounts.MS_RELATIME | mounts.MS_NOATIME | mounts.MS_STRICTATIME
# what fsconfig takes as the superblock's own flags (vfs_parse_sb_flag)
SB_FLAG_KEYS = ("dirsync", "lazytime", "mand", "posixacl", "ro", "rw", "sync", "silent", "nolazytime", "nomand",
                "noposixacl", "async")


def _install(t, f, cloexec: bool) -> int:
    return t.fds.install(f, cloexec=cloexec)


def _context(t, fd: int) -> FsContextFile:
    f = t.fds.get(fd)  # EBADF
    if not isinstance(f, FsContextFile):
        raise Errno(E.EINVAL)
    return f


def _mnt_flags_of_attr(attr: int, atime: bool = True) -> int:
    """MS_* mount flags of MOUNT_ATTR_* ones (with the atime mode, EINVAL for a bad one)."""
    bits = 0
    for a, ms in _MS_OF_ATTR:
        if attr & a:
            bits |= ms
    if atime:
        mode = attr & MOUNT_ATTR__ATIME
        if mode not in _ATIME_OF_ATTR:
            raise Errno(E.EINVAL)
        bits |= _ATIME_OF_ATTR[mode] if mode != MOUNT_ATTR_STRICTATIME else 0
    return bits


@syscall("fsopen", status=PARTIAL, note="an fs context for the types mount(2) makes here (syscalls/mount.py)")
def fsopen(t, fsname, flags):
    if not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    if flags & 0xFFFFFFFF & ~FSOPEN_CLOEXEC:
        raise Errno(E.EINVAL)
    name = t.mm.read_cstring(fsname).decode("latin-1")
    mountcalls.check_type(name)
    return _install(t, FsContextFile(name), bool(flags & FSOPEN_CLOEXEC))


@syscall("fspick", status=PARTIAL, note="an fs context to reconfigure a mount's filesystem (ro/rw, tmpfs size)")
def fspick(t, dfd, path, flags):
    if not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    flags &= 0xFFFFFFFF
    if flags & ~(FSPICK_CLOEXEC | FSPICK_SYMLINK_NOFOLLOW | FSPICK_NO_AUTOMOUNT | FSPICK_EMPTY_PATH):
        raise Errno(E.EINVAL)
    place, _ = _lookup(t, dfd, path, follow=not flags & FSPICK_SYMLINK_NOFOLLOW,
                       empty=bool(flags & FSPICK_EMPTY_PATH))
    m = mountcalls.mount_root_at(t, place)
    if m is None:
        raise Errno(E.EINVAL)
    fc = FsContextFile(m.fstype, RECONF_PARAMS, m)
    fc.readonly = m.fs.readonly  # reconfiguring starts from the superblock's flags
    return _install(t, fc, bool(flags & FSPICK_CLOEXEC))


@syscall("fsconfig", status=PARTIAL, note="source, the superblock flags (ro, rw, ...) and the type's options as "
         "strings or flags; SET_BINARY, SET_PATH and SET_FD EOPNOTSUPP as for a legacy filesystem; CMD_CREATE "
         "and CMD_RECONFIGURE")
def fsconfig(t, fd, cmd, key, value, aux):
    fd, cmd, aux = s32(fd), cmd & 0xFFFFFFFF, s32(aux)
    if fd < 0:
        raise Errno(E.EINVAL)
    if cmd == FSCONFIG_SET_FLAG:
        bad = not key or value or aux
    elif cmd == FSCONFIG_SET_STRING:
        bad = not key or not value or aux
    elif cmd == FSCONFIG_SET_BINARY:
        bad = not key or not value or aux <= 0 or aux > 1 << 20
    elif cmd in (FSCONFIG_SET_PATH, FSCONFIG_SET_PATH_EMPTY):
        bad = not key or not value or (aux != AT_FDCWD and aux < 0)
    elif cmd == FSCONFIG_SET_FD:
        bad = not key or value or aux < 0
    elif cmd in (FSCONFIG_CMD_CREATE, FSCONFIG_CMD_CREATE_EXCL, FSCONFIG_CMD_RECONFIGURE):
        bad = key or value or aux
    else:
        raise Errno(E.EOPNOTSUPP)
    if bad:
        raise Errno(E.EINVAL)
    fc = _context(t, fd)
    if cmd in (FSCONFIG_SET_BINARY, FSCONFIG_SET_PATH, FSCONFIG_SET_PATH_EMPTY, FSCONFIG_SET_FD,
               FSCONFIG_CMD_CREATE_EXCL):
        raise Errno(E.EOPNOTSUPP)  # the legacy (mount(2) data) context's answer
    name = t.mm.read_cstring(key, 256).decode("latin-1") if key else None
    text = t.mm.read_cstring(value, 256).decode("latin-1") if cmd == FSCONFIG_SET_STRING else None
    if cmd == FSCONFIG_CMD_CREATE:
        return _create(t, fc)
    if cmd == FSCONFIG_CMD_RECONFIGURE:
        return _reconfigure(t, fc)
    if fc.phase not in (CREATE_PARAMS, RECONF_PARAMS):
        raise Errno(E.EBUSY)
    if name == "source":
        if cmd != FSCONFIG_SET_STRING or fc.source is not None:
            raise Errno(E.EINVAL)
        fc.source = text
        return 0
    if name in SB_FLAG_KEYS:  # vfs_parse_sb_flag: the key alone counts, whatever its value
        if name in ("ro", "rw"):
            fc.readonly = name == "ro"
        return 0
    option = name if text is None else f"{name}={text}"
    mountcalls.parse_data(fc.fstype, option)  # EINVAL for what the type does not know
    fc.options.append(option)
    return 0


def _create(t, fc) -> int:
    if fc.phase != CREATE_PARAMS:
        raise Errno(E.EBUSY)
    try:
        fc.created = mountcalls.make_superblock(t, fc.fstype, fc.source, fc.data(), fc.readonly)
    except Errno:
        fc.phase = FAILED
        raise
    fc.phase = AWAITING_MOUNT
    return 0


def _reconfigure(t, fc) -> int:
    if fc.phase != RECONF_PARAMS:
        raise Errno(E.EBUSY)
    m = fc.mount
    flags = mounts.MS_REMOUNT | (mounts.MS_RDONLY if fc.readonly else 0)
    mountcalls.remount(t, m.path, flags, m.state.flags, fc.data())  # the superblock's: the mount's flags stay
    return 0


@syscall("fsmount", status=PARTIAL, note="a detached mount of a created fs context, with MOUNT_ATTR_* flags")
def fsmount(t, fs_fd, flags, attr_flags):
    if not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    flags &= 0xFFFFFFFF
    attr_flags &= 0xFFFFFFFF
    if flags & ~FSMOUNT_CLOEXEC or attr_flags & ~FSMOUNT_VALID_FLAGS:
        raise Errno(E.EINVAL)
    mnt_flags = _mnt_flags_of_attr(attr_flags)
    fc = _context(t, s32(fs_fd))
    if fc.phase != AWAITING_MOUNT:
        raise Errno(E.EBUSY)
    root, source, super_options, device = fc.created
    info = mounts.state(t.vfs).new(root, source, fc.fstype, mnt_flags, mountcalls.sb_options(root.fs, super_options),
                                   device=device)
    return _install(t, MountFile(root, info), bool(flags & FSMOUNT_CLOEXEC))


def _lookup(t, dfd, path, *, follow: bool, empty: bool):
    """(place, Found or None) of a path argument, an fd's own place for an empty path when
    the caller allows it (a MountFile: None as its place)."""
    name = t.mm.read_cstring(path)
    if not name:
        if not empty:
            raise Errno(E.ENOENT)
        dfd = s32(dfd)
        if dfd == AT_FDCWD:
            return loc_path(t.cwd), None
        f = t.fds.get(dfd)
        if isinstance(f, MountFile):
            return f.attached, f
        loc = getattr(f, "loc", None)
        if loc is None:
            return (f.path or "/").encode("latin-1", "replace"), None
        return loc_path(loc), None
    found = t.vfs.find(t, s32(dfd), name, follow=follow)
    if found.inode is None:
        raise Errno(E.ENOENT)
    return loc_path(found.loc), found


@syscall("open_tree", status=PARTIAL, note="an O_PATH file of a place, or with OPEN_TREE_CLONE a detached copy of "
         "its mount (AT_RECURSIVE: with the mounts below)")
def open_tree(t, dfd, path, flags):
    flags &= 0xFFFFFFFF
    if flags & ~(AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW | OPEN_TREE_CLONE
                 | OPEN_TREE_CLOEXEC):
        raise Errno(E.EINVAL)
    if flags & (AT_RECURSIVE | OPEN_TREE_CLONE) == AT_RECURSIVE:
        raise Errno(E.EINVAL)
    if flags & OPEN_TREE_CLONE and not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    cloexec = bool(flags & OPEN_TREE_CLOEXEC)
    if not flags & OPEN_TREE_CLONE:
        from sentry.vfs.file import O_PATH
        name = t.mm.read_cstring(path)
        if not name and flags & AT_EMPTY_PATH:
            return t.fds.install(t.fds.get(s32(dfd)), cloexec=cloexec)
        f = t.vfs.open(t, s32(dfd), name, O_PATH | (0o400000 if flags & AT_SYMLINK_NOFOLLOW else 0), 0)
        return t.fds.install(f, cloexec=cloexec)
    place, found = _lookup(t, dfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW, empty=bool(flags & AT_EMPTY_PATH))
    if isinstance(found, MountFile):
        raise Errno(E.EINVAL)  # a detached mount is not cloned again here
    inode = found.inode if found is not None else t.vfs.lookup(t, AT_FDCWD, place)
    origin = mounts.mount_at(t.vfs, place)
    st = mounts.state(t.vfs)
    info = st.new(inode, origin.source, origin.fstype, origin.flags, origin.super_options,
                  mountcalls.root_path_of(origin, place), origin.state.device if origin.state else None)
    below = []
    if flags & AT_RECURSIVE:
        for path_below in mounts.below(t.vfs, place):
            m = next(m for m in mounts.table(t.vfs) if m.path == path_below)
            rel = path_below[len(place.rstrip(b"/")):]
            below.append((rel, m.root, st.new(m.root, m.source, m.fstype, m.flags, m.super_options, m.root_path,
                                              m.state.device if m.state else None)))
    return _install(t, MountFile(inode, info, below), cloexec)


@syscall("move_mount", status=PARTIAL, note="attaches a detached mount (fsmount, open_tree) or moves a mount, "
         "MOVE_MOUNT_BENEATH under the top mount of a place; MOVE_MOUNT_SET_GROUP accepted (nothing propagates)")
def move_mount(t, from_dfd, from_path, to_dfd, to_path, flags):
    if not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    flags &= 0xFFFFFFFF
    if flags & ~MOVE_MOUNT__MASK:
        raise Errno(E.EINVAL)
    if flags & (MOVE_MOUNT_BENEATH | MOVE_MOUNT_SET_GROUP) == MOVE_MOUNT_BENEATH | MOVE_MOUNT_SET_GROUP:
        raise Errno(E.EINVAL)
    src_place, src = _lookup(t, from_dfd, from_path, follow=bool(flags & MOVE_MOUNT_F_SYMLINKS),
                             empty=bool(flags & MOVE_MOUNT_F_EMPTY_PATH))
    dst_place, dst = _lookup(t, to_dfd, to_path, follow=bool(flags & MOVE_MOUNT_T_SYMLINKS),
                             empty=bool(flags & MOVE_MOUNT_T_EMPTY_PATH))
    if isinstance(dst, MountFile):
        if dst.attached is None:
            raise Errno(E.EINVAL)
        dst = None
    dst_inode = dst.inode if dst is not None else t.vfs.lookup(t, AT_FDCWD, dst_place)
    if flags & MOVE_MOUNT_SET_GROUP:
        return 0  # every mount is private: no peer group to share
    if flags & MOVE_MOUNT_BENEATH:
        return _beneath(t, src_place, src, dst_place, dst_inode)
    if isinstance(src, MountFile) and src.attached is None:
        if src.inode.is_dir() != dst_inode.is_dir():
            raise Errno(E.ENOTDIR)
        mountcalls.attach(t, dst_place, src.inode, src.info)
        for rel, root, info in src.below:
            mountcalls.attach(t, dst_place.rstrip(b"/") + rel, root, info)
        src.attached = dst_place
        return 0
    if src_place == b"/" or mountcalls.mount_root_at(t, src_place) is None:
        raise Errno(E.EINVAL)
    src_inode = t.vfs.lookup(t, AT_FDCWD, src_place)
    if src_inode.is_dir() != dst_inode.is_dir():
        raise Errno(E.ENOTDIR)
    if dst_place == src_place or dst_place.startswith(src_place + b"/"):
        raise Errno(E.ELOOP)
    mounts.move(t.vfs, src_place, dst_place)
    if isinstance(src, MountFile):
        src.attached = dst_place
    return 0


def _beneath(t, src_place, src, dst_place, dst_inode) -> int:
    """MOVE_MOUNT_BENEATH: the source goes under the top mount at the target, which must
    be a mount's root other than the root's; the source shows when the top one goes."""
    top = mountcalls.mount_root_at(t, dst_place)
    if top is None or dst_place == b"/" or dst_place == loc_path(t.vfs.root_of(t)):
        raise Errno(E.EINVAL)
    detached = isinstance(src, MountFile) and src.attached is None
    if detached:
        root, info, below = src.inode, src.info, src.below
    else:
        here = mountcalls.mount_root_at(t, src_place)
        if here is None or src_place == b"/" or here.state is top.state:
            raise Errno(E.EINVAL)
        if dst_place == src_place or dst_place.startswith(src_place + b"/"):
            raise Errno(E.EINVAL)
        root, info, below = here.root, here.state, []
        mounts.remove(t.vfs, src_place)
    if root.is_dir() != dst_inode.is_dir():
        raise Errno(E.ENOTDIR)
    mounts.add_beneath(t.vfs, dst_place, root, info)
    if info.device is not None:
        mountcalls.count_device(t, info.device)
    if detached:
        src.attached = dst_place
    return 0


_MOUNT_ATTR = struct.Struct("<QQQQ")  # attr_set, attr_clr, propagation, userns_fd


@syscall("mount_setattr", status=PARTIAL, note="MOUNT_ATTR_* flags of a mount (AT_RECURSIVE: and those below); "
         "propagation accepted (every mount private); MOUNT_ATTR_IDMAP EINVAL (no idmapped mounts)")
def mount_setattr(t, dfd, path, flags, uattr, usize):
    flags &= 0xFFFFFFFF
    if flags & ~(AT_EMPTY_PATH | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT):
        raise Errno(E.EINVAL)
    if usize > PAGE:
        raise Errno(E.E2BIG)
    if usize < MOUNT_ATTR_SIZE_VER0:
        raise Errno(E.EINVAL)
    if not mountcalls.may_mount(t):
        raise Errno(E.EPERM)
    raw = t.mm.read(uattr, usize)
    if any(raw[MOUNT_ATTR_SIZE_VER0:]):
        raise Errno(E.E2BIG)
    attr_set, attr_clr, propagation, _ = _MOUNT_ATTR.unpack_from(raw)
    if not attr_set and not attr_clr and not propagation:
        return 0
    if propagation & ~(mounts.MS_SHARED | mounts.MS_PRIVATE | mounts.MS_SLAVE | mounts.MS_UNBINDABLE) or \
            propagation & (propagation - 1):
        raise Errno(E.EINVAL)
    if (attr_set | attr_clr) & ~MOUNT_SETATTR_VALID_FLAGS or (attr_set | attr_clr) & MOUNT_ATTR_IDMAP:
        raise Errno(E.EINVAL)
    if attr_set & MOUNT_ATTR__ATIME and attr_clr & MOUNT_ATTR__ATIME != MOUNT_ATTR__ATIME:
        raise Errno(E.EINVAL)
    place, found = _lookup(t, dfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW, empty=bool(flags & AT_EMPTY_PATH))
    if isinstance(found, MountFile) and found.attached is None:
        targets = [found.info] + ([info for _, _, info in found.below] if flags & AT_RECURSIVE else [])
    else:
        m = mountcalls.mount_root_at(t, place)
        if m is None:
            raise Errno(E.EINVAL)
        targets = [m.state]
        if flags & AT_RECURSIVE:
            targets += [mountcalls.mount_root_at(t, p).state for p in mounts.below(t.vfs, place)]
    set_bits = _mnt_flags_of_attr(attr_set, atime=False)
    clr_bits = _mnt_flags_of_attr(attr_clr, atime=False)
    for info in targets:
        new = info.flags & ~clr_bits | set_bits
        if attr_clr & MOUNT_ATTR__ATIME:
            mode = attr_set & MOUNT_ATTR__ATIME
            if mode not in _ATIME_OF_ATTR:
                raise Errno(E.EINVAL)
            new = new & ~ATIME_FLAGS | (_ATIME_OF_ATTR[mode] if mode != MOUNT_ATTR_STRICTATIME else 0)
        if (new ^ info.flags) & mounts.MS_RDONLY and not (isinstance(found, MountFile) and found.attached is None):
            mountcalls.set_mount_readonly(t, place, bool(new & mounts.MS_RDONLY))
        info.flags = new
    mounts.changed(t.vfs)
    return 0
