"""Writers against running programs: Linux's i_writecount (ETXTBSY).

A file open for writing cannot be executed, and the executable of a live
process cannot be opened for writing or truncated. Linux keeps one count per
inode: positive for open writers, negative for the address spaces running it
(mm->exe_file; an execve holds it from opening the file, a fork takes it
again for the child's copy). One table per sandbox, keyed as the locks are
(dev, ino), since a host file gets a fresh inode object at each lookup."""
import errno as E
import stat as S

from sentry.errors import Errno
from sentry.vfs.locks import key_of


class WriteAccess:
    def __init__(self):
        self.counts: dict[tuple, int] = {}

    def get(self, inode) -> tuple | None:
        """A description of inode opens for writing (get_write_access): ETXTBSY while a
        process runs it. Returns the key to give back with put (None: nothing counted)."""
        if not S.S_ISREG(inode.mode):
            return None
        key = key_of(inode)
        n = self.counts.get(key, 0)
        if n < 0:
            raise Errno(E.ETXTBSY)
        self.counts[key] = n + 1
        return key

    def check(self, inode) -> None:
        """ETXTBSY if a process runs inode (a truncate by path, which holds nothing)."""
        if self.counts.get(key_of(inode), 0) < 0:
            raise Errno(E.ETXTBSY)

    def deny(self, inode) -> tuple:
        """inode becomes a running executable (deny_write_access): ETXTBSY while it is
        open for writing. Returns the key to give back with put."""
        key = key_of(inode)
        n = self.counts.get(key, 0)
        if n > 0:
            raise Errno(E.ETXTBSY)
        self.counts[key] = n - 1
        return key

    def may_exec(self, inode) -> None:
        """ETXTBSY if inode is open for writing (an execve's check on each file it opens)."""
        if self.counts.get(key_of(inode), 0) > 0:
            raise Errno(E.ETXTBSY)

    def again(self, key: tuple) -> None:
        """One more holder of what key already holds (a forked address space's executable)."""
        n = self.counts.get(key, 0)
        self.counts[key] = n - 1 if n < 0 else n + 1

    def put(self, key: tuple) -> None:
        """A writer or a running executable let go."""
        n = self.counts.get(key, 0)
        n = n - 1 if n > 0 else n + 1
        if n:
            self.counts[key] = n
        else:
            self.counts.pop(key, None)


# --- who holds what ----------------------------------------------------------------------------
def of(kernel) -> WriteAccess:
    """The sandbox's table (one per kernel)."""
    table = getattr(kernel, "write_access", None)
    if table is None:
        table = kernel.write_access = WriteAccess()
    return table


def open_for_write(task, inode):
    """An open for writing of inode (before the file is made): ETXTBSY while a process runs
    it. Returns what the open file keeps (hand it to `opened`), or None."""
    if task is None or not S.S_ISREG(inode.mode):
        return None
    table = of(task.kernel)
    return table, table.get(inode)


def opened(f, held) -> None:
    """f is the file held was taken for; its last close gives it back (`closed`)."""
    if held is not None:
        f.write_held = held


def abandoned(held) -> None:
    """The open that took held failed."""
    if held is not None:
        held[0].put(held[1])


def closed(f) -> None:
    """The last reference to f went."""
    held = getattr(f, "write_held", None)
    if held is not None:
        f.write_held = None
        held[0].put(held[1])


def exe_taken(kernel, mm, inode) -> None:
    """mm runs inode (an execve's new image): writers are refused until it goes."""
    mm.exe_held = of(kernel).deny(inode)


def exe_forked(kernel, parent_mm, child_mm) -> None:
    """A forked copy of parent_mm runs the same executable."""
    key = getattr(parent_mm, "exe_held", None)
    if key is not None:
        of(kernel).again(key)
        child_mm.exe_held = key


def exe_released(kernel, mm) -> None:
    """mm is gone (its last task exited, or it was replaced by an execve)."""
    key = getattr(mm, "exe_held", None)
    if key is not None:
        mm.exe_held = None
        of(kernel).put(key)
