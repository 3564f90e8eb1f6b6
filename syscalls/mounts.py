"""What a program may ask of the mount table: statmount(2) and listmount(2) (Linux
6.8, as 6.10 answers them), the mount ids statx(2) reports, and the filesystem types:
sysfs(2). The table is sentry/vfs/mounts.py's; mount(2) itself is refused
(syscalls/unoffered.py)."""
import errno as E
import os
import struct

from sentry.errors import Errno
from sentry.vfs import loc_path, mounts
from syscalls.abi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, s32
from syscalls.registry import syscall

PAGE = 4096
TASK_SIZE = 1 << 47

# --- sysfs(2): the filesystem types ----------------------------------------------------------------


@syscall("sysfs", note="the filesystem types the sandbox has, in /proc/filesystems' order: option 1 a name's "
         "index, 2 the name at an index, 3 how many")
def sysfs(t, option, arg1, arg2):
    names = [name for _, name in mounts.FILESYSTEMS]
    option = s32(option)
    if option == 1:
        name = t.mm.read_cstring(arg1).decode("latin-1")
        if name not in names:
            raise Errno(E.EINVAL)
        return names.index(name)
    if option == 2:
        index = arg1 & 0xFFFFFFFF
        if index >= len(names):
            raise Errno(E.EINVAL)
        t.mm.write(arg2, names[index].encode() + b"\0")
        return 0
    if option == 3:
        return len(names)
    raise Errno(E.EINVAL)


# --- statmount(2), listmount(2) ----------------------------------------------------------------------
MNT_ID_REQ_SIZE_VER0 = 24          # struct mnt_id_req as 6.10 knows it: size, spare, mnt_id, param
_MNT_ID_REQ = struct.Struct("<IIQQ")
LSMT_ROOT = (1 << 64) - 1          # listmount: from the caller's root
STATMOUNT_SB_BASIC, STATMOUNT_MNT_BASIC, STATMOUNT_PROPAGATE_FROM = 0x1, 0x2, 0x4
STATMOUNT_MNT_ROOT, STATMOUNT_MNT_POINT, STATMOUNT_FS_TYPE = 0x8, 0x10, 0x20
STATMOUNT_STRING_REQ = STATMOUNT_MNT_ROOT | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE
STATMOUNT_SIZE = 512               # sizeof(struct statmount): the strings follow it
# size, spare, mask, sb_dev_major, sb_dev_minor, sb_magic, sb_flags, fs_type, mnt_id, mnt_parent_id,
# mnt_id_old, mnt_parent_id_old, mnt_attr, mnt_propagation, mnt_peer_group, mnt_master, propagate_from,
# mnt_root, mnt_point; then spares to 512 bytes
_STATMOUNT = struct.Struct("<IIQIIQIIQQIIQQQQQII")
SB_RDONLY = 1
MS_PRIVATE = 1 << 18               # every mount of the sandbox is private: nothing propagates
LISTMOUNT_MAX = 1000000
CAP_SYS_ADMIN = 21


def _read_request(t, req: int) -> tuple[int, int]:
    """copy_mnt_id_req: (mnt_id, param) of a struct mnt_id_req, checked as Linux."""
    size = int.from_bytes(t.mm.read(req, 4), "little")
    if size > PAGE:
        raise Errno(E.E2BIG)
    if size < MNT_ID_REQ_SIZE_VER0:
        raise Errno(E.EINVAL)
    raw = t.mm.read(req, size)
    if any(raw[MNT_ID_REQ_SIZE_VER0:]):
        raise Errno(E.E2BIG)  # a newer request asking for what this kernel does not know
    _, spare, mnt_id, param = _MNT_ID_REQ.unpack_from(raw)
    if spare or mnt_id <= mounts.MNT_UNIQUE_ID_OFFSET:
        raise Errno(E.EINVAL)
    return mnt_id, param


def _root(t) -> bytes:
    return loc_path(t.vfs.root_of(t))


def _may_see(t, m) -> None:
    """A mount outside the caller's root is shown only to CAP_SYS_ADMIN over the mount
    namespace (statmount's and listmount's is_path_reachable check)."""
    from sentry.namespaces import ns_capable
    if not mounts.reachable(m, _root(t)) and not ns_capable(t, t.nsproxy.mnt.owner, CAP_SYS_ADMIN):
        raise Errno(E.EPERM)


def _in_namespace(t, unique_id: int):
    m = mounts.by_unique_id(t.vfs, unique_id)
    if m is None:
        raise Errno(E.ENOENT)
    return m


@syscall("statmount", note="the sandbox's mount table (ids as /proc/PID/mountinfo's): superblock, mount, "
         "propagation (every mount private), root, mount point and type, as Linux 6.10")
