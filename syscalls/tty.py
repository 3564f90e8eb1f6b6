"""ioctl(2) on the sandbox's terminal (ioctl_tty(2)), in the order and with the
errors of Linux's tty_ioctl for a pseudo-terminal's slave side.

Every structure is copied in and out at exactly the kernel's size (struct
termios 36 bytes, termios2 44, termio 18, winsize 8, an int 4): never the C
library's larger ones. Modes go to the host terminal, whose line discipline
is the sandbox's (sentry/vfs/tty.py); sessions, process groups, the window
size and job control are the sandbox's. Requests for another kind of tty
(modem lines, serial ports, consoles) answer as a pty slave does: ENOTTY,
EINVAL or EIO. A pty master's (/dev/ptmx: sentry/vfs/tty.py PtyMaster) come
here too, for its slave's modes and window, after its own (TIOCGPTN, the lock,
TIOCGPTPEER). TIOCSTI, TIOCCONS, TIOCVHANGUP and setting
the locked modes need CAP_SYS_ADMIN, which the sandbox never has (TIOCSTI
answers EIO, as Linux with dev.tty.legacy_tiocsti=0: it would type into the
host's terminal)."""
import errno as E
import fcntl
import termios
from signal import SIGTTOU

from sentry.errors import Errno
from syscalls.registry import PARTIAL, syscall

TCGETS, TCSETS, TCSETSW, TCSETSF = 0x5401, 0x5402, 0x5403, 0x5404
TCGETA, TCSETA, TCSETAW, TCSETAF = 0x5405, 0x5406, 0x5407, 0x5408
TCSBRK, TCXONC, TCFLSH = 0x5409, 0x540A, 0x540B
TIOCEXCL, TIOCNXCL, TIOCSCTTY, TIOCGPGRP, TIOCSPGRP = 0x540C, 0x540D, 0x540E, 0x540F, 0x5410
TIOCOUTQ, TIOCSTI, TIOCGWINSZ, TIOCSWINSZ = 0x5411, 0x5412, 0x5413, 0x5414
TIOCGSOFTCAR, TIOCSSOFTCAR, FIONREAD, TIOCCONS = 0x5419, 0x541A, 0x541B, 0x541D
TIOCNOTTY, TIOCSETD, TIOCGETD, TCSBRKP = 0x5422, 0x5423, 0x5424, 0x5425
TIOCSBRK, TIOCCBRK, TIOCGSID = 0x5427, 0x5428, 0x5429
TCGETS2, TCSETS2, TCSETSW2, TCSETSF2 = 0x802C542A, 0x402C542B, 0x402C542C, 0x402C542D
TIOCGDEV, TIOCVHANGUP, TIOCGEXCL, TIOCGPTPEER = 0x80045432, 0x5437, 0x80045440, 0x5441
TIOCGLCKTRMIOS, TIOCSLCKTRMIOS = 0x5456, 0x5457

TERMIOS, TERMIOS2, TERMIO = 36, 44, 18   # the kernel's struct sizes (asm-generic, x86-64 and arm64 alike)
LFLAG_OFFSET, CFLAG_OFFSET = 12, 8       # c_lflag and c_cflag in struct termios (and termios2)
TOSTOP, CLOCAL = 0o400, 0o4000
N_TTY, NR_LDISCS = 0, 31
SETS = {TCSETS: TERMIOS, TCSETSW: TERMIOS, TCSETSF: TERMIOS, TCSETA: TERMIO, TCSETAW: TERMIO,
        TCSETAF: TERMIO, TCSETS2: TERMIOS2, TCSETSW2: TERMIOS2, TCSETSF2: TERMIOS2}
GETS = {TCGETS: TERMIOS, TCGETA: TERMIO, TCGETS2: TERMIOS2}
# TCSETSW/TCSETSF (and their termio and termios2 forms) wait for output to drain first: the
# host would block the whole sentry on a stopped terminal, so the modes are set at once
# (output already written has already been processed by the host's line discipline).
NOW = {TCSETS: TCSETS, TCSETSW: TCSETS, TCSETSF: TCSETS, TCSETA: TCSETA, TCSETAW: TCSETA,
       TCSETAF: TCSETA, TCSETS2: TCSETS2, TCSETSW2: TCSETS2, TCSETSF2: TCSETS2}
