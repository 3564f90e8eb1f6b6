"""FDTable: a process's file descriptors, each an open file and its close-on-exec bit."""
import errno as E

from sentry.errors import Errno

NOFILE = 1024


class FDTable:
    def __init__(self):
        self.files: dict[int, object] = {}
        self.cloexec: set[int] = set()
        self.limit = NOFILE

    def get(self, fd: int):
        try:
            return self.files[fd]
        except KeyError:
            raise Errno(E.EBADF) from None

    def install(self, file, cloexec: bool = False, lowest: int = 0) -> int:
        """Put file at the lowest free descriptor >= lowest."""
        fd = lowest
        while fd in self.files:
            fd += 1
        if fd >= self.limit:
            raise Errno(E.EMFILE)
        self.files[fd] = file
        if cloexec:
            self.cloexec.add(fd)
        return fd

    def install_at(self, fd: int, file, cloexec: bool = False) -> None:
        """dup2 semantics: whatever was at fd is closed first."""
        if fd < 0 or fd >= self.limit:
            raise Errno(E.EBADF)
        old = self.files.get(fd)
        self.files[fd] = file
        self.cloexec.discard(fd)
        if cloexec:
            self.cloexec.add(fd)
        if old is not None:
            self._release(old)

    def close(self, fd: int) -> None:
        file = self.files.pop(fd, None)
        if file is None:
            raise Errno(E.EBADF)
        self.cloexec.discard(fd)
        self._release(file)

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close(fd)

    def _release(self, file) -> None:
        if file not in self.files.values():
            file.close()
