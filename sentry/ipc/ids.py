"""What the three System V IPC families share (Linux's ipc/util.c): an object's
ipc_perm, the table of one family's objects in a namespace with Linux's id
allocation, and the permission rules.

Ids are Linux's: an index in [0, 32768) and a sequence number, id = seq * 32768
+ index. An index is taken cyclically (idr_alloc_cyclic) below max(in_use * 3/2,
64): a new object takes the index after the last one given, wrapping to the
lowest free one, and the sequence number goes up each time the index does not
(so a removed id is not soon given again). `next_id` (the *_next_id sysctls,
CONFIG_CHECKPOINT_RESTORE) asks for one id once: its sequence number and the
first free index from its own.
"""
import errno as E
import time

from sentry import caps
from sentry.errors import Errno
from sentry.vfs.perm import in_group

IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
S_IRWXUGO = 0o777
S_IRUGO, S_IWUGO, S_IXUGO = 0o444, 0o222, 0o111

IPCMNI_SHIFT = 15
IPCMNI = 1 << IPCMNI_SHIFT          # indexes per family (and the seq multiplier)
IPCID_SEQ_MAX = 0x7FFFFFFF >> IPCMNI_SHIFT
IPC_MIN_CYCLE = 64                  # RADIX_TREE_MAP_SIZE: the smallest cycle of indexes

CAP_IPC_LOCK, CAP_IPC_OWNER, CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 14, 15, 21, 24


def now() -> int:
    """ktime_get_real_seconds: the times ipc objects keep."""
    return int(time.time())


class IpcPerm:
    """kern_ipc_perm: the key, the owner and creator, the mode (its low nine bits the
    permissions; shm keeps SHM_DEST and SHM_LOCKED above them), the sequence number
    and the id."""
    __slots__ = ("key", "uid", "gid", "cuid", "cgid", "mode", "seq", "id", "deleted")

    def __init__(self, key: int, mode: int):
        self.key = key
        self.mode = mode
        self.uid = self.gid = self.cuid = self.cgid = 0
        self.seq = self.id = 0
        self.deleted = False

    @property
    def index(self) -> int:
        return self.id & (IPCMNI - 1)


