"""Linux's key management (security/keys) as sentry objects: keys and keyrings of the
sandbox's own, never the host's.

A `Key` has a serial number, a type ("user", "logon", "keyring"), a description,
an owner, a permission mask (possessor/user/group/other, 6 bits each) and a state
(uninstantiated, positive, negative with its error), and may be revoked,
invalidated or expire. A keyring's payload is its links: one key per
(type, description), a new one displacing the old.

Each thread holds its keyrings in `Task.keys` (a `KeyCred`, immutable and shared
with its clones until one changes, as Linux's cred): the thread keyring (not
inherited: a new thread gets a new one if its creator had one), the process
keyring (kept by threads, not by a forked child), the
session keyring (inherited on fork, replaced by KEYCTL_JOIN_SESSION_KEYRING) and
the request_key default. execve drops the thread and process keyrings. The user
and user-session keyrings belong to a uid, made at first use and kept for the
sandbox's life.

Permissions are key_task_permission's: the owner's bits for the fsuid, else the
group's for the fsgid or a supplementary group, else the other bits; the
possessor's bits are added when the key can be reached from the thread's own
keyrings by searching. The sandbox's root has no override but where Linux gives
one (CAP_SYS_ADMIN for chown, setperm).

Quotas are per key owner (qnkeys, qnbytes: description + 1 + payload, 4 bytes
per keyring link) against the maxkeys/maxbytes knobs (root_* for uid 0) of
/proc/sys/kernel/keys. Keys nothing reaches (no keyring link, no thread's
keyring) are collected when next looked at, as Linux's gc does later; revoked
and expired keys stay linked for gc_delay seconds.

There is no /sbin/request-key upcall: request_key(2) makes the negative key
Linux makes when its helper fails, and answers ENOENT when the sandbox's view
has no /sbin/request-key (Linux's call_usermodehelper error) or ENOKEY when it
has one (what the helper does for a key its configuration does not cover).
No instantiation authority ever exists, so KEYCTL_INSTANTIATE and its kin are
EPERM as on Linux outside a helper."""
import errno as E
import time
from typing import NamedTuple

from sentry.errors import Errno
from sentry.vfs.perm import in_group

# KEY_SPEC_* special keyring ids
SPEC_THREAD, SPEC_PROCESS, SPEC_SESSION, SPEC_USER, SPEC_USER_SESSION = -1, -2, -3, -4, -5
SPEC_GROUP, SPEC_REQKEY_AUTH, SPEC_REQUESTOR = -6, -7, -8
# KEY_REQKEY_DEFL_*
DEFL_NO_CHANGE, DEFL_DEFAULT, DEFL_THREAD, DEFL_PROCESS, DEFL_SESSION = -1, 0, 1, 2, 3
DEFL_USER, DEFL_USER_SESSION, DEFL_GROUP, DEFL_REQUESTOR = 4, 5, 6, 7

VIEW, READ, WRITE, SEARCH, LINK, SETATTR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ALL = 0x3F
POS, USR, GRP, OTH = 24, 16, 8, 0
PERM_MASK = 0x3F3F3F3F

MAX_DESC = 4096             # KEY_MAX_DESC_SIZE
MAX_TYPE = 32
USER_MAX_DATA = 32767       # user_preparse
LINK_BYTES = 4              # KEYQUOTA_LINK_BYTES: what one link costs a keyring's owner
NEGATIVE_TIMEOUT = 60       # key_negative_timeout
MAX_DEPTH = 6               # KEYRING_SEARCH_MAX_DEPTH
FOREVER = None

UNINSTANTIATED, POSITIVE = "uninstantiated", "positive"  # else a negative key: its error

SYSCTL_DEFAULTS = {"maxkeys": 200, "maxbytes": 20000, "root_maxkeys": 1000000,
                   "root_maxbytes": 25000000, "gc_delay": 300, "persistent_keyring_expiry": 259200}

