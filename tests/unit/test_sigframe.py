"""Signal frames without running a program (sentry/sigframe.py), and aarch64 signal
delivery end to end: a libc-free aarch64 program (a64_signals.s beside this file)
run under `sentry run --platform unicorn`.

A64_PROGRAM is that program's code, made with:
    llvm-mc -triple=aarch64-linux-gnu -filetype=obj -o a64.o tests/unit/a64_signals.s
    llvm-objcopy -O binary --only-section=.text a64.o a64.bin
(then the bytes in hex). The test wraps it in a one-segment ELF at 0x400000.
"""
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sentry import sigframe as F
from sentry.platform.context import A64Context, X86Context, fxsave_init

REPO = Path(__file__).resolve().parents[2]
MASK64 = (1 << 64) - 1

A64_PROGRAM = bytes.fromhex(
    "01270010091b0010290000f929260010290800f9400180d2020080d2030180d2c81080d2010000d4881580d2010000d4"
    "1e2b0010c00300f9de320010c00740adc20f41adc41742adc61f43adc82744adca2f45adcc3746adce3f47add04748ad"
    "d24f49add4574aadd65f4badd8674cadda6f4daddc774eadde7f4fad0900acd209421bd57e280010c00740a9c20f41a9"
    "c41742a9c61f43a9c82744a9ca2f45a9cc3746a9ce3f47a9d04748a9d24f49a9d4574aa9d65f4ba9d8674ca9da6f4da9"
    "dc774ea9de7b40f9010000d4fe0f1ff81e423bd5fe0700f9de3d0010c00700a9c20f01a9c41702a9c61f03a9c82704a9"
    "ca2f05a9cc3706a9ce3f07a9d04708a9d24f09a9d4570aa9d65f0ba9d8670ca9da6f0da9dc770ea9e90340f9c97b00f9"
    "e90740f9c97f00f9ff43009129430010200500ad220d01ad241502ad261d03ad282504ad2a2d05ad2c3506ad2e3d07ad"
    "304508ad324d09ad34550aad365d0bad38650cad3a6d0dad3c750ead3e7d0fad14510010f5380010d6200010a90240f9"
    "490000b473000094370080d2a97a77f8ca7a77f83f010aeb400000546d000094f7060091ff7e00f121ffff54a97e40f9"
    "0a00acd23f010aeb4000005465000094953e001076260010170080d2a97a77f8ca7a77f83f010aeb400000545d000094"
    "f7060091ff0201f121ffff54694d0010290140f93f0500f140000054550000940118001009150010290000f9800180d2"
    "020080d2030180d2c81080d2010000d4881580d2010000d4810180d2281080d2010000d4400000b446000094294b0010"
    "290140f93f0500f140000054410000948116001009130010290000f9a9130010290800f9c00180d2020080d2030180d2"
    "c81080d2010000d480490010010080d2680780d2010000d4000080d2a1160010020080d2e80c80d2010000d469480010"
    "200140b961480010220080d2e80780d2010000d41f0400f1400000542500009489470010290140393fe1017140000054"
    "2000009461130010e90e0010290000f9890f0010290800f9c00180d2020080d2030180d2c81080d2010000d4000080d2"
    "01130010020080d2e80c80d2010000d480130010010080d2a80c80d2010000d41f1000b1400000540a000094200080d2"
    "01440050620080d2080880d2010000d489420010200140f9a80b80d2010000d4094200102a0140f94a0500912a0100f9"
    "c0035fd60c0080d21f2800f181010054290040b93f29007121010054290840b9e900003549a840f94a1000104a4d40f9"
    "3f010aeb410000542c0080d2e93f00102c0100f909008092e00309aae10309aae20309aae30309aae40309aae50309aa"
    "e60309aae70309aae80309aaea0309aaeb0309aaec0309aaed0309aaee0309aaef0309aaf00309aaf10309aaf20309aa"
    "f30309aaf40309aaf50309aaf60309aaf70309aaf80309aaf90309aafa0309aafb0309aafc0309aafd0309aae0e7076f"
    "011ca04e021ca04e031ca04e041ca04e051ca04e061ca04e071ca04e081ca04e091ca04e0a1ca04e0b1ca04e0c1ca04e"
    "0d1ca04e0e1ca04e0f1ca04e101ca04e111ca04e121ca04e131ca04e141ca04e151ca04e161ca04e171ca04e181ca04e"
    "191ca04e1a1ca04e1b1ca04e1c1ca04e1d1ca04e1e1ca04e1f1ca04e1f421bd5c0035fd6e93700102a0080d22a0100f9"
    "c0035fd6a9370010200540b9a1370030220080d2080880d2010000d4c0035fd6681180d2010000d41f2003d51f2003d5"
    "000000000000000004000004000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000140000000000000000000000000000000000000000"
    "000000000000000000000004000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000050c30000000000000200000000000000000000000000000000000000000000000a00000000000000"
    "222200000000000033330000000000004444000000000000555500000000000066660000000000007777000000000000"
    "81000000000000009999000000000000aaaa000000000000bbbb000000000000cccc000000000000dddd000000000000"
    "eeee000000000000ffff0000000000001010101010101010111111111111111112121212121212121313131313131313"
    "141414141414141415151515151515151616161616161616171717171717171718181818181818181919191919191919"
    "202020202020202021212121212121212222222222222222232323232323232330303030303030300000000000000000"
    "efcdab89674523010832547698badcfeffcdab8967452301f831547698badcfe0fceab8967452301e831547698badcfe"
    "1fceab8967452301d831547698badcfe2fceab8967452301c831547698badcfe3fceab8967452301b831547698badcfe"
    "4fceab8967452301a831547698badcfe5fceab89674523019831547698badcfe6fceab89674523018831547698badcfe"
    "7fceab89674523017831547698badcfe8fceab89674523016831547698badcfe9fceab89674523015831547698badcfe"
    "afceab89674523014831547698badcfebfceab89674523013831547698badcfecfceab89674523012831547698badcfe"
    "dfceab89674523011831547698badcfeefceab89674523010831547698badcfeffceab8967452301f830547698badcfe"
    "0fcfab8967452301e830547698badcfe1fcfab8967452301d830547698badcfe2fcfab8967452301c830547698badcfe"
    "3fcfab8967452301b830547698badcfe4fcfab8967452301a830547698badcfe5fcfab89674523019830547698badcfe"
    "6fcfab89674523018830547698badcfe7fcfab89674523017830547698badcfe8fcfab89674523016830547698badcfe"
    "9fcfab89674523015830547698badcfeafcfab89674523014830547698badcfebfcfab89674523013830547698badcfe"
    "cfcfab89674523012830547698badcfedfcfab89674523011830547698badcfe00000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000ffffffffffffffff00786f6b0a"
)