class IpcIds:
    """One family's objects in one namespace (struct ipc_ids): by index, by key."""

    def __init__(self):
        self.objects: dict[int, object] = {}  # index -> object (each with .perm)
        self.by_key: dict[int, object] = {}   # keys other than IPC_PRIVATE
        self.seq = 0
        self.last_idx = -1
        self.cursor = 0                       # idr_alloc_cyclic's next index
        self.next_id = -1                     # the *_next_id sysctl (-1: none asked)

    @property
    def in_use(self) -> int:
        return len(self.objects)

    def find_key(self, key: int):
        return self.by_key.get(key)

    def _free_from(self, start: int, end: int):
        """The lowest free index in [start, end), or None."""
        for idx in range(start, end):
            if idx not in self.objects:
                return idx
        return None

    def add(self, task, obj, limit: int) -> int:
        """ipc_addid: give obj (whose perm has its key and mode) an id, owned by the
        caller's effective ids; ENOSPC past `limit` objects."""
        perm = obj.perm
        if self.in_use >= min(limit, IPCMNI):
            raise Errno(E.ENOSPC)
        next_id, self.next_id = self.next_id, -1
        if next_id < 0:
            end = min(max(self.in_use * 3 // 2, IPC_MIN_CYCLE), IPCMNI)
            idx = self._free_from(max(self.cursor, 0), end) if self.cursor < end else None
            if idx is None:
                idx = self._free_from(0, end)
            if idx is None:
                raise Errno(E.ENOSPC)
            self.cursor = idx + 1
            if idx <= self.last_idx:
                self.seq += 1
                if self.seq >= IPCID_SEQ_MAX:
                    self.seq = 0
            self.last_idx = idx
            perm.seq = self.seq
        else:
            idx = self._free_from(next_id & (IPCMNI - 1), IPCMNI)
            if idx is None:
                raise Errno(E.ENOSPC)
            perm.seq = next_id >> IPCMNI_SHIFT
        perm.id = (perm.seq << IPCMNI_SHIFT) + idx
        perm.uid = perm.cuid = task.euid
        perm.gid = perm.cgid = task.egid
        self.objects[idx] = obj
        if perm.key != IPC_PRIVATE:
            self.by_key[perm.key] = obj
        return perm.id

    def obtain(self, ident: int):
        """ipc_obtain_object_idr: the object at ident's index (SHM_STAT and its kind
        take a bare index), EINVAL if none."""
        obj = self.objects.get(ident & (IPCMNI - 1)) if ident >= 0 else None
        if obj is None:
            raise Errno(E.EINVAL)
        return obj

    def obtain_check(self, ident: int):
        """ipc_obtain_object_check: as obtain, and the sequence number must match."""
        obj = self.obtain(ident)
        if obj.perm.seq != ident >> IPCMNI_SHIFT:
            raise Errno(E.EINVAL)
        return obj

    def forget_key(self, obj) -> None:
        """ipc_set_key_private: the object is found by its id only from now on."""
        perm = obj.perm
        if perm.key != IPC_PRIVATE and self.by_key.get(perm.key) is obj:
            del self.by_key[perm.key]
        perm.key = IPC_PRIVATE

    def remove(self, obj) -> None:
        """ipc_rmid: the id goes; a task still holding the object sees it deleted."""
        perm = obj.perm
        if self.objects.get(perm.index) is obj:
            del self.objects[perm.index]
        if perm.key != IPC_PRIVATE and self.by_key.get(perm.key) is obj:
            del self.by_key[perm.key]
        perm.deleted = True

    def max_idx(self) -> int:
        """ipc_get_maxidx: the highest index in use (what IPC_INFO and *_INFO return),
        -1 for none."""
        return max(self.objects) if self.objects else -1

    def sorted(self) -> list:
        """The objects by index (/proc/sysvipc order)."""
        return [self.objects[i] for i in sorted(self.objects)]


def get(task, ids: IpcIds, key: int, flags: int, create, more_checks=None) -> int:
    """ipcget: IPC_PRIVATE makes a new object; a key finds its object (EEXIST with
    IPC_CREAT|IPC_EXCL, then more_checks, then the permissions in flags' low bits:
    EACCES) or makes one with IPC_CREAT (ENOENT without). create() makes and adds it."""
    if key == IPC_PRIVATE:
        return create()
    obj = ids.find_key(key)
    if obj is None:
        if not flags & IPC_CREAT:
            raise Errno(E.ENOENT)
        return create()
    if flags & IPC_CREAT and flags & IPC_EXCL:
        raise Errno(E.EEXIST)
    if more_checks is not None:
        more_checks(obj)
    if not permitted(task, obj.perm, flags):
        raise Errno(E.EACCES)
    return obj.perm.id


def permitted(task, perm: IpcPerm, flag: int) -> bool:
    """ipcperms: the owner's (or creator's), group's or others' bits against the ones
    asked in flag (S_IRUGO, S_IWUGO, ... or a get call's flags), by the effective uid
    and the fs group and supplementary groups; CAP_IPC_OWNER overrides."""
    requested = (flag >> 6 | flag >> 3 | flag) & 7
    granted = perm.mode
    if task.euid in (perm.cuid, perm.uid):
        granted >>= 6
    elif in_group(task, perm.cgid) or in_group(task, perm.gid):
        granted >>= 3
    return not requested & ~granted & 7 or caps.has(task, CAP_IPC_OWNER)


def check(task, perm: IpcPerm, flag: int) -> None:
    if not permitted(task, perm, flag):
        raise Errno(E.EACCES)


def owner_or_admin(task, perm: IpcPerm) -> None:
    """ipcctl_obtain_check's rule for IPC_SET and IPC_RMID: the owner, the creator or
    CAP_SYS_ADMIN (EPERM)."""
    if task.euid not in (perm.cuid, perm.uid) and not caps.has(task, CAP_SYS_ADMIN):
        raise Errno(E.EPERM)


def update_perm(perm: IpcPerm, uid: int, gid: int, mode: int) -> None:
    """ipc_update_perm (IPC_SET): the owner's ids and the nine permission bits; an id
    of -1 is no id (EINVAL)."""
    if uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    perm.uid, perm.gid = uid, gid
    perm.mode = perm.mode & ~S_IRWXUGO | mode & S_IRWXUGO
