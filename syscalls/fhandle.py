"""name_to_handle_at(2), open_by_handle_at(2): file handles (sentry/vfs/fhandle.py), in the
order of Linux 6.18's checks."""
import errno as E
import os
import stat as S
import struct

from sentry import caps
from sentry.errors import Errno
from sentry.vfs import fhandle, loc_path, mounts, perm, writeaccess
from sentry.vfs.file import O_ACCMODE, O_CLOEXEC, O_CREAT, O_EXCL, O_LARGEFILE, O_NOFOLLOW, O_PATH, DirFile, File
from sentry.vfs.locks import key_of
from syscalls.abi import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_FOLLOW, open_flags_in, s32
from syscalls.files import O_PATH_FLAGS, VALID_OPEN_FLAGS
from syscalls.paths import file_of
from syscalls.registry import PARTIAL, syscall

AT_HANDLE_MNT_ID_UNIQUE, AT_HANDLE_CONNECTABLE, AT_HANDLE_FID = 0x001, 0x002, 0x200
HEADER = struct.Struct("<Ii")  # struct file_handle: handle_bytes, handle_type
NOTE = ("handles of the sandbox's inodes (16 bytes, as tmpfs's), which decode while the inode they name lives "
        "(ESTALE after); AT_HANDLE_FID names on filesystems without export operations (proc, devpts); "
        "open_by_handle_at needs CAP_DAC_READ_SEARCH")


def _named(t, dfd, name: bytes, flag: int):
    """(inode, its place as a path, its mount) of what name_to_handle_at names."""
    dirfd = s32(dfd)
    if not name:
        if not flag & AT_EMPTY_PATH:
            raise Errno(E.ENOENT)
        if dirfd == AT_FDCWD:
            path = loc_path(t.cwd)
            return t.cwd[-1][1], path, mounts.mount_at(t.vfs, path)
        f = t.fds.get(dirfd)  # O_PATH descriptors too (LOOKUP_EMPTY)
        return f.stat_inode(), os.fsencode(f.path or ""), mounts.mount_of_file(t.vfs, f)
    found = t.vfs.find(t, dirfd, name, follow=bool(flag & AT_SYMLINK_FOLLOW))
    if found.inode is None:
        raise Errno(E.ENOENT)
    path = loc_path(found.loc)
    return found.inode, path, mounts.mount_at(t.vfs, path)


@syscall("name_to_handle_at", status=PARTIAL, note=NOTE)
def name_to_handle_at(t, dfd, name, handle, mnt_id, flag):
    flag = s32(flag)
    if flag & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH | AT_HANDLE_FID | AT_HANDLE_MNT_ID_UNIQUE | AT_HANDLE_CONNECTABLE):
        raise Errno(E.EINVAL)
    if flag & AT_HANDLE_CONNECTABLE and flag & (AT_HANDLE_FID | AT_EMPTY_PATH):
        raise Errno(E.EINVAL)  # a name only, or a descriptor with no known parent: nothing to connect
    inode, path, mount = _named(t, dfd, t.mm.read_cstring(name), flag)
    htype, data = fhandle.of(t.kernel).encode(inode, path, bool(flag & AT_HANDLE_FID))  # EOPNOTSUPP
    room, _ = HEADER.unpack(t.mm.read(handle, HEADER.size))
    if room > fhandle.MAX_HANDLE_SZ:
        raise Errno(E.EINVAL)
    if len(data) > room:  # the size it needs, no handle (FILEID_INVALID)
        out, result = HEADER.pack(len(data), fhandle.FILEID_INVALID), -E.EOVERFLOW
    else:
        if flag & AT_HANDLE_CONNECTABLE:
            htype |= fhandle.FILEID_IS_CONNECTABLE | (fhandle.FILEID_IS_DIR if S.S_ISDIR(inode.mode) else 0)
        out, result = HEADER.pack(len(data), htype) + data, 0
    if flag & AT_HANDLE_MNT_ID_UNIQUE:
        t.mm.write_u64(mnt_id, mount.unique_id)
    else:
        t.mm.write(mnt_id, struct.pack("<i", mount.id))
    t.mm.write(handle, out)
    if result:
        raise Errno(-result)
    return 0


@syscall("open_by_handle_at", status=PARTIAL, note=NOTE)
def open_by_handle_at(t, mountdirfd, handle, flags):
    hbytes, htype = HEADER.unpack(t.mm.read(handle, HEADER.size))
    if hbytes > fhandle.MAX_HANDLE_SZ or hbytes == 0:
        raise Errno(E.EINVAL)
    if htype < 0 or htype & 0xFFFF0000 & ~(fhandle.FILEID_IS_CONNECTABLE | fhandle.FILEID_IS_DIR):
        raise Errno(E.EINVAL)
    fd = s32(mountdirfd)
    if fd >= 0:
        f = file_of(t, fd)
        # the filesystem the handle is looked up in: none for what no mount holds (a pipe, a
        # socket, an anonymous file: pipefs, sockfs, anon_inodefs have no export operations)
        fs = f.stat_inode().fs if (f.path or "").startswith("/") else None
    elif fd == AT_FDCWD:
        fs = t.cwd[-1][1].fs
    else:
        raise Errno(E.EBADF)
    if not caps.has(t, caps.CAP_DAC_READ_SEARCH):
        raise Errno(E.EPERM)
    seen = fhandle.of(t.kernel).decode(fs, htype, t.mm.read(handle + HEADER.size, hbytes))  # EFAULT, ESTALE
    flags = open_flags_in(t.kernel.arch, flags & 0xFFFFFFFF) & VALID_OPEN_FLAGS & ~(O_CREAT | O_EXCL)
    flags = flags & O_PATH_FLAGS if flags & O_PATH else flags | O_LARGEFILE
    return t.fds.install(_open(t, seen, flags), cloexec=bool(flags & O_CLOEXEC))


def _open(t, seen, flags: int):
    """Open what a handle names: through its place while that still holds it (every open
    rule applies: a symlink ELOOP, a directory EISDIR for writing, ETXTBSY, ...), else the
    inode itself (renamed or moved since)."""
    try:
        found = t.vfs.find(t, AT_FDCWD, seen.path, follow=False)
        there = found.inode is not None and key_of(found.inode) == key_of(seen.inode)
    except Errno:
        there = False
    if there:
        f = t.vfs.open(t, AT_FDCWD, seen.path, flags | O_NOFOLLOW, 0)
        if not flags & O_NOFOLLOW:
            f.flags &= ~O_NOFOLLOW
        return f
    inode, path = seen.inode, os.fsdecode(seen.path)
    if flags & O_PATH:
        return File(inode, flags, path)
    if S.S_ISLNK(inode.mode):
        raise Errno(E.ELOOP)
    want = {0: perm.MAY_READ, 1: perm.MAY_WRITE, 2: perm.MAY_READ | perm.MAY_WRITE}.get(flags & O_ACCMODE, 0)
    if S.S_ISDIR(inode.mode):
        if flags & O_ACCMODE:
            raise Errno(E.EISDIR)
        perm.permission(t, inode, perm.MAY_READ)
        return DirFile(inode, flags, path)
    perm.permission(t, inode, want)
    held = writeaccess.open_for_write(t, inode) if flags & O_ACCMODE in (1, 2) else None
    try:
        f = inode.open(flags, path)
    except BaseException:
        writeaccess.abandoned(held)
        raise
    writeaccess.opened(f, held)
    return f
