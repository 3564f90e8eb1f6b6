"""The IPC files of /proc (sentry/vfs/procfs.py mounts them): /proc/sysvipc/{shm,msg,sem}
and the IPC sysctls of /proc/sys/kernel and /proc/sys/fs/mqueue.

As on Linux they are the reader's (or writer's) IPC namespace's: each opens or
writes the namespace of the task whose call it is. Writes parse as proc_dointvec
(whitespace-separated decimal numbers, EINVAL for anything else or a value out of
the knob's range; a multi-value knob takes what came before a bad value), and the
values are kept and used: the limits bind the calls, *_next_id chooses the next
id, and turning shm_rmid_forced on destroys the orphaned segments.
"""
import errno as E

from sentry.errors import Errno
from sentry.ipc.ids import IPCMNI

INT_MAX = 0x7FFFFFFF
ULONG_MAX = (1 << 64) - 1

SHM_HEADER = (b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid"
              b"      atime      dtime      ctime                   rss                  swap\n")
MSG_HEADER = (b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid"
              b"      stime      rtime      ctime\n")
SEM_HEADER = b"       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"


def _ns(kernel):
    """The IPC namespace of the task whose call this is (the kernel's first without one)."""
    task = getattr(kernel, "current", None) if kernel is not None else None
    ns = getattr(task, "ipc_ns", None)
    if ns is None:
        ns = getattr(kernel, "ipc_ns", None)
    if ns is None:
        from sentry.ipc.namespace import IpcNamespace
        ns = IpcNamespace()
    return ns


# --- /proc/sysvipc -------------------------------------------------------------------------------
def gen_shm(kernel) -> bytes:
    from sentry.ipc import shm
    ns = _ns(kernel)
    shm.reap(ns)
    out = [SHM_HEADER]
    for s in ns.shm.sorted():
        p = s.perm
        out.append(b"%10d %10d  %4o %21d %5d %5d  %5d %5d %5d %5d %5d %10d %10d %10d %21d %21d\n" % (
            p.key, p.id, p.mode, s.size, s.cpid, s.lpid, s.nattch(), p.uid, p.gid, p.cuid, p.cgid,
            s.atime, s.dtime, s.ctime, shm.rss(s), 0))
    return b"".join(out)


def gen_msg(kernel) -> bytes:
    ns = _ns(kernel)
    out = [MSG_HEADER]
    for q in ns.msg.sorted():
        p = q.perm
        out.append(b"%10d %10d  %4o  %10d %10d %5d %5d %5d %5d %5d %5d %10d %10d %10d\n" % (
            p.key, p.id, p.mode, q.cbytes, q.qnum, q.lspid, q.lrpid, p.uid, p.gid, p.cuid, p.cgid,
            q.stime, q.rtime, q.ctime))
    return b"".join(out)


def gen_sem(kernel) -> bytes:
    ns = _ns(kernel)
    out = [SEM_HEADER]
    for a in ns.sem.sorted():
        p = a.perm
        out.append(b"%10d %10d  %4o %10d %5d %5d %5d %5d %10d %10d\n" % (
            p.key, p.id, p.mode, a.nsems, p.uid, p.gid, p.cuid, p.cgid, a.otime, a.ctime))
    return b"".join(out)


def sysvipc_dir(fs, kernel_of):
    """/proc/sysvipc; kernel_of() gives the kernel (None in unit tests)."""
    from sentry.vfs.procfs import GenInode, StaticDir
    d = StaticDir(fs)
    for name, gen in ((b"shm", gen_shm), (b"msg", gen_msg), (b"sem", gen_sem)):
        d.add(name, GenInode(fs, (lambda g: lambda: g(kernel_of()))(gen), 0o444, write_errno=E.EIO))
    return d


# --- the sysctls ---------------------------------------------------------------------------------
def _parse(data: bytes, count: int, lo: int, hi: int, store) -> int:
    """proc_dointvec(_minmax) / proc_doulongvec_minmax's write: up to count numbers, each
    stored (store(i, value)) as it is read; EINVAL at the first bad or out-of-range one."""
    words = bytes(data).split()
    for i, word in enumerate(words[:count]):
        try:
            value = int(word, 10)
        except ValueError:
            raise Errno(E.EINVAL) from None
        if not lo <= value <= hi or word.startswith(b"+"):
            raise Errno(E.EINVAL)
        store(i, value)
    return len(data)


