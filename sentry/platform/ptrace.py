"""The ptrace platform: guests run natively in host processes the sentry traces.

Every guest syscall stops the host process before the host kernel runs it
(PTRACE_SYSEMU) and is answered by the sentry. The host kernel only ever
execs our stub (stub.py); the guest image is built by injecting mmap,
mprotect and munmap through the stub's syscall instruction, and guest memory
moves in bulk through /proc/PID/mem.
"""
import ctypes
import errno
import os
import signal

from sentry.errors import Errno, SentryError
from sentry.platform import ExitStop, FaultStop, SyscallStop
from sentry.platform import hostcalls as hc
from sentry.platform.stub import (SCRATCH, SECCOMP_SET_MODE_FILTER, STUB_BASE, STUB_SIZE,
                                  STUB_SYSCALL, STUB_TRAP, seccomp_filter, stub_elf)

NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_EXIT_GROUP, NR_SECCOMP = 9, 10, 11, 25, 231, 317
INJECTED = (NR_MMAP, NR_MPROTECT, NR_MUNMAP, NR_MREMAP, NR_EXIT_GROUP)
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2

NAMESPACES = (hc.CLONE_NEWUSER | hc.CLONE_NEWPID | hc.CLONE_NEWNS | hc.CLONE_NEWNET
              | hc.CLONE_NEWIPC | hc.CLONE_NEWUTS)
SYSCALL_STOP = (((signal.SIGTRAP | 0x80) << 8) | 0x7F)   # raw wait status of a syscall stop
FAULT_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}

_ptrace = hc.raw_ptrace
BULK = 64 << 10  # from this size on, guest writes go by process_vm_writev


class PtracePlatform:
    name = "ptrace"
    arch = "x86_64"
    _stub_fd = None

    def __init__(self):
        self.cpu_set = None

    def new_process(self):
        """A fresh host process, stopped, its address space empty but for the stub."""
        if PtracePlatform._stub_fd is None:
            PtracePlatform._stub_fd = hc.memfd_with("sentry-stub", stub_elf())
        pid = _spawn_stub(PtracePlatform._stub_fd)
        self._share_cpu(pid)
        proc = HostProcess(pid)
        return proc, proc.cpu

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


def _spawn_stub(stub_fd: int) -> int:
    """Start the stub in fresh namespaces, seize it before it execs, return its host pid.

    sentry ─fork→ keeper (unshares the namespaces, waits for the stub, dies with
    the sentry) ─fork→ stub: pid 1 of the new pid namespace, no_new_privs, no host
    file descriptors, its own session; it dies with the keeper, and with the
    sentry through PTRACE_O_EXITKILL.
    """
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    sentry_pid = os.getpid()
    keeper = os.fork()
    if keeper == 0:  # keeper; must never return into the sentry's code
        try:
            hc.prctl(hc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != sentry_pid:
                os._exit(1)
            hc.unshare(NAMESPACES)
            stub = os.fork()
            if stub == 0:
                _become_stub(go_r, stub_fd)
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
                  | hc.PTRACE_O_EXITKILL)
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


def _become_stub(go_r: int, stub_fd: int) -> None:
    """In the stub's process: shed everything of the host, wait to be seized, exec."""
    try:
        hc.prctl(hc.PR_SET_PDEATHSIG, signal.SIGKILL)
        hc.prctl(hc.PR_SET_NO_NEW_PRIVS, 1)
        os.setsid()
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) not in (go_r, stub_fd):
                try:
                    os.close(int(fd))
                except OSError:
                    pass
        if os.read(go_r, 1) == b"x":
            os.execve(stub_fd, ["sentry-stub"], {})
    finally:
        os._exit(127)


class HostProcess:
    """One traced host process: the guest's address space, and its CPU."""

    def __init__(self, pid: int):
        self.pid = pid
        self.cpu = PtraceCpu(self, pid)
        self.mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        self.reserved = [(STUB_BASE, STUB_BASE + STUB_SIZE)]  # ranges the guest may not map
        self._clear_host_mappings()
        self._install_seccomp()

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

    def _install_seccomp(self):
        prog = seccomp_filter(INJECTED, STUB_SYSCALL + 2)
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

    # --- guest memory: the MemoryManager checks protections before calling these -----
    def read(self, addr: int, size: int) -> bytes:
        try:
            data = os.pread(self.mem, size, addr)
        except OSError:
            raise Errno(errno.EFAULT) from None
        if len(data) != size:
            raise Errno(errno.EFAULT)
        return data

    def write(self, addr: int, data) -> None:
        # Large guest writes (read(2) results) go by process_vm_writev, straight from
        # the sentry's buffer; it honours page protections, so the loader's writes to
        # pages that are already read-only take /proc/PID/mem, which does not.
        if len(data) >= BULK and hc.process_vm_write(self.pid, addr, data):
            return
        try:
            n = os.pwrite(self.mem, data, addr)
        except OSError:
            raise Errno(errno.EFAULT) from None
        if n != len(data):
            raise Errno(errno.EFAULT)

    # --- injection ---------------------------------------------------------------------
    def inject(self, nr: int, *args) -> int:
        """Run one real syscall in the stopped process, through the stub; returns its result."""
        cpu = self.cpu
        saved = hc.Regs()
        hc.ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(saved))
        regs = hc.Regs.from_buffer_copy(saved)
        regs.rip, regs.rax, regs.orig_rax = STUB_SYSCALL, nr, 0xFFFFFFFFFFFFFFFF
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & 0xFFFFFFFFFFFFFFFF)
        hc.ptrace(hc.PTRACE_SETREGS, cpu.tid, 0, ctypes.addressof(regs))
        hc.ptrace(hc.PTRACE_CONT, cpu.tid, 0, 0)
        while True:
            _, status = os.waitpid(cpu.tid, hc.WALL)
            if not os.WIFSTOPPED(status):
                cpu.gone = status
                raise SentryError("the sandbox process died during setup")
            hc.ptrace(hc.PTRACE_GETREGS, cpu.tid, 0, ctypes.addressof(regs))
            if os.WSTOPSIG(status) == signal.SIGTRAP and regs.rip == STUB_TRAP:
                break
            # Anything else (a group stop, a stray host signal) is swallowed: resume the injection.
            hc.ptrace(hc.PTRACE_CONT, cpu.tid, 0, 0)
        saved.orig_rax = 0xFFFFFFFFFFFFFFFF  # no syscall-restart logic on resume
        hc.ptrace(hc.PTRACE_SETREGS, cpu.tid, 0, ctypes.addressof(saved))
        ret = regs.rax
        return ret - (1 << 64) if ret >= 1 << 63 else ret

    def close(self) -> None:
        """Kill the host process and reap it and its keeper."""
        self.cpu.kill()
        if self.mem is not None:
            os.close(self.mem)
            self.mem = None


