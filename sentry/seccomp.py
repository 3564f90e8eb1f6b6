"""Seccomp: strict mode and classic-BPF filters, run by the sentry before it dispatches
each syscall of a task that has them (syscalls/dispatch.py), as Linux's __secure_computing.

A filter is checked as Linux's seccomp_check_filter (classic BPF with loads only from
struct seccomp_data) when installed, kept on a chain that a thread's children and clones
inherit, and run newest first; the action of lowest precedence value wins. Actions:
KILL_PROCESS / KILL_THREAD (SIGSYS, the process with its last thread), TRAP (a SIGSYS with
SYS_SECCOMP the task cannot block), ERRNO, TRACE (ENOSYS: no seccomp tracer here),
USER_NOTIF (ENOSYS: no listener is ever offered), LOG and ALLOW (the call runs).
Strict mode allows read, write, exit and rt_sigreturn; any other call kills the thread
with SIGKILL."""
import struct

from sentry.errors import Errno

MODE_DISABLED, MODE_STRICT, MODE_FILTER = 0, 1, 2
RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO = 0x80000000, 0x00000000, 0x00030000, 0x00050000
RET_USER_NOTIF, RET_TRACE, RET_LOG, RET_ALLOW = 0x7FC00000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000
RET_ACTION_FULL, RET_DATA = 0xFFFF0000, 0x0000FFFF
ACTIONS = (RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP, RET_ERRNO, RET_USER_NOTIF, RET_TRACE, RET_LOG, RET_ALLOW)
SYS_SECCOMP = 1
SIGKILL, SIGSYS = 9, 31
MAX_ERRNO = 4095
BPF_MAXINSNS = 4096
MAX_INSNS_PER_PATH = (1 << 18) // 8  # Linux's limit on a chain's total length (in instructions)
DATA_SIZE = 64  # struct seccomp_data: nr, arch, instruction_pointer, args[6]
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
STRICT_ALLOWED = {"x86_64": (0, 1, 60, 15), "aarch64": (63, 64, 93, 139)}  # read, write, exit, rt_sigreturn
MEMWORDS = 16

# classic BPF opcodes (linux/filter.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
K, X, A = 0x00, 0x08, 0x10
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
                                                       0x80, 0x90, 0xA0)
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
TAX, TXA = 0x00, 0x80
M32 = 0xFFFFFFFF

# what seccomp_check_filter admits (sk_chk_filter's codes, with loads only LD|W|ABS and the lengths)
_ALU_OPS = (ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, MOD, XOR)
ALLOWED = ({LD | W | ABS, LD | W | LEN, LDX | W | LEN, LD | IMM, LDX | IMM, LD | MEM, LDX | MEM, ST, STX,
            RET | K, RET | A, MISC | TAX, MISC | TXA, ALU | NEG, JMP | JA}
           | {ALU | op | src for op in _ALU_OPS for src in (K, X)}
           | {JMP | op | src for op in (JEQ, JGT, JGE, JSET) for src in (K, X)})


class Filter:
    """One installed program: a tuple of (code, jt, jf, k), and the filter installed before it."""
    __slots__ = ("insns", "prev", "log", "total")

    def __init__(self, insns, prev, log: bool):
        self.insns, self.prev, self.log = insns, prev, log
        self.total = len(insns) + (prev.total + 4 if prev is not None else 0)


def check_program(raw: bytes):
    """The program as (code, jt, jf, k) tuples, or None when Linux's checks refuse it (EINVAL):
    known codes only, loads inside seccomp_data (aligned words), jumps forward and inside,
    memory words below 16, division by a constant 0, a return at the end."""
    n = len(raw) // 8
    insns = []
    for pc in range(n):
        code, jt, jf, k = struct.unpack_from("<HBBI", raw, 8 * pc)
        if code not in ALLOWED:
            return None
        if code == LD | W | ABS and (k >= DATA_SIZE or k & 3):
            return None
        if code == LD | W | LEN:
            code, k = LD | IMM, DATA_SIZE  # Linux rewrites the length loads as constants
        elif code == LDX | W | LEN:
            code, k = LDX | IMM, DATA_SIZE
        if code in (LD | MEM, LDX | MEM, ST, STX) and k >= MEMWORDS:
            return None
        if code in (ALU | DIV | K, ALU | MOD | K) and k == 0:
            return None
        if code & 0x07 == JMP:
            if code == JMP | JA:
                if k >= n - pc - 1:
                    return None
            elif pc + 1 + jt >= n or pc + 1 + jf >= n:
                return None
        insns.append((code, jt, jf, k))
    if not insns or insns[-1][0] & 0x07 != RET:
        return None
    return tuple(insns)


def run(insns, data: bytes) -> int:
    """Classic BPF over the 64 bytes of seccomp_data (little-endian words, as the host's)."""
    a = x = 0
    mem = [0] * MEMWORDS
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == RET:
            return (a if code & 0x18 == A else k) & M32
        if cls == LD:
            mode = code & 0xE0
            a = struct.unpack_from("<I", data, k)[0] if mode == ABS else k if mode == IMM else mem[k]
        elif cls == LDX:
            x = k if code & 0xE0 == IMM else mem[k]
        elif cls == ST:
            mem[k] = a
        elif cls == STX:
            mem[k] = x
        elif cls == ALU:
            op = code & 0xF0
            v = x if code & 0x08 else k
            if op == NEG:
                a = -a & M32
            elif op in (DIV, MOD) and v == 0:
                return 0  # a runtime division by zero ends the program with 0 (KILL_THREAD)
            else:
                a = _alu(op, a, v)
        elif cls == JMP:
            op = code & 0xF0
            if op == JA:
                pc += k
                continue
            v = x if code & 0x08 else k
            hit = a == v if op == JEQ else a > v if op == JGT else a >= v if op == JGE else bool(a & v)
            pc += jt if hit else jf
        else:  # MISC
            if code & 0xF8 == TXA:
                a = x
            else:
                x = a


