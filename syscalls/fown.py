"""fcntl(2)'s signal-driven I/O commands: F_SETOWN, F_GETOWN, F_SETOWN_EX,
F_GETOWN_EX, F_SETSIG, F_GETSIG, and O_ASYNC through F_SETFL, with Linux's
argument checks (fs/fcntl.c); the work is sentry/fasync.py's."""
import errno as E
import struct

from sentry import fasync
from sentry.errors import Errno
from sentry.signals import NSIG
from syscalls.abi import s32

F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG, F_SETOWN_EX, F_GETOWN_EX = 8, 9, 10, 11, 15, 16
OWN_CMDS = (F_SETOWN, F_GETOWN, F_SETSIG, F_GETSIG, F_SETOWN_EX, F_GETOWN_EX)
F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP = 0, 1, 2
F_OWNER_EX = struct.Struct("<ii")  # struct f_owner_ex: type, pid
_TYPE_OF = {F_OWNER_TID: fasync.PIDTYPE_PID, F_OWNER_PID: fasync.PIDTYPE_TGID, F_OWNER_PGRP: fasync.PIDTYPE_PGID}
_OWNER_OF = {v: k for k, v in _TYPE_OF.items()}


def _target(t, ptype: int, pid: int):
    """What a pid names for an owner type (find_vpid): ESRCH when nothing has it."""
    k = t.kernel
    if ptype == fasync.PIDTYPE_PGID:
        if not any(p.pgid == pid for p in k.procs.values()):
            raise Errno(E.ESRCH)
        return pid
    if ptype == fasync.PIDTYPE_TGID:
        proc = k.procs.get(pid)
        if proc is None:
            task = k.tasks.get(pid)  # a thread's id names its process here
            if task is None:
                raise Errno(E.ESRCH)
            proc = task.proc
        return proc
    task = k.tasks.get(pid)
    if task is None:
        raise Errno(E.ESRCH)
    return task


def own(t, f, fd: int, cmd: int, arg: int) -> int:
    if cmd == F_GETOWN:
        o = getattr(f, "fowner", None)
        if o is None or not fasync.alive(t.kernel, o):
            return 0
        pid = fasync.owner_id(t.kernel, o)
        return -pid if o.type == fasync.PIDTYPE_PGID else pid
    if cmd == F_SETOWN:
        who = s32(arg)
        ptype = fasync.PIDTYPE_TGID
        if who < 0:
            if who == -(1 << 31):
                raise Errno(E.EINVAL)
            ptype, who = fasync.PIDTYPE_PGID, -who
        fasync.set_owner(t, f, ptype, _target(t, ptype, who) if who else None)
        return 0
    if cmd == F_GETOWN_EX:
        o = getattr(f, "fowner", None)
        kind, pid = (F_OWNER_TID, 0) if o is None else (_OWNER_OF[o.type], fasync.owner_id(t.kernel, o))
        t.mm.write(arg, F_OWNER_EX.pack(kind, pid))
        return 0
    if cmd == F_SETOWN_EX:
        kind, pid = F_OWNER_EX.unpack(t.mm.read(arg, F_OWNER_EX.size))
        if kind not in _TYPE_OF:
            raise Errno(E.EINVAL)
        ptype = _TYPE_OF[kind]
        fasync.set_owner(t, f, ptype, _target(t, ptype, pid) if pid else None)
        return 0
    if cmd == F_GETSIG:
        o = getattr(f, "fowner", None)
        return o.signum if o is not None else 0
    sig = arg & 0xFFFFFFFF  # F_SETSIG: 0 is plain SIGIO again
    if sig > NSIG:
        raise Errno(E.EINVAL)
    fasync.owner_of(f).signum = sig
    return 0
