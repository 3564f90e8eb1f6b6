"""Changing who a thread is: setuid(2), setgid(2), setreuid(2), setregid(2),
setresuid(2), setresgid(2), getresuid(2), getresgid(2), setfsuid(2), setfsgid(2),
setgroups(2).

Credentials are per thread, as the raw syscalls are on Linux (libc makes every
thread call them in turn). They are the sandbox's own: the program starts as
uid 0 of its sandbox, with every capability, and the host never sees them.
Privilege is Linux's CAP_SETUID/CAP_SETGID; the capability sets follow the
uid changes as Linux's fix-ups move them (sentry/caps.py), and capget(2)/
capset(2) read and shrink them. The effective ids are what kill, SO_PEERCRED
and /proc see; file permissions (sentry/vfs/perm.py) are checked against the
fs ids (which follow the effective ones but for setfsuid/setfsgid), the
supplementary groups and the file capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER,
CAP_CHOWN, ...). access(2) checks the real ids instead."""
import errno as E
import struct

from sentry import caps
from sentry.caps import CAP_SETGID, CAP_SETUID, Caps
from sentry.errors import Errno
from syscalls.registry import PARTIAL, syscall

NOBODY = 0xFFFFFFFF  # (uid_t)-1: "unchanged" where the call allows it, else invalid
NGROUPS_MAX = 65536
_NOTE = ("the sandbox's own ids, per thread, with Linux's rules (CAP_SETUID/CAP_SETGID; the capabilities "
         "follow the uids as Linux's fix-ups move them); file permissions are checked against the fs ids")


def _privileged(t, kind: str) -> bool:
    return caps.has(t, CAP_SETUID if kind == "uid" else CAP_SETGID)


def _ids(t, kind: str) -> list:
    real = getattr(t, kind)
    eff = getattr(t, "e" + kind)
    return [real, eff, getattr(t, "s" + kind, eff), getattr(t, "fs" + kind, eff)]


def _store(t, kind: str, ids, fs_only: bool = False) -> None:
    """Set the four ids; for uids, the capabilities follow (as for setfsuid when fs_only,
    else as for setuid, setreuid and setresuid)."""
    before = _ids(t, kind)
    real, eff, saved, fs = ids
    setattr(t, kind, real)
    setattr(t, "e" + kind, eff)
    setattr(t, "s" + kind, saved)
    setattr(t, "fs" + kind, fs)
    if kind == "uid":
        if fs_only:
            caps.after_setfsuid(t, before[3])
        else:
            caps.after_setuid(t, tuple(before[:3]))


def _set_one(t, kind: str, value: int) -> int:
    """setuid/setgid: all four ids when privileged, else the effective one to the real or saved."""
    value &= 0xFFFFFFFF
    if value == NOBODY:
        raise Errno(E.EINVAL)
    ids = _ids(t, kind)
    if _privileged(t, kind):
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
        if not _privileged(t, kind) and real not in (old[0], old[1]):
            raise Errno(E.EPERM)
        new[0] = real
    if eff != NOBODY:
        if not _privileged(t, kind) and eff not in (old[0], old[1], old[2]):
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
    if not _privileged(t, kind) and any(v != NOBODY and v not in old[:3] for v in wanted):
        raise Errno(E.EPERM)
    new = [v if v != NOBODY else o for v, o in zip(wanted, old[:3])]
    _store(t, kind, new + [new[1]])
    return 0


def _set_fs(t, kind: str, value: int) -> int:
    """setfsuid/setfsgid: the old fs id, always; the new one taken only if allowed."""
    value &= 0xFFFFFFFF
    ids = _ids(t, kind)
    old = ids[3]
    if value != NOBODY and (_privileged(t, kind) or value in ids):
        ids[3] = value
        _store(t, kind, ids, fs_only=True)
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
    if not _privileged(t, "gid"):
        raise Errno(E.EPERM)
    raw = t.mm.read(lst, 4 * size) if size else b""
    t.groups = tuple(sorted(set(struct.unpack(f"<{size}I", raw))))
    return 0


# --- capabilities ------------------------------------------------------------------------------
VERSION_1, VERSION_2, VERSION_3 = 0x19980330, 0x20071026, 0x20080522


def _cap_words(t, header) -> int:
    """cap_validate_magic: how many 32-bit words of each set the header's version
    carries; an unknown version is answered with ours, and EINVAL."""
    version = t.mm.read_u32(header)
    if version == VERSION_1:
        return 1
    if version in (VERSION_2, VERSION_3):
        return 2
    t.mm.write_u32(header, VERSION_3)
    raise Errno(E.EINVAL)


@syscall("capget", note="the thread's effective, permitted and inheritable sets (v1, v2, v3 headers)")
def capget(t, header, data):
    try:
        words = _cap_words(t, header)
    except Errno as e:
        if e.errno == E.EINVAL and not data:
            return 0  # a probe for the version
        raise
    if not data:
        return 0
    pid = struct.unpack("<i", t.mm.read(header + 4, 4))[0]
    if pid < 0:
        raise Errno(E.EINVAL)
    target = t if pid == 0 else t.kernel.tasks.get(pid)
    if target is None:
        raise Errno(E.ESRCH)
    sets = target.caps
    out = b"".join(struct.pack("<III", sets.effective >> (32 * i) & 0xFFFFFFFF,
                               sets.permitted >> (32 * i) & 0xFFFFFFFF, sets.inheritable >> (32 * i) & 0xFFFFFFFF)
                   for i in range(words))
    t.mm.write(data, out)
    return 0


