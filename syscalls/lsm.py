"""The Linux Security Module calls (Linux 6.8): lsm_list_modules(2),
lsm_get_self_attr(2), lsm_set_self_attr(2).

The sandbox's kernel has no security module but the capability one, which every
Linux has (it is first in /sys/kernel/security/lsm) and which keeps no process
attributes: so the list is that one module, and there is no attribute to get or set
(EOPNOTSUPP, after the checks Linux makes before it asks the modules)."""
import errno as E
import struct

from sentry.errors import Errno
from syscalls.registry import syscall

PAGE = 4096
LSM_ID_UNDEF, LSM_ID_CAPABILITY = 0, 100
LSM_ATTR_UNDEF = 0
LSM_FLAG_SINGLE = 1
_LSM_CTX = struct.Struct("<QQQQ")  # struct lsm_ctx: id, flags, len, ctx_len (then ctx[])
MODULES = (LSM_ID_CAPABILITY,)


@syscall("lsm_list_modules", note="the capability module only (no other security module)")
def lsm_list_modules(t, ids, size, flags):
    if flags & 0xFFFFFFFF:
        raise Errno(E.EINVAL)
    room = t.mm.read_u32(size)
    total = len(MODULES) * 8
    t.mm.write_u32(size, total)
    if room < total:
        raise Errno(E.E2BIG)
    t.mm.write(ids, struct.pack(f"<{len(MODULES)}Q", *MODULES))
    return len(MODULES)


@syscall("lsm_get_self_attr", note="no module keeps process attributes: EOPNOTSUPP (size set to 0) once the "
         "arguments pass Linux's checks")
def lsm_get_self_attr(t, attr, ctx, size, flags):
    attr, flags = attr & 0xFFFFFFFF, flags & 0xFFFFFFFF
    if attr == LSM_ATTR_UNDEF or not size:
        raise Errno(E.EINVAL)
    t.mm.read_u32(size)
    if flags:
        if flags != LSM_FLAG_SINGLE or not ctx:
            raise Errno(E.EINVAL)
        if _LSM_CTX.unpack(t.mm.read(ctx, _LSM_CTX.size))[0] == LSM_ID_UNDEF:
            raise Errno(E.EINVAL)
    t.mm.write_u32(size, 0)  # what the modules gave: nothing
    raise Errno(E.EOPNOTSUPP)


@syscall("lsm_set_self_attr", note="no module takes process attributes: EOPNOTSUPP once the context passes "
         "Linux's checks")
def lsm_set_self_attr(t, attr, ctx, size, flags):
    size = size & 0xFFFFFFFF
    if flags & 0xFFFFFFFF or size < _LSM_CTX.size:
        raise Errno(E.EINVAL)
    if size > PAGE:
        raise Errno(E.E2BIG)
    _, _, length, ctx_len = _LSM_CTX.unpack(t.mm.read(ctx, size)[:_LSM_CTX.size])
    if size < length or length < _LSM_CTX.size + ctx_len:
        raise Errno(E.EINVAL)
    raise Errno(E.EOPNOTSUPP)
