"""unshare(2) and setns(2).

The sandbox is one set of namespaces (its own pids, mounts, network, UTS and IPC),
and nested ones are not offered: new namespaces answer EPERM, as clone(2) does
(syscalls/clone.py), as Linux answers a process without CAP_SYS_ADMIN. What unshare
does without a namespace is done: a private descriptor table (CLONE_FILES) and
working directory and umask (CLONE_FS)."""
import errno as E

from sentry.errors import Errno
from sentry.task import FsContext
from syscalls.abi import s32
from syscalls.clone import (CLONE_FILES, CLONE_FS, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
                            CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD,
                            CLONE_VM)
from syscalls.pidfd import PidFile
from syscalls.registry import PARTIAL, syscall

CLONE_NEWTIME = 0x80
NEW_NAMESPACES = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP
                  | CLONE_NEWTIME | CLONE_NEWUSER)
UNSHARE_FLAGS = (CLONE_THREAD | CLONE_FS | CLONE_SIGHAND | CLONE_VM | CLONE_FILES | CLONE_SYSVSEM
                 | NEW_NAMESPACES)


def _others(t):
    return [o for o in t.kernel.tasks.values() if o is not t and o.exit_status is None]


@syscall("unshare", status=PARTIAL,
         note="CLONE_FILES and CLONE_FS give the caller its own descriptor table and working directory; "
              "CLONE_THREAD, CLONE_SIGHAND, CLONE_VM and CLONE_SYSVSEM succeed where there is nothing to "
              "unshare (EINVAL for a threaded caller, as Linux); new namespaces EPERM (not offered)")
def unshare(t, flags):
    flags &= 0xFFFFFFFF
    # the flags that imply others, in Linux's order
    if flags & CLONE_NEWUSER:
        flags |= CLONE_THREAD | CLONE_FS
    if flags & CLONE_VM:
        flags |= CLONE_SIGHAND
    if flags & CLONE_SIGHAND:
        flags |= CLONE_THREAD
    if flags & CLONE_NEWNS:
        flags |= CLONE_FS
    if flags & ~UNSHARE_FLAGS:
        raise Errno(E.EINVAL)
    others = _others(t)
    if flags & (CLONE_THREAD | CLONE_SIGHAND | CLONE_VM) and any(o.proc is t.proc for o in others):
        raise Errno(E.EINVAL)  # a thread group cannot be split
    if flags & CLONE_VM and t.mm.users > 1:
        raise Errno(E.EINVAL)  # another process runs in this memory (vfork, CLONE_VM)
    if flags & NEW_NAMESPACES:
        raise Errno(E.EPERM)
    if flags & CLONE_FS and any(o.fs is t.fs for o in others):
        t.fs = FsContext(t.fs.cwd, t.fs.umask)
    if flags & CLONE_FILES and t.fds.users > 1:
        shared, t.fds = t.fds, t.fds.copy()
        shared.release()
    return 0


SETNS_TYPES = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWTIME | CLONE_NEWUSER
               | CLONE_NEWPID | CLONE_NEWCGROUP)


@syscall("setns", status=PARTIAL,
         note="no namespace file exists in the sandbox (EINVAL for any other file, as Linux); a pidfd's "
              "namespaces are the caller's own and joining them is not offered (EPERM)")
def setns(t, fd, nstype):
    f = t.fds.get(s32(fd))  # EBADF
    nstype = s32(nstype)
    if not isinstance(f, PidFile):
        raise Errno(E.EINVAL)
    if not nstype or nstype & ~SETNS_TYPES:
        raise Errno(E.EINVAL)
    raise Errno(E.EPERM)
