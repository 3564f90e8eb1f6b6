"""Changing who a thread is: setuid(2), setgid(2), setreuid(2), setregid(2),
setresuid(2), setresgid(2), getresuid(2), getresgid(2), setfsuid(2), setfsgid(2),
setgroups(2).

Credentials are per thread, as the raw syscalls are on Linux (libc makes every
thread call them in turn). They are the sandbox's own: the program starts as
uid 0 of its sandbox and the host never sees them. Privilege is Linux's
CAP_SETUID/CAP_SETGID, which a thread holds while its effective uid is 0. The
effective ids are what kill, SO_PEERCRED and /proc see; file permissions
(sentry/vfs/perm.py) are checked against the fs ids (which follow the
effective ones but for setfsuid/setfsgid) and the supplementary groups, the
file capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN, ...) held while
the fsuid is 0 — where Linux's setuid and setfsuid fix-ups leave them when no
capset is ever called. access(2) checks the real ids instead."""
import errno as E
import struct

from sentry.errors import Errno
from syscalls.registry import syscall

NOBODY = 0xFFFFFFFF  # (uid_t)-1: "unchanged" where the call allows it, else invalid
NGROUPS_MAX = 65536
_NOTE = ("the sandbox's own ids, per thread, with Linux's rules (privileged while the effective uid is 0); "
         "file permissions are checked against the fs ids")


def _privileged(t) -> bool:
    return t.euid == 0


def _ids(t, kind: str) -> list:
    real = getattr(t, kind)
    eff = getattr(t, "e" + kind)
    return [real, eff, getattr(t, "s" + kind, eff), getattr(t, "fs" + kind, eff)]


def _store(t, kind: str, ids) -> None:
    real, eff, saved, fs = ids
    setattr(t, kind, real)
    setattr(t, "e" + kind, eff)
    setattr(t, "s" + kind, saved)
    setattr(t, "fs" + kind, fs)


def _set_one(t, kind: str, value: int) -> int:
    """setuid/setgid: all four ids when privileged, else the effective one to the real or saved."""
    value &= 0xFFFFFFFF
    if value == NOBODY:
        raise Errno(E.EINVAL)
    ids = _ids(t, kind)
    if _privileged(t):
        ids = [value] * 4
    elif value in (ids[0], ids[2]):
        ids[1] = ids[3] = value
    else:
        raise Errno(E.EPERM)
    _store(t, kind, ids)
    return 0


def _set_re(t, kind: str, real: int, eff: int) -> int:
    real, eff = real & 0xFFFFFFFF, eff & 0xFFFFFFFF
    old = _ids(t, kind)
    new = list(old)
    if real != NOBODY:
        if not _privileged(t) and real not in (old[0], old[1]):
            raise Errno(E.EPERM)
        new[0] = real
    if eff != NOBODY:
        if not _privileged(t) and eff not in (old[0], old[1], old[2]):
            raise Errno(E.EPERM)
        new[1] = eff
    if real != NOBODY or eff != NOBODY and eff != old[0]:
        new[2] = new[1]  # the saved id follows, as Linux's rule
    new[3] = new[1]
    _store(t, kind, new)
    return 0


def _set_res(t, kind: str, real: int, eff: int, saved: int) -> int:
    wanted = [real & 0xFFFFFFFF, eff & 0xFFFFFFFF, saved & 0xFFFFFFFF]
    old = _ids(t, kind)
    if not _privileged(t) and any(v != NOBODY and v not in old[:3] for v in wanted):
        raise Errno(E.EPERM)
    new = [v if v != NOBODY else o for v, o in zip(wanted, old[:3])]
    _store(t, kind, new + [new[1]])
    return 0


def _set_fs(t, kind: str, value: int) -> int:
    """setfsuid/setfsgid: the old fs id, always; the new one taken only if allowed."""
    value &= 0xFFFFFFFF
    ids = _ids(t, kind)
    old = ids[3]
    if value != NOBODY and (_privileged(t) or value in ids):
        ids[3] = value
        _store(t, kind, ids)
    return old


@syscall("setuid", note=_NOTE)
def setuid(t, uid):
    return _set_one(t, "uid", uid)


@syscall("setgid", note=_NOTE)
def setgid(t, gid):
    return _set_one(t, "gid", gid)


@syscall("setreuid", note=_NOTE)
def setreuid(t, ruid, euid):
    return _set_re(t, "uid", ruid, euid)


@syscall("setregid", note=_NOTE)
def setregid(t, rgid, egid):
    return _set_re(t, "gid", rgid, egid)


@syscall("setresuid", note=_NOTE)
def setresuid(t, ruid, euid, suid):
    return _set_res(t, "uid", ruid, euid, suid)


@syscall("setresgid", note=_NOTE)
def setresgid(t, rgid, egid, sgid):
    return _set_res(t, "gid", rgid, egid, sgid)


def _get_res(t, kind: str, addrs) -> int:
    for addr, value in zip(addrs, _ids(t, kind)[:3]):
        t.mm.write_u32(addr, value)
    return 0


@syscall("getresuid")
def getresuid(t, ruid, euid, suid):
    return _get_res(t, "uid", (ruid, euid, suid))


@syscall("getresgid")
def getresgid(t, rgid, egid, sgid):
    return _get_res(t, "gid", (rgid, egid, sgid))


@syscall("setfsuid", note=_NOTE)
def setfsuid(t, fsuid):
    return _set_fs(t, "uid", fsuid)


@syscall("setfsgid", note=_NOTE)
def setfsgid(t, fsgid):
    return _set_fs(t, "gid", fsgid)


@syscall("setgroups", note="the thread's supplementary groups (file permissions check them), privileged only")
def setgroups(t, size, lst):
    size = size & 0xFFFFFFFF
    if size > NGROUPS_MAX:
        raise Errno(E.EINVAL)
    if not _privileged(t):
        raise Errno(E.EPERM)
    raw = t.mm.read(lst, 4 * size) if size else b""
    t.groups = tuple(sorted(set(struct.unpack(f"<{size}I", raw))))
    return 0