@syscall("capset", status=PARTIAL, note="shrinks the thread's own sets as Linux allows (EPERM otherwise); the "
         "file capabilities, CAP_SETUID and CAP_SETGID are honoured, other privileges of the sandbox's root "
         "still follow its effective uid 0")
def capset(t, header, data):
    words = _cap_words(t, header)
    pid = struct.unpack("<i", t.mm.read(header + 4, 4))[0]
    if pid not in (0, t.tid):
        raise Errno(E.EPERM)
    raw = t.mm.read(data, 12 * words)
    eff = perm = inh = 0
    for i in range(words):
        e, p, n = struct.unpack_from("<III", raw, 12 * i)
        eff, perm, inh = eff | e << (32 * i), perm | p << (32 * i), inh | n << (32 * i)
    new = Caps(eff, perm, inh)
    try:
        caps.check_capset(t, new)
    except PermissionError:
        raise Errno(E.EPERM) from None
    if inh & ~(t.caps.inheritable | bounding(t)):
        raise Errno(E.EPERM)  # no new inheritable capability outside the bounding set
    t.caps = new
    t.cap_ambient = ambient(t)  # what is no longer permitted and inheritable leaves it
    return 0


# --- the bounding and ambient sets, securebits: prctl(2) -------------------------------------------
PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_GET_SECUREBITS, PR_SET_SECUREBITS = 23, 24, 27, 28
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER, PR_CAP_AMBIENT_CLEAR_ALL = 1, 2, 3, 4
CAP_SETPCAP = 8
SECBIT_KEEP_CAPS, SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 4, 1 << 6
SECURE_ALL_BITS = 0x55 | 0x500  # noroot, no_setuid_fixup, keep_caps, no_cap_ambient_raise, the exec ones
SECURE_ALL_LOCKS = SECURE_ALL_BITS << 1
CAP_OPTIONS = (PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_GET_SECUREBITS, PR_SET_SECUREBITS, PR_GET_KEEPCAPS,
               PR_SET_KEEPCAPS, PR_CAP_AMBIENT)


def bounding(t) -> int:
    return getattr(t, "cap_bset", caps.CAP_FULL)


def ambient(t) -> int:
    """The ambient set: never more than what is both permitted and inheritable (Linux drops
    the rest wherever those shrink)."""
    c = t.caps
    return getattr(t, "cap_ambient", 0) & c.permitted & c.inheritable


def _setpcap(t) -> bool:
    from sentry.namespaces import ns_capable
    return ns_capable(t, t.user_ns, CAP_SETPCAP)


def cap_prctl(t, option: int, arg2: int, arg3: int, arg4: int, arg5: int) -> int:
    """Linux's cap_task_prctl: the bounding set, securebits, keepcaps and the ambient set."""
    if option == PR_CAPBSET_READ:
        if arg2 > caps.CAP_LAST_CAP:
            raise Errno(E.EINVAL)
        return bounding(t) >> arg2 & 1
    if option == PR_CAPBSET_DROP:
        if not _setpcap(t):
            raise Errno(E.EPERM)
        if arg2 > caps.CAP_LAST_CAP:
            raise Errno(E.EINVAL)
        t.cap_bset = bounding(t) & ~(1 << arg2)
        return 0
    bits = getattr(t, "securebits", 0)
    if option == PR_GET_SECUREBITS:
        return bits
    if option == PR_SET_SECUREBITS:
        locked = bits & SECURE_ALL_LOCKS
        if (locked >> 1) & (bits ^ arg2) or locked & ~arg2 or arg2 & ~(SECURE_ALL_LOCKS | SECURE_ALL_BITS) \
                or not _setpcap(t):
            raise Errno(E.EPERM)
        t.securebits = arg2
        return 0
    if option == PR_GET_KEEPCAPS:
        return int(bool(bits & SECBIT_KEEP_CAPS))
    if option == PR_SET_KEEPCAPS:
        if arg2 > 1:
            raise Errno(E.EINVAL)
        if bits & SECBIT_KEEP_CAPS << 1:
            raise Errno(E.EPERM)  # locked
        t.securebits = bits & ~SECBIT_KEEP_CAPS | (SECBIT_KEEP_CAPS if arg2 else 0)
        return 0
    # PR_CAP_AMBIENT
    if arg2 == PR_CAP_AMBIENT_CLEAR_ALL:
        if arg3 or arg4 or arg5:
            raise Errno(E.EINVAL)
        t.cap_ambient = 0
        return 0
    if arg3 > caps.CAP_LAST_CAP or arg4 or arg5:
        raise Errno(E.EINVAL)
    if arg2 == PR_CAP_AMBIENT_IS_SET:
        return ambient(t) >> arg3 & 1
    if arg2 == PR_CAP_AMBIENT_RAISE:
        c = t.caps
        if not (c.permitted & c.inheritable) >> arg3 & 1 or bits & SECBIT_NO_CAP_AMBIENT_RAISE:
            raise Errno(E.EPERM)
        t.cap_ambient = ambient(t) | 1 << arg3
        return 0
    if arg2 == PR_CAP_AMBIENT_LOWER:
        t.cap_ambient = ambient(t) & ~(1 << arg3)
        return 0
    raise Errno(E.EINVAL)
