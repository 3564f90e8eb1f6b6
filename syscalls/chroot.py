"""chroot(2): a root of the caller's own (shared by CLONE_FS, as Linux's fs_struct), which
its absolute paths and `..` walks start from and stop at (sentry/vfs walk)."""
import errno as E

from sentry import namespaces as nsm
from sentry.errors import Errno
from sentry.vfs import perm
from sentry.vfs.perm import MAY_EXEC
from syscalls.abi import AT_FDCWD
from syscalls.registry import PARTIAL, syscall


@syscall("chroot", status=PARTIAL, note="the caller's root within the sandbox's view (CAP_SYS_CHROOT in its user "
         "namespace, else EPERM; the directory's search permission, EACCES); a working directory left outside "
         "stays reachable, as Linux; /proc/PID/root still shows the sandbox's root")
def chroot(t, path):
    loc = t.vfs.lookup_loc(t, AT_FDCWD, t.mm.read_cstring(path))  # ENOENT, ENOTDIR, ...
    perm.permission(t, loc[-1][1], MAY_EXEC)
    if not nsm.ns_capable(t, t.user_ns, nsm.CAP_SYS_CHROOT):
        raise Errno(E.EPERM)
    t.fs.root = None if len(loc) == 1 else loc
    return 0
