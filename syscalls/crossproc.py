"""Calls on another process of the sandbox, with Linux's ptrace access checks
(ptrace_may_access): process_vm_readv(2), process_vm_writev(2), process_madvise(2),
process_mrelease(2), pidfd_getfd(2)."""
import errno as E
import struct

from sentry import namespaces as nsm
from sentry.errors import Errno
from sentry.vfs.file import O_CLOEXEC
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

PTRACE_MODE_READ, PTRACE_MODE_ATTACH, PTRACE_MODE_NOAUDIT = 0x01, 0x02, 0x04
PTRACE_MODE_FSCREDS, PTRACE_MODE_REALCREDS = 0x08, 0x10
UIO_MAXIOV = 1024
PAGE = 4096
SSIZE_MAX = (1 << 63) - 1
CAP_SYS_NICE = 23
MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT, MADV_COLLAPSE = 3, 20, 21, 25


def may_access(t, target, mode: int) -> bool:
    """__ptrace_may_access: the same thread group; or the caller's (fs or real) uid and gid
    are each of the target's, or it has CAP_SYS_PTRACE in the target's user namespace; and a
    target that is not dumpable needs that capability too."""
    if target.proc is t.proc:
        return True
    uid, gid = (t.fsuid, t.fsgid) if mode & PTRACE_MODE_FSCREDS else (t.uid, t.gid)
    same = (uid == target.uid == target.euid == target.suid) and (gid == target.gid == target.egid == target.sgid)
    capable = nsm.ns_capable(t, target.user_ns, nsm.CAP_SYS_PTRACE)
    if not same and not capable:
        return False
    if getattr(target, "dumpable", 1) != 1 and not capable:
        return False
    return True


_IOVEC = struct.Struct("<QQ")


def read_iovecs(t, addr: int, count: int) -> list:
    """import_iovec: EINVAL past UIO_MAXIOV or for a total past SSIZE_MAX, EFAULT."""
    if count > UIO_MAXIOV:
        raise Errno(E.EINVAL)
    if not count:
        return []
    raw = t.mm.read(addr, 16 * count)
    iovs = [_IOVEC.unpack_from(raw, 16 * i) for i in range(count)]
    total = 0
    for _, n in iovs:
        if n > SSIZE_MAX:
            raise Errno(E.EINVAL)
        total += n
        if total > SSIZE_MAX:
            raise Errno(E.EINVAL)
    return iovs


def _task_of_vpid(t, pid: int):
    task = nsm.find_task(t, pid) if pid > 0 else None
    if task is None:
        raise Errno(E.ESRCH)
    return task


def _vm_rw(t, pid, lvec, liovcnt, rvec, riovcnt, flags, write: bool) -> int:
    if flags:
        raise Errno(E.EINVAL)
    local = read_iovecs(t, lvec, liovcnt)
    if not sum(n for _, n in local):
        return 0
    remote = read_iovecs(t, rvec, riovcnt)
    if not any(n for _, n in remote):
        return 0
    target = _task_of_vpid(t, s32(pid))
    if target.exit_status is not None or target.proc.zombie:
        raise Errno(E.ESRCH)
    if target.mm is not t.mm and not may_access(t, target, PTRACE_MODE_ATTACH | PTRACE_MODE_REALCREDS):
        raise Errno(E.EPERM)
    # copied a page at a time, so that a fault part-way reports what was copied before it
    li, loff, done, err = 0, 0, 0, None
    for base, length in remote:
        pos, end = base, base + length
        while pos < end and li < len(local):
            lbase, llen = local[li]
            if loff == llen:
                li, loff = li + 1, 0
                continue
            n = min(end - pos, PAGE - (pos & (PAGE - 1)), llen - loff)
            try:
                if write:
                    target.mm.write(pos, t.mm.read(lbase + loff, n))
                else:
                    t.mm.write(lbase + loff, target.mm.read(pos, n))
            except Errno as e:
                err = e
                break
            pos += n
            loff += n
            done += n
        if err is not None or li >= len(local):
            break
    if done:
        return done
    if err is not None:
        raise err
    return 0


