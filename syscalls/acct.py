"""acct(2): BSD process accounting into a file of the sandbox (sentry/acct.py)."""
import errno as E
import stat as S

from sentry import acct as accounting
from sentry.errors import Errno
from sentry.namespaces import initial, ns_capable
from sentry.vfs.file import O_APPEND, O_LARGEFILE, O_WRONLY
from syscalls.registry import PARTIAL, syscall

CAP_SYS_PACCT = 20


@syscall("acct", status=PARTIAL, note="struct acct_v3 records (CONFIG_BSD_PROCESS_ACCT_V3) per pid namespace, into a file of "
         "the sandbox; the record's I/O, fault and swap counts are zero; no suspension on a nearly full "
         "filesystem (a record that cannot be written is dropped)")
def acct(t, path):
    if not ns_capable(t, initial(t.kernel)[1], CAP_SYS_PACCT):  # capable(): the initial user namespace's
        raise Errno(E.EPERM)
    if not path:
        accounting.switch(t, None)
        return 0
    name = t.mm.read_cstring(path)
    f = t.vfs.open(t, -100, name, O_WRONLY | O_APPEND | O_LARGEFILE, 0)  # AT_FDCWD
    if not S.S_ISREG(f.inode.mode):
        _drop(f)
        raise Errno(E.EACCES)
    accounting.switch(t, f)
    return 0


def _drop(f) -> None:
    from sentry.fdtable import drop_ref
    f.fd_refs = getattr(f, "fd_refs", 0) + 1
    drop_ref(f)
