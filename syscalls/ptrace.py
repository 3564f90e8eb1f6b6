"""ptrace(2) between the sandbox's tasks: the requests' ABI (struct layouts, errnos in
Linux's order). The relation and the stops are sentry/ptrace_guest.py's; registers go
through the tracee's register context (cpu.get_context/set_context) and memory through
its MemoryManager, on either platform. Never passed to the host."""
import errno as E
import struct

from sentry import ptrace_guest as pg
from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.registry import PARTIAL, syscall

MASK64 = (1 << 64) - 1
(TRACEME, PEEKTEXT, PEEKDATA, PEEKUSER, POKETEXT, POKEDATA, POKEUSER, CONT, KILL, SINGLESTEP) = range(10)
GETREGS, SETREGS, GETFPREGS, SETFPREGS, ATTACH, DETACH = 12, 13, 14, 15, 16, 17
SYSCALL, SYSEMU, SYSEMU_SINGLESTEP = 24, 31, 32
SETOPTIONS, GETEVENTMSG, GETSIGINFO, SETSIGINFO, GETREGSET, SETREGSET = range(0x4200, 0x4206)
SEIZE, INTERRUPT, LISTEN, PEEKSIGINFO, GETSIGMASK, SETSIGMASK = range(0x4206, 0x420C)
SECCOMP_GET_FILTER, GET_SYSCALL_INFO, ARCH_PRCTL = 0x420C, 0x420E, 30
ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE = 1, 2, 0x202
SIGKILL, SIGSTOP = 9, 19

# struct user_regs_struct (x86-64), in its order
USER_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
             "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base",
             "ds", "es", "fs", "gs")
REGS_SIZE = 8 * len(USER_REGS)  # 216
SELECTORS = {"cs": 0x33, "ss": 0x2B, "ds": 0, "es": 0, "fs": 0, "gs": 0}  # a 64-bit task's, fixed
SIZEOF_USER = 928
DEBUGREG = 848  # offsetof(struct user, u_debugreg)
TASK_SIZE_MAX = (1 << 47) - 4096
# the flags a tracer may change (Linux's FLAG_MASK): CF PF AF ZF SF TF DF OF RF AC
EFLAGS_MASK = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x10000 | 0x40000
AUDIT_ARCH_X86_64 = 0xC000003E


def _traced(t, pid: int, need_stop: bool = True):
    """ptrace_check_attach: the task t's process traces, stopped (unless not needed); ESRCH."""
    from sentry.namespaces import find_task
    task = find_task(t, pid) if pid > 0 else None
    tr = task.ptrace if task is not None else None
    if tr is None or tr.tracer.proc is not t.proc or task.exit_status is not None:
        raise Errno(E.ESRCH)
    if need_stop and tr.stop is None:
        raise Errno(E.ESRCH)
    return task, tr


def _x86(task) -> None:
    if task.kernel.arch != "x86_64":
        raise Errno(E.EIO)  # the register requests speak x86-64's structs only


# --- registers -------------------------------------------------------------------------------------
def _user_regs(task, tr) -> list:
    ctx = task.cpu.get_context()
    out = []
    for name in USER_REGS:
        if name == "orig_rax":
            out.append(tr.orig_rax & MASK64)
        elif name in SELECTORS:
            out.append(SELECTORS[name])
        else:
            out.append(getattr(ctx, name) & MASK64)
    return out


def _set_user_regs(task, tr, values) -> None:
    """putreg for each: EIO for a selector without RPL 3, a base past user space."""
    ctx = task.cpu.get_context()
    for name, v in zip(USER_REGS, values):
        if name in SELECTORS:
            if name in ("cs", "ss") and (v & 3) != 3 or name not in ("cs", "ss") and v and (v & 3) != 3 \
                    or v > 0xFFFF:
                raise Errno(E.EIO)
        elif name in ("fs_base", "gs_base") and v >= TASK_SIZE_MAX:
            raise Errno(E.EIO)
    for name, v in zip(USER_REGS, values):
        if name == "orig_rax":
            tr.orig_rax = v
        elif name == "eflags":
            ctx.eflags = (ctx.eflags & ~EFLAGS_MASK) | (v & EFLAGS_MASK)
        elif name not in SELECTORS:
            setattr(ctx, name, v)
    task.cpu.set_context(ctx)


