"""Key management: add_key(2), request_key(2) and keyctl(2) (security/keys/keyctl.c),
over the sandbox's own keys (sentry/keys.py). Arguments are checked in Linux's order;
the key work is the registry's."""
import errno as E
import time

from sentry import caps, keys
from sentry.errors import Errno
from sentry.keys import LINK, SEARCH, SETATTR, VIEW, WRITE
from syscalls.abi import AT_FDCWD, read_iovec, s32
from syscalls.registry import PARTIAL, syscall

CAP_SETUID, CAP_SYS_ADMIN = 7, 21
MAX_PAYLOAD = 1024 * 1024 - 1
PAGE = 4096

(GET_KEYRING_ID, JOIN_SESSION_KEYRING, UPDATE, REVOKE, CHOWN, SETPERM, DESCRIBE, CLEAR, LINK_, UNLINK,
 SEARCH_, READ_, INSTANTIATE, NEGATE, SET_REQKEY_KEYRING, SET_TIMEOUT, ASSUME_AUTHORITY, GET_SECURITY,
 SESSION_TO_PARENT, REJECT, INSTANTIATE_IOV, INVALIDATE, GET_PERSISTENT, DH_COMPUTE, PKEY_QUERY,
 PKEY_ENCRYPT, PKEY_DECRYPT, PKEY_SIGN, PKEY_VERIFY, RESTRICT_KEYRING, MOVE, CAPABILITIES,
 WATCH_KEY) = range(33)
MOVE_EXCL = 1
# KEYCTL_CAPABILITIES: what this kernel has (no DH, public keys, big keys or notifications)
CAPS0 = 0x01 | 0x02 | 0x20 | 0x40 | 0x80   # CAPABILITIES, PERSISTENT_KEYRINGS, INVALIDATE, RESTRICT, MOVE
CAPS1 = 0x01 | 0x02                        # NS_KEYRING_NAME, NS_KEY_TAG
_RESTART_ERRNOS = (512, 513, 514, 516)     # ERESTARTSYS .. ERESTART_RESTARTBLOCK


def _registry(t) -> keys.KeyRegistry:
    reg = t.kernel.keys
    reg.collect()
    return reg


def _type(t, addr) -> str:
    """key_get_type_from_user: up to 31 bytes, EINVAL empty or longer, EPERM for "."."""
    try:
        name = t.mm.read_cstring(addr, keys.MAX_TYPE)
    except Errno as e:
        raise Errno(E.EINVAL if e.errno == E.ENAMETOOLONG else e.errno) from None
    if not name:
        raise Errno(E.EINVAL)
    if name[:1] == b".":
        raise Errno(E.EPERM)
    return name.decode("latin-1")


def _string(t, addr, limit=keys.MAX_DESC) -> bytes:
    """strndup_user: EINVAL past limit - 1 bytes."""
    try:
        return t.mm.read_cstring(addr, limit)
    except Errno as e:
        raise Errno(E.EINVAL if e.errno == E.ENAMETOOLONG else e.errno) from None


def _preparse(type_: str, payload) -> None:
    if type_ == "keyring":
        if payload:
            raise Errno(E.EINVAL)
    elif payload is None or not 0 < len(payload) <= keys.USER_MAX_DATA:
        raise Errno(E.EINVAL)


def _vet_description(type_: str, description: bytes) -> None:
    """logon keys are named "service:name"."""
    if type_ == "logon":
        colon = description.find(b":")
        if colon <= 0:
            raise Errno(E.EINVAL)


def _helper_exists(t) -> bool:
    """Is there a /sbin/request-key in the sandbox's view (what Linux would call up)?"""
    try:
        t.vfs.lookup(t, AT_FDCWD, b"/sbin/request-key")
        return True
    except Errno:
        return False


_ADD_NOTE = ("the sandbox's own keys of types user, logon and keyring (others ENODEV); quotas from "
             "/proc/sys/kernel/keys")


