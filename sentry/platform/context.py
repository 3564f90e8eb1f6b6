"""A task's whole user register state, platform-neutral: what `cpu.get_context()`
returns and `cpu.set_context(ctx)` takes. The signal code saves it in a signal
frame and restores it at rt_sigreturn; nothing here knows a frame layout.

x86-64: the general registers, rip, eflags, the fs/gs bases and the FP/SIMD
state as an FXSAVE image (512 bytes: x87, MXCSR, XMM0-15), or, where the CPU
saves more (ptrace on an XSAVE host), the whole XSAVE area in its standard
format with `xfeatures` naming the components it holds.
aarch64: x0-x30, sp, pc, pstate, tpidr_el0, v0-v31 (128-bit ints), fpsr, fpcr.
"""

X86_GPRS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
            "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx", "rsp", "rip", "eflags")

FXSAVE_SIZE = 512
MXCSR_DEFAULT = 0x1F80
FCW_DEFAULT = 0x37F


def fxsave_init() -> bytes:
    """The FP/SIMD state of a fresh program (and of a signal handler): fninit's
    control word, every x87 register empty, MXCSR's default, XMM registers zero."""
    b = bytearray(FXSAVE_SIZE)
    b[0:2] = FCW_DEFAULT.to_bytes(2, "little")
    b[24:28] = MXCSR_DEFAULT.to_bytes(4, "little")
    b[28:32] = (0xFFFF).to_bytes(4, "little")  # MXCSR_MASK
    return bytes(b)


class X86Context:
    __slots__ = X86_GPRS + ("fs_base", "gs_base", "fpu", "xfeatures")

    def __init__(self, **kw):
        for name in X86_GPRS:
            setattr(self, name, 0)
        self.fs_base = self.gs_base = 0
        self.fpu = fxsave_init()
        self.xfeatures = 0  # 0: fpu is an FXSAVE image; else the XSAVE components in fpu
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def pc(self) -> int:
        return self.rip

    @pc.setter
    def pc(self, value: int) -> None:
        self.rip = value

    @property
    def sp(self) -> int:
        return self.rsp

    @sp.setter
    def sp(self, value: int) -> None:
        self.rsp = value

    def copy(self) -> "X86Context":
        c = X86Context.__new__(X86Context)
        for name in X86Context.__slots__:
            setattr(c, name, getattr(self, name))
        return c

    def __repr__(self):
        return "X86Context(" + ", ".join(f"{n}={getattr(self, n):#x}" for n in X86_GPRS) + ")"


class A64Context:
    __slots__ = ("x", "sp", "pc", "pstate", "tpidr", "v", "fpsr", "fpcr")

    def __init__(self, **kw):
        self.x = [0] * 31
        self.sp = self.pc = self.pstate = self.tpidr = 0
        self.v = [0] * 32
        self.fpsr = self.fpcr = 0
        for k, v in kw.items():
            setattr(self, k, v)

    def copy(self) -> "A64Context":
        c = A64Context.__new__(A64Context)
        for name in A64Context.__slots__:
            value = getattr(self, name)
            setattr(c, name, list(value) if isinstance(value, list) else value)
        return c

    def __repr__(self):
        return f"A64Context(pc={self.pc:#x}, sp={self.sp:#x}, x={[hex(r) for r in self.x]})"