def _knob(fs, kernel_of, attr: str, lo: int, hi: int, after=None, mode: int = 0o644):
    """One number kept as attr of the caller's IpcNamespace."""
    from sentry.vfs.procfs import GenInode

    def read():
        return b"%d\n" % getattr(_ns(kernel_of()), attr)

    def write(data):
        ns = _ns(kernel_of())

        def store(_, value):
            setattr(ns, attr, value)
            if after is not None:
                after(ns)
        return _parse(data, 1, lo, hi, store)

    return GenInode(fs, read, mode, writer=write, sysctl=True)


def _next_id(fs, kernel_of, family: str):
    """*_next_id: the id the next object of the family gets (-1 for the usual choice)."""
    from sentry.vfs.procfs import GenInode

    def read():
        return b"%d\n" % getattr(_ns(kernel_of()), family).next_id

    def write(data):
        ids = getattr(_ns(kernel_of()), family)

        def store(_, value):
            ids.next_id = value
        return _parse(data, 1, 0, INT_MAX, store)

    return GenInode(fs, read, 0o644, writer=write, sysctl=True)


def _sem(fs, kernel_of):
    """sem: semmsl, semmns, semopm, semmni (semmni at most IPCMNI, or it is put back)."""
    from sentry.vfs.procfs import GenInode

    def read():
        return b"%d\t%d\t%d\t%d\n" % tuple(_ns(kernel_of()).sem_ctls)

    def write(data):
        ns = _ns(kernel_of())
        semmni = ns.sem_ctls[3]

        def store(i, value):
            ns.sem_ctls[i] = value
        n = _parse(data, 4, -INT_MAX - 1, INT_MAX, store)
        if not 0 <= ns.sem_ctls[3] <= IPCMNI:
            ns.sem_ctls[3] = semmni
            raise Errno(E.ERANGE)  # sem_check_semmni
        return n

    return GenInode(fs, read, 0o644, writer=write, sysctl=True)


def _destroy_orphans(ns) -> None:
    if ns.shm_rmid_forced:
        from sentry.ipc import shm
        shm.destroy_orphans(ns)


def add_sysctls(fs, kern, fsd, kernel_of) -> None:
    """The IPC knobs: in kern (/proc/sys/kernel) and fsd (/proc/sys/fs)."""
    from sentry.vfs.procfs import GenInode, StaticDir
    for name, attr, lo, hi, after in (
            (b"shmmax", "shm_ctlmax", 0, ULONG_MAX, None),
            (b"shmall", "shm_ctlall", 0, ULONG_MAX, None),
            (b"shmmni", "shm_ctlmni", 0, IPCMNI, None),
            (b"shm_rmid_forced", "shm_rmid_forced", 0, 1, _destroy_orphans),
            (b"msgmax", "msg_ctlmax", 0, INT_MAX, None),
            (b"msgmni", "msg_ctlmni", 0, IPCMNI, None),
            (b"msgmnb", "msg_ctlmnb", 0, INT_MAX, None)):
        kern.add(name, _knob(fs, kernel_of, attr, lo, hi, after))
    kern.add(b"sem", _sem(fs, kernel_of))
    kern.add(b"auto_msgmni", GenInode(fs, lambda: b"0\n", 0o644, writer=lambda d: _parse(d, 1, 0, 1, lambda i, v: None),
                                      sysctl=True))  # "writing to auto_msgmni has no effect"
    for name, family in ((b"sem_next_id", "sem"), (b"msg_next_id", "msg"), (b"shm_next_id", "shm")):
        kern.add(name, _next_id(fs, kernel_of, family))
    mq = fsd.add(b"mqueue", StaticDir(fs))
    for name, attr, lo, hi in ((b"queues_max", "mq_queues_max", -INT_MAX - 1, INT_MAX),
                               (b"msg_max", "mq_msg_max", 1, 65536),
                               (b"msgsize_max", "mq_msgsize_max", 128, 16 << 20),
                               (b"msg_default", "mq_msg_default", 1, 65536),
                               (b"msgsize_default", "mq_msgsize_default", 128, 16 << 20)):
        mq.add(name, _knob(fs, kernel_of, attr, lo, hi))
