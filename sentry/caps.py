"""Capabilities: a thread's effective, permitted and inheritable sets, and how
Linux moves them when the ids change (commoncap.c), with no file capabilities;
the bounding and ambient sets and the securebits are prctl's (syscalls/creds.py), and
exec and the uid changes here honour them (of the securebits: KEEP_CAPS).

The sandbox's first process is its root with every capability. A set-user-ID
call that leaves no uid 0 drops them all; the effective uid leaving 0 empties
the effective set, coming back to 0 refills it from the permitted one; the
fsuid leaving 0 drops the file capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE, ...)
from the effective set, coming back raises them again; execve gives root
(real or effective uid 0) the full permitted set and everyone else none.
capset(2) may only shrink them. A thread's sets are one immutable `Caps`
(Task.caps), shared by reference with a clone until either changes.

What reads them: the file permission checks (sentry/vfs/perm.py) and the
set-user-ID and set-group-ID calls (syscalls/creds.py). Other privileges of
the sandbox's root are still its effective uid 0 there."""
from typing import NamedTuple

CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID = 0, 1, 2, 3, 4
CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 6, 7, 8
CAP_LINUX_IMMUTABLE, CAP_MKNOD, CAP_MAC_OVERRIDE = 9, 27, 32
CAP_LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE (Linux 5.9+)
SECBIT_KEEP_CAPS = 1 << 4  # prctl(PR_SET_KEEPCAPS), syscalls/creds.py
CAP_FULL = (1 << (CAP_LAST_CAP + 1)) - 1
# what follows the fsuid (cap_drop_fs_set / cap_raise_fs_set)
FS_MASK = sum(1 << c for c in (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID,
                               CAP_LINUX_IMMUTABLE, CAP_MKNOD, CAP_MAC_OVERRIDE))


class Caps(NamedTuple):
    effective: int
    permitted: int
    inheritable: int


ROOT = Caps(CAP_FULL, CAP_FULL, 0)
NONE = Caps(0, 0, 0)


def has(task, cap: int) -> bool:
    """Does the thread hold cap in its effective set, over the sandbox (its initial user
    namespace: capabilities gained in a user namespace of its own count only there,
    sentry/namespaces.py ns_capable)?"""
    ns = getattr(task, "user_ns", None)
    if task.caps.effective >> cap & 1 and (ns is None or ns.parent is None):
        used_privilege(task)
        return True
    return False


def used_privilege(task) -> None:
    """A capability let the task do something: Linux's PF_SUPERPRIV, which process
    accounting reports as ASU (sentry/acct.py)."""
    proc = getattr(task, "proc", None)
    if proc is not None:
        proc.used_privilege = True


def after_setuid(task, old_ids) -> None:
    """cap_emulate_setxuid: after setuid, setreuid or setresuid, old_ids being the
    (real, effective, saved) uids before."""
    eff, perm, inh = task.caps
    new_ids = (task.uid, task.euid, task.suid)
    if 0 in old_ids and 0 not in new_ids:
        if not getattr(task, "securebits", 0) & SECBIT_KEEP_CAPS:
            eff = perm = 0
        task.cap_ambient = 0  # as Linux: a setuid away from root then exec drops them
    if old_ids[1] == 0 and task.euid != 0:
        eff = 0
    if old_ids[1] != 0 and task.euid == 0:
        eff = perm
    task.caps = Caps(eff, perm, inh)


def after_setfsuid(task, old_fsuid: int) -> None:
    """cap_task_fix_setuid(LSM_SETID_FS): the file capabilities follow the fsuid."""
    eff, perm, inh = task.caps
    if old_fsuid == 0 and task.fsuid != 0:
        eff &= ~FS_MASK
    elif old_fsuid != 0 and task.fsuid == 0:
        eff |= perm & FS_MASK
    task.caps = Caps(eff, perm, inh)


def after_exec(task) -> None:
    """cap_bprm_creds_from_file without file capabilities: root (real or effective uid 0)
    gets the bounding set and its inheritable ones, effective only if its effective uid is 0,
    and loses the ambient set; anyone else keeps the ambient set, as permitted and effective.
    SECBIT_KEEP_CAPS does not survive."""
    _, old_perm, inh = task.caps
    bset = getattr(task, "cap_bset", CAP_FULL)
    amb = getattr(task, "cap_ambient", 0) & old_perm & inh
    if 0 in (task.uid, task.euid):
        perm, amb = bset | inh, 0
        eff = perm if task.euid == 0 else 0
    else:
        perm = eff = amb
    task.caps = Caps(eff, perm, inh)
    task.cap_ambient = amb
    task.securebits = getattr(task, "securebits", 0) & ~SECBIT_KEEP_CAPS


def for_access(task) -> Caps:
    """access_override_creds: the sets access(2) checks with (the real uid's)."""
    eff, perm, inh = task.caps
    return Caps(perm if task.uid == 0 else 0, perm, inh)


def check_capset(task, new: Caps) -> None:
    """cap_capset's rules (PermissionError): no new inheritable capability beyond the
    permitted ones without CAP_SETPCAP, none beyond the bounding set (all), no new
    permitted one, effective within the new permitted."""
    old = task.caps
    if not has(task, CAP_SETPCAP) and new.inheritable & ~(old.inheritable | old.permitted):
        raise PermissionError
    if new.inheritable & ~(old.inheritable | CAP_FULL):
        raise PermissionError
    if new.permitted & ~old.permitted or new.effective & ~new.permitted:
        raise PermissionError
