"""The ptrace platform: guests run natively in host processes the sentry traces.

Every guest syscall stops the host process before the host kernel runs it
(PTRACE_SYSEMU, or PTRACE_SYSCALL in a read loop) and is answered by the
sentry, or, a read of a host file the sentry checked, let run as it is
(PtraceCpu.pass_through). The host kernel only ever
execs our stub (stub.py); the guest image is built by injecting mmap,
mprotect and munmap through the stub's syscall instruction, and guest memory
moves in bulk through /proc/PID/mem.
"""
import ctypes
import errno
import os
import signal
import struct
import time
import weakref

import _socket  # the C module: the socket package's import costs start-up time

from sentry import vcpu
from sentry.errors import Errno, SentryError
from sentry.platform import ExitStop, FaultStop, PreemptStop, SyscallStop
from sentry.platform import hostcalls as hc
from sentry.platform.stub import (SCRATCH, SECCOMP_SET_MODE_FILTER, STUB_BASE, STUB_SIZE,
                                  STUB_CODE, STUB_SYSCALL, STUB_TRAP, VSYSCALL_PAGE, seccomp_filter,
                                  stub_elf)

NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_EXIT_GROUP, NR_SECCOMP = 9, 10, 11, 25, 231, 317
NR_RT_SIGACTION, NR_CLONE, NR_MADVISE, NR_PRCTL, NR_ARCH_PRCTL = 13, 56, 28, 157, 158
PR_SET_TSC, PR_TSC_SIGSEGV, ARCH_SET_CPUID = 26, 2, 0x1012
MADV_POPULATE_READ, MADV_POPULATE_WRITE = 22, 23
NR_READ, NR_CLOSE, NR_PREAD64, NR_PWRITE64, NR_RECVMSG, NR_EXIT, NR_DUP3 = 0, 3, 17, 18, 47, 60, 292
INJECTED = (NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_MADVISE, NR_EXIT_GROUP, NR_CLONE, NR_EXIT,
            NR_CLOSE, NR_PREAD64, NR_PWRITE64, NR_RECVMSG, NR_DUP3)  # the last five: host fds passed in
# What the host kernel may run from a guest instruction: a read the sentry passed through
# (PtraceCpu.pass_through), and -1, a call the sentry skipped at a live entry stop.
PASSED_THROUGH = (NR_READ, NR_PREAD64, -1)
PTRACE_SYSCALL = 24
PROT_EXEC = 4
SI_KERNEL = 0x80
SECCOMP_STOP = ((signal.SIGTRAP | (hc.PTRACE_EVENT_SECCOMP << 8)) << 8) | 0x7F  # raw wait status
ORIG_RAX_OFFSET = hc.Regs.orig_rax.offset
MASK64 = 0xFFFFFFFFFFFFFFFF
MIRROR_MAX = 1024  # guest fd numbers mirrored in the traced process (pass_through) stay below
# A guest thread is a host thread of the traced process: memory, host fds (the passed
# ones) and host signal dispositions shared, as the guest's own are.
HOST_THREAD = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000  # VM FS FILES SIGHAND THREAD SYSVSEM
HOST_VM_CHILD = 0x100 | 0x400 | signal.SIGCHLD  # VM FILES: a guest CLONE_VM process
FORK_EVENTS = (hc.PTRACE_EVENT_FORK, hc.PTRACE_EVENT_CLONE)
MAP_SHARED = 0x01
MSG_DONTWAIT, MSG_CMSG_CLOEXEC, MSG_CTRUNC = 0x40, 0x40000000, 0x08
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2

NAMESPACES = (hc.CLONE_NEWUSER | hc.CLONE_NEWPID | hc.CLONE_NEWNS | hc.CLONE_NEWNET
              | hc.CLONE_NEWIPC | hc.CLONE_NEWUTS)
SYSCALL_STOP = (((signal.SIGTRAP | 0x80) << 8) | 0x7F)   # raw wait status of a syscall stop
# What wake() sends a running tracee: never a fault signal, and never delivered (the tracer
# drops it at the signal-delivery stop, as every stray host signal).
WAKE_SIGNAL = signal.SIGURG
KEEPER_BLOCKS = {signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
                 signal.SIGHUP, signal.SIGTERM, signal.SIGWINCH}
FAULT_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}

_ptrace = hc.raw_ptrace
_qptrace = hc.quick_ptrace  # the loop's requests: small ints and ctypes objects only (hostcalls.py)
_ulong = ctypes.c_ulong
_new_tuple = tuple.__new__  # SyscallStop(nr, args) without the named tuple's __new__ (every call makes one)
_WAIT_ANY = hc.WALL | hc.WNOTHREAD  # any tracee of this thread, never another thread's children
BULK = 64 << 10  # from this size on, guest writes go by process_vm_writev


def virtual_cpuid() -> bool:
    """Does cpuid fault, to be answered from the sandbox's virtual CPU? SENTRY_CPUID=virtual
    or host (sentry run --cpuid) says; by default (auto) only where the host is not itself
    a virtual machine: there the hypervisor traps the CPUID-faulting MSR the host kernel
    writes at every switch to and from a sandboxed thread, +5 us on each syscall (+65% on
    bench/run.py's getppid loop, measured on a KVM guest)."""
    mode = os.environ.get("SENTRY_CPUID", "auto")
    if mode in ("virtual", "host"):
        return mode == "virtual"
    from sentry import hostcpu
    return not hostcpu.cpuid(1)[2] >> 31 & 1  # the hypervisor bit


