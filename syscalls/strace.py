"""--strace: each syscall with decoded arguments and its result, as strace prints it.

Argument types come from python-ptrace's prototype table; strings are read
from guest memory (a bad pointer shows as its address)."""
import errno as E
import os

from sentry.errors import Errno
_STRING_TYPES = ("const char *", "char *", "const char __user *", "char __user *")
_PATH_NAMES = {"filename", "pathname", "path", "oldname", "newname", "old", "new", "name"}
_BUFFER_NAMES = {"buf", "ubuf"}


class Strace:
    def __init__(self, write):
        from ptrace.syscall.prototypes import SYSCALL_PROTOTYPES
        self.prototypes = SYSCALL_PROTOTYPES
        self.write = write  # write(line) with the newline included

    def call(self, dispatcher, task, nr, entry, args):
        name = entry.name if entry else (dispatcher.names[nr] if nr < len(dispatcher.names) and
                                         dispatcher.names[nr] else f"syscall_{nr}")
        before = self.format_args(task, name, args, entry)
        result = None
        try:
            result = dispatcher.invoke(task, nr, entry, args)
            return result
        finally:
            self.write(f"[pid {task.tid}] {name}({before}) = {self.format_result(name, result)}\n")

    def format_args(self, task, name, args, entry) -> str:
        proto = self.prototypes.get(name)
        if proto is None:
            n = entry.nargs if entry else 6
            return ", ".join(hex(a) for a in args[:n])
        out = []
        for (ctype, aname), value in zip(proto[1], args):
            out.append(self.format_arg(task, name, ctype, aname, value, args))
        return ", ".join(out)

    def format_arg(self, task, name, ctype, aname, value, args) -> str:
        if aname in ("dfd", "dirfd", "olddfd", "newdfd") and value & 0xFFFFFFFF == 0xFFFFFF9C:
            return "AT_FDCWD"
        if ctype in _STRING_TYPES and aname in _PATH_NAMES:
            return self._string(task, value, 4096)
        if name == "write" and aname in _BUFFER_NAMES:
            return self._buffer(task, value, args[2])
        if ctype.endswith("*") or ctype in ("unsigned long",) and aname in ("addr", "brk"):
            return hex(value) if value else "NULL"
        if ctype in ("int", "long", "off_t", "loff_t", "pid_t", "clockid_t"):
            v = value & 0xFFFFFFFF if ctype in ("int", "pid_t", "clockid_t") else value
            bits = 32 if ctype in ("int", "pid_t", "clockid_t") else 64
            return str(v - (1 << bits) if v >> (bits - 1) & 1 else v)
        return str(value) if value < 4096 else hex(value)

    def _string(self, task, addr, limit) -> str:
        try:
            s = task.mm.read_cstring(addr, limit)
        except Errno:
            return hex(addr)
        return _quote(s[:64]) + ("..." if len(s) > 64 else "")

    def _buffer(self, task, addr, count) -> str:
        try:
            data = task.mm.read(addr, min(count, 32))
        except Errno:
            return hex(addr)
        return _quote(data) + ("..." if count > 32 else "")

    @staticmethod
    def format_result(name, result) -> str:
        if result is None:
            return "?"
        signed = result - (1 << 64) if result >> 63 else result
        if -4096 < signed < 0:
            code = -signed
            if code in _RESTART:  # the kernel's own codes: the signal code turns them into EINTR or a restart
                return f"? {_RESTART[code]}"
            return f"-1 {E.errorcode.get(code, code)} ({os.strerror(code)})"
        if name in ("mmap", "brk", "mremap"):
            return hex(result)
        return str(signed)


_RESTART = {512: "ERESTARTSYS (To be restarted if SA_RESTART is set)", 513: "ERESTARTNOINTR (To be restarted)",
            514: "ERESTARTNOHAND (To be restarted if no handler)",
            516: "ERESTART_RESTARTBLOCK (Interrupted by signal)"}


def _quote(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'
