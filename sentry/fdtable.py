"""FDTable: a process's file descriptors, each an open file and its close-on-exec bit."""
import errno as E

from sentry.errors import Errno
from sentry.vfs import notify, writeaccess

NOFILE = 1024


class FDTable:
    def __init__(self):
        self.files: dict[int, object] = {}
        self.cloexec: set[int] = set()
        self.limit = NOFILE
        # The LockTable once this process has taken a POSIX record lock: closing any
        # descriptor of a file drops the process's locks on it (fcntl(2), F_SETLK).
        self.lock_table = None
        self.users = 1  # tasks using this table (threads, CLONE_FILES children)
        # Every descriptor below this is open (Linux's next_fd): the search for the lowest
        # free one starts here, so filling a table is linear, not quadratic.
        self.next_free = 0

    def get(self, fd: int):
        try:
            return self.files[fd]
        except KeyError:
            raise Errno(E.EBADF) from None

    def install(self, file, cloexec: bool = False, lowest: int = 0) -> int:
        """Put file at the lowest free descriptor >= lowest."""
        files = self.files
        fd = max(lowest, self.next_free)
        while fd in files:
            fd += 1
        if lowest <= self.next_free:
            self.next_free = fd
        if fd >= self.limit:
            raise Errno(E.EMFILE)
        self.files[fd] = file
        file.fd_refs = getattr(file, "fd_refs", 0) + 1
        if cloexec:
            self.cloexec.add(fd)
        return fd

    def install_at(self, fd: int, file, cloexec: bool = False) -> None:
        """dup2 semantics: whatever was at fd is closed first."""
        if fd < 0 or fd >= self.limit:
            raise Errno(E.EBADF)
        old = self.files.get(fd)
        self.files[fd] = file
        # (next_free stays: every descriptor below it is still open)
        file.fd_refs = getattr(file, "fd_refs", 0) + 1
        self.cloexec.discard(fd)
        if cloexec:
            self.cloexec.add(fd)
        if old is not None:
            self._release(old)

    def close(self, fd: int) -> None:
        file = self.files.pop(fd, None)
        if file is None:
            raise Errno(E.EBADF)
        if fd < self.next_free:
            self.next_free = fd
        self.cloexec.discard(fd)
        self._release(file)

    def close_range(self, first: int, last: int, cloexec: bool = False) -> None:
        """close_range(2): close (or mark close-on-exec) every open fd in [first, last]."""
        for fd in sorted(fd for fd in self.files if first <= fd <= last) if last - first > len(self.files) \
                else [fd for fd in range(first, last + 1) if fd in self.files]:
            if cloexec:
                self.cloexec.add(fd)
            else:
                self.close(fd)

    def check_copy(self, nr_open: int) -> None:
        """dup_fd's refusal: a copy spanning more than fs/nr_open descriptors is EMFILE
        (a parent that dup2'd high, then lowered nr_open: sentry/sysctl.py)."""
        from sentry.sysctl import table_span
        if table_span(self.files) > nr_open:
            raise Errno(E.EMFILE)

    def copy(self) -> "FDTable":
        """The table a forked child starts with: the same open files, one more reference each."""
        child = FDTable()
        child.limit = self.limit
        child.cloexec = set(self.cloexec)
        child.next_free = self.next_free
        for fd, file in self.files.items():
            child.files[fd] = file
            file.fd_refs += 1
        return child

    def close_on_exec(self) -> None:
        for fd in sorted(self.cloexec):
            if fd in self.files:
                self.close(fd)
        self.cloexec.clear()

    def share(self) -> "FDTable":
        """One more task uses this table (CLONE_FILES)."""
        self.users += 1
        return self

    def release(self) -> None:
        """A task using this table ended: the last one closes every descriptor."""
        self.users -= 1
        if self.users <= 0:
            self.close_all()

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)

    def _release(self, file) -> None:
        """A descriptor of file went away."""
        if self.lock_table is not None and getattr(file, "inode", None) is not None:
            from sentry.vfs.locks import key_of
            self.lock_table.release(key_of(file.inode), self)
        drop_ref(file)


def drop_ref(file) -> None:
    """One reference to an open file went (a descriptor, or a call that held it while it
    waited); the last one closes it."""
    file.fd_refs -= 1
    if file.fd_refs <= 0:  # the last descriptor of it, in any process
        if notify.marks:
            notify.closed(file)  # IN_CLOSE_*, first as in Linux's __fput
        if getattr(file, "lock_table", None) is not None:
            file.lock_table.release_file(file)
        writeaccess.closed(file)  # a writer of it no more (ETXTBSY)
        file.close()
