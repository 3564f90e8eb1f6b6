"""BSD process accounting (acct(2)): while a pid namespace has an accounting file, every
process of it (and of the namespaces below it) that ends appends one struct acct_v3
record to it, as Linux built with CONFIG_BSD_PROCESS_ACCT_V3 does (kernel/acct.c).

The file is the sandbox's own (opened through its VFS, O_WRONLY|O_APPEND): nothing reaches
the host. Turning accounting off or switching files writes a record of the calling process
to the old file first, as Linux's acct_pin_kill does. Linux suspends accounting when the
file's filesystem is nearly full (below 2% free, until 4%); here a write that fails
(ENOSPC, a limit) drops the record, as Linux drops what it cannot write."""
import struct
import time

# struct acct_v3: flag, version, tty, exitcode, uid, gid, pid, ppid, btime, etime (a float),
# utime stime mem io rw minflt majflt swaps (comp_t), comm[16]
ACCT_V3 = struct.Struct("<bBHIIIIIIf8H16s")
ACCT_VERSION = 3   # | ACCT_BYTEORDER, which is 0 on a little-endian machine
AHZ = 100          # the records' tick
AFORK, ASU, ACORE, AXSIG = 0x01, 0x02, 0x08, 0x10


def encode_comp_t(value: int) -> int:
    """Linux's comp_t: a 13-bit mantissa and a base-8 exponent in 3 bits, rounded."""
    exp = rnd = 0
    while value > 0x1FFF:
        rnd = value & 4
        value >>= 3
        exp += 1
    if rnd:
        value += 1
        if value > 0x1FFF:
            value >>= 3
            exp += 1
    if exp > 7:
        return 0xFFFF
    return (exp << 13) + value


class Accounting:
    """One pid namespace's accounting file (bsd_acct_struct)."""
    __slots__ = ("file",)

    def __init__(self, file):
        self.file = file
        file.fd_refs = getattr(file, "fd_refs", 0) + 1  # held as a descriptor would hold it

    def write(self, kernel, proc, ns, exited) -> None:
        """Append proc's record, its ids as ns sees them; exited: (code, signo, core) or None
        for a process still running (the record written when accounting stops)."""
        from sentry.namespaces import nr_in
        from sentry.sched import process_system_ns
        from sentry.timers import process_cpu_ns
        leader = proc.tasks[0] if proc.tasks else None
        started = getattr(proc, "start_time", kernel.boot_time)
        elapsed = max(0.0, time.monotonic() - started)
        # What Linux collects as threads exit (acct_collect): nothing yet for a live process
        flag = exitcode = user_ns = sys_ns = mem_kb = 0
        if exited is not None:
            code, signo, core = exited
            exitcode = (signo | (0x80 if core else 0)) if signo else (code & 0xFF) << 8
            flag = (AXSIG if signo else 0) | (ACORE if core else 0) | (ASU if getattr(proc, "used_privilege", False) else 0)
            if not proc.execed and proc.parent is not None:
                flag |= AFORK  # (PF_FORKNOEXEC; the sandbox's first process came by exec)
            user_ns, sys_ns = process_cpu_ns(proc), process_system_ns(proc)
            # (Linux averages the address space's size over its threads' exits; its peak here)
            mem_kb = getattr(getattr(leader, "mm", None), "peak", 0) >> 10
        parent = proc.parent
        tty = proc.tty.rdev if proc.tty is not None and hasattr(proc.tty, "rdev") else 0
        comm = (getattr(leader, "comm", "") or "").encode(errors="replace")[:15] if leader is not None else b""
        record = ACCT_V3.pack(
            flag, ACCT_VERSION, tty & 0xFFFF, exitcode,
            (leader.uid if leader is not None else 0) & 0xFFFFFFFF,
            (leader.gid if leader is not None else 0) & 0xFFFFFFFF,
            _nr(ns, proc, nr_in), _nr(ns, parent, nr_in) if parent is not None else 0,
            max(0, min(int(time.time() - elapsed), 0xFFFFFFFF)), float(int(elapsed * AHZ)),
            encode_comp_t(user_ns * AHZ // 10**9), encode_comp_t(sys_ns * AHZ // 10**9),
            encode_comp_t(mem_kb), 0, 0, 0, 0, 0, comm)
        f = self.file
        try:
            f.pwrite(record, f.inode.size)
        except Exception:  # noqa: BLE001 - a full or failing file drops the record, as Linux
            pass

    def close(self) -> None:
        from sentry.fdtable import drop_ref
        drop_ref(self.file)


def _nr(ns, proc, nr_in) -> int:
    leader = proc.tasks[0] if proc.tasks else None
    if ns.level == 0 or leader is None:
        return proc.pid
    return nr_in(ns, leader)


def switch(t, file) -> None:
    """acct(path) or acct(NULL) from t: its pid namespace's accounting goes to file (None: off);
    the old file gets t's process's record first."""
    from sentry.namespaces import pid_ns_of
    ns = pid_ns_of(t.proc)
    old = getattr(ns, "acct", None)
    if old is not None:
        old.write(t.kernel, t.proc, ns, None)
        old.close()
        t.kernel.ptable.accounting -= 1
    ns.acct = Accounting(file) if file is not None else None
    if file is not None:
        t.kernel.ptable.accounting += 1


def process_ended(proc) -> None:
    """proc's last thread is gone: a record in its namespace's accounting file and in every
    ancestor namespace's (Linux's acct_process walks up the pid namespaces)."""
    from sentry.namespaces import pid_ns_of
    ns = pid_ns_of(proc)
    while ns is not None:
        acct = getattr(ns, "acct", None)
        if acct is not None:
            acct.write(proc.kernel, proc, ns, proc.exited)
        ns = ns.parent
