"""Signal frames as Linux lays them out on the user stack, per architecture.

`build(arch, ...)` turns the interrupted context into the bytes of an
rt_sigframe and the context the handler starts with; `parse(arch, ...)` reads
a frame back at rt_sigreturn. Pure functions over bytes and contexts: the
memory writes, the alternate stack and the masks are sentry/signals.py's.

x86-64 (arch/x86/kernel/signal_64.c): at the handler's rsp, `struct
rt_sigframe { pretcode; struct ucontext uc; struct siginfo info; }`, with the
FP/SIMD state above it, 64-byte aligned: an FXSAVE image whose software
bytes carry FP_XSTATE_MAGIC1 (and, when the CPU saved a whole XSAVE area,
that area followed by FP_XSTATE_MAGIC2 and UC_FP_XSTATE in uc_flags), as
Linux writes them. rsp is 8 below a 16-byte boundary (as after a call); the
128-byte red zone below the interrupted rsp is left alone.

aarch64 (arch/arm64/kernel/signal.c): `struct rt_sigframe { siginfo;
ucontext; }` at the handler's sp, the sigcontext's __reserved area holding
an fpsimd_context record (then an esr_context for faults) and the null
terminator; above the frame a frame record {x29, x30} that x29 points to.
"""
import struct

from sentry.platform.context import FCW_DEFAULT, FXSAVE_SIZE, MXCSR_DEFAULT, A64Context, X86Context

MASK64 = (1 << 64) - 1

SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
SA_SIGINFO, SA_RESTORER = 0x4, 0x04000000


class BadFrame(Exception):
    """The frame cannot be built or read back: the task gets SIGSEGV, as on Linux."""


class AltStack:
    """A task's sigaltstack: sp, size, flags (SS_DISABLE, or 0 / SS_AUTODISARM).
    Never changed in place (a fork shares it by reference): replaced."""
    __slots__ = ("sp", "size", "flags")

    def __init__(self, sp=0, size=0, flags=SS_DISABLE):
        self.sp, self.size, self.flags = sp, size, flags

    def contains(self, sp: int) -> bool:  # __on_sig_stack
        return sp > self.sp and sp - self.sp <= self.size

    def on(self, sp: int) -> bool:  # on_sig_stack: never while SS_AUTODISARM is set
        return not (self.flags & SS_AUTODISARM) and self.contains(sp)

    def ss_flags(self, sp: int) -> int:  # sas_ss_flags
        if not self.size:
            return SS_DISABLE
        return SS_ONSTACK if self.on(sp) else 0

    def pack(self) -> bytes:  # stack_t as saved in uc_stack: ss_sp, ss_flags (int), ss_size
        return struct.pack("<QiiQ", self.sp, self.flags if self.flags < 1 << 31 else self.flags - (1 << 32),
                           0, self.size)

    @staticmethod
    def unpack(b: bytes):
        sp, flags, _, size = struct.unpack_from("<QiiQ", b)
        return sp, flags & 0xFFFFFFFF, size


# --- x86-64 --------------------------------------------------------------------------------
FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2 = 0x46505853, 0x46505845
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 1, 2, 4
X86_FRAME = 440            # pretcode 8 + ucontext 304 + siginfo 128
X86_UC, X86_MCTX, X86_SIGMASK, X86_INFO = 8, 48, 304, 312
# eflags bits a frame may change (FIX_EFLAGS)
X86_FIX_EFLAGS = 0x40000 | 0x800 | 0x400 | 0x100 | 0x80 | 0x40 | 0x10 | 0x4 | 0x1 | 0x10000
X86_USER_CS, X86_USER_DS = 0x33, 0x2B
# sigcontext order: r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags
_X86_SC = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
           "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip", "eflags")


XFEATURE_TILEDATA, TILEDATA_SIZE = 1 << 18, 8192  # AMX tile data: the last component, dynamic


