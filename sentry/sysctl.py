"""The process and file tunables of /proc/sys that the sandbox keeps and enforces: one
set per sandbox (Linux 6.8 keeps them global too), read and written as Linux's
proc_dointvec_minmax does.

- kernel/pid_max: where the pid allocators wrap (sentry/process.py, sentry/namespaces.py);
- kernel/ns_last_pid: the caller's pid namespace's last number (the next is one above);
- fs/nr_open: the most descriptors one table may span (setrlimit's NOFILE ceiling, dup_fd);
- fs/pipe-max-size: the largest F_SETPIPE_SZ without CAP_SYS_RESOURCE;
- fs/pipe-user-pages-soft, -hard: kept and shown; the sandbox's users are not charged per
  pipe page (a pipe's memory is the sentry's), so the limits never bite.
"""
import errno as E

from sentry.errors import Errno

PAGE = 4096
INT_MAX = 0x7FFFFFFF
PID_MAX_DEFAULT = 4194304      # as a 64-bit kernel on many CPUs; PID_MAX_LIMIT too
PID_MAX_LIMIT = 4194304
RESERVED_PIDS = 300            # a wrapped allocator starts above these (alloc_pid)
NR_OPEN_DEFAULT = 1 << 20
NR_OPEN_MIN = 64               # BITS_PER_LONG
NR_OPEN_MAX = INT_MAX & -64    # INT_MAX rounded down to BITS_PER_LONG
PIPE_MAX_SIZE = 1 << 20
PIPE_USER_PAGES_SOFT = 16384   # 1024 pipes of 16 pages


class Sysctls:
    def __init__(self):
        self.pid_max = PID_MAX_DEFAULT
        self.nr_open = NR_OPEN_DEFAULT
        self.pipe_max_size = PIPE_MAX_SIZE
        self.pipe_user_pages_soft = PIPE_USER_PAGES_SOFT
        self.pipe_user_pages_hard = 0
        self.max_map_count = 65530  # vm.max_map_count (DEFAULT_MAX_MAP_COUNT): sentry/mm.py


def next_pid(last: int, pid_max: int, taken) -> int:
    """alloc_pid's cyclic search: the first number above last that taken(nr) refuses
    not, wrapping at pid_max to RESERVED_PIDS (to 1 while the cursor is still below it);
    EAGAIN when every number is taken."""
    low = RESERVED_PIDS if last > RESERVED_PIDS else 1
    nr = last
    for _ in range(pid_max):
        nr += 1
        if nr >= pid_max:
            nr = low
        if not taken(nr):
            return nr
    raise Errno(E.EAGAIN)


def round_pipe_size(size: int) -> int:
    """round_pipe_size: a power of two pages, 0 for what is out of range."""
    if size > 1 << 31:
        return 0
    if size < PAGE:
        return PAGE
    return 1 << (size - 1).bit_length()


def table_span(fds) -> int:
    """sane_fdtable_size: how many descriptors a copy of the table needs (its last open one,
    rounded up to BITS_PER_LONG)."""
    last = max(fds, default=-1)
    return (last + 1 + 63) & ~63


def _parse(data: bytes, lo: int, hi: int) -> int:
    """One integer in [lo, hi], as proc_dointvec_minmax reads it (EINVAL otherwise)."""
    try:
        value = int(bytes(data).split()[0], 0)
    except (ValueError, IndexError):
        raise Errno(E.EINVAL) from None
    if not lo <= value <= hi:
        raise Errno(E.EINVAL)
    return value


def _of(kernel) -> Sysctls:
    """The kernel's set (a stand-in kernel of a unit test has the defaults)."""
    return getattr(kernel, "sysctl", None) or Sysctls()


def add_knobs(fs, kern, fsd, kernel_of) -> None:
    """The knobs above, in kern (/proc/sys/kernel) and fsd (/proc/sys/fs)."""
    from sentry.vfs.procfs import GenInode

    def knob(attr, lo, hi, rounding=None):
        def read():
            return b"%d\n" % getattr(_of(kernel_of()), attr)

        def write(data):
            value = _parse(data, lo(kernel_of()) if callable(lo) else lo, hi)
            if rounding is not None:
                value = rounding(value)
                if not value:
                    raise Errno(E.EINVAL)
            setattr(_of(kernel_of()), attr, value)
            return len(data)
        return GenInode(fs, read, 0o644, writer=write, sysctl=True)

    kern.add(b"pid_max", knob("pid_max", RESERVED_PIDS + 1, PID_MAX_LIMIT))
    kern.add(b"ns_last_pid", _ns_last_pid(fs, kernel_of))
    fsd.add(b"nr_open", knob("nr_open", NR_OPEN_MIN, NR_OPEN_MAX))
    fsd.add(b"pipe-max-size", knob("pipe_max_size", 0, INT_MAX, round_pipe_size))
    fsd.add(b"pipe-user-pages-soft", knob("pipe_user_pages_soft", 0, (1 << 63) - 1))
    fsd.add(b"pipe-user-pages-hard", knob("pipe_user_pages_hard", 0, (1 << 63) - 1))


def _ns_last_pid(fs, kernel_of):
    """kernel/ns_last_pid: the opener's pid namespace's last number; writing it (CAP_SYS_ADMIN
    over that namespace's owner) sets where the next allocation starts (CRIU's way)."""
    from sentry import namespaces as nsm
    from sentry.vfs.procfs import GenInode

    def read():
        k = kernel_of()
        if k is None or k.current is None:
            return b"0\n"
        ns = nsm.pid_ns_of(k.current.proc)
        return b"%d\n" % (ns.last if ns.level > 0 else k.ptable.last_pid)

    def write(data):
        k = kernel_of()
        task = k.current if k is not None else None
        if task is None:
            return len(data)
        ns = nsm.pid_ns_of(task.proc)
        if not nsm.ns_capable(task, ns.owner, nsm.CAP_SYS_ADMIN):
            raise Errno(E.EPERM)
        value = _parse(data, 0, k.sysctl.pid_max)
        if ns.level > 0:
            ns.last = value
        else:
            k.ptable.last_pid = value
        return len(data)
    return GenInode(fs, read, 0o666, writer=write, sysctl=True)