@syscall("add_key", status=PARTIAL, note=_ADD_NOTE)
def add_key(t, type_addr, desc_addr, payload_addr, plen, ringid):
    if plen > MAX_PAYLOAD:
        raise Errno(E.EINVAL)
    type_ = _type(t, type_addr)
    description = None
    if desc_addr:
        description = _string(t, desc_addr) or None
        if description is not None and description[:1] == b"." and type_.startswith("keyring"):
            raise Errno(E.EPERM)
    payload = t.mm.read(payload_addr, plen) if plen else None
    reg = _registry(t)
    keyring, possessed = reg.lookup(t, s32(ringid), create=True, need=WRITE)
    # key_create_or_update
    if type_ not in keys.TYPES:
        raise Errno(E.ENODEV)
    if not keyring.is_keyring:
        raise Errno(E.ENOTDIR)
    _preparse(type_, payload)
    if description is None:
        raise Errno(E.EINVAL)
    if keyring.restricted:
        raise Errno(E.EPERM)
    if keys.TYPES[type_][1]:  # an updatable type: a key so named in that keyring is updated
        old = keyring.links.get((type_, description))
        if old is not None and not old.invalidated and old.revoked_at is None and not old.dead:
            reg.check(t, old, possessed, WRITE)
            reg.update(old, payload)
            return old.serial
    _vet_description(type_, description)
    key = reg.alloc(type_, description, t.fsuid, t.fsgid, keys.perm_for(type_))
    try:
        reg.instantiate(key, payload or b"")
        reg.link(keyring, key)
    except Errno:
        reg.destroy(key)
        raise
    return key.serial


@syscall("request_key", status=PARTIAL,
         note="searches the thread's keyrings; no /sbin/request-key upcall: a negative key and ENOENT "
              "(ENOKEY when the view has /sbin/request-key), as Linux when its helper makes none")
def request_key(t, type_addr, desc_addr, callout_addr, destringid):
    type_ = _type(t, type_addr)
    description = _string(t, desc_addr)
    callout = None
    if callout_addr:
        callout = _string(t, callout_addr, PAGE)
    reg = _registry(t)
    dest = None
    if s32(destringid):
        dest, _ = reg.lookup(t, s32(destringid), create=True, need=WRITE)
    if type_ not in keys.TYPES:
        raise Errno(E.ENOKEY)
    if type_ == "logon" and callout is not None:
        _vet_description(type_, description)
    key = reg.request(t, type_, description, callout, dest, _helper_exists(t) if callout is not None else False)
    return key.serial


# --- keyctl ------------------------------------------------------------------------------------
def _describe(t, id_, buf, buflen):
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, partial=True, need=VIEW)
    text = ("%s;%d;%d;%08x;" % (key.type, keys.shown_id(key.uid), keys.shown_id(key.gid), key.perm)).encode() \
        + key.description + b"\0"
    if buf and buflen >= len(text):
        t.mm.write(buf, text)
    return len(text)


def _read(t, id_, buf, buflen):
    reg = _registry(t)
    try:
        key, possessed = reg.lookup(t, id_, defer=True)
    except Errno:
        raise Errno(E.ENOKEY) from None
    if key.negative():
        raise Errno(key.state)
    if not reg.allowed(t, key, possessed, keys.READ) and not possessed:
        raise Errno(E.EACCES)
    if not keys.TYPES[key.type][0]:
        raise Errno(E.EOPNOTSUPP)
    key.validate(time.time())
    if key.is_keyring:
        if buf and 0 < buflen <= PAGE and buflen & 3:
            raise Errno(E.EINVAL)
        data = b"".join(k.serial.to_bytes(4, "little") for k in key.links.values())
    else:
        data = key.payload
    if buf and buflen >= len(data):  # all or nothing: a short buffer learns the size only
        t.mm.write(buf, data)
    return len(data)


def _chown(t, id_, uid, gid):
    uid, gid = s32(uid), s32(gid)
    if uid == -1 and gid == -1:
        return 0
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, create=True, partial=True, need=SETATTR)
    if not caps.has(t, CAP_SYS_ADMIN):
        from sentry.vfs.perm import in_group
        if uid != -1 and uid != key.uid:
            raise Errno(E.EACCES)
        if gid != -1 and gid != key.gid and not in_group(t, gid):
            raise Errno(E.EACCES)
    reg.chown(key, uid, gid)
    return 0


def _setperm(t, id_, perm):
    perm &= 0xFFFFFFFF
    if perm & ~keys.PERM_MASK:
        raise Errno(E.EINVAL)
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, create=True, partial=True, need=SETATTR)
    if key.uid != t.fsuid and not caps.has(t, CAP_SYS_ADMIN):
        raise Errno(E.EACCES)
    key.perm = perm
    return 0


def _search(t, ringid, type_addr, desc_addr, destid):
    type_ = _type(t, type_addr)
    description = _string(t, desc_addr)
    reg = _registry(t)
    keyring, possessed = reg.lookup(t, ringid, need=SEARCH)
    dest = None
    if destid:
        dest, _ = reg.lookup(t, destid, create=True, need=WRITE)
    if type_ not in keys.TYPES:
        raise Errno(E.ENOKEY)
    try:
        key = reg.search_keyring(t, keyring, type_, description, possessed, state_check=True)
    except Errno as e:
        raise Errno(E.ENOKEY if e.errno == E.EAGAIN else e.errno) from None
    if dest is not None:
        reg.check(t, key, possessed, LINK)
        reg.link(dest, key)
    return key.serial


