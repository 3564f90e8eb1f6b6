"""The sandbox's terminal: the host terminal `sentry run` was started on, lent to
the sandbox as /dev/pts/0 of its own devpts.

Its line discipline (echo, line editing, the characters that raise signals) is
the host's: modes the program sets (TCSETS) are set on the host terminal, and
sentry/console.py puts the host's back when sentry ends. What a kernel keeps
of a terminal is the sandbox's own: the session it controls, its foreground
process group, job control (SIGTTIN and SIGTTOU for a background group), its
window size (the host's, followed through SIGWINCH, until the program sets its
own: the host's is never changed) and its name. The ioctls are
syscalls/tty.py's."""
import errno as E
import os
from signal import SIGCONT, SIGHUP, SIGTTIN, SIGTTOU, SIGWINCH

from sentry.errors import Errno
from sentry.sched import Wait
from sentry.vfs.file import O_NOCTTY, O_NONBLOCK, File, HostStream
from sentry.vfs.inode import DeviceInode, DirInode, FileSystem

DEVPTS_SUPER_MAGIC = 0x1CD1
PTS_MAJOR = 136
ERESTARTSYS = 512
TIOCGWINSZ = 0x5413


class Terminal:
    """One terminal of the sandbox, on one host terminal (a fresh description of it of
    sentry's own, non-blocking, so the user's shell keeps its own flags)."""

    def __init__(self, kernel, host_fd: int, index: int = 0):
        self.kernel = kernel
        self.fd = os.open(f"/proc/self/fd/{host_fd}", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.index = index
        self.name = f"/dev/pts/{index}"
        self.session = None   # the sid of the session it is the controlling terminal of
        self.pgrp = None      # its foreground process group
        self.exclusive = False
        self.pushback = b""   # input a reader's faulting buffer gave back
        self.tostop = False   # the host's TOSTOP, as last set through the sandbox (syscalls/tty.py)
        self.output_stopped = False  # TCXONC TCOOFF: the console starts it again at the end
        self.on_read = None   # told when a program reads it (the console's second Ctrl-C rule)
        self.on_host_background = None  # the console's: sentry stopped as a background job reading; True to read again
        self.winsize = self.host_winsize()
        import weakref
        self.files = weakref.WeakSet()  # its open files, for a hangup
        try:
            import termios
            self.tostop = bool(termios.tcgetattr(self.fd)[3] & termios.TOSTOP)
        except Exception:  # termios.error: not a terminal after all
            pass
        # Its owner, group and mode are the host terminal's (a terminal's owner is the user it
        # was made for: the host user running sentry is the sandbox's root).
        st = os.fstat(self.fd)
        self.inode = DeviceInode(PTS_MAJOR, index, self.open, mode=st.st_mode & 0o7777)
        self.inode.uid = 0 if st.st_uid == os.geteuid() else st.st_uid
        self.inode.gid = st.st_gid

    def host_winsize(self) -> bytes:
        import fcntl
        try:
            return fcntl.ioctl(self.fd, TIOCGWINSZ, bytes(8))
        except OSError:
            return bytes(8)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def file_closed(self, f) -> None:
        """An open file of it closed (the console's terminal stays open to the end)."""

    # --- opening ------------------------------------------------------------------------------
    def open(self, flags: int, inode=None, path=None) -> "TtyFile":
        """A new open file of the terminal (by its /dev/pts name, /proc/PID/fd/N or /dev/tty).
        A session leader without one takes it as its controlling terminal, unless O_NOCTTY."""
        task = getattr(self.kernel, "current", None)
        if self.exclusive and task is not None and task.euid != 0:
            raise Errno(E.EBUSY)  # TIOCEXCL: only CAP_SYS_ADMIN opens it again
        f = TtyFile(self, inode or self.inode, flags, path or self.name)
        self.files.add(f)
        if task is not None and not flags & O_NOCTTY:
            proc = task.proc
            if proc.pid == proc.sid and proc.tty is None and self.session is None:
                self.make_controlling(proc)
        return f

    # --- sessions and process groups ---------------------------------------------------------
    def make_controlling(self, proc) -> None:
        """The terminal becomes proc's session's, its group the foreground (Linux's __proc_set_tty)."""
        self.session, self.pgrp = proc.sid, proc.pgid
        proc.tty = self

    def leader_exited(self, proc) -> None:
        """Its session's leader ended: the foreground group is hung up and every process of
        the session loses it (disassociate_ctty; a pty is not hung up itself)."""
        if self.session != proc.sid:
            return
        pgrp = self.pgrp
        self.session = self.pgrp = None
        for p in list(self.kernel.procs.values()):
            if p.sid == proc.sid:
                p.tty = None
        if pgrp is not None:
            self.signal_group(pgrp, SIGHUP)
            self.signal_group(pgrp, SIGCONT)

    def hangup(self) -> None:
        """vhangup(2) (Linux's __tty_hangup): every open file of it is hung up (reads 0, writes
        and ioctls EIO), its session's processes lose it, the session leader gets SIGHUP and
        SIGCONT. Opening it again gives a working file."""
        from sentry import signals
        for f in list(self.files):
            f.hung_up = True
        sid = self.session
        self.session = self.pgrp = None
        for p in list(self.kernel.procs.values()):
            if p.tty is self:
                p.tty = None
            if sid is not None and p.pid == sid and not p.zombie:
                signals.send_process(p, SIGHUP)
                signals.send_process(p, SIGCONT)

    def signal_group(self, pgid: int, sig: int) -> None:
        """Send sig to every process of the group, as the terminal does (SI_KERNEL)."""
        from sentry import signals
        for p in self.kernel.ptable.in_group(pgid):
            signals.send_process(p, sig)

    def signal_foreground(self, sig: int) -> bool:
        """sig to the foreground group (the Ctrl-C, Ctrl-\\ and Ctrl-Z the host terminal
        raised); False when there is none."""
        if self.pgrp is None or not self.kernel.ptable.in_group(self.pgrp):
            return False
        self.signal_group(self.pgrp, sig)
        return True

    def resize(self, winsize: bytes) -> None:
        """A new window size: the foreground group hears of a change (SIGWINCH)."""
        if winsize != self.winsize:
            self.winsize = winsize
            if self.pgrp is not None:
                self.signal_group(self.pgrp, SIGWINCH)

    def check_job(self, task, sig: int) -> None:
        """Job control (Linux's __tty_check_change): a process of a background group of the
        terminal's session that reads it (SIGTTIN), or changes it or writes under TOSTOP
        (SIGTTOU), stops its group and the call restarts after; EIO instead when that
        group is orphaned, or reading while SIGTTIN is ignored or blocked."""
        proc = task.proc
        if proc.tty is not self or self.pgrp is None or proc.pgid == self.pgrp:
            return
        from sentry import signals
        if task.sigmask & (1 << (sig - 1)) or signals.handler_of(task, sig) == signals.SIG_IGN:
            if sig == SIGTTIN:
                raise Errno(E.EIO)
            return
        if signals._orphaned_pgrp(task):
            raise Errno(E.EIO)
        self.signal_group(proc.pgid, sig)
        raise Errno(ERESTARTSYS)


class TtyFile(HostStream):
    """An open file of a Terminal: reads and writes go to the host terminal (the host's
    line discipline answers them), with the sandbox's job control first."""
    hung_up = False  # vhangup: reads give 0, writes and ioctls EIO

    def __init__(self, terminal: Terminal, inode, flags: int, path: str):
        File.__init__(self, inode, flags, path)
        self.terminal = terminal
        self.host_fd = self.out_fd = terminal.fd  # poll asks the host about it (sentry/poll.py)

    @property
    def pushback(self) -> bytes:
        return self.terminal.pushback

    @pushback.setter
    def pushback(self, data: bytes) -> None:
        self.terminal.pushback = data

    def reopen(self, flags: int) -> "TtyFile":
        return self.terminal.open(flags | O_NOCTTY, self.inode, self.path)

    def read(self, size: int) -> bytes:
        if self.hung_up:
            return b""
        term = self.terminal
        task = term.kernel.current
        if task is not None:
            term.check_job(task, SIGTTIN)
        if term.on_read is not None:
            term.on_read()
        if term.pushback:
            out, term.pushback = term.pushback[:size], term.pushback[size:]
            return out
        for _ in range(2):
            try:
                return os.read(term.fd, size)
            except BlockingIOError:
                if self.flags & O_NONBLOCK:
                    raise Errno(E.EAGAIN) from None
                raise Wait(fd=term.fd, events=1) from None
            except OSError as e:
                # EIO: sentry itself is a background job of the user's shell; the console stops
                # it, as the host stops any program reading there, and it reads again once continued
                if e.errno != E.EIO or term.on_host_background is None or not term.on_host_background():
                    raise Errno(e.errno) from None
        raise Errno(E.EIO)

    def write(self, data: bytes) -> int:
        if self.hung_up:
            raise Errno(E.EIO)
        term = self.terminal
        if term.tostop:
            task = term.kernel.current
            if task is not None:
                term.check_job(task, SIGTTOU)
        return super().write(data)

    def close(self) -> None:
        self.terminal.file_closed(self)  # (the host descriptor is the terminal's)

    def ioctl(self, task, request: int, arg: int) -> int:
        if self.hung_up:
            raise Errno(E.ENOTTY if request == 0x5410 else E.EIO)  # (TIOCSPGRP: ENOTTY, as Linux)
        from syscalls.tty import tty_ioctl
        return tty_ioctl(task, self, request, arg)


def make_devpts():
    """The root of a fresh devpts (mounted at /dev/pts): a terminal adds its node."""
    return DirInode(0o755, fs=FileSystem("devpts", magic=DEVPTS_SUPER_MAGIC))


def add_terminal(vfs, terminal: Terminal) -> None:
    """Give the terminal its /dev/pts/N node."""
    root = vfs.mounts[b"/dev/pts"]
    terminal.inode.fs = root.fs
    root.add(b"%d" % terminal.index, terminal.inode)


def open_controlling(kernel, inode, flags: int):
    """/dev/tty: a new open file of the caller's controlling terminal (ENXIO without one)."""
    task = getattr(kernel, "current", None)
    term = task.proc.tty if task is not None else None
    if term is None:
        raise Errno(E.ENXIO)
    return term.open(flags | O_NOCTTY, inode, "/dev/tty")


# --- pseudo-terminals: /dev/ptmx and /dev/pts/N --------------------------------------------------
# A pair is a host pseudo-terminal the sentry holds (its line discipline, echo, canonical mode
# and buffering are the host's, as the console's are); its slave is a Terminal of the sandbox's
# devpts (sessions, foreground group, window size, job control: the sandbox's), its master an
# open file of /dev/ptmx. The host slave is held only while the sandbox has it open, so that the
# master reads EIO once the last one closes (what `script` and python's pty.spawn wait for).
TIOCGPTN, TIOCSPTLCK, TIOCGPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x80045439, 0x5441
FIONREAD, TIOCOUTQ = 0x541B, 0x5411


def _host_peer(master_fd: int) -> int:
    """A new host descriptor of the slave of the host pty master_fd (TIOCGPTPEER)."""
    import fcntl
    return fcntl.ioctl(master_fd, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)


class PtyTerminal(Terminal):
    """The slave side of a pair: /dev/pts/N."""

    def __init__(self, kernel, pair: "PtyPair", index: int):
        peer = _host_peer(pair.master_fd)
        try:
            super().__init__(kernel, peer, index)
        finally:
            os.close(peer)
        self.pair = pair
        self.opened = 0  # open files of it in the sandbox

    def open(self, flags: int, inode=None, path=None) -> "TtyFile":
        pair = self.pair
        if pair.master_fd is None or pair.locked:
            raise Errno(E.EIO)  # a locked pty (unlockpt not called yet), or its master gone
        if self.fd is None:
            self.fd = _host_peer(pair.master_fd)
        f = super().open(flags, inode, path)
        self.opened += 1
        return f

    def file_closed(self, f) -> None:
        self.opened -= 1
        if self.opened <= 0 and self.fd is not None:
            os.close(self.fd)  # the master now reads EIO, as on Linux once no slave is open
            self.fd = None

    def host_winsize(self) -> bytes:
        return bytes(8)  # a new pty's: 0 rows, 0 columns


class PtyPair:
    def __init__(self, kernel, devpts, index: int):
        import pty
        self.master_fd, slave = pty.openpty()
        os.close(slave)
        os.set_blocking(self.master_fd, False)
        self.locked = True  # until TIOCSPTLCK 0 (unlockpt)
        self.index = index
        self.devpts = devpts
        self.terminal = PtyTerminal(kernel, self, index)
        self.terminal.inode.fs = devpts.fs
        self.terminal.inode.mode = 0o20620  # crw--w----, group tty, as devpts's default
        devpts.add(b"%d" % index, self.terminal.inode)

    def master_closed(self) -> None:
        """The master's last descriptor went: the slave is hung up and its node goes."""
        term = self.terminal
        term.hangup()
        self.devpts.children.pop(b"%d" % self.index, None)
        os.close(self.master_fd)
        self.master_fd = None


class _MasterSide:
    """The slave's terminal as the master's ioctls see it (tty_mode_ioctl works on the
    linked tty): its modes through the master's host descriptor, no job control."""

    def __init__(self, master: "PtyMaster"):
        object.__setattr__(self, "_master", master)

    @property
    def fd(self) -> int:
        return self._master.pair.master_fd

    @property
    def pushback(self) -> bytes:
        return self._master.pushback

    def check_job(self, task, sig: int) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._master.pair.terminal, name)

    def __setattr__(self, name, value):
        if name == "pushback":
            self._master.pushback = value
        else:
            setattr(self._master.pair.terminal, name, value)


