"""What a sandbox's memory files may hold: the bytes of every tmpfs, /dev/shm, overlay
upper and memfd file its programs make, counted together against one capacity
(`--tmpfs-size`, capped by `--memory`), as Linux charges shmem pages to a memory
cgroup. A write or growth past it fails with ENOSPC; a file's bytes come back when
the file itself goes (unlinked and closed).

Which sandbox pays is the one whose kernel thread makes the file: a run sets its
budget as its thread's current one (`enter`), so a file made anywhere in its
tree (a mount, a copy-up, a memfd) is charged to it, and several sandboxes in one
Python process (the embedding API) each count their own. Files made outside a
run (the view's setup, unit tests) are charged to nobody."""
import errno as E
import threading

from sentry.errors import Errno

PAGE = 4096
DEFAULT_TMPFS_SIZE = 2 << 30  # what statfs always reported for the sandbox's memory filesystems


class MemoryBudget:
    __slots__ = ("limit", "_used", "peak", "refused")

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self.peak = 0          # the most the files held at once (the run's peak memory counts it)
        self.refused = False  # a growth was refused (the run reports "tmpfs")

    @property
    def used(self) -> int:
        return self._used

    @used.setter
    def used(self, value: int) -> None:
        self._used = value
        if value > self.peak:
            self.peak = value

    def reserve(self, more: int) -> None:
        """ENOSPC unless `more` bytes still fit."""
        if more > 0 and self.used + more > self.limit:
            self.refused = True
            raise Errno(E.ENOSPC)

    def free(self) -> int:
        return max(0, self.limit - self.used)


_local = threading.local()


def current():
    """The budget of the run this thread is doing, or None."""
    return getattr(_local, "budget", None)


def enter(budget) -> None:
    """budget pays for the memory files this thread makes from now on (None: nobody)."""
    _local.budget = budget


def pages(n: int) -> int:
    """n bytes in whole pages: what a dense memory file costs."""
    return -(-n // PAGE) * PAGE