FLUSHING = {TCSETSF, TCSETAF, TCSETSF2}


def tty_ioctl(t, f, request: int, arg: int) -> int:
    term = f.terminal
    mm = t.mm
    if request in (TIOCSETD, TIOCSBRK, TIOCCBRK, TCSBRK, TCSBRKP):
        term.check_job(t, SIGTTOU)
    if request == TIOCSTI:
        raise Errno(E.EIO)
    if request == TIOCGWINSZ:
        mm.write(arg, term.winsize)
        return 0
    if request == TIOCSWINSZ:
        term.resize(bytes(mm.read(arg, 8)))
        return 0
    if request in (TIOCCONS, TIOCVHANGUP):
        raise Errno(E.EPERM)
    if request in (TIOCEXCL, TIOCNXCL):
        term.exclusive = request == TIOCEXCL
        return 0
    if request == TIOCGEXCL:
        mm.write_u32(arg, int(term.exclusive))
        return 0
    if request == TIOCGETD:
        mm.write_u32(arg, N_TTY)
        return 0
    if request == TIOCSETD:
        disc = _s32(mm.read_u32(arg))
        if disc < 0 or disc >= NR_LDISCS:
            raise Errno(E.EINVAL)
        if disc != N_TTY:
            raise Errno(E.EPERM)  # no other line discipline is offered (nor could one be loaded)
        return 0
    if request == TIOCGDEV:
        major, minor = term.inode.rdev >> 8, term.inode.rdev & 0xFF
        mm.write_u32(arg, (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12))
        return 0
    if request in (TIOCSBRK, TIOCCBRK, TCSBRK, TCSBRKP):
        return 0  # a pty has no break to send
    if request == TIOCGPTPEER:
        raise Errno(E.EIO)  # only a pty's master side has a peer
    if request in (TIOCNOTTY, TIOCSCTTY, TIOCGPGRP, TIOCSPGRP, TIOCGSID):
        return _job_control(t, term, f, request, arg)
    # --- the line discipline's (n_tty) -------------------------------------------------------
    if request == FIONREAD:
        mm.write_u32(arg, _host_int(term, termios.FIONREAD) + len(term.pushback))
        return 0
    if request == TIOCOUTQ:
        mm.write_u32(arg, _host_int(term, termios.TIOCOUTQ))
        return 0
    if request == TCXONC:
        term.check_job(t, SIGTTOU)
        if arg not in (termios.TCOOFF, termios.TCOON, termios.TCIOFF, termios.TCION):
            raise Errno(E.EINVAL)
        _host(termios.tcflow, term.fd, arg)
        if arg in (termios.TCOOFF, termios.TCOON):
            term.output_stopped = arg == termios.TCOOFF  # the console starts it again at the end
        return 0
    if request == TCFLSH:
        term.check_job(t, SIGTTOU)
        if arg not in (termios.TCIFLUSH, termios.TCOFLUSH, termios.TCIOFLUSH):
            raise Errno(E.EINVAL)
        if arg != termios.TCOFLUSH:
            term.pushback = b""
        _host(termios.tcflush, term.fd, arg)
        return 0
    # --- modes (tty_mode_ioctl) --------------------------------------------------------------
    if request in GETS:
        mm.write(arg, _host_ioctl(term, request, bytes(GETS[request])))
        return 0
    if request in SETS:
        term.check_job(t, SIGTTOU)
        modes = bytes(mm.read(arg, SETS[request]))
        if request in FLUSHING:
            term.pushback = b""
            _host(termios.tcflush, term.fd, termios.TCIFLUSH)
        _host_ioctl(term, NOW[request], modes)
        if request not in (TCSETA, TCSETAW, TCSETAF):
            term.tostop = bool(int.from_bytes(modes[LFLAG_OFFSET:LFLAG_OFFSET + 4], "little") & TOSTOP)
        else:
            term.tostop = bool(int.from_bytes(modes[6:8], "little") & TOSTOP)
        return 0
    if request == TIOCGLCKTRMIOS:
        mm.write(arg, bytes(TERMIOS))  # nothing is locked
        return 0
    if request == TIOCSLCKTRMIOS:
        raise Errno(E.EPERM)
    if request == TIOCGSOFTCAR:
        cflag = int.from_bytes(_host_ioctl(term, TCGETS, bytes(TERMIOS))[CFLAG_OFFSET:CFLAG_OFFSET + 4], "little")
        mm.write_u32(arg, int(bool(cflag & CLOCAL)))
        return 0
    if request == TIOCSSOFTCAR:
        on = mm.read_u32(arg)
        modes = bytearray(_host_ioctl(term, TCGETS, bytes(TERMIOS)))
        cflag = int.from_bytes(modes[CFLAG_OFFSET:CFLAG_OFFSET + 4], "little")
        cflag = cflag | CLOCAL if on else cflag & ~CLOCAL
        modes[CFLAG_OFFSET:CFLAG_OFFSET + 4] = cflag.to_bytes(4, "little")
        _host_ioctl(term, TCSETS, bytes(modes))
        return 0
    raise Errno(E.ENOTTY)


