"""Host file descriptors that hold a file's pages: what MAP_SHARED maps, and
what large reads read from straight into guest memory.

As in gVisor, a file whose pages must be shared lives in a host file that the
sentry and the guest's address space both map, so every mapper and every
read()/write() see the same pages. A `Backing` is one such host descriptor:

- a memory file's memfd (`memory=True`): a tmpfs file moves its bytes into one
  when it is first mapped shared or grows large (sentry/vfs/inode.py), and
  shared anonymous mappings (MAP_SHARED|MAP_ANONYMOUS, /dev/zero) get one of
  their own. The sentry owns it; its host size only grows (`cover`), never
  shrinking under a mapping, so touching a mapping of it can never raise
  SIGBUS in the sentry (the unicorn platform maps it into the sentry itself).
- a host file's own descriptor (`memory=False`), a dup of the one hostfs
  opened for the guest with the guest's access mode. A read-only mount opens
  O_RDONLY, so the host kernel itself refuses any writable shared mapping of
  it: a write through a mapping can reach the host only under a :rw mount.

A Backing lives as long as something refers to it (the inode or open file,
the MemoryManager's areas that map it, a platform's record of them) and closes
its descriptor when the last reference goes. Platforms that hand the
descriptor on (ptrace passes it into the traced process) register as holders
(`hold`) and are told (`forget`) when it goes, so their copies can be closed.
"""
import errno as E
import os
import weakref

from sentry.errors import Errno


class Backing:
    __slots__ = ("fd", "writable", "memory", "host_size", "key", "_holders", "file_size", "__weakref__")

    def __init__(self, fd: int, writable: bool, memory: bool):
        self.fd = fd
        self.writable = writable  # the host fd was opened for writing
        self.memory = memory      # a memfd the sentry owns (its bytes are the sandbox's own)
        st = os.fstat(fd)
        self.host_size = st.st_size
        self.key = (st.st_dev, st.st_ino)
        self._holders = weakref.WeakSet()
        self.file_size = None  # a memory file's own size (its host size may be larger), kept by the file

    def hold(self, holder) -> None:
        """holder.forget(self) will be called when the descriptor closes."""
        self._holders.add(holder)

    def cover(self, end: int) -> None:
        """A memory backing grows to at least `end` bytes (what a mapping reaches)."""
        if self.memory and end > self.host_size:
            try:
                os.ftruncate(self.fd, end)
            except OSError as e:
                raise Errno(E.ENOMEM if e.errno in (E.EFBIG, E.EINVAL, E.ENOSPC) else e.errno) from None
            self.host_size = end

    def size(self) -> int:
        """The host file's size now (a memory backing: its host size)."""
        if self.memory:
            return self.host_size
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return 0

    def punch(self, offset: int, length: int) -> None:
        """Zero [offset, offset+length) of the host file, keeping its size (MADV_REMOVE)."""
        from sentry.vfs.hostcalls import fallocate
        try:
            fallocate(self.fd, 0x01 | 0x02, offset, length)  # KEEP_SIZE | PUNCH_HOLE
        except OSError as e:
            raise Errno(e.errno) from None

    def sync(self) -> None:
        """msync(MS_SYNC): a host file's pages go to its disk; memory needs nothing."""
        if not self.memory:
            try:
                os.fsync(self.fd)
            except OSError as e:
                raise Errno(e.errno) from None

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        for holder in list(self._holders):
            holder.forget(self)
        try:
            os.close(fd)
        except OSError:
            pass

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


def new_memory(name: str, size: int = 0) -> Backing:
    """A fresh memfd of `size` zero bytes."""
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except OSError as e:
        raise Errno(E.ENFILE if e.errno in (E.EMFILE, E.ENFILE) else e.errno) from None
    try:
        if size:
            os.ftruncate(fd, size)
        return Backing(fd, True, True)
    except BaseException:
        os.close(fd)
        raise


def of_host_fd(fd: int, writable: bool) -> Backing:
    """A Backing on its own dup of a host file's descriptor."""
    try:
        dup = os.dup(fd)
    except OSError as e:
        raise Errno(e.errno) from None
    try:
        return Backing(dup, writable, False)
    except BaseException:
        os.close(dup)
        raise


# --- host files cut short ------------------------------------------------------------------
# A platform that maps host files into the sentry's own memory (unicorn) must not let
# anything touch a page past the file's new end (the host would raise SIGBUS in the
# sentry); it registers here and is told when the sandbox shortens a host file. (A host
# process that truncates a file the sandbox maps is outside the sentry's reach: see
# docs/architecture.md.)
_shrink_watchers = weakref.WeakSet()


def watch_shrinks(watcher) -> None:
    """watcher.file_shrunk((st_dev, st_ino), new_size) is called after a host file shrank."""
    _shrink_watchers.add(watcher)


def host_file_shrunk(fd: int) -> None:
    """The host file open at fd may have shrunk (truncate, O_TRUNC, collapse)."""
    if not _shrink_watchers:
        return
    try:
        st = os.fstat(fd)
    except OSError:
        return
    for w in list(_shrink_watchers):
        w.file_shrunk((st.st_dev, st.st_ino), st.st_size)