def _alu(op: int, a: int, v: int) -> int:
    if op == ADD:
        return (a + v) & M32
    if op == SUB:
        return (a - v) & M32
    if op == MUL:
        return (a * v) & M32
    if op == DIV:
        return a // v
    if op == MOD:
        return a % v
    if op == OR:
        return a | v
    if op == AND:
        return a & v
    if op == XOR:
        return a ^ v
    if op == LSH:
        return (a << v) & M32 if v < 32 else 0
    return a >> v if v < 32 else 0  # RSH


def _precedence(ret: int) -> int:
    """ACTION_ONLY: the action as a signed number; lower wins (KILL_PROCESS is lowest)."""
    action = ret & RET_ACTION_FULL
    return action - (1 << 32) if action & 0x80000000 else action


def verdict(chain, data: bytes) -> int:
    """Every filter of the chain runs; the return value of lowest precedence is the result."""
    best = None
    f = chain
    while f is not None:
        ret = run(f.insns, data)
        if best is None or _precedence(ret) < _precedence(best):
            best = ret
        f = f.prev
    return best


def seccomp_data(task, nr: int, args: tuple) -> bytes:
    arch = task.kernel.arch
    ctx = task.cpu.get_context()
    ip = ctx.rip if arch == "x86_64" else ctx.pc
    return struct.pack("<iIQ6Q", nr, AUDIT_ARCH.get(arch, 0), ip & (1 << 64) - 1,
                       *((a & (1 << 64) - 1) for a in (tuple(args) + (0,) * 6)[:6]))


def enter(task, nr: int, args: tuple):
    """Before dispatch: None to run the call, else the raw result to give (the call is
    skipped); the task may have been ended (TaskExit)."""
    mode = task.seccomp_mode
    if mode == MODE_STRICT:
        if nr in STRICT_ALLOWED.get(task.kernel.arch, ()):
            return None
        _kill(task, SIGKILL, thread=True)
    data = seccomp_data(task, nr, args)
    ret = verdict(task.seccomp_filter, data)
    action, value = ret & RET_ACTION_FULL, ret & RET_DATA
    if action in (RET_ALLOW, RET_LOG):
        return None
    if action == RET_ERRNO:
        return -min(value, MAX_ERRNO)
    if action == RET_TRAP:
        _trap(task, nr, data, value)
        return nr  # as Linux's syscall_rollback: the handler sees the call's number
    if action in (RET_TRACE, RET_USER_NOTIF):
        return -38  # ENOSYS: no tracer asked for seccomp events, no listener exists
    _kill(task, SIGSYS, thread=action == RET_KILL_THREAD)


def _trap(task, nr: int, data: bytes, errno: int) -> None:
    from sentry import signals
    raw = bytearray(128)
    ip, arch = struct.unpack_from("<Q", data, 8)[0], struct.unpack_from("<I", data, 4)[0]
    struct.pack_into("<iiiiQiI", raw, 0, SIGSYS, errno, SYS_SECCOMP, 0, ip, nr, arch)
    signals.force(task, signals.SigInfo(SIGSYS, SYS_SECCOMP, raw=bytes(raw)))


def _kill(task, sig: int, thread: bool) -> None:
    """Linux: the thread alone when others live (KILL_THREAD, strict mode), else the
    process, killed by sig (SIGSYS dumps core as RLIMIT_CORE allows)."""
    from sentry.sched import TaskExit
    kernel = task.kernel
    others = any(t is not task and t.exit_status is None for t in task.proc.tasks)
    if thread and others:
        kernel.exit_thread(task, 0)
    else:
        core = sig == SIGSYS and task.rlimits.get(4, (0, 0))[0] > 0
        kernel.exit_group(task, 0, sig, core)
    raise TaskExit


def install(task, insns, log: bool, tsync: bool) -> int:
    """Add a checked program to the task's chain (and, with TSYNC, its threads': each must
    be in no mode or filtered by an ancestor of the caller's chain, else the first other
    thread's tid is the result, as Linux's seccomp_can_sync_threads)."""
    import errno as E
    if task.seccomp_mode not in (MODE_DISABLED, MODE_FILTER):
        raise Errno(E.EINVAL)
    prev = task.seccomp_filter
    f = Filter(insns, prev, log)
    if f.total > MAX_INSNS_PER_PATH:
        raise Errno(E.ENOMEM)
    targets = [task]
    if tsync:
        targets = [t for t in task.proc.tasks if t.exit_status is None]
        ancestors = set()
        a = prev
        while a is not None:
            ancestors.add(id(a))
            a = a.prev
        for t in targets:
            if t is not task and (t.seccomp_mode == MODE_STRICT
                                  or t.seccomp_filter is not None and id(t.seccomp_filter) not in ancestors):
                return t.tid
    for t in targets:
        t.seccomp_filter = f
        t.seccomp_mode = MODE_FILTER
    return 0


def filter_count(task) -> int:
    """/proc/PID/status's Seccomp_filters."""
    n, f = 0, getattr(task, "seccomp_filter", None)
    while f is not None:
        n, f = n + 1, f.prev
    return n