def elf_of(code: bytes, machine: int = 183, base: int = 0x400000) -> bytes:
    """A static ELF: one RWX PT_LOAD holding code at base + 0x1000, the entry."""
    off = 0x1000
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, machine, 1, base + off,
                       64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 7, 0, base, base, off + len(code), off + len(code) + 0x1000, 0x1000)
    head = ehdr + phdr
    return head + bytes(off - len(head)) + code


def test_aarch64_signals_end_to_end(tmp_path):
    """Frames, sigreturn of every register, the trampoline for handlers without
    SA_RESTORER, a read restarted with its first argument back in x0, EINTR."""
    prog = tmp_path / "a64_signals"
    prog.write_bytes(elf_of(A64_PROGRAM))
    prog.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "sentry", "run", "--platform", "unicorn", str(prog)],
                       capture_output=True, timeout=60, env=env, cwd=str(REPO))
    assert (r.returncode, r.stdout) == (0, b"ok\n"), (r.returncode, r.stdout, r.stderr.decode(errors="replace"))


# --- x86-64 -------------------------------------------------------------------------------
class Memory:
    """Guest memory for the frame functions: a dict of written blocks."""

    def __init__(self):
        self.blocks = {}

    def write(self, addr, data):
        self.blocks[addr] = bytes(data)

    def read(self, addr, size):
        for start, data in self.blocks.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start:addr - start + size]
        raise AssertionError(f"read of unwritten memory {addr:#x}+{size}")


def x86_ctx(**kw):
    ctx = X86Context(**kw)
    for i, name in enumerate(("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
                              "rdx", "rax", "rcx")):
        setattr(ctx, name, 0x1000 * (i + 1) + i)
    ctx.rsp, ctx.rip, ctx.eflags = 0x7FFF0000_1238, 0x401000, 0x246 | 0x400
    fx = bytearray(fxsave_init())
    fx[160:176] = bytes(range(16))              # xmm0
    ctx.fpu = bytes(fx)
    return ctx


