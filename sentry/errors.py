"""The two kinds of failure: an errno for the program, a one-line message for the user."""
import errno as _errno
import os


class Errno(Exception):
    """A syscall fails with this errno; the dispatcher turns it into -errno."""

    __slots__ = ("errno",)

    def __init__(self, code: int):
        self.errno = code

    def __str__(self):
        return f"{_errno.errorcode.get(self.errno, self.errno)}: {os.strerror(self.errno)}"


class SentryError(Exception):
    """The sentry cannot do what the user asked. str() is one line for the user;
    exit_code follows env(1)/docker run: 127 not found, 126 cannot execute, 125 other."""

    def __init__(self, message: str, exit_code: int = 125):
        super().__init__(message)
        self.exit_code = exit_code
