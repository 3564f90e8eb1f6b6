"""ctypes bindings for the host calls the ptrace platform needs and Python's os lacks."""
import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_POKEUSER = 6
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SYSEMU = 31
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x01
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_TRACEFORK = 0x02
PTRACE_O_TRACECLONE = 0x08
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

WALL = 0x40000000  # __WALL: wait for threads and for tracees that are not our children
WNOTHREAD = 0x20000000  # __WNOTHREAD: only this thread's children and tracees


AUDIT_ARCH_I386 = 0x40000003


class Regs(ctypes.Structure):
    """struct user_regs_struct of x86-64, in PTRACE_GETREGS order."""

    _fields_ = [(n, ctypes.c_uint64) for n in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
        "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
        "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]


RAX_OFFSET = Regs.rax.offset

_ptrace = _libc.ptrace
_ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_ptrace.restype = ctypes.c_long


def _check(ret):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def ptrace(request: int, pid: int, addr=0, data=0) -> int:
    return _check(_ptrace(request, pid, addr, data))


# The hot path binds these once and skips the error check wrapper's extra call.
raw_ptrace = _ptrace
# ptrace without argtypes: half the call's cost (0.3 against 0.6 us), for the loop's own
# requests, whose arguments are pids and small ints (passed as C ints, sign-extended by
# libffi) or ctypes objects (a value: c_ulong; an address: a c_void_p made once).
quick_ptrace = ctypes.CDLL(None, use_errno=True).ptrace
quick_ptrace.restype = ctypes.c_long


def syscall_arch(tid: int) -> int | None:
    """The audit arch of the call a tracee is stopped at the entry of (PTRACE_GET_SYSCALL_INFO:
    AUDIT_ARCH_I386 for int 0x80 from 64-bit code), or None when the host cannot tell."""
    info = (ctypes.c_uint32 * 22)()  # struct ptrace_syscall_info: op, arch, ..., 88 bytes
    if _ptrace(PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), ctypes.addressof(info)) <= 0:
        return None
    return info[1] if info[0] & 0xFF == 1 else None  # PTRACE_SYSCALL_INFO_ENTRY


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def memfd_with(name: str, data: bytes) -> int:
    """A sealed, close-on-exec memory file holding data."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    import fcntl
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW |
                fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd


def tgkill(tgid: int, tid: int, sig: int) -> None:
    """Signal one host thread; a thread already gone is no error."""
    _libc.syscall(234, tgid, tid, sig)  # SYS_tgkill on x86-64 (the ptrace platform's only host)


def current_cpu() -> int:
    return _libc.sched_getcpu()


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_address_of = ctypes.c_void_p.from_buffer  # of a c_char_p: where the bytes it points at are
# Without argtypes (half the call's cost), for VmCopier: its iovec addresses are c_void_p
# objects made once, the rest small ints.
_quick_vm_readv, _quick_vm_writev = _libc.process_vm_readv, _libc.process_vm_writev
_quick_vm_readv.restype = _quick_vm_writev.restype = ctypes.c_ssize_t


def _bytes_offset() -> int | None:
    """Where a bytes object's bytes start, from its id (CPython's PyBytesObject: a fixed
    header), checked against ctypes' own answer; None if the two disagree."""
    probe = b"where are you"
    offset = bytes.__basicsize__ - 1
    return offset if id(probe) + offset == _address_of(ctypes.c_char_p(probe)).value else None


_BYTES_OFFSET = _bytes_offset()
_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.restype, _new_bytes.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_ssize_t)


def buffer_address(data) -> int:
    """Where the bytes of a buffer (bytes, or a writable bytearray/mmap/memoryview) live."""
    if data.__class__ is bytes:
        if _BYTES_OFFSET is not None:
            return id(data) + _BYTES_OFFSET  # (a tenth of the ctypes way's cost)
        return _address_of(ctypes.c_char_p(data)).value
    return ctypes.addressof(ctypes.c_char.from_buffer(data))


class VmCopier:
    """process_vm_writev/readv of one buffer, one copy with no bounce page, through a
    (local, remote) iovec pair allocated once, as four words set by index (a 64 KiB
    socket read's copy into the guest was a third Python work). One per user thread:
    the iovecs are read after the GIL is let go."""
    __slots__ = ("iov", "local", "remote")

    def __init__(self):
        self.iov = (ctypes.c_uint64 * 4)()  # local base, len; remote base, len
        self.local = ctypes.c_void_p(ctypes.addressof(self.iov))
        self.remote = ctypes.c_void_p(self.local.value + 16)

    def write(self, pid: int, addr: int, data) -> bool:
        """data into another process's memory at addr, straight from where it lies; False
        unless all of it went."""
        return self._move(_quick_vm_writev, pid, buffer_address(data), len(data), addr)

    def read(self, pid: int, addr: int, size: int) -> bytes | None:
        """size bytes of another process's memory, read straight into a new bytes object
        (uninitialised until filled, as the C API allows); None unless all of it came."""
        if _BYTES_OFFSET is None:
            return None
        data = _new_bytes(None, size)
        return data if self._move(_quick_vm_readv, pid, id(data) + _BYTES_OFFSET, size, addr) else None

    def read_into(self, pid: int, addr: int, buf) -> bool:
        """Fill a writable buffer from another process's memory; False unless all of it came."""
        return self._move(_quick_vm_readv, pid, buffer_address(buf), len(buf), addr)

    def _move(self, call, pid: int, local: int, size: int, remote: int) -> bool:
        iov = self.iov
        iov[0], iov[1], iov[2], iov[3] = local, size, remote, size
        return call(pid, self.local, 1, self.remote, 1, 0) == size


def signalfd_of(signo: int) -> int:
    """A non-blocking, close-on-exec signalfd for one (blocked) signal."""
    mask = (ctypes.c_uint64 * 16)()
    mask[0] = 1 << (signo - 1)
    return _check(_libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC))
