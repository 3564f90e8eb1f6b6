"""/proc/locks: the sandbox's advisory locks (sentry/vfs/locks.py's LockTable), one line
each in Linux's format (fs/locks.c lock_get_status):

    1: POSIX  ADVISORY  WRITE 42 00:2b:16777301 0 EOF
    2: FLOCK  ADVISORY  READ 43 00:2b:16777302 0 EOF

The device and inode are the locked file's as stat shows them in the sandbox (its
filesystem's device, a lent file's sandbox number: sentry/vfs/hostids.py), never the
host's. Pids are the reader's view of them (locks_translate_pid): -1 for an OFD lock,
and a lock of a process outside the reader's pid namespace is not listed.

Not listed (a PARTIAL file): leases, and the "->" lines of requests waiting for a lock.
Linux lists the newest lock first; the table keeps no order across files, so lines come
file by file, record locks before flock locks."""
import os

from sentry.vfs.locks import F_RDLCK, F_WRLCK, OFFSET_MAX

_KIND = {F_WRLCK: b"WRITE", F_RDLCK: b"READ"}


def _reader_pid(kernel, pid: int) -> int:
    """pid (a sandbox-wide number) as the reading task sees it; 0 when it cannot."""
    reader = getattr(kernel, "current", None) if kernel is not None else None
    if reader is None or getattr(reader, "proc", None) is None:
        return pid
    from sentry import namespaces
    try:
        return namespaces.id_vnr(reader, pid)
    except AttributeError:  # a reader without a pid namespace (unit tests)
        return pid


def _line(n: int, what: bytes, kind: int, pid: int, key, start: int, end) -> bytes:
    dev, ino = key
    span = b"%d EOF" % start if end == OFFSET_MAX else b"%d %d" % (start, end)
    return b"%d: %s%s %d %02x:%02x:%d %s\n" % (n, what, _KIND.get(kind, b"UNLCK"), pid,
                                              os.major(dev), os.minor(dev), ino, span)


def gen_locks(table, kernel) -> bytes:
    """The text of /proc/locks for the reading task (kernel.current)."""
    if table is None:
        return b""
    entries = []
    for key, locks in list(table.records.items()):
        for lock in locks:
            if lock.ofd:
                entries.append((b"OFDLCK ADVISORY  ", lock.kind, -1, key, lock.start, lock.end))
            else:
                entries.append((b"POSIX  ADVISORY  ", lock.kind, lock.pid, key, lock.start, lock.end))
    for key, held in list(table.flocks.items()):
        for file, kind in held.items():
            entries.append((b"FLOCK  ADVISORY  ", kind, getattr(file, "flock_pid", 0), key, 0, OFFSET_MAX))
    out, n = [], 0
    for what, kind, pid, key, start, end in entries:
        shown = pid if pid <= 0 else _reader_pid(kernel, pid)
        if shown == 0:
            continue  # locks_show: a lock of a process the reader cannot see
        n += 1
        out.append(_line(n, what, kind, shown, key, start, end))
    return b"".join(out)
