"""The objects of the new mount API (fsopen(2) and its family, syscalls/newmount.py): a
filesystem context being configured, and a mount held by a file descriptor (made by
fsmount(2) or open_tree(OPEN_TREE_CLONE), detached until move_mount(2) attaches it)."""
import errno as E

from sentry.errors import Errno
from sentry.vfs.file import O_PATH, O_RDONLY, File
from sentry.vfs.inode import Inode

# fs_context's phases (the ones that can be seen from user space)
CREATE_PARAMS, AWAITING_MOUNT, RECONF_PARAMS, FAILED = "create-params", "awaiting-mount", "reconf-params", "failed"


class FsContextFile(File):
    """An fs context (fsopen, fspick): the type, the parameters given so far, its phase and,
    once created, the new filesystem's root (or, for fspick, the mount it reconfigures)."""

    def __init__(self, fstype: str, phase: str = CREATE_PARAMS, mount=None):
        super().__init__(Inode(0o600), O_RDONLY, "anon_inode:[fscontext]")
        self.fstype = fstype
        self.phase = phase
        self.source = None
        self.options: list[str] = []   # key or key=value, in the order given
        self.readonly = False
        self.created = None            # (root, source name, superblock options, device) after CMD_CREATE
        self.mount = mount             # fspick: the mounts.Mount it reconfigures

    def read(self, size):
        raise Errno(E.ENODATA)  # the kernel's log of messages: none kept

    def data(self) -> str:
        return ",".join(self.options)


class MountFile(File):
    """A file descriptor holding a mount: `root` and its record `info` (sentry/vfs/mounts.py
    MountState); `below` holds the mounts a recursive clone took with it (relative path,
    root, record); `attached` is the place it was attached at, once it is."""

    def __init__(self, root, info, below=(), flags: int = O_PATH):
        super().__init__(root, flags | O_PATH, "/")
        self.loc = ((b"", root),)  # paths relative to it start at its root
        self.info = info
        self.below = list(below)
        self.attached = None