def test_x86_frame_layout():
    ctx = x86_ctx()
    info = bytes([10, 0, 0, 0]) + bytes(124)
    frame, blob, h = F.x86_build(ctx, sig=10, info=info, handler=0x402000, flags=F.SA_SIGINFO | F.SA_RESTORER,
                                 restorer=0x403000, sp_top=ctx.rsp - 128, oldmask=0x200,
                                 stack_t=F.AltStack().pack())
    assert (frame + 8) % 16 == 0                                     # as after a call
    assert frame + len(blob) <= ctx.rsp - 128                        # the red zone is left alone
    assert struct.unpack_from("<Q", blob, 0)[0] == 0x403000          # pretcode: the restorer
    # glibc's mcontext_t: gregs[REG_R8=0 .. REG_RIP=16, REG_EFL=17], then the fpstate pointer
    gregs = struct.unpack_from("<18Q", blob, F.X86_MCTX)
    assert gregs[4] == ctx.r12 and gregs[13] == ctx.rax and gregs[15] == ctx.rsp and gregs[16] == ctx.rip
    fp = struct.unpack_from("<Q", blob, F.X86_MCTX + 184)[0]
    assert fp % 64 == 0 and frame < fp
    assert struct.unpack_from("<I", blob, fp - frame + 464)[0] == F.FP_XSTATE_MAGIC1
    assert blob[fp - frame + 160:fp - frame + 176] == bytes(range(16))
    assert struct.unpack_from("<Q", blob, F.X86_SIGMASK)[0] == 0x200
    assert blob[F.X86_INFO:F.X86_INFO + 4] == bytes([10, 0, 0, 0])
    # the handler: rdi = sig, rsi = &info, rdx = &uc, rax = 0, DF cleared, FPU in its init state
    assert (h.rdi, h.rsi, h.rdx, h.rax, h.rip, h.rsp) == (10, frame + F.X86_INFO, frame + F.X86_UC, 0,
                                                          0x402000, frame)
    assert not h.eflags & 0x400 and h.fpu == fxsave_init()


def test_x86_frame_round_trip():
    ctx = x86_ctx()
    mem = Memory()
    frame, blob, h = F.x86_build(ctx, sig=12, info=bytes(128), handler=0x402000, flags=F.SA_RESTORER,
                                 restorer=0x403000, sp_top=ctx.rsp - 128, oldmask=0x800,
                                 stack_t=F.AltStack(0x5000, 0x4000, 0).pack())
    mem.write(frame, blob)
    h.rsp += 8                                                       # the handler's ret popped pretcode
    back, mask, stack = F.x86_parse(mem.read, h.rsp, h)
    for name in X86Context.__slots__:
        assert getattr(back, name) == getattr(ctx, name), name
    assert mask == 0x800 and stack == (0x5000, 0, 0x4000)


def test_x86_frame_needs_sa_restorer():
    with pytest.raises(F.BadFrame):
        F.x86_build(x86_ctx(), sig=10, info=bytes(128), handler=1, flags=0, restorer=0, sp_top=0x10000,
                    oldmask=0, stack_t=F.AltStack().pack())


def test_x86_xsave_frame_round_trip():
    """An XSAVE area (ptrace on an XSAVE host): MAGIC2 after it, and all of it comes back."""
    ctx = x86_ctx()
    xs = bytearray(ctx.fpu) + bytearray(64 + 256)
    struct.pack_into("<Q", xs, 512, 0x7)                              # XSTATE_BV: x87, SSE, AVX
    xs[576:592] = b"\xaa" * 16                                        # ymm0's upper half
    ctx.fpu, ctx.xfeatures = bytes(xs), 0x7
    mem = Memory()
    frame, blob, h = F.x86_build(ctx, sig=10, info=bytes(128), handler=1, flags=F.SA_RESTORER, restorer=2,
                                 sp_top=ctx.rsp - 128, oldmask=0, stack_t=F.AltStack().pack())
    fp = struct.unpack_from("<Q", blob, F.X86_MCTX + 184)[0]
    assert struct.unpack_from("<I", blob, fp - frame + len(xs))[0] == F.FP_XSTATE_MAGIC2
    assert struct.unpack_from("<Q", blob, 8)[0] & F.UC_FP_XSTATE
    mem.write(frame, blob)
    back, _, _ = F.x86_parse(mem.read, frame + 8, h)
    assert back.fpu[576:592] == b"\xaa" * 16 and back.fpu[160:176] == bytes(range(16))