def statmount(t, req, buf, bufsize, flags):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    mnt_id, mask = _read_request(t, req)
    if buf + bufsize > TASK_SIZE or buf + bufsize < buf:
        raise Errno(E.EFAULT)
    if mask & STATMOUNT_STRING_REQ and bufsize == STATMOUNT_SIZE:
        raise Errno(E.EOVERFLOW)
    m = _in_namespace(t, mnt_id)
    _may_see(t, m)
    got, strings = 0, bytearray()
    fields = dict.fromkeys(("dev_major", "dev_minor", "magic", "sb_flags", "fs_type", "mnt_id", "parent",
                            "id_old", "parent_old", "attr", "propagation", "propagate_from", "mnt_root",
                            "mnt_point"), 0)
    if mask & STATMOUNT_SB_BASIC:
        got |= STATMOUNT_SB_BASIC
        fields.update(dev_major=os.major(m.fs.dev), dev_minor=os.minor(m.fs.dev), magic=m.fs.magic,
                      sb_flags=SB_RDONLY if m.readonly else 0)
    if mask & STATMOUNT_MNT_BASIC:
        got |= STATMOUNT_MNT_BASIC
        fields.update(mnt_id=m.unique_id, parent=m.parent_unique_id, id_old=m.id, parent_old=m.parent_id,
                      attr=m.attr, propagation=MS_PRIVATE)
    if mask & STATMOUNT_PROPAGATE_FROM:
        got |= STATMOUNT_PROPAGATE_FROM  # 0: no mount is a slave
    for flag, key, text in ((STATMOUNT_FS_TYPE, "fs_type", lambda: m.fstype.encode()),
                            (STATMOUNT_MNT_ROOT, "mnt_root", lambda: b"/"),
                            (STATMOUNT_MNT_POINT, "mnt_point", lambda: mounts.relative_to(m.path, _root(t)) or b"")):
        if mask & flag:
            if not strings:
                strings.append(0)  # offset 0: the empty string of any field not asked for
            start = len(strings)
            strings += text() + b"\0"
            if STATMOUNT_SIZE + len(strings) - 1 >= bufsize:
                raise Errno(E.EOVERFLOW)
            fields[key] = start
            got |= flag
    head = _STATMOUNT.pack(min(bufsize, STATMOUNT_SIZE) + len(strings), 0, got, fields["dev_major"],
                           fields["dev_minor"], fields["magic"], fields["sb_flags"], fields["fs_type"],
                           fields["mnt_id"], fields["parent"], fields["id_old"], fields["parent_old"],
                           fields["attr"], fields["propagation"], 0, 0, fields["propagate_from"],
                           fields["mnt_root"], fields["mnt_point"]).ljust(STATMOUNT_SIZE, b"\0")
    if strings:
        t.mm.write(buf + STATMOUNT_SIZE, bytes(strings))
    t.mm.write(buf, head[:min(bufsize, STATMOUNT_SIZE)])
    return 0


@syscall("listmount", note="the sandbox's mounts below a mount (LSMT_ROOT: the caller's root and below), "
         "in the order they were made, from after a given id; as Linux 6.10")
def listmount(t, req, mnt_ids, nr_mnt_ids, flags):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    if nr_mnt_ids > LISTMOUNT_MAX:
        raise Errno(E.EOVERFLOW)
    if mnt_ids + nr_mnt_ids * 8 > TASK_SIZE:
        raise Errno(E.EFAULT)
    parent_id, last_id = _read_request(t, req)
    if last_id and last_id <= mounts.MNT_UNIQUE_ID_OFFSET:
        raise Errno(E.EINVAL)
    root = _root(t)
    if parent_id == LSMT_ROOT:
        below = root
    else:
        parent = _in_namespace(t, parent_id)
        _may_see(t, parent)
        below = parent.path
    found = [m.unique_id for m in mounts.table(t.vfs)
             if m.unique_id != parent_id and m.unique_id > last_id and mounts.reachable(m, below)]
    found = found[:nr_mnt_ids]
    if found:
        t.mm.write(mnt_ids, struct.pack(f"<{len(found)}Q", *found))
    return len(found)


# --- statx's mount id --------------------------------------------------------------------------------
STATX_MNT_ID, STATX_MNT_ID_UNIQUE = 0x1000, 0x4000
STATX_ATTR_MOUNT_ROOT = 0x2000


def statx_mount(t, dirfd: int, path: int, flags: int, mask: int) -> tuple[int, int, int]:
    """(result mask bit, mount id, mount-root attribute) of what statx names: the unique id
    when asked for (Linux 6.8), else mountinfo's."""
    name = t.mm.read_cstring(path)
    if not name and flags & AT_EMPTY_PATH:
        if s32(dirfd) == AT_FDCWD:
            place = loc_path(t.cwd)
        else:
            f = t.fds.get(s32(dirfd))
            loc = getattr(f, "loc", None)
            place = loc_path(loc) if loc is not None else os.fsencode(f.path or "/")
    else:
        place = loc_path(t.vfs.find(t, s32(dirfd), name, follow=not flags & AT_SYMLINK_NOFOLLOW).loc)
    m = mounts.mount_at(t.vfs, place)
    root_attr = STATX_ATTR_MOUNT_ROOT if place == m.path else 0
    if mask & STATX_MNT_ID_UNIQUE:
        return STATX_MNT_ID_UNIQUE, m.unique_id, root_attr
    return STATX_MNT_ID, m.id, root_attr
