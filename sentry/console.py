"""What `sentry run` lends the sandbox of the place it was started from: its
stdio (a host terminal becomes the sandbox's terminal, sentry/vfs/tty.py), and
the signals the user sends sentry, passed on as Linux delivers them:

- Ctrl-C and Ctrl-\\ (SIGINT, SIGQUIT: from the host terminal, or sent to
  sentry) go to the foreground process group of the sandbox's terminal, or
  without one to the first program's group. A second SIGINT before the
  sandbox has read its terminal again kills everything.
- Ctrl-Z (SIGTSTP) goes there too. Should it stop the sandbox's first program,
  sentry stops itself, so that the host shell's job control takes over; when
  sentry is continued (`fg`, `bg`), so is that program's group.
- SIGTERM and SIGHUP go to the first program. If the sandbox has not ended
  `grace` seconds later, everything is killed.
- A window change (SIGWINCH) gives the sandbox's terminal its new size.

Those signals are blocked in every thread of sentry and taken by a thread of
the console's own (sigwaitinfo), which posts them to the kernel's loop
(Kernel.post): the loop does the work, between two syscalls. The host
terminal's modes are saved at the start and put back by close(), and before
sentry stops itself.
"""
import os
import signal
import threading
import time
from signal import SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH

SIGNALS = {SIGINT, SIGQUIT, SIGTSTP, SIGTERM, SIGHUP, SIGWINCH, SIGCONT}
INHERITED = (SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGALRM, signal.SIGCHLD, SIGWINCH)
DEFAULT_GRACE = 3.0  # seconds between a SIGTERM and the end of everything