# the key types the sandbox's kernel has: name -> (has read, has update)
TYPES = {"user": (True, True), "logon": (False, True), "keyring": (True, False)}


def _perm(bits: int, who: int) -> int:
    return bits << who


DEFAULT_PERM = _perm(VIEW | SEARCH | LINK | SETATTR, POS) | _perm(VIEW, USR)


def perm_for(type_: str) -> int:
    """The permissions Linux gives a new key of a type (key_create_or_update,
    construct_alloc_key): read and write for the possessor where the type has them."""
    has_read, has_update = TYPES[type_]
    perm = DEFAULT_PERM
    if has_read:
        perm |= _perm(READ, POS)
    if type_ == "keyring" or has_update:
        perm |= _perm(WRITE, POS)
    return perm


class KeyUser:
    """One uid's key accounting (/proc/key-users)."""
    __slots__ = ("uid", "nkeys", "nikeys", "qnkeys", "qnbytes")

    def __init__(self, uid: int):
        self.uid = uid
        self.nkeys = self.nikeys = self.qnkeys = self.qnbytes = 0


class Key:
    __slots__ = ("serial", "type", "description", "uid", "gid", "perm", "state", "payload", "links",
                 "expiry", "revoked_at", "invalidated", "in_quota", "quotalen", "datalen", "user",
                 "restricted", "uid_keyring", "dead")

    def __init__(self, serial, type_, description, uid, gid, perm, user, in_quota):
        self.serial, self.type, self.description = serial, type_, description
        self.uid, self.gid, self.perm = uid, gid, perm
        self.state = UNINSTANTIATED
        self.payload = b""
        self.links = {} if type_ == "keyring" else None  # (type, description) -> Key, in link order
        self.expiry = FOREVER           # time.time() seconds, or None
        self.revoked_at = None
        self.invalidated = False
        self.in_quota = in_quota
        self.user = user
        self.quotalen = len(description) + 1
        self.datalen = 0
        self.restricted = False         # KEYCTL_RESTRICT_KEYRING with no type: every link refused
        self.uid_keyring = False        # a user or user-session keyring: never joined by name
        self.dead = False

    @property
    def is_keyring(self) -> bool:
        return self.links is not None

    @property
    def index(self):
        return (self.type, self.description)

    def expired(self, now: float) -> bool:
        return self.expiry is not None and now >= self.expiry

    def validate(self, now: float) -> None:
        """key_validate: ENOKEY invalidated, EKEYREVOKED revoked, EKEYEXPIRED expired."""
        if self.invalidated:
            raise Errno(E.ENOKEY)
        if self.revoked_at is not None or self.dead:
            raise Errno(E.EKEYREVOKED)
        if self.expired(now):
            raise Errno(E.EKEYEXPIRED)

    def negative(self) -> bool:
        return self.state not in (UNINSTANTIATED, POSITIVE)


class KeyCred(NamedTuple):
    """A thread's keyrings (Linux keeps them in its cred)."""
    thread: object = None
    process: object = None
    session: object = None
    jit: int = DEFL_DEFAULT


NO_KEYRINGS = KeyCred()


def on_clone(parent, child, thread: bool) -> None:
    """copy_creds: a new process has neither the thread nor the process keyring; a new
    thread keeps the process keyring and gets a thread keyring of its own if its
    creator had one."""
    k = parent.keys
    if not thread:
        child.keys = k._replace(thread=None, process=None)
        return
    child.keys = k._replace(thread=None)
    if k.thread is not None:
        child.kernel.keys.install_thread(child)


def on_exec(task) -> None:
    """execve drops the thread and process keyrings (the session one stays)."""
    task.keys = task.keys._replace(thread=None, process=None)