class PtracePlatform:
    name = "ptrace"
    arch = "x86_64"
    _stub_fd = None
    cpuid_trapped = None  # does the host CPU fault cpuid for the sandbox (CPUID faulting)?

    def __init__(self):
        self.cpu_set = None
        self.cpus: dict[int, "PtraceCpu"] = {}  # host tid -> its CPU, for the stops waitpid reports
        self.running = 0                         # how many tracees run (resumed, no stop seen yet)
        self._events = None                      # signalfd of SIGCHLD: a tracee stopped
        self._old_mask = None
        self.woken = False                       # wake() asked a blocked next_stop to return
        self.pending = []                        # (tid, status) a teardown's wait took for another tracee

    def new_process(self):
        """A fresh host process, stopped, its address space empty but for the stub."""
        if PtracePlatform._stub_fd is None:
            PtracePlatform._stub_fd = hc.memfd_with("sentry-stub", stub_elf())
        # A datagram socket pair: host fds (of files the guest maps shared or reads in
        # bulk) travel by SCM_RIGHTS from ours to the stub's end (HostProcess._guest_fd).
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
        try:
            pid = _spawn_stub(PtracePlatform._stub_fd, theirs.fileno())
        except BaseException:
            ours.close()
            theirs.close()
            raise
        self._share_cpu(pid)
        proc = HostProcess(pid, self)
        proc.attach_socket(ours, theirs)
        return proc, proc.cpu

    def clone_thread(self, space: "HostProcess", cpu: "PtraceCpu", process: bool = False) -> "PtraceCpu":
        """A new thread of the process (see HostProcess.clone_thread), or with process, a new
        process in the same memory (CLONE_VM without CLONE_THREAD: vfork, posix_spawn)."""
        return space.clone_thread(cpu, HOST_VM_CHILD if process else HOST_THREAD)

    def fork_process(self, space: "HostProcess", cpu: "PtraceCpu", areas):
        """The forked copy of a process stopped at a syscall: a real host fork (the host
        gives the copy-on-write address space; shared mappings stay shared), its CPU
        set to return 0 from that syscall."""
        child = space.fork(cpu)
        return child, child.cpu

    def exec_process(self, space: "HostProcess", cpu: "PtraceCpu"):
        """An empty address space for execve: the same host process, emptied."""
        space.clear()
        return space, cpu

    # --- the loop's view: which tracee stopped --------------------------------------------
    def next_stop(self, block: bool):
        """(cpu, stop) of a tracee that stopped, or None (none stopped, or none runs)."""
        while self.pending:
            pid, status = self.pending.pop(0)
            cpu = self.cpus.get(pid)
            stop = cpu.decode(status) if cpu is not None else None
            if stop is not None:
                return cpu, stop
        if not self.running:
            return None
        flags = _WAIT_ANY if block else _WAIT_ANY | os.WNOHANG
        cpus = self.cpus
        while True:
            try:
                pid, status = os.waitpid(-1, flags)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            cpu = cpus.get(pid)
            if cpu is not None:
                stop = cpu.decode(status)
                if stop is not None:
                    return cpu, stop
            if not self.running or self.woken:
                self.woken = False
                return None

    def wait_for(self, tid: int) -> int:
        """The next wait status of tracee tid. What other tracees report first is kept for
        next_stop: a wait on tid alone can wait for ever, as a killed thread group's leader
        (or a pid namespace's init) is reported only once the others are reaped, and only
        this thread's waits reap them (a --timeout during a thread bomb hung so)."""
        pending = self.pending
        for i, (pid, status) in enumerate(pending):
            if pid == tid:
                del pending[i]
                return status
        while True:
            pid, status = os.waitpid(-1, _WAIT_ANY)
            if pid == tid:
                return status
            pending.append((pid, status))

    def kill_all(self, cpus) -> None:
        """SIGKILL these host threads at once (a limit ends the sandbox): each is then
        found dead when reaped, where killing and reaping one at a time waited a poll for
        each (a 512-process fork bomb took 3 s past --timeout)."""
        for cpu in cpus:
            if getattr(cpu, "gone", 0) is None:
                _kill_quietly(cpu.tid)

    def reap(self, cpu: "PtraceCpu") -> None:
        """Wait until cpu's host thread, killed, is gone. Its end may wait for other tracees
        (a pid namespace's init ends after every process of its namespace is reaped, and only
        the tracer can reap a traced zombie): what the wait reports of those is taken too,
        the stops and ends of tracees still driven kept for next_stop, any other reaped."""
        delay = 0.00005  # a killed stub is gone within ~0.1 ms: poll soon, then back off to 2 ms
        while cpu.gone is None:
            try:
                pid, status = os.waitpid(-1, _WAIT_ANY | os.WNOHANG)
            except ChildProcessError:
                cpu.gone = -1
                return
            if pid == 0:  # nothing yet: is it still there at all (reaped by an earlier wait)?
                try:
                    os.kill(cpu.tid, 0)
                except ProcessLookupError:
                    cpu.gone = -1
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
                continue
            if pid == cpu.tid:
                if not os.WIFSTOPPED(status):
                    cpu.gone = status
                continue  # a stop before SIGKILL takes it
            other = self.cpus.get(pid)
            if other is not None and other.gone is None:
                self.pending.append((pid, status))

    def wake(self) -> None:
        """Make a loop blocked in next_stop look up (safe from any thread): a running tracee
        is sent WAKE_SIGNAL, whose stop decode swallows, and next_stop returns None."""
        self.woken = True
        for cpu in list(self.cpus.values()):
            if cpu.running and cpu.gone is None:
                hc.tgkill(cpu.proc.pid, cpu.tid, WAKE_SIGNAL)
                return

    def busy(self):
        return "now" if self.pending else self.running > 0

    def event_fd(self):
        """A fd readable when a tracee stops: a signalfd for SIGCHLD (which the host sends
        the tracer for every tracee stop), with SIGCHLD blocked in this thread."""
        if self._events is None:
            self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            self._events = hc.signalfd_of(signal.SIGCHLD)
        return self._events

    def drain_events(self) -> None:
        try:
            while os.read(self._events, 128 * 16):
                pass
        except BlockingIOError:
            pass

    def close_events(self) -> None:
        if self._events is not None:
            os.close(self._events)
            self._events = None
            if signal.SIGCHLD not in self._old_mask:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})

    def _share_cpu(self, pid: int) -> None:
        """Run the tracee on the CPU of the sentry's thread. Each stop is a hand-off
        between the two; on one CPU it is a plain context switch, across CPUs it
        costs a cross-CPU wake-up, 4x slower on the machines we measured
        (bench/run.py). The sentry sleeps while its tracee runs, so they do not compete."""
        if self.cpu_set is None:
            here = hc.current_cpu()
            self.cpu_set = {here} if here in os.sched_getaffinity(0) else os.sched_getaffinity(0)
            os.sched_setaffinity(0, self.cpu_set)
        os.sched_setaffinity(pid, self.cpu_set)


def _spawn_stub(stub_fd: int, sock_fd: int = -1) -> int:
    """Start the stub in fresh namespaces, seize it before it execs, return its host pid.

    sentry ─fork→ keeper (unshares the namespaces, waits for the stub, dies with
    the sentry) ─fork→ stub: pid 1 of the new pid namespace, no_new_privs, no host
    file descriptors but sock_fd (the end of the socket that passes it files the
    sentry maps into it: HostProcess.map_file), its own session; it dies with the
    keeper, and with the sentry through PTRACE_O_EXITKILL.
    """
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    sentry_pid = os.getpid()
    keeper = os.fork()
    if keeper == 0:  # keeper; must never return into the sentry's code
        try:
            # The keeper shares the sentry's process group: the terminal's Ctrl-C, Ctrl-Z and
            # hang-up are the sentry's to pass on (sentry/console.py), never the keeper's.
            signal.pthread_sigmask(signal.SIG_BLOCK, KEEPER_BLOCKS)
            hc.prctl(hc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != sentry_pid:
                os._exit(1)
            hc.unshare(NAMESPACES)
            stub = os.fork()
            if stub == 0:
                _become_stub(go_r, stub_fd, sock_fd)
            os.write(rep_w, b"%d" % stub)
            os.closerange(0, 65536)
            while True:
                try:
                    os.waitpid(stub, 0)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
        except BaseException as e:  # report, never unwind into the sentry
            try:
                os.write(rep_w, b"E" + str(e).encode()[:200])
            except OSError:
                pass
        os._exit(0)
    os.close(go_r)
    os.close(rep_w)
    reply = os.read(rep_r, 256)
    os.close(rep_r)
    if not reply or reply.startswith(b"E"):
        os.close(go_w)
        os.waitpid(keeper, 0)
        raise SentryError("cannot start the ptrace sandbox: " + (reply[1:].decode() or "setup failed")
                          + " (namespaces or ptrace unavailable? try --platform unicorn)")
    pid = int(reply)
    try:
        hc.ptrace(hc.PTRACE_SEIZE, pid, 0, hc.PTRACE_O_TRACESYSGOOD | hc.PTRACE_O_TRACEEXEC
                  | hc.PTRACE_O_EXITKILL | hc.PTRACE_O_TRACEFORK | hc.PTRACE_O_TRACECLONE
                  | hc.PTRACE_O_TRACESECCOMP)
    except OSError as e:
        os.close(go_w)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(keeper, 0)
        raise SentryError(f"cannot trace the sandbox process: {e.strerror}") from None
    os.write(go_w, b"x")
    os.close(go_w)
    _, status = os.waitpid(pid, hc.WALL)
    if status >> 8 != (signal.SIGTRAP | (hc.PTRACE_EVENT_EXEC << 8)):
        _kill_quietly(pid)
        raise SentryError(f"the sandbox stub did not start (wait status {status:#x})")
    _spawn_stub.keepers[pid] = keeper
    return pid


_spawn_stub.keepers = {}


def _become_stub(go_r: int, stub_fd: int, sock_fd: int = -1) -> None:
    """In the stub's process: shed everything of the host, wait to be seized, exec."""
    try:
        hc.prctl(hc.PR_SET_PDEATHSIG, signal.SIGKILL)
        hc.prctl(hc.PR_SET_NO_NEW_PRIVS, 1)
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # wake() must reach every tracee
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) not in (go_r, stub_fd, sock_fd):
                try:
                    os.close(int(fd))
                except OSError:
                    pass
        if sock_fd >= 0:
            os.set_inheritable(sock_fd, True)  # kept across the exec, at the same number
        if os.read(go_r, 1) == b"x":
            os.execve(stub_fd, ["sentry-stub"], {})
    finally:
        os._exit(127)