def _set_reqkey(t, defl):
    reg = _registry(t)
    old = t.keys.jit
    if defl == keys.DEFL_NO_CHANGE:
        return old
    if defl == keys.DEFL_THREAD:
        reg.install_thread(t)
    elif defl == keys.DEFL_PROCESS:
        reg.install_process(t)
    elif defl not in (keys.DEFL_DEFAULT, keys.DEFL_SESSION, keys.DEFL_USER, keys.DEFL_USER_SESSION,
                      keys.DEFL_REQUESTOR):
        raise Errno(E.EINVAL)
    t.keys = t.keys._replace(jit=defl)
    return old


def _set_timeout(t, id_, timeout):
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, create=True, partial=True, need=SETATTR)
    timeout &= 0xFFFFFFFF
    key.expiry = time.time() + timeout if timeout else keys.FOREVER
    return 0


def _get_security(t, id_, buf, buflen):
    reg = _registry(t)
    reg.lookup(t, id_, partial=True, need=VIEW)
    if buf and buflen > 0:
        t.mm.write(buf, b"\0")  # no security module: an empty context
    return 1


def _session_to_parent(t):
    reg = _registry(t)
    ring, _ = reg.lookup(t, keys.SPEC_SESSION, need=LINK)
    parent = t.proc.parent
    if parent is None:
        raise Errno(E.EPERM)  # the sandbox's first program: its parent is outside
    live = [p for p in parent.tasks if p.exit_status is None]
    if len(live) != 1:
        raise Errno(E.EPERM)  # the parent must be single-threaded
    p = live[0]
    if p.keys.session is ring:
        return 0
    if not (p.uid == p.euid == p.suid == t.euid and p.gid == p.egid == p.sgid == t.egid):
        raise Errno(E.EPERM)
    if (p.keys.session is not None and p.keys.session.uid != t.euid) or ring.uid != t.euid:
        raise Errno(E.EPERM)
    p.keys = p.keys._replace(session=ring)  # (Linux: as the parent next returns to user space)
    return 0


def _instantiate_iov(t, iov, ioc):
    if not iov:
        ioc = 0
    total = 0
    if ioc:
        total = sum(length for _, length in read_iovec(t.mm, iov, ioc))
    if total > MAX_PAYLOAD:
        raise Errno(E.EINVAL)
    raise Errno(E.EPERM)  # no instantiation authority is ever held


def _invalidate(t, id_):
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, need=SEARCH)
    key.invalidated = True
    reg.collect()
    return 0


def _get_persistent(t, uid, destid):
    uid = s32(uid)
    if uid == -1:
        uid = t.uid
    elif uid not in (t.uid, t.euid, t.suid) and not caps.has(t, CAP_SETUID):
        raise Errno(E.EPERM)
    reg = _registry(t)
    dest, _ = reg.lookup(t, destid, create=True, need=WRITE)
    ring = reg.persistent_keyring(uid)
    reg.check(t, ring, True, LINK)
    reg.link(dest, ring)
    return ring.serial


def _restrict(t, id_, type_addr, restriction_addr):
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, need=SETATTR)
    type_ = None
    if type_addr:
        if not restriction_addr:
            raise Errno(E.EINVAL)
        type_ = _type(t, type_addr)
        _string(t, restriction_addr, PAGE)
    if not key.is_keyring:
        raise Errno(E.ENOTDIR)
    if type_ is not None:
        if type_ not in keys.TYPES:
            raise Errno(E.ENOKEY)
        raise Errno(E.ENOENT)  # none of this kernel's types has a restriction scheme
    if key.restricted:
        raise Errno(E.EEXIST)
    key.restricted = True
    return 0


def _move(t, id_, from_id, to_id, flags):
    if flags & 0xFFFFFFFF & ~MOVE_EXCL:
        raise Errno(E.EINVAL)
    reg = _registry(t)
    key, _ = reg.lookup(t, id_, create=True, need=LINK)
    src, _ = reg.lookup(t, from_id, need=WRITE)
    dst, _ = reg.lookup(t, to_id, create=True, need=WRITE)
    reg.move(key, src, dst, bool(flags & MOVE_EXCL))
    return 0


def _capabilities(t, buf, buflen):
    caps_ = bytes((CAPS0, CAPS1))
    if buflen > 0:
        t.mm.write(buf, caps_[:buflen] + bytes(max(0, buflen - len(caps_))))
    return len(caps_)