class Console:
    """Made first thing in `sentry run` (before any thread or process): it blocks the
    signals it passes on, and remembers the host terminal's modes."""

    def __init__(self, grace: float = DEFAULT_GRACE):
        self.grace = grace
        self.kernel = None
        self.terminal = None     # the sandbox's Terminal, once a stdio descriptor is a host terminal
        self._tty_file = None    # the one open file of it that stdio shares, as a shell's dup'd descriptors
        self.host_tty = next((fd for fd in (0, 1, 2) if _isatty(fd)), None)
        self.saved_modes = None
        self.interrupted = False  # a SIGINT was passed on and the terminal not read since
        self.terminating = False  # a SIGTERM or SIGHUP was passed on: the grace period runs
        self.user_stop = False    # a Ctrl-Z was passed on and has not stopped the first program yet
        self._closing = False
        self._thread = None
        # Signals sentry was started with ignored (`nohup`, a script's background job) stay
        # ignored: not passed on, and ignored by the first program, which inherits them as a
        # program exec'd there would. (Python itself ignores SIGPIPE and SIGXFSZ: those
        # cannot be told apart, and start as default.)
        self.ignored = {sig for sig in INHERITED if signal.getsignal(sig) == signal.SIG_IGN}
        self.signals = SIGNALS - self.ignored
        signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        for sig in (SIGTTIN, SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)  # sentry's own use of the terminal never stops it
        if self.host_tty is not None:
            import termios
            try:
                self.saved_modes = termios.tcgetattr(self.host_tty)
            except termios.error:
                pass

    # --- stdio ---------------------------------------------------------------------------------
    def stdio(self) -> list:
        """What runner.execute makes fds 0, 1 and 2 of the first program with."""
        from sentry.vfs.file import O_RDONLY, O_WRONLY
        return [self._stdio(0, O_RDONLY), self._stdio(1, O_WRONLY), self._stdio(2, O_WRONLY)]

    def _stdio(self, fd: int, flags: int):
        def make(kernel):
            from sentry.vfs.file import HostStream
            from sentry.vfs.inode import Inode
            if self.host_tty is not None and _same_tty(fd, self.host_tty):
                return self._terminal_file(kernel)
            return HostStream(Inode(0o600), fd, flags)
        return make

    def _terminal_file(self, kernel):
        if self._tty_file is None:
            from sentry.vfs.file import O_NOCTTY, O_RDWR
            from sentry.vfs.tty import Terminal, add_terminal
            self.terminal = Terminal(kernel, self.host_tty)
            add_terminal(kernel.vfs, self.terminal)
            self._tty_file = self.terminal.open(O_RDWR | O_NOCTTY)
        return self._tty_file

    # --- the run -------------------------------------------------------------------------------
    def attach(self, kernel) -> None:
        """Before the first program is made: the kernel to pass the signals to."""
        self.kernel = kernel
        kernel.console = self
        kernel.platform.wakeable = True
        self._thread = threading.Thread(target=self._listen, name="sentry-console", daemon=True)
        self._thread.start()

    def started(self, task) -> None:
        """The first program exists: the terminal is its session's controlling terminal,
        its group the foreground, as for a program a shell runs; what sentry was started
        ignoring, it ignores."""
        from sentry import signals
        for sig in self.ignored:
            signals.set_action(task, sig, signals.IGNORE_ACTION)
        if self.terminal is not None:
            self.terminal.make_controlling(task.proc)
            self.terminal.on_read = self._terminal_read
            self.terminal.on_host_background = self._stopped_for_input

    def close(self) -> None:
        """The run is over (however it ended): the host terminal gets its modes back."""
        if self._thread is not None and not self._closing:
            self._closing = True
            signal.pthread_kill(self._thread.ident, SIGWINCH)  # ends its sigwaitinfo
            self._thread.join(1)
        self._restore_host()
        if self.terminal is not None:
            self.terminal.close()

    def _listen(self) -> None:
        # Every other signal is blocked here too: a SIGCHLD of the ptrace platform's tracees
        # must stay pending for the loop's signalfd, never wake this thread (one per stop).
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            info = signal.sigwaitinfo(self.signals)
            if self._closing:
                return
            sig = info.si_signo
            self.kernel.post(lambda sig=sig: self._host_signal(sig))  # bound now: the next signal rebinds sig

    # --- in the kernel's loop ----------------------------------------------------------------
    def _host_signal(self, sig: int) -> None:
        kernel = self.kernel
        if sig == SIGWINCH:
            if self.terminal is not None:
                self.terminal.resize(self.terminal.host_winsize())
            return
        if sig == SIGCONT:
            return  # sentry was continued: _stop_host goes on from there
        if sig in (SIGINT, SIGQUIT, SIGTSTP):
            if sig == SIGTSTP:
                self.user_stop = True
            if sig == SIGINT:
                if self.interrupted:
                    kernel.end_everything("interrupted twice: everything in the sandbox was killed")
                    return
                self.interrupted = True
            self._to_foreground(sig)
            return
        from sentry import signals
        init = kernel.procs.get(1)
        if init is not None:
            signals.send_process(init, sig, signals.SigInfo(sig, signals.SI_USER))
        if not self.terminating:
            self.terminating = True
            name = signal.Signals(sig).name
            kernel.call_at(time.monotonic() + self.grace, lambda: kernel.end_everything(
                f"{name}: the sandbox had not ended {self.grace:g} s after it; everything in it was killed"))

    def _to_foreground(self, sig: int) -> None:
        """sig to the terminal's foreground group, or to the first program's group."""
        if self.terminal is not None and self.terminal.signal_foreground(sig):
            return
        from sentry import signals
        init = self.kernel.procs.get(1)
        if init is not None:
            for p in self.kernel.ptable.in_group(init.pgid):
                signals.send_process(p, sig)

    def _terminal_read(self) -> None:
        # The program is back at its terminal: the next Ctrl-C is a first one, and a Ctrl-Z
        # was taken by a shell's job (or ignored), not by the first program.
        self.interrupted = self.user_stop = False

    def _stopped_for_input(self) -> bool:
        """The sandbox read the terminal while sentry is a background job of the user's
        shell (the host read said EIO): sentry stops as any program would there (SIGTTIN),
        and says True once continued in the foreground."""
        try:
            if os.tcgetpgrp(self.host_tty) == os.getpgrp():
                return False  # not that: a hung-up terminal
        except OSError:
            return False
        signal.signal(SIGTTIN, signal.SIG_DFL)
        try:
            signal.pthread_kill(threading.get_ident(), SIGTTIN)  # stops here, unless sentry's group is orphaned
        finally:
            signal.signal(SIGTTIN, signal.SIG_IGN)
        try:
            return os.tcgetpgrp(self.host_tty) == os.getpgrp()
        except OSError:
            return False

    def init_stopped(self) -> None:
        """The sandbox's first program stopped. After the user's Ctrl-Z, sentry stops too, at
        the loop's next turn; a stop from inside the sandbox (a child's SIGSTOP) is the
        sandbox's own business: its other processes run on and may continue it."""
        if self.user_stop:
            self.user_stop = False
            self.kernel.post(self._stop_host)

    def _stop_host(self) -> None:
        init = self.kernel.procs.get(1)
        leader = init.leader if init is not None else None
        if leader is None or not leader.sigshared.stopped:
            return
        sandbox_modes = self._host_modes()
        self._restore_host()  # the shell gets its terminal back as it left it
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {SIGTSTP})
        try:
            signal.pthread_kill(threading.get_ident(), SIGTSTP)  # stops here until SIGCONT
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, {SIGTSTP})
        if sandbox_modes is not None:
            import termios
            try:
                termios.tcsetattr(self.host_tty, termios.TCSANOW, sandbox_modes)
            except termios.error:
                pass
        if self.terminal is not None:
            self.terminal.resize(self.terminal.host_winsize())
        from sentry import signals
        for p in self.kernel.ptable.in_group(init.pgid):
            signals.send_process(p, SIGCONT)

    # --- the host terminal -------------------------------------------------------------------
    def _host_modes(self):
        if self.host_tty is None:
            return None
        import termios
        try:
            return termios.tcgetattr(self.host_tty)
        except termios.error:
            return None

    def _restore_host(self) -> None:
        if self.saved_modes is None:
            return
        import termios
        try:
            termios.tcsetattr(self.host_tty, termios.TCSANOW, self.saved_modes)
            if self.terminal is not None and self.terminal.output_stopped:
                termios.tcflow(self.host_tty, termios.TCOON)
                self.terminal.output_stopped = False
        except termios.error:
            pass  # the terminal is gone (hung up)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _same_tty(fd: int, tty: int) -> bool:
    """Is fd the same host terminal as tty?"""
    if fd == tty:
        return True
    try:
        return _isatty(fd) and os.fstat(fd).st_rdev == os.fstat(tty).st_rdev
    except OSError:
        return False