class PtraceCpu:
    """One traced host thread: run it to its next stop; read and set its registers."""

    def __init__(self, proc: HostProcess, tid: int):
        self.proc = proc
        self.tid = tid
        self.regs = hc.Regs()
        self._regs_addr = ctypes.addressof(self.regs)
        self.gone = None  # wait status once the host thread has ended

    def set_entry(self, pc: int, sp: int) -> None:
        r = self.regs
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        for name, _ in hc.Regs._fields_:
            if name not in ("cs", "ss", "ds", "es", "fs", "gs", "eflags"):
                setattr(r, name, 0)
        r.rip, r.rsp, r.orig_rax = pc, sp, 0xFFFFFFFFFFFFFFFF
        _check(_ptrace(hc.PTRACE_SETREGS, self.tid, 0, self._regs_addr))

    def run(self):
        """Resume until the next stop the sentry must answer."""
        tid, regs_addr = self.tid, self._regs_addr
        _ptrace(hc.PTRACE_SYSEMU, tid, 0, 0)
        while True:
            _, status = os.waitpid(tid, hc.WALL)
            if status == SYSCALL_STOP:
                _ptrace(hc.PTRACE_GETREGS, tid, 0, regs_addr)
                r = self.regs
                return SyscallStop(r.orig_rax, (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9))
            if not os.WIFSTOPPED(status):
                self.gone = status
                return ExitStop(os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)
            sig = os.WSTOPSIG(status)
            if sig in FAULT_SIGNALS and status >> 16 == 0:
                _ptrace(hc.PTRACE_GETREGS, tid, 0, regs_addr)
                info = (ctypes.c_uint64 * 16)()
                _ptrace(hc.PTRACE_GETSIGINFO, tid, 0, ctypes.addressof(info))
                return FaultStop(sig, info[2], self.regs.rip)
            # Group stops and stray host signals are not the guest's business.
            _ptrace(hc.PTRACE_SYSEMU, tid, 0, 0)

    def set_result(self, value: int) -> None:
        _ptrace(hc.PTRACE_POKEUSER, self.tid, hc.RAX_OFFSET, value & 0xFFFFFFFFFFFFFFFF)

    def set_tls(self, value: int) -> None:
        _check(_ptrace(hc.PTRACE_POKEUSER, self.tid, hc.Regs.fs_base.offset, value))

    def get_tls(self) -> int:
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        return self.regs.fs_base

    def set_gs(self, value: int) -> None:
        """The second segment base (arch_prctl ARCH_SET_GS)."""
        _check(_ptrace(hc.PTRACE_POKEUSER, self.tid, hc.Regs.gs_base.offset, value))

    def get_gs(self) -> int:
        _check(_ptrace(hc.PTRACE_GETREGS, self.tid, 0, self._regs_addr))
        return self.regs.gs_base

    def pc(self) -> int:
        return self.regs.rip

    def cpu_time_ns(self) -> int:
        """CPU time the host thread has used (schedstat's first field, in ns)."""
        try:
            with open(f"/proc/{self.tid}/schedstat", "rb") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def interrupt(self) -> None:
        """End the host thread from any thread (the tracer's waitpid then sees it go)."""
        if self.gone is None:
            try:
                os.kill(self.tid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.gone is None:
            try:
                os.kill(self.tid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while self.gone is None:
                try:
                    _, self.gone = os.waitpid(self.tid, hc.WALL)
                    if os.WIFSTOPPED(self.gone):
                        self.gone = None
                except ChildProcessError:
                    self.gone = -1
        keeper = _spawn_stub.keepers.pop(self.tid, None)
        if keeper:
            try:
                os.waitpid(keeper, 0)
            except ChildProcessError:
                pass


def _check(ret):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