def _x86_frame_xsave(fpu_len: int, xfeatures: int) -> tuple:
    """(size, features) of the XSAVE state a frame carries: as Linux's default
    (fpu_user_cfg.default_size), without the dynamic AMX tile data a process has not asked
    for (arch_prctl ARCH_REQ_XCOMP_PERM is not offered), so that a frame fits the
    alternate stacks programs size by AT_MINSIGSTKSZ or the old SIGSTKSZ."""
    if xfeatures & XFEATURE_TILEDATA and fpu_len - TILEDATA_SIZE > FXSAVE_SIZE:
        return fpu_len - TILEDATA_SIZE, xfeatures & ~XFEATURE_TILEDATA
    return fpu_len, xfeatures


def _x86_fpstate(ctx: X86Context) -> bytes:
    """The fpstate area of a frame: the saved state with its software bytes (and MAGIC2)."""
    fpu = bytearray(ctx.fpu)
    size = len(fpu)
    xfeatures = ctx.xfeatures if size > FXSAVE_SIZE else 0x3
    if size > FXSAVE_SIZE:
        size, xfeatures = _x86_frame_xsave(size, xfeatures)
        del fpu[size:]
        bv = int.from_bytes(fpu[512:520], "little") & xfeatures
        fpu[512:520] = bv.to_bytes(8, "little")
    struct.pack_into("<IIQI", fpu, 464, FP_XSTATE_MAGIC1, size + 4, xfeatures, size)
    fpu[484:512] = bytes(28)
    if size > FXSAVE_SIZE:
        fpu += FP_XSTATE_MAGIC2.to_bytes(4, "little")
    return bytes(fpu)


def _x86_fpu_init(ctx: X86Context) -> bytes:
    """The FP state a handler starts with (fpu__clear_user_states): the init state."""
    size = len(ctx.fpu)
    b = bytearray(size)
    struct.pack_into("<H", b, 0, FCW_DEFAULT)
    struct.pack_into("<II", b, 24, MXCSR_DEFAULT, 0xFFFF)
    if size > FXSAVE_SIZE:
        struct.pack_into("<Q", b, 512, 0x3)  # XSTATE_BV: x87 and SSE from the legacy area, the rest init
    return bytes(b)


def x86_build(ctx: X86Context, *, sig: int, info: bytes, handler: int, flags: int, restorer: int,
              sp_top: int, oldmask: int, stack_t: bytes, fault=None):
    """(frame address, bytes to write there, handler context). sp_top: where the frame
    goes below (the interrupted rsp less the red zone, or the top of the alternate stack).
    fault: (trapno, err, cr2) for a hardware fault."""
    if not flags & SA_RESTORER:
        raise BadFrame("x86-64 handlers need SA_RESTORER")
    fp = _x86_fpstate(ctx)
    fp_addr = (sp_top - len(fp)) & ~63
    frame = ((fp_addr - X86_FRAME) & ~15) - 8
    b = bytearray(fp_addr + len(fp) - frame)
    flags_uc = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | (UC_FP_XSTATE if len(ctx.fpu) > FXSAVE_SIZE else 0)
    struct.pack_into("<QQQ", b, 0, restorer, flags_uc, 0)
    b[24:48] = stack_t
    struct.pack_into("<18Q", b, X86_MCTX, *(getattr(ctx, n) & MASK64 for n in _X86_SC))
    trapno, err, cr2 = fault or (0, 0, 0)
    struct.pack_into("<HHHHQQQQQ", b, X86_MCTX + 144, X86_USER_CS, 0, 0, X86_USER_DS,
                     err, trapno, oldmask & MASK64, cr2, fp_addr)
    struct.pack_into("<Q", b, X86_SIGMASK, oldmask & MASK64)
    if flags & SA_SIGINFO:
        b[X86_INFO:X86_INFO + 128] = info
    b[fp_addr - frame:] = fp
    h = ctx.copy()
    h.rdi, h.rsi, h.rdx, h.rax = sig, frame + X86_INFO, frame + X86_UC, 0
    h.rip, h.rsp = handler, frame
    h.eflags &= ~(0x400 | 0x10000 | 0x100)  # DF, RF, TF
    h.fpu = _x86_fpu_init(ctx)
    return frame, bytes(b), h