@syscall("process_vm_readv", note="between the sandbox's processes, with ptrace's attach check (EPERM); a fault "
         "part-way returns what was copied, as Linux")
def process_vm_readv(t, pid, lvec, liovcnt, rvec, riovcnt, flags):
    return _vm_rw(t, pid, lvec, liovcnt, rvec, riovcnt, flags, write=False)


@syscall("process_vm_writev", note="as process_vm_readv, into the other process's memory")
def process_vm_writev(t, pid, lvec, liovcnt, rvec, riovcnt, flags):
    return _vm_rw(t, pid, lvec, liovcnt, rvec, riovcnt, flags, write=True)


# --- pidfds -------------------------------------------------------------------------------------------
def pidfd_task(t, pidfd: int):
    """The process a pidfd refers to (its first thread), ESRCH once it is reaped."""
    from syscalls.pidfd import process_of_fd
    proc = process_of_fd(t, pidfd)
    if t.kernel.procs.get(proc.pid) is not proc or not proc.tasks:
        raise Errno(E.ESRCH)
    return proc, proc.tasks[0]


@syscall("process_madvise", status=PARTIAL, note="MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT and MADV_COLLAPSE, checked "
         "as madvise (alignment, ENOMEM for holes) and done as the hints they are here (no page is reclaimed); "
         "ptrace's read check, CAP_SYS_NICE for another process")
def process_madvise(t, pidfd, vec, vlen, advice, flags):
    if flags:
        raise Errno(E.EINVAL)
    iovs = read_iovecs(t, vec, vlen & 0xFFFFFFFFFFFFFFFF)
    proc, target = pidfd_task(t, s32(pidfd))
    if proc.zombie or target.exit_status is not None:
        raise Errno(E.ESRCH)
    if target.mm is not t.mm and not may_access(t, target, PTRACE_MODE_READ | PTRACE_MODE_FSCREDS):
        raise Errno(E.EPERM)
    advice = s32(advice)
    if advice not in (MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT, MADV_COLLAPSE):
        raise Errno(E.EINVAL)
    if target.mm is not t.mm and not nsm.ns_capable(t, nsm.initial(t.kernel)[1], CAP_SYS_NICE):
        raise Errno(E.EPERM)
    total = done = 0
    for base, length in iovs:
        total += length
    for base, length in iovs:
        try:
            _hint(target.mm, base, length)
        except Errno:
            if done:
                return done
            raise
        done += length
    return total


def _hint(mm, addr: int, length: int) -> None:
    """do_madvise's checks for a hint that moves nothing here."""
    if addr & (PAGE - 1):
        raise Errno(E.EINVAL)
    end = addr + ((length + PAGE - 1) & ~(PAGE - 1))
    if end < addr:
        raise Errno(E.EINVAL)
    if end > addr and not mm.covered(addr, end):
        raise Errno(E.ENOMEM)


@syscall("process_mrelease", note="a process that is ending gives its memory back at once here, so there is never "
         "anything left: 0 for a dead one, EINVAL for a live one, as Linux")
def process_mrelease(t, pidfd, flags):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    proc, target = pidfd_task(t, s32(pidfd))
    if proc.zombie or proc.exiting:
        return 0
    raise Errno(E.EINVAL)


@syscall("pidfd_getfd", note="a copy of another process's descriptor (close-on-exec), with ptrace's attach check "
         "(EPERM); ESRCH for a process that is ending")
def pidfd_getfd(t, pidfd, targetfd, flags):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    from syscalls.pidfd import process_of_fd
    proc = process_of_fd(t, s32(pidfd))
    if t.kernel.procs.get(proc.pid) is not proc or not proc.tasks:
        raise Errno(E.ESRCH)
    target = proc.tasks[0]
    if not may_access(t, target, PTRACE_MODE_ATTACH | PTRACE_MODE_REALCREDS):
        raise Errno(E.EPERM)
    if proc.zombie or proc.exiting or target.exit_status is not None:
        raise Errno(E.ESRCH)
    fd = s32(targetfd)
    f = target.fds.files.get(fd) if fd >= 0 else None
    if f is None:
        raise Errno(E.EBADF)
    return t.fds.install(f, cloexec=bool(O_CLOEXEC))
