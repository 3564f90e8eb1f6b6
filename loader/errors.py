"""The one exception the loader raises."""

import errno as _errno


class LoadError(Exception):
    """The file cannot be executed.

    str(e) is a one-line message for the user; `exit_code` is what a shell
    answers for a file it found but cannot execute (126); `errno` is what
    execve(2) returns for it (ENOEXEC unless said otherwise, e.g. E2BIG).
    """

    exit_code = 126

    def __init__(self, message: str, errno: int = _errno.ENOEXEC):
        super().__init__(message)
        self.errno = errno