def _job_control(t, term, f, request: int, arg: int) -> int:
    """Linux's tty_jobctrl_ioctl: the terminal's session and foreground group."""
    proc = t.proc
    mine = proc.tty is term
    if request == TIOCGPGRP:
        if not mine:
            raise Errno(E.ENOTTY)
        t.mm.write_u32(arg, term.pgrp or 0)
        return 0
    if request == TIOCGSID:
        if not mine or term.session is None:
            raise Errno(E.ENOTTY)
        t.mm.write_u32(arg, term.session)
        return 0
    if request == TIOCSPGRP:
        try:
            term.check_job(t, SIGTTOU)
        except Errno as e:
            raise Errno(E.ENOTTY if e.errno == E.EIO else e.errno) from None
        pgid = _s32(t.mm.read_u32(arg))
        if pgid < 0:
            raise Errno(E.EINVAL)
        if not mine or term.session != proc.sid:
            raise Errno(E.ENOTTY)
        procs = t.kernel.procs
        group = [p for p in procs.values() if p.pgid == pgid and not p.zombie]
        owner = group[0] if group else procs.get(pgid)  # Linux's session_of_pgrp
        if owner is None:
            raise Errno(E.ESRCH)
        if owner.sid != proc.sid:
            raise Errno(E.EPERM)
        term.pgrp = pgid
        return 0
    if request == TIOCSCTTY:
        if proc.pid == proc.sid and term.session == proc.sid:
            return 0  # already its controlling terminal
        if proc.pid != proc.sid or proc.tty is not None:
            raise Errno(E.EPERM)
        if term.session is not None:
            raise Errno(E.EPERM)  # another session's: taking it needs CAP_SYS_ADMIN
        if not f.readable:
            raise Errno(E.EPERM)
        term.make_controlling(proc)
        return 0
    # TIOCNOTTY
    if not mine:
        raise Errno(E.ENOTTY)
    if proc.pid == proc.sid:
        term.leader_exited(proc)  # a session leader gives it up for the whole session
    proc.tty = None
    return 0


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _host(fn, *args):
    try:
        return fn(*args)
    except termios.error as e:
        raise Errno(e.args[0]) from None
    except OSError as e:
        raise Errno(e.errno) from None


def _host_ioctl(term, request: int, buf: bytes) -> bytes:
    return _host(fcntl.ioctl, term.fd, request, buf)


def _host_int(term, request: int) -> int:
    return int.from_bytes(_host_ioctl(term, request, bytes(4)), "little")


CAP_SYS_TTY_CONFIG = 26


@syscall("vhangup", status=PARTIAL, note="CAP_SYS_TTY_CONFIG (EPERM without); hangs up the caller's controlling "
         "terminal as Linux: its open files read 0 and fail writes and ioctls with EIO, its session loses it, the "
         "leader gets SIGHUP/SIGCONT; poll still reports the host terminal's readiness on a hung-up file")
def vhangup(t):
    from sentry import caps
    if not caps.has(t, CAP_SYS_TTY_CONFIG):
        raise Errno(E.EPERM)
    term = t.proc.tty
    if term is not None:
        term.hangup()
    return 0