class KeyRegistry:
    """The sandbox's keys, by serial, and its key users; one per Kernel. The syscalls and
    /proc call collect() first: at a syscall's edge every live key is reachable."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.keys: dict[int, Key] = {}
        self.users: dict[int, KeyUser] = {}
        self.user_keyrings: dict[int, tuple] = {}   # uid -> (user keyring, user-session keyring)
        self.persistent: dict[int, Key] = {}        # uid -> _persistent.<uid>
        self.sysctl = dict(SYSCTL_DEFAULTS)

    # --- making keys ------------------------------------------------------------------------
    def _serial(self) -> int:
        while True:
            serial = int.from_bytes(self.kernel.random_bytes(4), "little") >> 1
            if serial < 3:
                serial += 3
            if serial not in self.keys:
                return serial

    def _user(self, uid: int) -> KeyUser:
        u = self.users.get(uid)
        if u is None:
            u = self.users[uid] = KeyUser(uid)
        return u

    def limits(self, uid: int):
        s = self.sysctl
        return (s["root_maxkeys"], s["root_maxbytes"]) if uid == 0 else (s["maxkeys"], s["maxbytes"])

    def alloc(self, type_, description: bytes, uid, gid, perm, quota=True, overrun=False) -> Key:
        """key_alloc: a new uninstantiated key charged to uid (EDQUOT past its quota)."""
        user = self._user(uid)
        key = Key(self._serial(), type_, description, uid, gid, perm, user, quota)
        if quota:
            maxkeys, maxbytes = self.limits(uid)
            if not overrun and (user.qnkeys + 1 > maxkeys or user.qnbytes + key.quotalen > maxbytes):
                if not user.nkeys:
                    del self.users[uid]
                raise Errno(E.EDQUOT)
            user.qnkeys += 1
            user.qnbytes += key.quotalen
        user.nkeys += 1
        self.keys[key.serial] = key
        return key

    def reserve(self, key: Key, datalen: int) -> None:
        """key_payload_reserve: the key's payload is now datalen bytes (EDQUOT past the quota)."""
        delta = datalen - key.datalen
        if delta and key.in_quota:
            maxbytes = self.limits(key.user.uid)[1]
            if delta > 0 and key.user.qnbytes + delta > maxbytes:
                raise Errno(E.EDQUOT)
            key.user.qnbytes += delta
            key.quotalen += delta
        key.datalen = datalen

    def instantiate(self, key: Key, payload: bytes) -> None:
        if not key.is_keyring:
            self.reserve(key, len(payload))
            key.payload = bytes(payload)
        key.state = POSITIVE
        key.user.nikeys += 1

    def negate(self, key: Key, error: int, timeout: int) -> None:
        key.state = error
        key.user.nikeys += 1
        key.expiry = time.time() + timeout if timeout else FOREVER

    def new_keyring(self, description: bytes, uid, gid, perm, quota=True, overrun=False) -> Key:
        key = self.alloc("keyring", description, uid, gid, perm, quota, overrun)
        self.instantiate(key, b"")
        return key

    def destroy(self, key: Key) -> None:
        """The last reference went: the serial is free and the owner's quota back."""
        if self.keys.pop(key.serial, None) is None:
            return
        key.dead = True
        user = key.user
        if key.in_quota:
            user.qnkeys -= 1
            user.qnbytes -= key.quotalen
        user.nkeys -= 1
        if key.state != UNINSTANTIATED:
            user.nikeys -= 1
        if not user.nkeys:
            self.users.pop(user.uid, None)
        if key.is_keyring:
            key.links.clear()

    # --- links -------------------------------------------------------------------------------
    def link(self, keyring: Key, key: Key, excl: bool = False) -> None:
        """__key_link: key into keyring, displacing one of the same type and description."""
        if not keyring.is_keyring:
            raise Errno(E.ENOTDIR)
        old = keyring.links.get(key.index)
        if excl and old is not None and old is not key:
            raise Errno(E.EEXIST)
        if keyring.restricted:
            raise Errno(E.EPERM)
        if key.is_keyring:
            self._check_cycle(keyring, key)
        if old is None:
            self.reserve(keyring, keyring.datalen + LINK_BYTES)
        keyring.links[key.index] = key

    def _check_cycle(self, keyring: Key, key: Key) -> None:
        """keyring_detect_cycle: EDEADLK if keyring is key or lies below it, ELOOP too deep."""
        def below(k, depth):
            if k is keyring:
                raise Errno(E.EDEADLK)
            if depth > MAX_DEPTH:
                raise Errno(E.ELOOP)
            for child in k.links.values():
                if child.is_keyring:
                    below(child, depth + 1)
        below(key, 1)

    def unlink(self, keyring: Key, key: Key) -> None:
        if not keyring.is_keyring:
            raise Errno(E.ENOTDIR)
        if keyring.links.get(key.index) is not key:
            raise Errno(E.ENOENT)
        del keyring.links[key.index]
        self.reserve(keyring, keyring.datalen - LINK_BYTES)

    def clear(self, keyring: Key) -> None:
        if not keyring.is_keyring:
            raise Errno(E.ENOTDIR)
        keyring.links.clear()
        self.reserve(keyring, 0)

    def revoke(self, key: Key) -> None:
        if key.revoked_at is not None:
            return
        key.revoked_at = time.time()
        if key.is_keyring:
            key.links.clear()
        key.payload = b""
        self.reserve(key, 0)

    def update(self, key: Key, payload: bytes) -> None:
        """A user or logon key's new payload (user_update): it becomes positive and loses
        its timeout."""
        self.reserve(key, len(payload))
        key.payload = bytes(payload)
        key.expiry = FOREVER
        if key.state != POSITIVE:
            if key.state == UNINSTANTIATED:
                key.user.nikeys += 1
            key.state = POSITIVE

    def chown(self, key: Key, uid: int, gid: int) -> None:
        """keyctl_chown_key's transfer: the quota burden moves to the new owner (EDQUOT)."""
        if uid != -1 and uid != key.uid:
            new = self._user(uid)
            if key.in_quota:
                maxkeys, maxbytes = self.limits(uid)
                if new.qnkeys + 1 > maxkeys or new.qnbytes + key.quotalen > maxbytes:
                    if not new.nkeys:
                        del self.users[uid]
                    raise Errno(E.EDQUOT)
                new.qnkeys += 1
                new.qnbytes += key.quotalen
                key.user.qnkeys -= 1
                key.user.qnbytes -= key.quotalen
            old = key.user
            old.nkeys -= 1
            new.nkeys += 1
            if key.state != UNINSTANTIATED:
                old.nikeys -= 1
                new.nikeys += 1
            if not old.nkeys:
                self.users.pop(old.uid, None)
            key.user, key.uid = new, uid
        if gid != -1:
            key.gid = gid

    def move(self, key: Key, src: Key, dst: Key, excl: bool) -> None:
        """key_move: from one keyring to another, as one step."""
        if src is dst:
            return
        if not src.is_keyring or not dst.is_keyring:
            raise Errno(E.ENOTDIR)
        if src.links.get(key.index) is not key:
            raise Errno(E.ENOENT)
        if excl and key.index in dst.links:
            raise Errno(E.EEXIST)
        if dst.restricted:
            raise Errno(E.EPERM)
        if key.is_keyring:
            self._check_cycle(dst, key)
        if key.index not in dst.links:
            self.reserve(dst, dst.datalen + LINK_BYTES)
        del src.links[key.index]
        self.reserve(src, src.datalen - LINK_BYTES)
        dst.links[key.index] = key

    # --- garbage collection --------------------------------------------------------------------
    def collect(self) -> None:
        """Unlink keys dead for gc_delay seconds and invalidated ones; destroy what no thread's
        keyring, user keyring or persistent keyring reaches any more."""
        now = time.time()
        delay = self.sysctl["gc_delay"]
        roots = []
        for task in self.kernel.tasks.values():
            k = getattr(task, "keys", None)
            if k is not None:
                roots.extend(r for r in (k.thread, k.process, k.session) if r is not None)
        for pair in self.user_keyrings.values():
            roots.extend(pair)
        for uid, ring in list(self.persistent.items()):
            if ring.expired(now) and ring.expiry + delay <= now:
                del self.persistent[uid]
            else:
                roots.append(ring)
        seen = set()
        stack = list(roots)
        while stack:
            key = stack.pop()
            if key.serial in seen or key.dead:
                continue
            seen.add(key.serial)
            if key.is_keyring:
                for index, child in list(key.links.items()):
                    if child.invalidated or _gone(child, now, delay) or child.dead:
                        del key.links[index]
                        self.reserve(key, key.datalen - LINK_BYTES)
                        continue
                    stack.append(child)
        for serial, key in list(self.keys.items()):
            if serial not in seen:
                self.destroy(key)

    # --- the thread's keyrings -----------------------------------------------------------------
    def user_keyrings_of(self, task):
        """look_up_user_keyrings: the real uid's user and user-session keyrings, made at first use."""
        uid = task.uid
        pair = self.user_keyrings.get(uid)
        if pair is None:
            perm = _perm(ALL & ~SETATTR, POS) | _perm(ALL, USR)
            user = self.new_keyring(b"_uid.%d" % uid, uid, -1, perm)
            user.uid_keyring = True
            session = self.new_keyring(b"_uid_ses.%d" % uid, uid, -1, perm)
            session.uid_keyring = True
            self.link(session, user)
            pair = self.user_keyrings[uid] = (user, session)
        return pair

    def install_thread(self, task) -> Key:
        if task.keys.thread is None:
            ring = self.new_keyring(b"_tid", task.uid, task.gid, _perm(ALL, POS) | _perm(VIEW, USR),
                                    overrun=True)
            task.keys = task.keys._replace(thread=ring)
        return task.keys.thread

    def install_process(self, task) -> Key:
        if task.keys.process is None:
            ring = self.new_keyring(b"_pid", task.uid, task.gid, _perm(ALL, POS) | _perm(VIEW, USR),
                                    overrun=True)
            task.keys = task.keys._replace(process=ring)
        return task.keys.process

    def join_session(self, task, name) -> int:
        """join_session_keyring: a new anonymous "_ses", or the named keyring the caller may
        search (made if there is none); 0 if it is already the session keyring."""
        if name is None:
            ring = self.new_keyring(b"_ses", task.uid, task.gid,
                                    _perm(ALL, POS) | _perm(VIEW | READ, USR), overrun=True)
            task.keys = task.keys._replace(session=ring)
            return ring.serial
        ring = self.find_named(task, name)
        if ring is None:
            ring = self.new_keyring(name, task.uid, task.gid,
                                    _perm(ALL, POS) | _perm(VIEW | READ | LINK, USR))
        elif ring is task.keys.session:
            return 0
        task.keys = task.keys._replace(session=ring)
        return ring.serial

    def find_named(self, task, name: bytes):
        """find_keyring_by_name: a keyring so named the caller may search (not possessed)."""
        now = time.time()
        for key in self.keys.values():
            if (key.is_keyring and key.description == name and not key.uid_keyring
                    and not key.dead and not key.invalidated and key.revoked_at is None
                    and not key.expired(now) and self.allowed(task, key, False, SEARCH)):
                return key
        return None

    # --- permission -----------------------------------------------------------------------------
    def allowed(self, task, key: Key, possessed: bool, need: int) -> bool:
        """key_task_permission with the thread's fs ids and groups."""
        perm = key.perm
        if key.uid == task.fsuid:
            kperm = perm >> USR
        elif key.gid != -1 and perm & _perm(ALL, GRP) and in_group(task, key.gid):
            kperm = perm >> GRP
        else:
            kperm = perm
        if possessed:
            kperm |= perm >> POS
        return kperm & need & ALL == need

    def check(self, task, key: Key, possessed: bool, need: int) -> None:
        if need and not self.allowed(task, key, possessed, need):
            raise Errno(E.EACCES)

    # --- searching ------------------------------------------------------------------------------
    def search_keyring(self, task, keyring: Key, type_, description, possessed: bool, state_check: bool,
                       skip_expired: bool = False, match=None, check_start=True):
        """keyring_search_rcu: a key of that type and description in keyring or below it, depth
        first; raises what it skipped (EKEYREVOKED, EKEYEXPIRED, EACCES, a negative key's error)
        or EAGAIN when nothing was there."""
        if not keyring.is_keyring:
            raise Errno(E.ENOTDIR)
        if check_start:
            self.check(task, keyring, possessed, SEARCH)
        now = time.time()
        result = [Errno(E.EAGAIN)]

        def visit(key, top):
            """keyring_search_iterator: 1 found, 0 go on (result may hold an error)."""
            if key.type != type_ or key.description != description:
                return 0
            if match is not None and key is not match:
                return 0
            if state_check:
                if key.invalidated or key.revoked_at is not None:
                    result[0] = Errno(E.EKEYREVOKED)
                    return 2 if top else 0
                if key.expired(now):
                    if not skip_expired:
                        result[0] = Errno(E.EKEYEXPIRED)
                    return 2 if top else 0
            if not self.allowed(task, key, possessed, SEARCH):
                result[0] = Errno(E.EACCES)
                return 2 if top else 0
            if state_check and key.negative():
                result[0] = Errno(key.state)
                return 2 if top else 0
            return 1

        r = visit(keyring, True)
        if r == 1:
            return keyring
        if r == 2:
            raise result[0]

        def nested(ring, depth, path):
            for key in list(ring.links.values()):
                if visit(key, False) == 1:
                    return key
            if depth >= MAX_DEPTH:
                return None
            for key in list(ring.links.values()):
                if not key.is_keyring or key in path:
                    continue
                if not self.allowed(task, key, possessed, SEARCH):
                    continue
                if key.invalidated or key.revoked_at is not None or key.expired(now):
                    continue
                found = nested(key, depth + 1, path + (key,))
                if found is not None:
                    return found
            return None

        found = nested(keyring, 1, (keyring,))
        if found is not None:
            return found
        raise result[0]

    def search_process(self, task, type_, description, state_check=True, skip_expired=False, match=None):
        """search_process_keyrings_rcu: the thread, process and session (or user-session)
        keyrings in turn, keys found there possessed. Priority: found > ENOKEY > EAGAIN >
        another error."""
        k = task.keys
        session = k.session
        if session is None:
            session = self.user_keyrings.get(task.uid, (None, None))[1]
        ret, err = None, Errno(E.EAGAIN)
        for ring in (k.thread, k.process, session):
            if ring is None:
                continue
            try:
                return self.search_keyring(task, ring, type_, description, True, state_check, skip_expired,
                                           match)
            except Errno as e:
                if e.errno == E.ENOKEY or (e.errno == E.EAGAIN and ret is None):
                    ret = e
                elif e.errno != E.EAGAIN:
                    err = e
        raise ret if ret is not None else err

    def possessed(self, task, key: Key) -> bool:
        try:
            self.search_process(task, key.type, key.description, state_check=False, match=key)
            return True
        except Errno:
            return False

    # --- lookup_user_key -------------------------------------------------------------------------
    def lookup(self, task, id_: int, create: bool = False, partial: bool = False, need: int = 0,
               unlink: bool = False, defer: bool = False):
        """lookup_user_key: (key, possessed) for a serial or a KEY_SPEC_* id, with Linux's
        checks: ENOKEY unknown, EINVAL bad special, EKEYREVOKED/EKEYEXPIRED/ENOKEY/negative
        unless partial, EACCES without `need`."""
        k = task.keys
        if id_ == SPEC_THREAD:
            if k.thread is None:
                if not create:
                    raise Errno(E.ENOKEY)
                self.install_thread(task)
            key, possessed = task.keys.thread, True
        elif id_ == SPEC_PROCESS:
            if k.process is None:
                if not create:
                    raise Errno(E.ENOKEY)
                self.install_process(task)
            key, possessed = task.keys.process, True
        elif id_ == SPEC_SESSION:
            if k.session is None:
                # a session keyring is always installed on access: a new one to create in,
                # else the user-session keyring
                user_session = self.user_keyrings_of(task)[1]
                if create:
                    self.join_session(task, None)
                else:
                    task.keys = task.keys._replace(session=user_session)
            elif k.session.uid_keyring and create:
                self.join_session(task, None)
            key, possessed = task.keys.session, True
        elif id_ == SPEC_USER:
            key, possessed = self.user_keyrings_of(task)[0], True
        elif id_ == SPEC_USER_SESSION:
            key, possessed = self.user_keyrings_of(task)[1], True
        elif id_ == SPEC_GROUP:
            raise Errno(E.EINVAL)
        elif id_ in (SPEC_REQKEY_AUTH, SPEC_REQUESTOR):
            raise Errno(E.ENOKEY)  # no instantiation authority is ever held
        elif id_ < 1:
            raise Errno(E.EINVAL)
        else:
            key = self.keys.get(id_)
            if key is None:
                raise Errno(E.ENOKEY)
            possessed = self.possessed(task, key)
        if not unlink:
            now = time.time()
            if not partial:
                if key.negative():
                    if not defer:
                        raise Errno(key.state)
                else:
                    try:
                        key.validate(now)
                    except Errno:
                        if not defer:
                            raise
                if key.state == UNINSTANTIATED:
                    raise Errno(E.EIO)
            elif not defer:
                key.validate(now)
            self.check(task, key, possessed, need)
        return key, possessed

    # --- request_key ------------------------------------------------------------------------------
    def default_dest(self, task) -> Key:
        """construct_get_dest_keyring without a destination: the request_key default, falling
        through to the keyrings the thread has; write permission needed."""
        k = task.keys
        jit = k.jit
        ring = None
        chain = [DEFL_THREAD, DEFL_PROCESS, DEFL_SESSION, DEFL_USER_SESSION]
        if jit in (DEFL_DEFAULT, DEFL_REQUESTOR):
            start = 0
        elif jit in chain:
            start = chain.index(jit)
        else:
            start = None
        if start is not None:
            for which in chain[start:]:
                if which == DEFL_THREAD:
                    ring = k.thread
                elif which == DEFL_PROCESS:
                    ring = k.process
                elif which == DEFL_SESSION:
                    ring = k.session
                else:
                    ring = self.user_keyrings_of(task)[1]
                if ring is not None:
                    break
        else:  # DEFL_USER
            ring = self.user_keyrings_of(task)[0]
        self.check(task, ring, True, WRITE)
        return ring

    def request(self, task, type_, description: bytes, callout, dest, helper: bool):
        """request_key_and_link: a key found in the thread's keyrings (linked into dest if
        given), or the negative key Linux leaves when its helper does not make one (helper:
        whether the sandbox's view has /sbin/request-key)."""
        try:
            key = self.search_process(task, type_, description, skip_expired=True)
        except Errno as e:
            if e.errno != E.EAGAIN:
                raise
        else:
            if dest is not None:
                self.check(task, key, True, LINK)
                self.link(dest, key)
            return key
        if callout is None:
            raise Errno(E.ENOKEY)
        if type_ == "keyring":
            raise Errno(E.EPERM)
        if dest is None:
            dest = self.default_dest(task)
        key = self.alloc(type_, description, task.fsuid, task.fsgid, perm_for(type_))
        try:
            self.link(dest, key)
        except Errno:
            self.destroy(key)
            raise
        self.negate(key, E.ENOKEY, NEGATIVE_TIMEOUT)
        raise Errno(E.ENOKEY if helper else E.ENOENT)

    # --- the persistent keyring -----------------------------------------------------------------
    def persistent_keyring(self, uid: int) -> Key:
        now = time.time()
        ring = self.persistent.get(uid)
        if ring is None or ring.dead or ring.expired(now):
            ring = self.new_keyring(b"_persistent.%d" % uid, uid, -1,
                                    _perm(ALL, POS) | _perm(VIEW | READ, USR), quota=False)
            self.persistent[uid] = ring
        ring.expiry = now + self.sysctl["persistent_keyring_expiry"]
        return ring

    # --- what /proc shows -----------------------------------------------------------------------
    def proc_keys(self, task) -> bytes:
        """/proc/keys: the keys the reader may view, by serial."""
        self.collect()
        now = time.time()
        out = []
        for serial in sorted(self.keys):
            key = self.keys[serial]
            possessed = task is not None and self.possessed(task, key)
            if task is None or not self.allowed(task, key, possessed, VIEW):
                continue
            if key.expiry is None:
                timeout = "perm"
            elif now >= key.expiry:
                timeout = "expd"
            else:
                timeout = _timeout(int(key.expiry - now))
            flags = ("I" if key.state != UNINSTANTIATED else "-") + ("R" if key.revoked_at is not None else "-") \
                + ("D" if key.dead else "-") + ("Q" if key.in_quota else "-") + "-" \
                + ("N" if key.negative() else "-") + ("i" if key.invalidated else "-")
            usage = 1 + sum(1 for k in self.keys.values() if k.is_keyring and k.links.get(key.index) is key)
            out.append("%08x %s %5d %4s %08x %5d %5d %-9.9s %s\n" % (
                serial, flags, usage, timeout, key.perm, shown_id(key.uid), shown_id(key.gid), key.type,
                self.describe_payload(key)))
        return "".join(out).encode()

    def describe_payload(self, key: Key) -> str:
        desc = key.description.decode("utf-8", "replace")
        if key.is_keyring:
            if key.state == POSITIVE:
                desc += f": {len(key.links)}" if key.links else ": empty"
        elif key.state == POSITIVE:
            desc += f": {key.datalen}"
        return desc

    def proc_key_users(self) -> bytes:
        self.collect()
        out = []
        for uid in sorted(self.users):
            u = self.users[uid]
            maxkeys, maxbytes = self.limits(uid)
            out.append("%5u: %5d %d/%d %d/%d %d/%d\n" % (uid, u.nkeys, u.nkeys, u.nikeys, u.qnkeys, maxkeys,
                                                          u.qnbytes, maxbytes))
        return "".join(out).encode()

    def read_sysctl(self, name: str) -> bytes:
        return b"%d\n" % self.sysctl[name]

    def write_sysctl(self, name: str, data: bytes) -> int:
        try:
            value = int(data.split(b"\n", 1)[0].strip() or b"x", 0)
        except ValueError:
            raise Errno(E.EINVAL) from None
        if name == "gc_delay" or name == "persistent_keyring_expiry":
            if not 0 <= value <= 0x7FFFFFFF:
                raise Errno(E.EINVAL)
        elif not 1 <= value <= 0x7FFFFFFF:
            raise Errno(E.EINVAL)
        self.sysctl[name] = value
        return len(data)


def _gone(key: Key, now: float, delay: int) -> bool:
    """Revoked or expired gc_delay seconds ago: the gc unlinks it from every keyring."""
    if key.revoked_at is not None and key.revoked_at + delay <= now:
        return True
    return key.expiry is not None and key.expiry + delay <= now


def _timeout(left: int) -> str:
    """/proc/keys' time to expiry."""
    for unit, size, step in (("s", 60, 1), ("m", 3600, 60), ("h", 86400, 3600), ("d", 604800, 86400)):
        if left < size:
            return f"{left // step}{unit}"
    return f"{left // 604800}w"


def shown_id(i: int) -> int:
    """An invalid id, as from_kgid_munged shows it (the overflow id)."""
    return 65534 if i == -1 else i
