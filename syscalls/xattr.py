"""Extended attributes: getxattr(2), setxattr(2), listxattr(2), removexattr(2) and their
l* (no final symlink) and f* (an open file) forms, as Linux's fs/xattr.c.

The VFS part is here: the name (ERANGE empty or past 255 bytes, EINVAL a bare
prefix, EOPNOTSUPP an unknown namespace), the value (E2BIG past 64 KiB; ERANGE
for a short buffer, the size alone for a size of 0), and xattr_permission: user.*
only on regular files and directories (else EPERM to write, ENODATA to read),
the sticky directory rule, trusted.* CAP_SYS_ADMIN's (EPERM / ENODATA), security.*
writes CAP_SYS_ADMIN's (the capability module), file permissions for user.*.
What is stored is the inode's: memory filesystems (tmpfs, /dev/shm, the overlay's
upper, copied up with the file) keep every namespace; host files show and, through
a read-write mount, take user.* attributes only (sentry/vfs/hostfs.py).
POSIX ACLs are not kept: system.posix_acl_* reads ENODATA, writes EOPNOTSUPP."""
import errno as E
import stat as S

from sentry import caps
from sentry.errors import Errno
from sentry.vfs import notify, perm
from sentry.vfs.inode import XATTR_CREATE, XATTR_REPLACE, is_append_only, is_immutable
from syscalls.abi import AT_FDCWD, AT_SYMLINK_NOFOLLOW
from syscalls.inotify import changed_at
from syscalls.paths import file_of
from syscalls.registry import PARTIAL, syscall

XATTR_NAME_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX = 255, 65536, 65536
CAP_SYS_ADMIN = 21
_PREFIXES = (b"user.", b"trusted.", b"security.")
_ACLS = (b"system.posix_acl_access", b"system.posix_acl_default")


def _name(t, addr) -> bytes:
    """The attribute's name: ERANGE if empty or longer than 255 bytes."""
    try:
        name = t.mm.read_cstring(addr, XATTR_NAME_MAX + 1)
    except Errno as e:
        if e.errno == E.ENAMETOOLONG:
            raise Errno(E.ERANGE) from None
        raise
    if not name:
        raise Errno(E.ERANGE)
    return name