_KEYCTL_NOTE = ("the keyctl operations of Linux over the sandbox's keys; no instantiation authority "
                "(there is no upcall): INSTANTIATE/NEGATE/REJECT EPERM, ASSUME_AUTHORITY ENOKEY; "
                "DH_COMPUTE, PKEY_*, WATCH_KEY EOPNOTSUPP as a kernel without them")


@syscall("keyctl", status=PARTIAL, note=_KEYCTL_NOTE)
def keyctl(t, option, a2, a3, a4, a5):
    op = s32(option)
    if op == GET_KEYRING_ID:
        reg = _registry(t)
        key, _ = reg.lookup(t, s32(a2), create=bool(a3), need=SEARCH)
        return key.serial
    if op == JOIN_SESSION_KEYRING:
        name = None
        if a2:
            name = _string(t, a2)
            if name[:1] == b".":
                raise Errno(E.EPERM)
        return _registry(t).join_session(t, name)
    if op == UPDATE:
        if a4 > PAGE:
            raise Errno(E.EINVAL)
        payload = t.mm.read(a3, a4) if a4 else None
        reg = _registry(t)
        key, possessed = reg.lookup(t, s32(a2), need=WRITE)
        if not keys.TYPES[key.type][1]:
            raise Errno(E.EOPNOTSUPP)
        _preparse(key.type, payload)
        reg.update(key, payload)
        return 0
    if op == REVOKE:
        reg = _registry(t)
        try:
            key, _ = reg.lookup(t, s32(a2), need=WRITE)
        except Errno as e:
            if e.errno != E.EACCES:
                raise
            key, _ = reg.lookup(t, s32(a2), need=SETATTR)
        reg.revoke(key)
        return 0
    if op == CHOWN:
        return _chown(t, s32(a2), a3, a4)
    if op == SETPERM:
        return _setperm(t, s32(a2), a3)
    if op == DESCRIBE:
        return _describe(t, s32(a2), a3, a4)
    if op == CLEAR:
        reg = _registry(t)
        key, _ = reg.lookup(t, s32(a2), create=True, need=WRITE)
        reg.clear(key)
        return 0
    if op == LINK_:
        reg = _registry(t)
        keyring, _ = reg.lookup(t, s32(a3), create=True, need=WRITE)
        key, _ = reg.lookup(t, s32(a2), create=True, need=LINK)
        reg.link(keyring, key)
        return 0
    if op == UNLINK:
        reg = _registry(t)
        keyring, _ = reg.lookup(t, s32(a3), need=WRITE)
        key, _ = reg.lookup(t, s32(a2), partial=True, unlink=True)
        reg.unlink(keyring, key)
        return 0
    if op == SEARCH_:
        return _search(t, s32(a2), a3, a4, s32(a5))
    if op == READ_:
        return _read(t, s32(a2), a3, a4)
    if op == INSTANTIATE:
        if a4 > MAX_PAYLOAD:
            raise Errno(E.EINVAL)
        raise Errno(E.EPERM)  # no instantiation authority is ever held
    if op == NEGATE:
        raise Errno(E.EPERM)
    if op == REJECT:
        error = a4 & 0xFFFFFFFF
        if error == 0 or error >= 4095 or error in _RESTART_ERRNOS:
            raise Errno(E.EINVAL)
        raise Errno(E.EPERM)
    if op == INSTANTIATE_IOV:
        return _instantiate_iov(t, a3, a4)
    if op == SET_REQKEY_KEYRING:
        return _set_reqkey(t, s32(a2))
    if op == SET_TIMEOUT:
        return _set_timeout(t, s32(a2), a3)
    if op == ASSUME_AUTHORITY:
        id_ = s32(a2)
        if id_ < 0:
            raise Errno(E.EINVAL)
        if id_ == 0:
            return 0
        raise Errno(E.ENOKEY)  # no request_key_auth key exists: there is no upcall
    if op == GET_SECURITY:
        return _get_security(t, s32(a2), a3, a4)
    if op == SESSION_TO_PARENT:
        return _session_to_parent(t)
    if op == INVALIDATE:
        return _invalidate(t, s32(a2))
    if op == GET_PERSISTENT:
        return _get_persistent(t, a2, s32(a3))
    if op == RESTRICT_KEYRING:
        return _restrict(t, s32(a2), a3, a4)
    if op == MOVE:
        return _move(t, s32(a2), s32(a3), s32(a4), a5)
    if op == CAPABILITIES:
        return _capabilities(t, a2, a3)
    raise Errno(E.EOPNOTSUPP)  # DH_COMPUTE, PKEY_*, WATCH_KEY (not built) and unknown operations