def x86_parse(read, sp: int, cur: X86Context):
    """rt_sigreturn: (context, blocked mask, (ss_sp, ss_flags, ss_size)) from the frame
    whose pretcode the handler's `ret` popped (so it starts at sp - 8). read(addr, n)
    reads guest memory (raising on a fault)."""
    frame = (sp - 8) & MASK64
    b = read(frame, X86_FRAME)
    vals = struct.unpack_from("<18Q", b, X86_MCTX)
    ctx = cur.copy()
    for name, v in zip(_X86_SC, vals):
        setattr(ctx, name, v)
    ctx.eflags = (cur.eflags & ~X86_FIX_EFLAGS) | (ctx.eflags & X86_FIX_EFLAGS)
    fp_addr = struct.unpack_from("<Q", b, X86_MCTX + 184)[0]
    mask = struct.unpack_from("<Q", b, X86_SIGMASK)[0]
    if fp_addr == 0:
        ctx.fpu = _x86_fpu_init(cur)
        if len(ctx.fpu) > FXSAVE_SIZE:
            ctx.fpu = ctx.fpu[:512] + struct.pack("<Q", 0) + ctx.fpu[520:]
    else:
        if fp_addr & 15:
            raise BadFrame("misaligned fpstate")
        legacy = read(fp_addr, FXSAVE_SIZE)
        magic1, ext, xfeat, xsize = struct.unpack_from("<IIQI", legacy, 464)
        want = _x86_frame_xsave(len(cur.fpu), cur.xfeatures)[0] if len(cur.fpu) > FXSAVE_SIZE else 0
        if want > FXSAVE_SIZE and magic1 == FP_XSTATE_MAGIC1 and xsize == want and ext >= xsize + 4:
            whole = read(fp_addr, xsize + 4)
            if int.from_bytes(whole[xsize:], "little") == FP_XSTATE_MAGIC2:
                ctx.fpu = whole[:xsize] + cur.fpu[xsize:]  # what the frame leaves out is in its init state
            else:
                ctx.fpu = _fx_only(legacy, cur)
        else:
            ctx.fpu = _fx_only(legacy, cur)
        ctx.fpu = ctx.fpu[:464] + bytes(48) + ctx.fpu[512:]  # the software bytes are the frame's, not state
    return ctx, mask, AltStack.unpack(b[24:48])


def _fx_only(legacy: bytes, cur: X86Context) -> bytes:
    """An FXSAVE-only fpstate: the legacy state; on an XSAVE CPU the other components init."""
    if len(cur.fpu) <= FXSAVE_SIZE:
        return legacy
    b = bytearray(cur.fpu)
    b[:FXSAVE_SIZE] = legacy
    struct.pack_into("<Q", b, 512, 0x3)
    return bytes(b)


# --- aarch64 --------------------------------------------------------------------------------
A64_INFO, A64_UC = 0, 128
A64_UC_STACK, A64_UC_SIGMASK, A64_UC_MCTX = 16, 40, 176
A64_SC = A64_UC + A64_UC_MCTX                 # sigcontext: fault_address, regs[31], sp, pc, pstate
A64_RESERVED = A64_SC + 288                   # __reserved[4096]
A64_FRAME = A64_RESERVED + 4096               # sizeof(struct rt_sigframe) = 4688
FPSIMD_MAGIC, FPSIMD_SIZE = 0x46508001, 528
ESR_MAGIC, ESR_SIZE = 0x45535201, 16