def _namespace(name: bytes) -> None:
    """xattr_resolve_name: a handler's prefix (EINVAL if the name is only that), else
    EOPNOTSUPP."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            if name == prefix:
                raise Errno(E.EINVAL)
            return
    raise Errno(E.EOPNOTSUPP)


def _permission(t, inode, name: bytes, write: bool) -> None:
    """xattr_permission, then the capability module's check of security.* writes."""
    if write:
        uid, gid = inode.owner()
        if inode.fs.readonly:
            raise Errno(E.EROFS)
        if is_immutable(inode) or is_append_only(inode):
            raise Errno(E.EPERM)
        if uid is None or gid is None:
            raise Errno(E.EPERM)  # ids the sandbox cannot write back (HAS_UNMAPPED_ID)
    if name.startswith(b"security.") or name.startswith(b"system."):
        if write and name.startswith(b"security.") and not caps.has(t, CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
        return
    if name.startswith(b"trusted."):
        if not caps.has(t, CAP_SYS_ADMIN):
            raise Errno(E.EPERM if write else E.ENODATA)
        return
    if name.startswith(b"user."):
        kind = S.S_IFMT(inode.mode)
        if kind not in (S.S_IFREG, S.S_IFDIR):
            raise Errno(E.EPERM if write else E.ENODATA)
        if kind == S.S_IFDIR and inode.mode & S.S_ISVTX and write and not perm.owns(t, inode):
            raise Errno(E.EPERM)
    perm.permission(t, inode, perm.MAY_WRITE if write else perm.MAY_READ)


def _path_inode(t, path, follow: bool):
    return t.vfs.lookup(t, AT_FDCWD, t.mm.read_cstring(path), follow=follow)


def _changed_at(t, path, follow: bool, inode) -> int:
    """A change is IN_ATTRIB to inotify (fsnotify_xattr)."""
    if notify.marks:
        changed_at(t, AT_FDCWD, path, 0 if follow else AT_SYMLINK_NOFOLLOW, inode, notify.ATTRIB)
    return 0


def _changed(f) -> int:
    if notify.marks:
        notify.file_changed(f, notify.ATTRIB)
    return 0


def _stores(inode) -> bool:
    """Does the file's filesystem keep extended attributes at all? (procfs, pipes and
    sockets have no handler: EOPNOTSUPP once the namespace rules pass)"""
    from sentry.vfs.pipe import Pipe
    return inode.has_xattrs() and not isinstance(inode, Pipe)


# --- get ---------------------------------------------------------------------------------------
def _get(t, inode, name: bytes, value: int, size: int) -> int:
    _permission(t, inode, name, write=False)
    if name in _ACLS:
        raise Errno(E.ENODATA)  # no ACL is ever set
    _namespace(name)
    if not _stores(inode):
        raise Errno(E.EOPNOTSUPP)
    data = inode.getxattr(name)
    if size:
        if len(data) > min(size, XATTR_SIZE_MAX):
            raise Errno(E.E2BIG if size >= XATTR_SIZE_MAX else E.ERANGE)
        t.mm.write(value, data)
    return len(data)


_GET_NOTE = ("memory files keep every namespace; host files' user.* come from the host; "
             "no POSIX ACLs (ENODATA)")


@syscall("getxattr", status=PARTIAL, note=_GET_NOTE)
def getxattr(t, path, name, value, size):
    name = _name(t, name)
    return _get(t, _path_inode(t, path, True), name, value, size)


@syscall("lgetxattr", status=PARTIAL, note=_GET_NOTE)
def lgetxattr(t, path, name, value, size):
    name = _name(t, name)
    return _get(t, _path_inode(t, path, False), name, value, size)


@syscall("fgetxattr", status=PARTIAL, note=_GET_NOTE)
def fgetxattr(t, fd, name, value, size):
    f = file_of(t, fd)
    return _get(t, f.stat_inode(), _name(t, name), value, size)


# --- list --------------------------------------------------------------------------------------
def _list(t, inode, buf: int, size: int) -> int:
    trusted = caps.has(t, CAP_SYS_ADMIN)
    names = [n for n in inode.listxattr() if trusted or not n.startswith(b"trusted.")] if _stores(inode) else []
    data = b"".join(n + b"\0" for n in names)
    if size:
        if len(data) > min(size, XATTR_LIST_MAX):
            raise Errno(E.E2BIG if size >= XATTR_LIST_MAX else E.ERANGE)
        t.mm.write(buf, data)
    return len(data)


_LIST_NOTE = "names in tmpfs's order (sorted); trusted.* only for CAP_SYS_ADMIN; host files: user.* only"


@syscall("listxattr", status=PARTIAL, note=_LIST_NOTE)
def listxattr(t, path, buf, size):
    return _list(t, _path_inode(t, path, True), buf, size)


@syscall("llistxattr", status=PARTIAL, note=_LIST_NOTE)
def llistxattr(t, path, buf, size):
    return _list(t, _path_inode(t, path, False), buf, size)


@syscall("flistxattr", status=PARTIAL, note=_LIST_NOTE)
def flistxattr(t, fd, buf, size):
    return _list(t, file_of(t, fd).stat_inode(), buf, size)


# --- set ---------------------------------------------------------------------------------------
def _set_args(t, name, value, size, flags):
    """setxattr_copy: flags, name and value, before the file is looked at."""
    flags &= 0xFFFFFFFF
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise Errno(E.EINVAL)
    name = _name(t, name)
    if size > XATTR_SIZE_MAX:
        raise Errno(E.E2BIG)
    data = t.mm.read(value, size) if size else b""  # a size of 0 stores an empty value
    return name, data, flags


def _set(t, inode, name: bytes, data: bytes, flags: int) -> int:
    _permission(t, inode, name, write=True)
    if name.startswith(b"system."):
        raise Errno(E.EOPNOTSUPP)  # POSIX ACLs are not kept; no other system.* handler
    _namespace(name)
    if not _stores(inode):
        raise Errno(E.EOPNOTSUPP)
    inode.setxattr(name, data, flags)
    return 0


_SET_NOTE = ("memory files (tmpfs, /dev/shm, the overlay's upper) keep user/trusted/security "
             "attributes (user.* space as tmpfs's: ENOSPC); host files take user.* through a :rw "
             "mount only (else EOPNOTSUPP); no POSIX ACLs")


@syscall("setxattr", status=PARTIAL, note=_SET_NOTE)
def setxattr(t, path, name, value, size, flags):
    name, data, flags = _set_args(t, name, value, size, flags)
    inode = _path_inode(t, path, True)
    _set(t, inode, name, data, flags)
    return _changed_at(t, path, True, inode)


@syscall("lsetxattr", status=PARTIAL, note=_SET_NOTE)
def lsetxattr(t, path, name, value, size, flags):
    name, data, flags = _set_args(t, name, value, size, flags)
    inode = _path_inode(t, path, False)
    _set(t, inode, name, data, flags)
    return _changed_at(t, path, False, inode)


@syscall("fsetxattr", status=PARTIAL, note=_SET_NOTE)
def fsetxattr(t, fd, name, value, size, flags):
    f = file_of(t, fd)
    name, data, flags = _set_args(t, name, value, size, flags)
    _set(t, f.stat_inode(), name, data, flags)
    return _changed(f)


# --- remove ------------------------------------------------------------------------------------
def _remove(t, inode, name: bytes) -> int:
    _permission(t, inode, name, write=True)
    if name.startswith(b"system."):
        raise Errno(E.EOPNOTSUPP if name not in _ACLS else E.ENODATA)
    _namespace(name)
    if not _stores(inode):
        raise Errno(E.EOPNOTSUPP)
    inode.setxattr(name, None, XATTR_REPLACE)
    return 0


_REMOVE_NOTE = "as setxattr's: what memory files and host files through a :rw mount keep"


@syscall("removexattr", status=PARTIAL, note=_REMOVE_NOTE)
def removexattr(t, path, name):
    name = _name(t, name)
    inode = _path_inode(t, path, True)
    _remove(t, inode, name)
    return _changed_at(t, path, True, inode)


@syscall("lremovexattr", status=PARTIAL, note=_REMOVE_NOTE)
def lremovexattr(t, path, name):
    name = _name(t, name)
    inode = _path_inode(t, path, False)
    _remove(t, inode, name)
    return _changed_at(t, path, False, inode)


@syscall("fremovexattr", status=PARTIAL, note=_REMOVE_NOTE)
def fremovexattr(t, fd, name):
    f = file_of(t, fd)
    _remove(t, f.stat_inode(), _name(t, name))
    return _changed(f)
