"""kcmp(2): do two of the sandbox's processes share a kernel object? Ordered as Linux
orders them: by the objects' identities, obfuscated with a per-sandbox cookie."""
import errno as E
import struct

from sentry import namespaces as nsm
from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.crossproc import PTRACE_MODE_READ, PTRACE_MODE_REALCREDS, may_access
from syscalls.registry import syscall

KCMP_FILE, KCMP_VM, KCMP_FILES, KCMP_FS, KCMP_SIGHAND, KCMP_IO, KCMP_SYSVSEM, KCMP_EPOLL_TFD = range(8)
MASK64 = (1 << 64) - 1
_SLOT = struct.Struct("<III")  # struct kcmp_epoll_slot: efd, tfd, toff


def _cookies(kernel, kind: int):
    cookies = getattr(kernel, "kcmp_cookies", None)
    if cookies is None:
        raw = kernel.random_bytes(16 * 8)
        cookies = kernel.kcmp_cookies = [(int.from_bytes(raw[16 * i:16 * i + 8], "little"),
                                          int.from_bytes(raw[16 * i + 8:16 * i + 16], "little") | 1)
                                         for i in range(8)]
    return cookies[kind]


def _order(kernel, kind: int, a, b) -> int:
    """kcmp_ptr: 0 for one object, else 1 or 2 by the obfuscated identities."""
    if a is b:
        return 0
    xor, mul = _cookies(kernel, kind)
    va = ((id(a) ^ xor) * mul) & MASK64
    vb = ((id(b) ^ xor) * mul) & MASK64
    return 1 if va < vb else 2


def _file(task, fd: int):
    return task.fds.files.get(fd) if fd >= 0 else None


def _epoll_target(t, task1, task2, idx1: int, slot_addr: int) -> int:
    f1 = _file(task1, idx1)
    if f1 is None:
        raise Errno(E.EBADF)
    efd, tfd, toff = _SLOT.unpack(t.mm.read(slot_addr, _SLOT.size))
    ep = _file(task2, s32(efd))
    if ep is None:
        raise Errno(E.EBADF)
    interest = getattr(ep, "interest", None)
    if interest is None:
        raise Errno(E.EINVAL)  # not an epoll file
    watched = [item for key, item in interest.items() if key[0] == s32(tfd)]
    if toff >= len(watched):
        raise Errno(E.ENOENT)
    target = getattr(watched[toff], "file", None)
    return _order(t.kernel, KCMP_FILE, f1, target)


@syscall("kcmp", note="between the sandbox's processes, with ptrace's read check on both (EPERM): FILE, VM, FILES, "
         "FS, SIGHAND, IO, SYSVSEM, EPOLL_TFD; 0 for one object, 1 or 2 ordered by the objects' identities")
def kcmp(t, pid1, pid2, kind, idx1, idx2):
    task1 = nsm.find_task(t, s32(pid1)) if s32(pid1) > 0 else None
    task2 = nsm.find_task(t, s32(pid2)) if s32(pid2) > 0 else None
    if task1 is None or task2 is None:
        raise Errno(E.ESRCH)
    mode = PTRACE_MODE_READ | PTRACE_MODE_REALCREDS
    if not may_access(t, task1, mode) or not may_access(t, task2, mode):
        raise Errno(E.EPERM)
    kind = s32(kind)
    kernel = t.kernel
    if kind == KCMP_FILE:
        f1, f2 = _file(task1, s32(idx1)), _file(task2, s32(idx2))
        if f1 is None or f2 is None:
            raise Errno(E.EBADF)
        return _order(kernel, kind, f1, f2)
    if kind == KCMP_VM:
        return _order(kernel, kind, task1.mm, task2.mm)
    if kind == KCMP_FILES:
        return _order(kernel, kind, task1.fds, task2.fds)
    if kind == KCMP_FS:
        return _order(kernel, kind, task1.fs, task2.fs)
    if kind == KCMP_SIGHAND:
        return _order(kernel, kind, task1.sigactions, task2.sigactions)
    if kind == KCMP_IO:
        # the I/O context: made on a task's first I/O priority change, shared with CLONE_IO
        return _order(kernel, kind, getattr(task1, "io_context", None), getattr(task2, "io_context", None))
    if kind == KCMP_SYSVSEM:
        return _order(kernel, kind, getattr(task1, "sem_undo", None), getattr(task2, "sem_undo", None))
    if kind == KCMP_EPOLL_TFD:
        return _epoll_target(t, task1, task2, s32(idx1), idx2)
    raise Errno(E.EINVAL)