# --- aarch64 --------------------------------------------------------------------------------
def a64_ctx():
    ctx = A64Context()
    ctx.x = [0x100 + i for i in range(31)]
    ctx.sp, ctx.pc, ctx.pstate = 0x7FFF0000_1000, 0x400100, 0x60000000
    ctx.v = [(i << 64) | (0xFFFF - i) for i in range(32)]
    ctx.fpsr, ctx.fpcr = 0x10, 0x400000
    return ctx


def test_a64_frame_layout_and_round_trip():
    ctx = a64_ctx()
    mem = Memory()
    frame, blob, h = F.a64_build(ctx, sig=10, info=bytes([10]) + bytes(127), handler=0x402000,
                                 flags=F.SA_SIGINFO | F.SA_RESTORER, restorer=0x403000, sp_top=ctx.sp,
                                 oldmask=0x4, stack_t=F.AltStack().pack(), fault=(0x1234, 0x92000046))
    assert frame % 16 == 0 and frame + len(blob) <= ctx.sp
    # sigcontext: fault_address, regs[31], sp, pc, pstate; then the fpsimd record, esr, terminator
    assert struct.unpack_from("<Q", blob, F.A64_SC)[0] == 0x1234
    assert struct.unpack_from("<Q", blob, F.A64_SC + 8 + 19 * 8)[0] == ctx.x[19]
    assert struct.unpack_from("<II", blob, F.A64_RESERVED) == (F.FPSIMD_MAGIC, F.FPSIMD_SIZE)
    assert struct.unpack_from("<IIQ", blob, F.A64_RESERVED + 528) == (F.ESR_MAGIC, F.ESR_SIZE, 0x92000046)
    assert struct.unpack_from("<II", blob, F.A64_RESERVED + 544) == (0, 0)
    # the handler: x0 = sig, x1 = &info, x2 = &uc, x29 -> {old x29, old x30}, x30 = the restorer
    assert (h.x[0], h.x[1], h.x[2], h.pc, h.sp, h.x[30]) == (10, frame, frame + F.A64_UC, 0x402000, frame,
                                                             0x403000)
    assert struct.unpack_from("<QQ", blob, h.x[29] - frame) == (ctx.x[29], ctx.x[30])
    mem.write(frame, blob)
    back, mask, _ = F.a64_parse(mem.read, h.sp, h)
    for name in A64Context.__slots__:
        assert getattr(back, name) == getattr(ctx, name), name
    assert mask == 0x4


def test_a64_bad_frames():
    ctx = a64_ctx()
    mem = Memory()
    frame, blob, h = F.a64_build(ctx, sig=10, info=bytes(128), handler=1, flags=0, restorer=2, sp_top=ctx.sp,
                                 oldmask=0, stack_t=F.AltStack().pack())
    with pytest.raises(F.BadFrame):
        F.a64_parse(mem.read, frame + 8, h)                          # a misaligned sp
    spoiled = bytearray(blob)
    spoiled[F.A64_RESERVED:F.A64_RESERVED + 8] = bytes(8)            # no fpsimd record
    mem.write(frame, bytes(spoiled))
    with pytest.raises(F.BadFrame):
        F.a64_parse(mem.read, frame, h)
    spoiled = bytearray(blob)
    struct.pack_into("<Q", spoiled, F.A64_SC + 8 + 33 * 8, 0x5)      # pstate: EL1h
    mem.write(frame, bytes(spoiled))
    with pytest.raises(F.BadFrame):
        F.a64_parse(mem.read, frame, h)


# --- the alternate stack ----------------------------------------------------------------------
def test_altstack_flags():
    alt = F.AltStack(0x10000, 0x4000, 0)
    assert alt.contains(0x14000) and not alt.contains(0x10000) and alt.on(0x12000)
    assert alt.ss_flags(0x12000) == F.SS_ONSTACK and alt.ss_flags(0x20000) == 0
    assert F.AltStack().ss_flags(0x12000) == F.SS_DISABLE
    auto = F.AltStack(0x10000, 0x4000, F.SS_AUTODISARM)
    assert not auto.on(0x12000)                                      # never "on" it with SS_AUTODISARM
    assert F.AltStack.unpack(auto.pack()) == (0x10000, F.SS_AUTODISARM, 0x4000)