class PtyMaster(HostStream):
    """An open /dev/ptmx: what is written is the slave's input, what is read its output."""

    def __init__(self, pair: PtyPair, inode, flags: int):
        File.__init__(self, inode, flags, "/dev/ptmx")
        self.pair = pair
        self.host_fd = self.out_fd = pair.master_fd
        self.pushback = b""
        self.terminal = _MasterSide(self)

    def close(self) -> None:
        self.pair.master_closed()

    def ioctl(self, task, request: int, arg: int) -> int:
        import fcntl
        pair = self.pair
        mm = task.mm
        if request == TIOCGPTN:
            mm.write_u32(arg, pair.index)
            return 0
        if request == TIOCSPTLCK:
            pair.locked = bool(mm.read_u32(arg))
            return 0
        if request == TIOCGPTLCK:
            mm.write_u32(arg, int(pair.locked))
            return 0
        if request == TIOCGPTPEER:
            from sentry.vfs.file import O_CLOEXEC
            peer = pair.terminal.open(arg & 0xFFFFFFFF)
            return task.fds.install(peer, cloexec=bool(arg & O_CLOEXEC))
        if request in (FIONREAD, TIOCOUTQ):
            buf = fcntl.ioctl(pair.master_fd, request, bytes(4))
            mm.write_u32(arg, int.from_bytes(buf, "little") + (len(self.pushback) if request == FIONREAD else 0))
            return 0
        from syscalls.tty import tty_ioctl
        return tty_ioctl(task, self, request, arg)


def open_ptmx(kernel, inode, flags: int) -> PtyMaster:
    """/dev/ptmx: a new pair, its slave the lowest free /dev/pts/N."""
    if kernel is None:
        raise Errno(E.ENODEV)
    devpts = kernel.vfs.mounts[b"/dev/pts"]
    index = 0
    while b"%d" % index in devpts.children:
        index += 1
    try:
        pair = PtyPair(kernel, devpts, index)
    except OSError as e:
        raise Errno(e.errno or E.EIO) from None
    return PtyMaster(pair, inode, flags)