def _peekuser(task, tr, off: int) -> int:
    if off & 7 or off >= SIZEOF_USER:
        raise Errno(E.EIO)
    if off < REGS_SIZE:
        return _user_regs(task, tr)[off // 8]
    if DEBUGREG <= off < DEBUGREG + 64:
        return tr.debugregs[(off - DEBUGREG) // 8]
    return 0


def _pokeuser(task, tr, off: int, value: int) -> None:
    if off & 7 or off >= SIZEOF_USER:
        raise Errno(E.EIO)
    if off < REGS_SIZE:
        regs = _user_regs(task, tr)
        regs[off // 8] = value
        _set_user_regs(task, tr, regs)
    elif DEBUGREG <= off < DEBUGREG + 64:
        _set_debugreg(tr, (off - DEBUGREG) // 8, value)
    else:
        raise Errno(E.EIO)


_BP_SIZE = {0: 1, 1: 2, 3: 4, 2: 8}  # DR7's LEN field: the bytes a data breakpoint watches


def _check_breakpoint(addr: int, rw: int, ln: int) -> None:
    """What Linux's hw_breakpoint checks of one slot: no I/O breakpoints, an execution one
    one byte long, a data one aligned to its length, never a kernel address (EINVAL)."""
    if rw == 2 or rw == 0 and ln != 0 or rw and addr & (_BP_SIZE[ln] - 1) or addr >= TASK_SIZE_MAX:
        raise Errno(E.EINVAL)


def _set_debugreg(tr, n: int, value: int) -> None:
    """ptrace_set_debugreg: DR0-3 a user address, DR6 anything, DR7 a control word whose
    every slot that has (or gets) a breakpoint is valid; DR4/5 do not exist (EIO). A slot
    gets its breakpoint when its address is set or it is enabled, as Linux registers one.
    Kept, never armed on the CPU."""
    dr7 = tr.debugregs[7]
    if n < 4:
        if n in tr.hw_slots or dr7 >> (2 * n) & 3:
            _check_breakpoint(value, dr7 >> (16 + 4 * n) & 3, dr7 >> (18 + 4 * n) & 3)
        elif value >= TASK_SIZE_MAX:
            raise Errno(E.EINVAL)
        tr.hw_slots.add(n)
    elif n == 7:
        enabled = {i for i in range(4) if value >> (2 * i) & 3}  # (the reserved bits 10-15 are kept, unchecked)
        for i in sorted(enabled | tr.hw_slots):
            _check_breakpoint(tr.debugregs[i], value >> (16 + 4 * i) & 3, value >> (18 + 4 * i) & 3)
        tr.hw_slots |= enabled
    elif n != 6:
        raise Errno(E.EIO)
    tr.debugregs[n] = value


def _fpregs(task) -> bytes:
    return bytes(task.cpu.get_context().fpu[:512])


def _set_fpregs(task, data: bytes) -> None:
    """xfpregs_set: the whole FXSAVE image; EINVAL for MXCSR bits the CPU does not have."""
    if len(data) != 512 or int.from_bytes(data[24:28], "little") & ~0xFFFF:
        raise Errno(E.EINVAL)
    ctx = task.cpu.get_context()
    ctx.fpu = bytes(data) + bytes(ctx.fpu[512:])
    task.cpu.set_context(ctx)


def _regset(task, tr, kind: int) -> bytes:
    if kind == NT_PRSTATUS:
        return struct.pack("<27Q", *_user_regs(task, tr))
    if kind == NT_PRFPREG:
        return _fpregs(task)
    if kind == NT_X86_XSTATE:
        ctx = task.cpu.get_context()
        if not getattr(ctx, "xfeatures", 0):
            raise Errno(E.ENODEV)  # no XSAVE area (the emulated CPU): as a CPU without XSAVE
        return bytes(ctx.fpu)
    raise Errno(E.EINVAL)


def _set_regset(task, tr, kind: int, data: bytes) -> None:
    if kind == NT_PRSTATUS:
        regs = _user_regs(task, tr)
        n = len(data) // 8
        regs[:n] = struct.unpack(f"<{n}Q", data[:8 * n])
        _set_user_regs(task, tr, regs)
    elif kind == NT_PRFPREG:
        _set_fpregs(task, data)  # (only whole: EINVAL for a part)
    elif kind == NT_X86_XSTATE:
        ctx = task.cpu.get_context()
        if not getattr(ctx, "xfeatures", 0):
            raise Errno(E.ENODEV)
        if len(data) != len(ctx.fpu):
            raise Errno(E.EFAULT)  # xstateregs_set takes the whole area only
        whole = bytearray(data)
        xstate_bv, xcomp_bv = struct.unpack_from("<QQ", whole, 512)
        if xcomp_bv or xstate_bv & ~ctx.xfeatures or any(whole[528:576]):
            raise Errno(E.EINVAL)  # the header's reserved parts (x86/fpu: no bogus xcomp_bv)
        ctx.fpu = bytes(whole)
        task.cpu.set_context(ctx)
    else:
        raise Errno(E.EINVAL)


# --- memory ------------------------------------------------------------------------------------------
def _peek(task, addr: int) -> int:
    """One word of the tracee's memory, whatever its protection (FOLL_FORCE); EIO if unmapped."""
    try:
        task.mm.check(addr, 8, 0)
        return int.from_bytes(task.mm.space.read(addr, 8), "little")
    except Errno:
        raise Errno(E.EIO) from None


def _poke(task, addr: int, value: int) -> None:
    try:
        task.mm.check(addr, 8, 0)
        task.mm.space.write(addr, (value & MASK64).to_bytes(8, "little"))
    except Errno:
        raise Errno(E.EIO) from None


# --- attaching ---------------------------------------------------------------------------------------
def _attach(t, pid: int, seize: bool, addr: int, data: int) -> int:
    from sentry import signals
    from sentry.namespaces import find_task
    from syscalls.crossproc import PTRACE_MODE_ATTACH, PTRACE_MODE_REALCREDS, may_access
    if seize and (addr or data & ~pg.O_MASK):
        raise Errno(E.EIO)
    task = find_task(t, pid) if pid > 0 else None
    if task is None:
        raise Errno(E.ESRCH)
    if task.proc is t.proc:
        raise Errno(E.EPERM)  # its own thread group
    if not may_access(t, task, PTRACE_MODE_ATTACH | PTRACE_MODE_REALCREDS):
        raise Errno(E.EPERM)
    if task.exit_status is not None or task.proc.exiting or task.ptrace is not None:
        raise Errno(E.EPERM)
    pg.attach(t, task, seize, data if seize else 0)
    t.traces = True
    if not seize:
        signals.send(task, SIGSTOP)
    return 0


def _traceme(t) -> int:
    proc = t.proc
    if t.ptrace is not None or proc.parent is None:
        raise Errno(E.EPERM)  # already traced; or the sandbox's first program (its parent is outside)
    tracer = proc.creator if proc.creator is not None and proc.creator.exit_status is None else \
        next((x for x in proc.parent.tasks if x.exit_status is None), None)
    if tracer is None:
        raise Errno(E.EPERM)
    pg.attach(tracer, t, False)
    tracer.traces = True
    return 0


def _arch_prctl(t, task, code: int, addr: int) -> int:
    """PTRACE_ARCH_PRCTL: arch_prctl's fs/gs base requests on the tracee (code in data)."""
    ctx = task.cpu.get_context()
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= TASK_SIZE_MAX:
            raise Errno(E.EPERM)
        setattr(ctx, "fs_base" if code == ARCH_SET_FS else "gs_base", addr)
        task.cpu.set_context(ctx)
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        t.mm.write_u64(addr, ctx.fs_base if code == ARCH_GET_FS else ctx.gs_base)
        return 0
    raise Errno(E.EINVAL)


def _valid_signal(sig: int) -> int:
    if sig > 64:
        raise Errno(E.EIO)
    return sig


# --- siginfo ------------------------------------------------------------------------------------------
def _peeksiginfo(t, task, addr: int, data: int) -> int:
    off, flags, nr = struct.unpack("<QIi", t.mm.read(addr, 16))
    if flags & ~1 or nr < 0:
        raise Errno(E.EINVAL)
    queue = task.sigshared.queue if flags & 1 else task.sigqueue
    done = 0
    for info in queue[off:off + nr] if off < len(queue) else ():
        t.mm.write(data + 128 * done, info.pack())
        done += 1
    return done


def _syscall_info(t, task, tr, size: int, data: int) -> int:
    ctx = task.cpu.get_context()
    stop = tr.stop
    op, body = 0, b""
    if stop.kind == "syscall-entry" and tr.call is not None:
        op = 1
        body = struct.pack("<Q6Q", tr.orig_rax & MASK64, *(a & MASK64 for a in tr.call.args))
    elif stop.kind == "syscall-exit":
        op = 2
        rval = ctx.rax & MASK64
        signed = rval - (1 << 64) if rval >> 63 else rval
        body = struct.pack("<qB", signed, 1 if -4095 <= signed < 0 else 0)
    blob = struct.pack("<B3xIQQ", op, AUDIT_ARCH_X86_64, ctx.rip & MASK64, ctx.rsp & MASK64) + body
    t.mm.write(data, blob[:size])
    return len(blob)


@syscall("ptrace", status=PARTIAL,
         note="between the sandbox's tasks, never the host's: TRACEME, ATTACH/SEIZE/INTERRUPT/DETACH, PEEK/POKE "
              "TEXT/DATA/USER, GET/SETREGS, GET/SETFPREGS, GET/SETREGSET (NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE), "
              "GET/SETSIGINFO, PEEKSIGINFO, GET/SETSIGMASK, GETEVENTMSG, SETOPTIONS, CONT/SYSCALL/SYSEMU/KILL, "
              "GET_SYSCALL_INFO; signal-delivery, syscall, exec, fork/clone/exit event and group stops. "
              "SINGLESTEP sets the trap flag (both platforms' CPUs trap on it); debug registers are kept and checked, "
              "not armed; LISTEN leaves the tracee stopped; no PTRACE_EVENT_VFORK_DONE or SECCOMP stops; "
              "registers are x86-64's only; a traced thread's group stop stops only itself")
def ptrace(t, request, pid, addr, data):
    request = request & 0xFFFFFFFF
    pid = s32(pid)
    if request == TRACEME:
        return _traceme(t)
    if request in (ATTACH, SEIZE):
        return _attach(t, pid, request == SEIZE, addr, data)
    if request == KILL:
        task, tr = _traced(t, pid, need_stop=False)
        from sentry import signals
        signals.send(task, SIGKILL)
        if tr.stop is not None:
            tr.stop = None
            t.kernel.wake(task)
        return 0
    if request == INTERRUPT or request == LISTEN:
        task, tr = _traced(t, pid, need_stop=request == LISTEN)
        if not tr.seized:
            raise Errno(E.EIO)
        if request == INTERRUPT:
            pg.interrupt(task)
        elif tr.stop.kind not in ("group", "event") or tr.stop.status >> 16 != pg.EVENT_STOP:
            raise Errno(E.EIO)
        return 0
    task, tr = _traced(t, pid)
    if request in (PEEKTEXT, PEEKDATA):
        value = _peek(task, addr)
        t.mm.write_u64(data, value)
        return 0
    if request in (POKETEXT, POKEDATA):
        _poke(task, addr, data)
        return 0
    if request == PEEKUSER:
        _x86(task)
        value = _peekuser(task, tr, addr)
        t.mm.write_u64(data, value)
        return 0
    if request == POKEUSER:
        _x86(task)
        _pokeuser(task, tr, addr, data)
        return 0
    if request == GETREGS:
        _x86(task)
        t.mm.write(data, struct.pack("<27Q", *_user_regs(task, tr)))
        return 0
    if request == SETREGS:
        _x86(task)
        _set_user_regs(task, tr, list(struct.unpack("<27Q", t.mm.read(data, REGS_SIZE))))
        return 0
    if request == GETFPREGS:
        _x86(task)
        t.mm.write(data, _fpregs(task))
        return 0
    if request == SETFPREGS:
        _x86(task)
        _set_fpregs(task, t.mm.read(data, 512))
        return 0
    if request in (GETREGSET, SETREGSET):
        _x86(task)
        base, length = struct.unpack("<QQ", t.mm.read(data, 16))
        if addr not in (NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE) or length % 8:
            raise Errno(E.EINVAL)  # an unknown set, or not whole elements (each 8 bytes on x86-64)
        if request == GETREGSET:
            blob = _regset(task, tr, addr)
            n = min(length, len(blob))
            t.mm.write(base, blob[:n])
            t.mm.write_u64(data + 8, n)
        else:
            full = len(_regset(task, tr, addr))
            n = min(length, full)
            _set_regset(task, tr, addr, t.mm.read(base, n))
            t.mm.write_u64(data + 8, n)
        return 0
    if request == GETSIGINFO:
        if tr.stop.info is None:
            raise Errno(E.EINVAL)
        t.mm.write(data, tr.stop.info.pack())
        return 0
    if request == SETSIGINFO:
        from sentry.signals import SigInfo
        raw = t.mm.read(data, 128)
        if tr.stop.info is None:
            raise Errno(E.EINVAL)
        signo, _, code = struct.unpack_from("<iii", raw)
        tr.stop.info = SigInfo(signo, code, raw=raw)
        return 0
    if request == PEEKSIGINFO:
        return _peeksiginfo(t, task, addr, data)
    if request == GETSIGMASK:
        if addr != 8:
            raise Errno(E.EINVAL)
        t.mm.write_u64(data, task.sigmask)
        return 0
    if request == SETSIGMASK:
        if addr != 8:
            raise Errno(E.EINVAL)
        from sentry.signals import set_mask
        set_mask(task, t.mm.read_u64(data))
        return 0
    if request == GETEVENTMSG:
        t.mm.write_u64(data, tr.eventmsg)
        return 0
    if request == SETOPTIONS:
        if data & ~pg.O_MASK:
            raise Errno(E.EINVAL)
        tr.options = data
        return 0
    if request == GET_SYSCALL_INFO:
        _x86(task)
        return _syscall_info(t, task, tr, addr, data)
    if request == SECCOMP_GET_FILTER:
        raise Errno(E.EINVAL)  # (the filters a task installs are not shown to a tracer)
    if request == ARCH_PRCTL:
        _x86(task)
        return _arch_prctl(t, task, data, addr)
    if request in (CONT, SYSCALL, SINGLESTEP, SYSEMU, SYSEMU_SINGLESTEP):
        sig = _valid_signal(data)
        pg.resume(task, syscalls=request == SYSCALL, sysemu=request in (SYSEMU, SYSEMU_SINGLESTEP),
                  step=request in (SINGLESTEP, SYSEMU_SINGLESTEP), sig=sig, tracer=t)
        return 0
    if request == DETACH:
        sig = _valid_signal(data)
        pg.detach(task, sig)
        return 0
    raise Errno(E.EIO)