class HostProcess:
    """One traced host process: the guest's address space, and its CPU."""

    def __init__(self, pid: int, platform: PtracePlatform, reserved=None):
        self.pid = pid
        # Host fds passed into the process (see map_file): the socket they travel by,
        # id(Backing) -> (weak reference, fd number in the process), numbers to close.
        self._sock = self._sock_peer = None
        self._guest_sock = -1
        self._passed = {}
        self._closing = []
        self._mirrors = {}  # guest fd number -> weak reference to the Backing at that host fd
        self._quick = None  # registers for read_file's injection
        self.platform = platform
        self.cpu = PtraceCpu(self, pid)  # the thread injections go through (the kernel sets it)
        self.threads = [self.cpu]        # every live host thread's CPU, the first host thread first
        platform.cpus[pid] = self.cpu
        self.mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        self._pagemap = None  # /proc/PID/pagemap, opened when residency is first asked
        self._vm = hc.VmCopier()  # bulk copies into and out of its memory
        self.forked_pid = None   # the host pid of the last child an injected clone made
        self.ready = reserved is not None  # set up (a fork inherits it all): a death is the guest's
        if reserved is not None:  # a fork: the stub, its filter and its dispositions are inherited
            self.reserved = list(reserved)
            return
        self.reserved = [(STUB_BASE, STUB_BASE + STUB_SIZE)]  # ranges the guest may not map
        self._clear_host_mappings()
        self._ignore_children()
        self._hide_stub()
        self._trap_cpu_identity()
        self._install_seccomp()
        self.ready = True

    def _hide_stub(self):
        """The stub's code page execute-only: where the host has protection keys, the host
        kernel gives PROT_EXEC alone a key that denies data access, so guest code reading
        it faults (without them the page stays readable: x86 cannot refuse reads otherwise)."""
        ret = self.inject(NR_MPROTECT, STUB_BASE, SCRATCH - STUB_BASE, PROT_EXEC)
        if ret != 0:
            raise SentryError(f"cannot set up the sandbox process: mprotect: {os.strerror(-ret)}")

    def _trap_cpu_identity(self):
        """rdtsc/rdtscp and cpuid fault in the process (PR_TSC_SIGSEGV; CPUID faulting where
        the CPU has it), inherited by its clones: the sentry answers them from the sandbox's
        TSC and virtual CPU (sentry/vcpu.py, PtraceCpu._emulate) instead of the host's."""
        if self.inject(NR_PRCTL, PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) != 0:
            raise SentryError("cannot set up the sandbox process: prctl(PR_SET_TSC) refused")
        if not virtual_cpuid():
            PtracePlatform.cpuid_trapped = False  # the host's cpuid shows (README: known to leak)
            return
        # ENODEV without CPUID faulting: cpuid then shows the host's (README: known to leak)
        PtracePlatform.cpuid_trapped = self.inject(NR_ARCH_PRCTL, ARCH_SET_CPUID, 0) == 0

    def _ignore_children(self):
        """SIGCHLD ignored in the host process: a host child (a forked guest process) that
        ends is then released as soon as the sentry, its tracer, has seen it end, and
        never lingers as a host zombie of its host parent."""
        os.pwrite(self.mem, (1).to_bytes(8, "little") + bytes(24), SCRATCH)  # SIG_IGN, no flags
        ret = self.inject(NR_RT_SIGACTION, signal.SIGCHLD, SCRATCH, 0, 8)
        if ret != 0:
            raise SentryError(f"cannot set up the sandbox process: rt_sigaction: {os.strerror(-ret)}")

    def fork(self, cpu: "PtraceCpu") -> "HostProcess":
        """Inject a fork (clone with SIGCHLD) into the process, stopped at a guest syscall;
        the child, traced from birth, gets the guest's registers with 0 as the result."""
        regs = hc.Regs()
        _check(_ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(regs)))
        self.forked_pid = None
        ret = self.inject(NR_CLONE, signal.SIGCHLD, 0, 0, 0, 0)
        child_pid = self._first_stop(ret)
        child = HostProcess(child_pid, self.platform, self.reserved)
        child.inherit_fds(self)  # the host clone has the passed fds at the same numbers
        regs.rax, regs.orig_rax = 0, 0xFFFFFFFFFFFFFFFF
        _check(_ptrace(hc.PTRACE_SETREGS, child_pid, 0, ctypes.addressof(regs)))
        return child

    def _first_stop(self, ret: int) -> int:
        """The host tid an injected clone returned (ret), once it is in its first stop
        (PTRACE_EVENT_STOP): traced from birth, from then on it is ours to drive."""
        child = self.forked_pid
        if ret < 0 or child is None:
            raise Errno(-ret if ret < 0 else errno.EAGAIN)
        while True:
            status = self.platform.wait_for(child)
            if not os.WIFSTOPPED(status):
                raise Errno(errno.EAGAIN)
            if status >> 16 == hc.PTRACE_EVENT_STOP:
                return child
            _check(_ptrace(hc.PTRACE_CONT, child, 0, 0))  # ESRCH: killed meanwhile (TaskGone)

    def clone_thread(self, cpu: "PtraceCpu", flags: int = 0) -> "PtraceCpu":
        """A new host thread of this process (or, by flags, a host process sharing its
        memory and host fds), injected through cpu (stopped at the guest's clone): traced
        from birth, it gets cpu's guest registers with 0 as the result."""
        regs = hc.Regs()
        _check(_ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(regs)))
        self.forked_pid = None
        tid = self._first_stop(self.inject(NR_CLONE, flags or HOST_THREAD, 0, 0, 0, 0))
        regs.rax, regs.orig_rax = 0, 0xFFFFFFFFFFFFFFFF
        _check(_ptrace(hc.PTRACE_SETREGS, tid, 0, ctypes.addressof(regs)))
        thread = PtraceCpu(self, tid)
        self.threads.append(thread)
        self.platform.cpus[tid] = thread
        return thread

    def clear(self) -> None:
        """Unmap everything the guest had (execve): all but the stub and what is reserved."""
        lo = 0x10000
        for start, end in sorted(self.reserved) + [(1 << 47, 1 << 47)]:
            if start > lo:
                self.inject(NR_MUNMAP, lo, start - lo)
            lo = max(lo, end)

    # --- building the address space -------------------------------------------------
    def _clear_host_mappings(self):
        """Unmap what the host kernel put there for the stub (its stack, vdso, vvar)."""
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo >= 1 << 47 or STUB_BASE <= lo < STUB_BASE + STUB_SIZE:
                    continue
                if self.inject(NR_MUNMAP, lo, hi - lo) != 0:
                    self.reserved.append((lo, hi))  # [vvar] refuses: keep the guest off it
                    # and unreadable: it holds the host's clock data (its uptime, TSC scale)
                    self.inject(NR_MPROTECT, lo, hi - lo, 0)

    def _install_seccomp(self):
        prog = seccomp_filter(INJECTED, STUB_SYSCALL + 2, anywhere=PASSED_THROUGH,
                              clone_flags=(signal.SIGCHLD, HOST_THREAD, HOST_VM_CHILD))
        fprog = SCRATCH + 16
        os.pwrite(self.mem, (len(prog) // 8).to_bytes(8, "little") + fprog.to_bytes(8, "little")
                  + prog, SCRATCH)
        ret = self.inject(NR_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, SCRATCH)
        if ret != 0:
            raise SentryError(f"cannot confine the sandbox process with seccomp: {os.strerror(-ret)}")

    def map(self, start: int, length: int, prot: int) -> None:
        """Anonymous zeroed memory at exactly [start, start+length), replacing what was there."""
        ret = self.inject(NR_MMAP, start, length, prot, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS
                          | MAP_NORESERVE, -1 & 0xFFFFFFFFFFFFFFFF, 0)
        if ret != start:
            raise Errno(-ret if ret < 0 else errno.ENOMEM)

    def unmap(self, start: int, length: int) -> None:
        self.inject(NR_MUNMAP, start, length)

    def protect(self, start: int, length: int, prot: int) -> None:
        ret = self.inject(NR_MPROTECT, start, length, prot)
        if ret < 0:
            raise Errno(-ret)

    def move(self, old: int, old_len: int, new: int, new_len: int) -> None:
        """Move (and resize) the pages at old to new, as mremap does, without copying."""
        ret = self.inject(NR_MREMAP, old, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new)
        if ret != new:
            raise Errno(-ret if ret < 0 else errno.ENOMEM)

    def populate(self, start: int, length: int, write: bool) -> None:
        """Fault the pages of [start, start+length) in (mlock, MAP_POPULATE)."""
        self.inject(NR_MADVISE, start, length, MADV_POPULATE_WRITE if write else MADV_POPULATE_READ)

    def resident(self, start: int, length: int) -> bytes:
        """One byte per page: 1 if the host has it in memory (present or swapped out, from
        the traced process's /proc/PID/pagemap, readable while it runs)."""
        try:
            if self._pagemap is None:
                self._pagemap = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            n = length // 4096
            raw = os.pread(self._pagemap, 8 * n, 8 * (start // 4096))
        except OSError:  # the process is gone (killed by a limit): nothing is resident
            raise TaskGone() from None
        return bytes(1 if e >> 62 else 0 for e in memoryview(raw[:len(raw) & ~7]).cast("Q")).ljust(n, b"\0")

    # --- guest memory: the MemoryManager checks protections before calling these -----
    def read(self, addr: int, size: int) -> bytes:
        if size >= BULK:  # (one copy, where /proc/PID/mem copies twice through a bounce page)
            data = self._vm.read(self.pid, addr, size)
            if data is not None:
                return data
        try:
            data = os.pread(self.mem, size, addr)
        except OSError:
            raise Errno(errno.EFAULT) from None
        if len(data) != size:
            raise Errno(errno.EFAULT)
        return data

    def read_into(self, addr: int, buf) -> None:
        """Fill a writable buffer (a memoryview) with guest memory from addr."""
        if len(buf) >= BULK and self._vm.read_into(self.pid, addr, buf):
            return
        try:
            n = os.preadv(self.mem, [buf], addr)
        except OSError:
            raise Errno(errno.EFAULT) from None
        if n != len(buf):
            raise Errno(errno.EFAULT)

    def write(self, addr: int, data) -> None:
        # Large guest writes (read(2) results) go by process_vm_writev, straight from
        # the sentry's buffer; it honours page protections, so the loader's writes to
        # pages that are already read-only take /proc/PID/mem, which does not.
        if len(data) >= BULK and self._vm.write(self.pid, addr, data):
            return
        try:
            n = os.pwrite(self.mem, data, addr)
        except OSError:
            raise Errno(errno.EFAULT) from None
        if n != len(data):
            raise Errno(errno.EFAULT)

    # --- injection ---------------------------------------------------------------------
    def inject(self, nr: int, *args) -> int:
        """Run one real syscall in the stopped process, through the stub; returns its result.
        The thread must come back to the stub's trap: anything else (a fault, a trap
        elsewhere) means the stub is not ours any more, and the process is killed."""
        cpu = self.cpu
        if cpu.running:  # never one that runs, or whose stop is not yet waited for (it would be lost)
            cpu = next((c for c in self.threads if not c.running and c.gone is None), cpu)
        try:
            return self._inject(cpu, nr, args)
        except ProcessLookupError:  # the thread was killed under us (a limit, --timeout)
            raise self._gone(cpu) from None

    def _inject(self, cpu: "PtraceCpu", nr: int, args) -> int:
        saved = hc.Regs()
        hc.ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(saved))
        regs = hc.Regs.from_buffer_copy(saved)
        regs.rip, regs.rax, regs.orig_rax = STUB_SYSCALL, nr, 0xFFFFFFFFFFFFFFFF
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & 0xFFFFFFFFFFFFFFFF)
        hc.ptrace(hc.PTRACE_SETREGS, cpu.tid, 0, ctypes.addressof(regs))
        hc.ptrace(hc.PTRACE_CONT, cpu.tid, 0, 0)
        while True:
            status = self.platform.wait_for(cpu.tid)
            if not os.WIFSTOPPED(status):
                raise self._gone(cpu, status)
            hc.ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(regs))
            if os.WSTOPSIG(status) == signal.SIGTRAP and regs.rip == STUB_TRAP:
                break
            if status >> 16 == 0 and os.WSTOPSIG(status) in FAULT_SIGNALS or not self._in_stub(regs.rip):
                raise self._stub_lost(cpu, nr, os.WSTOPSIG(status), regs.rip)
            if status >> 16 in FORK_EVENTS:
                msg = ctypes.c_ulong()
                hc.ptrace(hc.PTRACE_GETEVENTMSG, cpu.tid, 0, ctypes.addressof(msg))
                self.forked_pid = msg.value
            # Anything else (a group stop, a stray host signal) is swallowed: resume the injection.
            hc.ptrace(hc.PTRACE_CONT, cpu.tid, 0, 0)
        saved.orig_rax = 0xFFFFFFFFFFFFFFFF  # no syscall-restart logic on resume
        hc.ptrace(hc.PTRACE_SETREGS, cpu.tid, 0, ctypes.addressof(saved))
        cpu.live = False  # the thread left the syscall it stopped in (skipped) for the stub
        ret = regs.rax
        return ret - (1 << 64) if ret >= 1 << 63 else ret

    def _gone(self, cpu: "PtraceCpu", status: int | None = None) -> Exception:
        """What to raise when the thread an injection runs in is gone or going: an ordinary
        event once the guest runs (the kernel loop hears of the end as an ExitStop, from
        the wait status this wait took, or from its own wait), a setup failure before."""
        if status is not None:
            cpu.gone = status
            self.platform.pending.append((cpu.tid, status))
        if not self.ready:
            return SentryError("the sandbox process died during setup")
        return TaskGone()

    def _in_stub(self, pc: int) -> bool:
        """At a stray stop inside an injection (a signal, a group stop, a fork event): is the
        thread still in the stub's code, and is that code still the stub's? (Only then is
        the injection resumed. A loop that never stops is ended by the limits' SIGKILL.)"""
        if not STUB_BASE <= pc < SCRATCH:
            return False
        try:
            return os.pread(self.mem, len(STUB_CODE), STUB_SYSCALL) == STUB_CODE
        except OSError:
            return True  # the process is going: its end is what the wait reports next

    def _stub_lost(self, cpu: "PtraceCpu", nr: int, sig: int, pc: int) -> Exception:
        """An injected call did not come back to the stub's trap: the stub's pages are not
        what the sentry put there. Never resume such a process: kill it, say so."""
        _alarm(cpu, f"the sandbox process's stub did not return from an injected syscall {nr} "
                   f"({signal.Signals(sig).name} at pc {pc:#x}, the stub's code changed or left): "
                   f"the sandbox is ended")
        _kill_quietly(self.pid)
        return self._gone(cpu)

    # --- host fds passed in: shared file mappings, reads straight into guest memory -------
    # The traced process holds host fds the sentry passes it (a host file open as the
    # guest opened it, a memory file's memfd), so that injected mmap and pread64 can use
    # them. Guest code can never use them on its own: every syscall instruction it runs
    # stops before the host kernel sees it (PTRACE_SYSEMU or PTRACE_SYSCALL), and the
    # only ones let on are reads the sentry checked (pass_through); the seccomp filter
    # admits nothing else from guest code. A file of a read-only mount is passed
    # O_RDONLY: the host kernel refuses a writable shared mapping of it whatever the
    # sentry asked.
    def attach_socket(self, sock, peer) -> None:
        """sock: the sentry's end of the socket pair; peer: the process's end (kept open in
        the sentry too, at the fd number it has in the process, to drain a failed pass)."""
        self._sock, self._sock_peer, self._guest_sock = sock, peer, peer.fileno()

    def inherit_fds(self, parent: "HostProcess") -> None:
        """A fork's child (a host clone) has the parent's socket end and passed fds at the
        same numbers."""
        self._sock, self._sock_peer, self._guest_sock = parent._sock, parent._sock_peer, parent._guest_sock
        for key, (ref, fd) in parent._passed.items():
            b = ref()
            if b is not None and b.fd is not None:
                self._passed[key] = (weakref.ref(b), fd)
                b.hold(self)
        for n, ref in parent._mirrors.items():
            b = ref()
            if b is not None and b.fd is not None:
                self._mirrors[n] = weakref.ref(b)
                b.hold(self)

    def forget(self, backing) -> None:
        """backing's host fd closed in the sentry: close the process's copies at the next chance."""
        entry = self._passed.pop(id(backing), None)
        if entry is not None:
            self._closing.append(entry[1])
        for n in [n for n, ref in self._mirrors.items() if ref() is backing or ref() is None]:
            del self._mirrors[n]
            if entry is None or n != entry[1]:
                self._closing.append(n)

    def mirror(self, backing, n: int) -> bool:
        """Make host fd n of the process backing's descriptor, as the guest's fd n is its
        file, so that the guest's own read(n, ...) can run on the host (pass_through);
        False where it cannot be (n is one of the sentry's own fds in the process)."""
        ref = self._mirrors.get(n)
        if ref is not None and ref() is backing:
            return True
        if not 0 <= n < MIRROR_MAX or n == self._guest_sock:
            return False
        try:
            fd = self._guest_fd(backing)
        except Errno:
            return False
        if fd != n:
            if any(entry[1] == n for entry in self._passed.values()):
                return False  # the sentry's own copy of another file sits there
            if self.inject(NR_DUP3, fd, n, 0x80000) != n:  # O_CLOEXEC
                return False
        self._mirrors[n] = weakref.ref(backing)
        backing.hold(self)
        return True

    def _guest_fd(self, backing) -> int:
        """The fd number in the process of backing's host fd, passed in now if it is not yet."""
        while self._closing:
            self.inject(NR_CLOSE, self._closing.pop())
        entry = self._passed.get(id(backing))
        if entry is not None and entry[0]() is backing:
            return entry[1]
        if self._sock is None or backing.fd is None:
            raise Errno(errno.ENODEV)
        self._sock.sendmsg([b"F"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", backing.fd))])
        # recvmsg into the scratch page: msghdr at +0, its iovec at +64, the control
        # buffer (one SCM_RIGHTS int: CMSG_SPACE(4) = 24 bytes) at +128, the byte at +256.
        msghdr = struct.pack("<QI4xQQQQi4x", 0, 0, SCRATCH + 64, 1, SCRATCH + 128, 24, 0)
        layout = msghdr.ljust(64, b"\0") + struct.pack("<QQ", SCRATCH + 256, 1)
        os.pwrite(self.mem, layout.ljust(128, b"\0") + bytes(24), SCRATCH)
        ret = self.inject(NR_RECVMSG, self._guest_sock, SCRATCH, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)
        raw = os.pread(self.mem, 128 + 24, SCRATCH)
        flags = struct.unpack_from("<i", raw, 48)[0]
        length, level, kind, fd = struct.unpack_from("<QiiI", raw, 128)
        if ret != 1 or flags & MSG_CTRUNC or (length, level, kind) != (20, _socket.SOL_SOCKET, _socket.SCM_RIGHTS):
            self._drain()
            raise Errno(errno.ENOMEM if ret >= 0 else -ret)
        self._passed[id(backing)] = (weakref.ref(backing), fd)
        backing.hold(self)
        return fd

    def _drain(self) -> None:
        """Throw away what a failed pass left queued for the process."""
        self._sock_peer.setblocking(False)
        try:
            while True:
                _, cmsgs, _, _ = self._sock_peer.recvmsg(16, _socket.CMSG_SPACE(64))
                for level, kind, data in cmsgs:
                    if (level, kind) == (_socket.SOL_SOCKET, _socket.SCM_RIGHTS):
                        for (fd,) in struct.iter_unpack("i", data[:len(data) - len(data) % 4]):
                            os.close(fd)
        except OSError:
            pass

    def map_file(self, start: int, length: int, prot: int, backing, offset: int) -> None:
        """backing's pages from offset at exactly [start, start+length), shared with every
        other mapping of them (a host MAP_SHARED mapping: a host fork keeps it shared)."""
        fd = self._guest_fd(backing)
        ret = self.inject(NR_MMAP, start, length, prot, MAP_SHARED | MAP_FIXED, fd, offset)
        if ret != start:
            raise Errno(-ret if ret < 0 else errno.ENOMEM)

    def read_file(self, backing, offset: int, addr: int, size: int) -> int:
        """pread64 from backing straight into guest memory at addr (writable: the
        MemoryManager checked): one copy, by the host kernel. Bytes read, or -errno;
        None when the fd cannot be passed (the process is out of descriptors): the
        caller reads the usual way."""
        return self._file_io(NR_PREAD64, backing, offset, addr, size)

    def write_file(self, backing, offset: int, addr: int, size: int) -> int:
        """pwrite64 to backing straight from guest memory at addr (readable: the
        MemoryManager checked), as read_file."""
        return self._file_io(NR_PWRITE64, backing, offset, addr, size)

    def _file_io(self, nr: int, backing, offset: int, addr: int, size: int) -> int:
        """Called at the guest's read or write syscall stop: the registers the CPU read
        there are the ones to restore, which spares inject() a GETREGS and its record
        keeping."""
        try:
            fd = self._guest_fd(backing)
        except Errno:
            return None
        cpu = self.cpu
        tid, saved = cpu.tid, cpu.regs
        regs = self._quick
        if regs is None:
            regs = self._quick = hc.Regs()
        ctypes.memmove(ctypes.addressof(regs), cpu._regs_addr, ctypes.sizeof(regs))
        regs.rip, regs.rax, regs.orig_rax = STUB_SYSCALL, nr, 0xFFFFFFFFFFFFFFFF
        regs.rdi, regs.rsi, regs.rdx, regs.r10 = fd, addr, size, offset
        regs_addr = ctypes.addressof(regs)
        _check(_ptrace(hc.PTRACE_SETREGS, tid, 0, regs_addr))
        _ptrace(hc.PTRACE_CONT, tid, 0, 0)
        while True:
            status = self.platform.wait_for(tid)
            if not os.WIFSTOPPED(status):
                raise self._gone(cpu, status)
            _ptrace(hc.PTRACE_GETREGS, tid, 0, regs_addr)
            if status >> 8 == signal.SIGTRAP and regs.rip == STUB_TRAP:
                break
            if status >> 16 == 0 and os.WSTOPSIG(status) in FAULT_SIGNALS or not self._in_stub(regs.rip):
                raise self._stub_lost(cpu, nr, os.WSTOPSIG(status), regs.rip)
            _ptrace(hc.PTRACE_CONT, tid, 0, 0)  # a stray stop: resume the injection
        ret = regs.rax
        saved.orig_rax = 0xFFFFFFFFFFFFFFFF  # no syscall-restart logic on resume
        saved.rax = ret  # the guest call's result already, which spares answer() a POKEUSER
        _check(_ptrace(hc.PTRACE_SETREGS, tid, 0, cpu._regs_addr))
        cpu.preset = ret
        cpu.live = False  # the thread left the syscall it stopped in (skipped) for the stub
        return ret - (1 << 64) if ret >= 1 << 63 else ret

    def close(self) -> None:
        """Kill the host process and reap it and its keeper."""
        self._passed.clear()
        self._closing.clear()
        threads = self.threads
        if len(threads) > 1:
            _reap_together(threads)
        for cpu in sorted(threads, key=lambda c: c.tid == self.pid):
            cpu.kill()
            self.platform.cpus.pop(cpu.tid, None)
        self.threads = []
        if self.mem is not None:
            os.close(self.mem)
            self.mem = None
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None


class PtraceCpu:
    """One traced host thread: run it to its next stop; read and set its registers."""

    last_cpu_ns = 0  # its CPU time when last read: what it used once the thread is gone

    def __init__(self, proc: HostProcess, tid: int):
        self.proc = proc
        self.platform = proc.platform
        self.tid = tid
        self.task = None       # the sentry Task it runs (set by the kernel)
        self.running = False
        self.stop_requested = False
        self.regs = hc.Regs()
        self._regs_addr = ctypes.addressof(self.regs)
        self._regs_ptr = ctypes.c_void_p(self._regs_addr)  # (for _qptrace)
        self.gone = None  # wait status once the host thread has ended
        self.parked = False  # a first host thread whose guest thread ended: never resumed
        self.preset = None   # the result register's value, set by the last injection (answer's check)
        # Passed-through reads: after a large read of a host file the thread runs on under
        # PTRACE_SYSCALL (trace_next), so its next syscall stops *live*: at its entry, not
        # yet skipped. A read of a mirrored host fd then runs on the host as it is
        # (pass_through); any other call is skipped there (orig_rax -1) and answered.
        self.trace_next = False
        self.traced = False   # resumed with PTRACE_SYSCALL: its next syscall stop is live
        self.live = False     # stopped at a live entry: the call runs on the host unless skipped
        self.passing = False  # a passed-through call runs: its exit stop comes next

    def set_entry(self, pc: int, sp: int) -> None:
        r = self.regs
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        for name, _ in hc.Regs._fields_:
            if name not in ("cs", "ss", "ds", "es", "fs", "gs", "eflags"):
                setattr(r, name, 0)
        r.rip, r.rsp, r.orig_rax = pc, sp, 0xFFFFFFFFFFFFFFFF
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, self._regs_addr))

    def resume(self) -> None:
        """Let the guest run on to its next stop (which the platform's next_stop reports)."""
        self.preset = None
        tid = self.tid
        if self.live:
            self.live = False
            _ptrace(hc.PTRACE_POKEUSER, tid, ORIG_RAX_OFFSET, MASK64)  # skip the call
        if self.passing:  # a stray stop inside a passed-through call: its exit stop must come
            _ptrace(PTRACE_SYSCALL, tid, 0, 0)
        else:
            self.traced = self.trace_next = False
            _qptrace(hc.PTRACE_SYSEMU, tid, 0, 0)
        if not self.running:
            self.running = True
            self.platform.running += 1

    def answer(self, value: int) -> None:
        """set_result then resume, in one call (every syscall ends with this)."""
        tid = self.tid
        value &= MASK64
        if self.live:
            self.live = False
            _ptrace(hc.PTRACE_POKEUSER, tid, ORIG_RAX_OFFSET, MASK64)  # skip the call
            _qptrace(hc.PTRACE_POKEUSER, tid, hc.RAX_OFFSET, _ulong(value))
        elif value != self.preset:
            _qptrace(hc.PTRACE_POKEUSER, tid, hc.RAX_OFFSET, _ulong(value))
        self.preset = None
        if self.trace_next:
            # (never from a live stop: its call's exit would stop too; the injection that
            # armed it left the syscall)
            self.trace_next = False
            self.traced = True
            _ptrace(PTRACE_SYSCALL, tid, 0, 0)
        else:
            self.traced = False
            _qptrace(hc.PTRACE_SYSEMU, tid, 0, 0)
        if not self.running:
            self.running = True
            self.platform.running += 1

    def pass_through(self) -> None:
        """At a live entry stop: let the guest's own call run on the host as it is (the
        caller checked it: a read of a host file mirrored at the guest's fd number), then
        the thread runs on; its exit stop is resumed by decode, still under PTRACE_SYSCALL."""
        self.live = False
        self.passing = self.traced = True
        self.preset = None
        _ptrace(PTRACE_SYSCALL, self.tid, 0, 0)
        if not self.running:
            self.running = True
            self.platform.running += 1

    def arm_pass_through(self) -> None:
        """Answer the current call with PTRACE_SYSCALL: the next one stops live."""
        if not self.live:
            self.trace_next = True

    def end_thread(self) -> None:
        """This thread ends while its process goes on: its host thread exits (an injected
        exit). The process's first host thread cannot: Linux reports its end only with the
        whole group's, so it stays stopped, never resumed, until the process ends."""
        tid = self.tid
        if self.running:  # (exec and the like end threads that may be running)
            self.stop_requested = True
            _ptrace(hc.PTRACE_INTERRUPT, tid, 0, 0)
            while self.gone is None:
                status = self.platform.wait_for(tid)
                if not os.WIFSTOPPED(status):
                    self.gone = status
                break
            self.running = False
            self.platform.running -= 1
        self.stop_requested = False
        self.task = None
        if self.gone is not None:
            return
        if tid == self.proc.pid:
            self.parked = True
            return
        regs = hc.Regs()
        try:
            _check(_ptrace(hc.PTRACE_GETREGS, tid, 0, ctypes.addressof(regs)))
            regs.rip, regs.rax, regs.rdi, regs.orig_rax = STUB_SYSCALL, NR_EXIT, 0, 0xFFFFFFFFFFFFFFFF
            _check(_ptrace(hc.PTRACE_SETREGS, tid, 0, ctypes.addressof(regs)))
            _ptrace(hc.PTRACE_CONT, tid, 0, 0)
        except TaskGone:
            pass  # killed meanwhile (its process, by a limit): its end is on its way
        while self.gone is None:
            status = self.platform.wait_for(tid)
            if os.WIFSTOPPED(status):
                _ptrace(hc.PTRACE_CONT, tid, 0, 0)  # a stray stop on its way out
            else:
                self.gone = status
        self.proc.threads.remove(self)
        self.platform.cpus.pop(tid, None)

    def request_stop(self) -> None:
        """Stop the running guest soon: a PreemptStop comes back (PTRACE_INTERRUPT)."""
        if self.running and not self.stop_requested:
            self.stop_requested = True
            _ptrace(hc.PTRACE_INTERRUPT, self.tid, 0, 0)

    def decode(self, status: int):
        """The stop a wait status means, or None when it is not the guest's business
        (then the guest is resumed already)."""
        if self.running:
            self.running = False
            self.platform.running -= 1
        tid = self.tid
        if status == SYSCALL_STOP:
            if self.passing:  # the exit stop of a passed-through call: on, still armed
                self.passing = False
                _ptrace(PTRACE_SYSCALL, tid, 0, 0)
                self.running = True
                self.platform.running += 1
                return None
            _qptrace(hc.PTRACE_GETREGS, tid, 0, self._regs_ptr)
            self.live = self.traced
            r = self.regs
            # The syscall instruction leaves rip in rcx; int 0x80 (or sysenter) does not
            if r.rcx != r.rip and hc.syscall_arch(tid) == hc.AUDIT_ARCH_I386:
                return self._no_compat_abi()
            return _new_tuple(SyscallStop, (r.orig_rax, (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9)))
        if status == SECCOMP_STOP:
            return self._vsyscall()
        if not os.WIFSTOPPED(status):
            self.gone = status
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS and not self.parked:
                _alarm(self, f"the host kernel killed a sandbox process (host pid {self.proc.pid}) for a "
                             f"host syscall its seccomp filter does not admit: the sandbox is ended")
            return None if self.parked else ExitStop(os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)
        if self.parked:
            return None  # left stopped
        self.live = False  # (only a syscall entry stop can be live)
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if event == hc.PTRACE_EVENT_STOP and self.stop_requested:
            self.stop_requested = False
            return PreemptStop()
        if sig in FAULT_SIGNALS and event == 0:
            _ptrace(hc.PTRACE_GETREGS, tid, 0, self._regs_addr)
            info = (ctypes.c_uint64 * 16)()
            _ptrace(hc.PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(info))
            code = info[1] & 0xFFFFFFFF  # si_code, the host kernel's
            if code == SI_KERNEL and sig == signal.SIGSEGV and self._emulate():
                return None  # rdtsc, rdtscp or cpuid: answered, the guest runs on
            return FaultStop(sig, info[2], self.regs.rip, "", code - (1 << 32) if code >> 31 else code)
        # Group stops, stale interrupts and stray host signals are not the guest's business.
        self.resume()
        return None

    def _emulate(self) -> bool:
        """A general protection fault at an rdtsc, rdtscp or cpuid (trapped for the whole
        process: _trap_cpu_identity): set the registers as the sandbox's CPU answers
        (sentry/vcpu.py) and resume past it. False for another fault, or when the guest's
        own PR_TSC_SIGSEGV / ARCH_SET_CPUID asked for the fault: then it is the guest's."""
        r = self.regs
        if r.rip >= 1 << 63:
            return False  # a non-canonical pc (an ELF's entry): no instruction there, the guest's fault
        try:
            kind = vcpu.decode(os.pread(self.proc.mem, 3, r.rip))
        except OSError:
            return False
        if kind is None or self.task is None:
            return False
        out = vcpu.execute(self.task, kind[0], r.rax & 0xFFFFFFFF, r.rcx & 0xFFFFFFFF)
        if out is None:
            return False
        for name, value in zip(("rax", "rbx", "rcx", "rdx"), out):
            if value is not None:
                setattr(r, name, value)  # 32-bit results zero-extend, as the instruction's
        r.rip += kind[1]
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, self._regs_addr))
        self.resume()
        return True

    def _no_compat_abi(self):
        """int 0x80 from 64-bit code: the sandbox has no 32-bit syscall table, so it is
        what a kernel without IA32 emulation makes of it (as the unicorn platform): a
        general protection fault at the instruction, SIGSEGV with SI_KERNEL."""
        r = self.regs
        r.rip -= 2
        r.rax, r.orig_rax = r.orig_rax, MASK64  # the registers as before the instruction
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, self._regs_addr))
        return FaultStop(signal.SIGSEGV, 0, r.rip, "int 0x80 (the 32-bit syscall ABI is not supported)",
                         SI_KERNEL)

    def _vsyscall(self):
        """A call through the vsyscall page, which the host kernel emulates (its
        vsyscall=xonly) and hands to the tracer by the filter's SECCOMP_RET_TRACE: answered
        as the syscall it is. The stop is live: answer() skips the host's own call (orig_rax
        -1) and the host kernel returns the value set to the caller."""
        _ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr)
        r = self.regs
        if r.rip & ~0xFFF != VSYSCALL_PAGE:  # the filter traces nothing else
            _alarm(self, f"a seccomp stop at pc {r.rip:#x}, outside the vsyscall page: the sandbox is ended")
            _kill_quietly(self.tid)
            self.resume()
            return None
        self.live = True
        return SyscallStop(r.orig_rax, (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9))

    def set_result(self, value: int) -> None:
        self.preset = None
        _ptrace(hc.PTRACE_POKEUSER, self.tid, hc.RAX_OFFSET, value & 0xFFFFFFFFFFFFFFFF)

    def set_tls(self, value: int) -> None:
        _check(_ptrace(hc.PTRACE_POKEUSER, self.tid, hc.Regs.fs_base.offset, value))

    def get_tls(self) -> int:
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        return self.regs.fs_base

    def set_sp(self, value: int) -> None:
        """The stack pointer (a clone child's new stack)."""
        _check(_ptrace(hc.PTRACE_POKEUSER, self.tid, hc.Regs.rsp.offset, value & 0xFFFFFFFFFFFFFFFF))

    def set_gs(self, value: int) -> None:
        """The second segment base (arch_prctl ARCH_SET_GS)."""
        _check(_ptrace(hc.PTRACE_POKEUSER, self.tid, hc.Regs.gs_base.offset, value))

    def get_gs(self) -> int:
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        return self.regs.gs_base

    def pc(self) -> int:
        return self.regs.rip

    # --- the whole user state (signal frames) --------------------------------------------
    def get_sp(self) -> int:
        """The stack pointer at the last stop (its registers are read at every stop)."""
        return self.regs.rsp

    _GETFPREGS, _SETFPREGS, _GETREGSET, _SETREGSET, _NT_X86_XSTATE = 14, 15, 0x4204, 0x4205, 0x202
    _xstate_ok = True  # False once the host refused NT_X86_XSTATE (no XSAVE): FXSAVE only

    def get_context(self):
        """Every user register: GPRs, rip, eflags, fs/gs base, and the FP/SIMD state
        (the host's whole XSAVE area where it has one, else the FXSAVE image)."""
        from sentry.platform.context import X86_GPRS, X86Context
        regs = hc.Regs()
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, ctypes.addressof(regs)))
        ctx = X86Context.__new__(X86Context)
        for name in X86_GPRS:
            setattr(ctx, name, getattr(regs, name))
        ctx.fs_base, ctx.gs_base = regs.fs_base, regs.gs_base
        ctx.xfeatures = 0
        if PtraceCpu._xstate_ok:
            buf = ctypes.create_string_buffer(1 << 14)
            iov = hc.IoVec(ctypes.addressof(buf), len(buf))
            if _ptrace(self._GETREGSET, self.tid, self._NT_X86_XSTATE, ctypes.addressof(iov)) == 0 \
                    and iov.len > 512 + 64:
                ctx.fpu = buf.raw[:iov.len]
                ctx.xfeatures = int.from_bytes(ctx.fpu[464:472], "little")  # XCR0, as ptrace puts it
                return ctx
            PtraceCpu._xstate_ok = False
        fp = ctypes.create_string_buffer(512)
        _check(_ptrace(self._GETFPREGS, self.tid, 0, ctypes.addressof(fp)))
        ctx.fpu = fp.raw
        return ctx

    def set_context(self, ctx) -> None:
        """Load every user register from ctx (cs/ss and the other selectors stay)."""
        from sentry.platform.context import X86_GPRS
        regs = hc.Regs()
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, ctypes.addressof(regs)))
        for name in X86_GPRS:
            setattr(regs, name, getattr(ctx, name) & 0xFFFFFFFFFFFFFFFF)
        regs.fs_base, regs.gs_base = ctx.fs_base, ctx.gs_base
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF  # no host syscall-restart logic on resume
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, ctypes.addressof(regs)))
        ctypes.memmove(self._regs_addr, ctypes.addressof(regs), ctypes.sizeof(regs))
        fpu = ctx.fpu
        if len(fpu) > 512:
            buf = ctypes.create_string_buffer(bytes(fpu), len(fpu))
            iov = hc.IoVec(ctypes.addressof(buf), len(fpu))
            if _ptrace(self._SETREGSET, self.tid, self._NT_X86_XSTATE, ctypes.addressof(iov)) == 0:
                return
            fpu = fpu[:512]  # refused (a header the guest spoiled): the legacy part at least
        buf = ctypes.create_string_buffer(bytes(fpu[:512]), 512)
        _check(_ptrace(self._SETFPREGS, self.tid, 0, ctypes.addressof(buf)))

    def cpu_time_ns(self) -> int:
        """CPU time the host thread has used (schedstat's first field, in ns); once it is
        gone, what it had when last read (a kill reads it first: the run's accounting)."""
        try:
            with open(f"/proc/{self.tid}/schedstat", "rb") as f:
                self.last_cpu_ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        return self.last_cpu_ns

    def interrupt(self) -> None:
        """End the host thread from any thread (the tracer's waitpid then sees it go)."""
        if self.gone is None:
            try:
                os.kill(self.tid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.running:
            self.running = False
            self.platform.running -= 1
        if self.gone is None:
            try:
                os.kill(self.tid, signal.SIGKILL)
            except ProcessLookupError:
                self.gone = -1  # already reaped
            self.platform.reap(self)
        keeper = _spawn_stub.keepers.pop(self.tid, None)
        if keeper:
            try:
                os.waitpid(keeper, 0)
            except ChildProcessError:
                pass


def _reap_together(cpus) -> None:
    """SIGKILL a process's host threads and reap them in whatever order they end. One at
    a time would deadlock: Linux reports a group's first thread only after the others
    are reaped, and when the group is a pid namespace's init its last thread waits, in
    zap_pid_ns_processes, until every other thread is reaped, whichever that is."""
    for cpu in cpus:
        if cpu.running:
            cpu.running = False
            cpu.platform.running -= 1
    live = [c for c in cpus if c.gone is None]
    if live:
        _kill_quietly(live[0].tid)  # the whole thread group
    delay = 0.0002
    while live:
        for cpu in list(live):
            try:
                pid, status = os.waitpid(cpu.tid, hc.WALL | os.WNOHANG)
            except ChildProcessError:
                pid, status = cpu.tid, -1
            if pid and not (status != -1 and os.WIFSTOPPED(status)):
                cpu.gone = status
                live.remove(cpu)
        if live:
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def _check(ret):
    if ret == -1:
        e = ctypes.get_errno()
        if e == errno.ESRCH:  # the thread is not stopped for us any more: killed, on its way out
            raise TaskGone()
        raise OSError(e, os.strerror(e))
    return ret


class TaskGone(Errno):
    """The host thread a call needed is gone or dying (killed by a limit, --timeout, a
    fatal signal): an ordinary event, never an internal error. The call's answer (ESRCH)
    reaches nobody; the kernel loop hears of the end from the thread's wait status."""

    def __init__(self):
        super().__init__(errno.ESRCH)


def _alarm(cpu: "PtraceCpu", message: str) -> None:
    """A breach of the platform's own defences (the stub, the host's seccomp filter): the
    whole sandbox ends (the kernel's ended_by, which `sentry run` always prints as a
    `sentry:` line), or, before a task runs, the line goes to stderr."""
    kernel = getattr(cpu.task, "kernel", None)
    if kernel is not None and kernel.ended_by is None:
        kernel.ended_by = message
    else:
        os.write(2, f"sentry: {message}\n".encode())


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# A test-only mode (tests/README.md): SENTRY_TEST_HOST_SYSCALL=NR lets the guest's own
# syscall NR through to the host kernel, as a tracer bug would, to show that the seccomp
# filter kills the process there instead of running the call.
_TEST_HOST_SYSCALL = os.environ.get("SENTRY_TEST_HOST_SYSCALL", "")
if _TEST_HOST_SYSCALL.isdigit():
    _decode = PtraceCpu.decode

    def _decode_letting_through(self, status, nr=int(_TEST_HOST_SYSCALL)):
        stop = _decode(self, status)
        if stop.__class__ is not SyscallStop or stop.nr != nr:
            return stop
        if self.live:  # its entry stop, the call not yet skipped: on to the host
            self.pass_through()
            return None
        # Stopped under PTRACE_SYSEMU, the call already skipped: back to the syscall
        # instruction, resumed under PTRACE_SYSCALL so that it stops live (after the exit
        # stop of the skipped call, which decode passes as a passed-through call's).
        r = self.regs
        r.rip -= 2
        r.rax, r.orig_rax = r.orig_rax, MASK64
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, self._regs_addr))
        self.traced = self.passing = True
        _ptrace(PTRACE_SYSCALL, self.tid, 0, 0)
        self.running = True
        self.platform.running += 1
        return None

    PtraceCpu.decode = _decode_letting_through