def a64_build(ctx: A64Context, *, sig: int, info: bytes, handler: int, flags: int, restorer: int,
              sp_top: int, oldmask: int, stack_t: bytes, fault=None):
    """(frame address, bytes, handler context) as arm64's setup_rt_frame. restorer: the
    return address (sa_restorer, or the sentry's sigreturn trampoline). fault:
    (fault_address, esr) for a hardware fault."""
    record = (sp_top - 16) & ~15                   # struct frame_record {fp, lr}
    frame = (record & ~15) - A64_FRAME
    b = bytearray(record + 16 - frame)
    if flags & SA_SIGINFO:
        b[A64_INFO:A64_INFO + 128] = info
    struct.pack_into("<QQ", b, A64_UC, 0, 0)
    b[A64_UC + A64_UC_STACK:A64_UC + A64_UC_STACK + 24] = stack_t
    struct.pack_into("<Q", b, A64_UC + A64_UC_SIGMASK, oldmask & MASK64)
    fault_address, esr = fault or (0, 0)
    struct.pack_into("<Q31QQQQ", b, A64_SC, fault_address, *(r & MASK64 for r in ctx.x),
                     ctx.sp & MASK64, ctx.pc & MASK64, ctx.pstate & MASK64)
    off = A64_RESERVED
    struct.pack_into("<IIII", b, off, FPSIMD_MAGIC, FPSIMD_SIZE, ctx.fpsr, ctx.fpcr)
    for i, v in enumerate(ctx.v):
        b[off + 16 + 16 * i:off + 32 + 16 * i] = (v & ((1 << 128) - 1)).to_bytes(16, "little")
    off += FPSIMD_SIZE
    if esr:
        struct.pack_into("<IIQ", b, off, ESR_MAGIC, ESR_SIZE, esr)
        off += ESR_SIZE
    struct.pack_into("<II", b, off, 0, 0)          # the terminator
    struct.pack_into("<QQ", b, record - frame, ctx.x[29] & MASK64, ctx.x[30] & MASK64)
    h = ctx.copy()
    h.x[0] = sig
    if flags & SA_SIGINFO:
        h.x[1], h.x[2] = frame + A64_INFO, frame + A64_UC
    h.sp, h.pc = frame, handler
    h.x[29], h.x[30] = record, restorer
    return frame, bytes(b), h


def a64_parse(read, sp: int, cur: A64Context):
    """rt_sigreturn: (context, blocked mask, (ss_sp, ss_flags, ss_size)) from the frame at sp."""
    if sp & 15:
        raise BadFrame("misaligned sp")
    b = read(sp, A64_FRAME)
    ctx = cur.copy()
    mask = struct.unpack_from("<Q", b, A64_UC + A64_UC_SIGMASK)[0]
    vals = struct.unpack_from("<31QQQQ", b, A64_SC + 8)
    ctx.x = list(vals[:31])
    ctx.sp, ctx.pc, pstate = vals[31], vals[32], vals[33]
    if pstate & 0xF:  # only EL0t is a valid user mode
        raise BadFrame("bad pstate")
    ctx.pstate = pstate & 0xF0000000
    off, end, fpsimd = A64_RESERVED, A64_RESERVED + 4096, False
    while off + 8 <= end:
        magic, size = struct.unpack_from("<II", b, off)
        if magic == 0:
            if size:
                raise BadFrame("bad terminator")
            break
        if size < 8 or size & 15 or off + size > end:
            raise BadFrame("bad record")
        if magic == FPSIMD_MAGIC:
            if size != FPSIMD_SIZE or fpsimd:
                raise BadFrame("bad fpsimd record")
            fpsimd = True
            ctx.fpsr, ctx.fpcr = struct.unpack_from("<II", b, off + 8)
            ctx.v = [int.from_bytes(b[off + 16 + 16 * i:off + 32 + 16 * i], "little") for i in range(32)]
        elif magic == ESR_MAGIC:
            pass
        else:
            raise BadFrame(f"unknown record {magic:#x}")
        off += size
    if not fpsimd:
        raise BadFrame("no fpsimd record")
    return ctx, mask, AltStack.unpack(b[A64_UC + A64_UC_STACK:A64_UC + A64_UC_STACK + 24])


BUILD = {"x86_64": x86_build, "aarch64": a64_build}
PARSE = {"x86_64": x86_parse, "aarch64": a64_parse}
