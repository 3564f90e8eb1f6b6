"""How a lent (host-backed) file's identity shows in the sandbox: its inode number
and its owner, never the host's (issue 15: a guest must not learn the host's inode
numbers, which name its files across sandboxes, nor its users).

Inode numbers: one table per sandbox (its view's `InodeNumbers`), numbering each host
file on first sight of its (st_dev, st_ino) from a random base, and keeping the number
for the sandbox's life: hard links share one, a file seen again after its inode object
was dropped gets the same one, and stat, getdents, /proc/PID/maps, /proc/locks,
file handles and inotify all read it from the inode. Two sandboxes number the same
host file differently. The table holds one entry per host file the sandbox has seen.

Owners: as a user namespace maps them (Linux's from_kuid_munged): the ids the sandbox
has for a file (HostInode.owner(): the sandbox's root for the files of the host user
who runs the sentry, in a directory the user lent) show as those ids, every other host
id as the overflow id, 65534, which owns nothing in the sandbox: what stat shows is
what the permission checks (sentry/vfs/perm.py) decide by.
"""
import os

OVERFLOW_ID = 65534  # /proc/sys/kernel/overflowuid and overflowgid
# Host inode numbers are shown from a random base in [BASE_LOW, BASE_HIGH): above the
# memory filesystems' own counter (an overlay's upper and lower share one numbering)
# and leaving room for 2^30 files below 2^31 (a 32-bit stat never overflows).
BASE_LOW, BASE_HIGH = 1 << 24, 1 << 30


class InodeNumbers:
    """One sandbox's numbering of host files: (host st_dev, host st_ino) -> number."""

    def __init__(self, random_bytes=os.urandom):
        self._random_bytes = random_bytes
        self._base = None  # drawn at the first number: a sandbox that sees no host file draws none
        self._known: dict[tuple[int, int], int] = {}

    def number(self, host_dev: int, host_ino: int) -> int:
        key = (host_dev, host_ino)
        n = self._known.get(key)
        if n is None:
            if self._base is None:
                span = BASE_HIGH - BASE_LOW
                self._base = BASE_LOW + int.from_bytes(self._random_bytes(4), "little") % span
            n = self._known[key] = self._base + len(self._known)
        return n


def shown_id(sandbox_id) -> int:
    """The id stat shows for an owner the sandbox has (an int) or has not (None)."""
    return OVERFLOW_ID if sandbox_id is None else sandbox_id
