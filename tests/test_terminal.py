"""sentry run from a real terminal: each program runs on a fresh pseudo-terminal
(tests/ptyrun.py), natively and under each platform, with the same keys typed
at it, and what the terminal shows must be the same.

- fixtures/tty.c: every termios ioctl's bytes (nothing written past the
  kernel's struct), names, sessions, job control, /dev/tty;
- real programs: ls --color=auto, python3's terminal size, stty, tput, an
  interactive bash and busybox sh running commands, a job stopped with Ctrl-Z
  and resumed with fg or bg;
- the host terminal's modes are the same after a program changed them;
- the user's signals (tests at the end): Ctrl-C, Ctrl-\\, Ctrl-Z, SIGTERM,
  SIGINT sent to sentry, a second Ctrl-C, a window resize.
"""
from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
import time

import pytest

import harness
import stubwatch
from harness import PLATFORMS
from ptyrun import Step, run_on_pty

PYTHON = "/usr/bin/python3"
BASH = "/bin/bash"
TIMEOUT = 90
TERM_ENV = {"TERM": "xterm"}


def _native(argv, steps=(), *, env=None, cwd=None, **kw):
    return run_on_pty(argv, env=harness.guest_env({**TERM_ENV, **(env or {})}), cwd=cwd or str(harness.REPO),
                      steps=steps, timeout=TIMEOUT, **kw)


def _sandboxed(platform, argv, steps=(), *, env=None, options=(), cwd=None, **kw):
    host_env = harness.sentry_host_env()
    host_env.update(TERM_ENV)
    return run_on_pty(harness.sentry_argv(platform, argv[0], argv[1:], env=env, options=options), env=host_env,
                      cwd=cwd or str(harness.REPO), steps=steps, timeout=TIMEOUT, **kw)


def _same(native, sandbox, label: str) -> None:
    assert native.status is not None and native.failed_step is None, \
        f"{label}: the native run went wrong (status {native.status}, step {native.failed_step}):\n{native.text()}"
    assert sandbox.failed_step is None, \
        f"{label}: step {sandbox.failed_step} never came in the sandbox:\n{sandbox.text()}"
    if sandbox.output != native.output or sandbox.status != native.status:
        harness.fail(f"{label}: native exit {native.status}, sandbox exit {sandbox.status}\n"
                     + harness.bytes_diff(native.output, sandbox.output))


# --- the fixture --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(harness.VARIANTS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_tty_fixture(platform, variant):
    exe = harness.build("tty", variant)
    native = _native([exe])
    assert b"done" in native.output and b"fixture error" not in native.output, native.text()
    assert b"past 36 bytes touched: no" in native.output
    _same(native, _sandboxed(platform, [exe]), f"tty {variant}")


# --- real programs --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def listing(tmp_path_factory):
    """A directory whose ls --color listing shows a directory, an executable and a link."""
    d = tmp_path_factory.mktemp("listing")
    (d / "a dir").mkdir()
    (d / "script.sh").write_text("#!/bin/sh\n")
    (d / "script.sh").chmod(0o755)
    (d / "plain.txt").write_text("text\n")
    (d / "link").symlink_to("plain.txt")
    return d


PROGRAMS = {
    "ls-color": ["/bin/ls", "--color=auto", "-F"],
    "ls-columns": ["/bin/ls", "/usr/bin"],
    "python-size": [PYTHON, "-c", "import os, sys; print(os.get_terminal_size(), sys.stdin.isatty(), "
                    "os.ttyname(2)[:9], os.tcgetpgrp(0) == os.getpgrp())"],
    "stty-a": ["/bin/stty", "-a"],
    "stty-raw-sane": ["/bin/sh", "-c", "stty raw -echo; stty -a | head -1; stty sane; stty -a | tail -1"],
    "tput": ["/bin/sh", "-c", "tput cols; tput lines; tput bold | od -c | head -1"],
    "tty": ["/bin/sh", "-c", "tty | tr 0-9 N; tty < /dev/tty | tr 0-9 N"],
    "term-env": ["/bin/sh", "-c", "echo TERM=$TERM"],  # sentry passes the host's TERM on a terminal
}


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_program_on_terminal(platform, name, listing):
    argv = PROGRAMS[name]
    harness.require_program(argv[0])
    _same(_native(argv, cwd=str(listing)), _sandboxed(platform, argv, cwd=str(listing)), name)


def test_terminal_modes_come_back(platform="ptrace"):
    """A program that leaves the terminal raw, without echo: after sentry the host terminal
    is as it was (natively it would stay raw)."""
    for plat in PLATFORMS:
        run = _sandboxed(plat, ["/bin/sh", "-c", "stty raw -echo -isig; stty -a | grep -c -- -echo"])
        assert run.status == 0, run.text()
        assert b"1" in run.output, run.text()
        assert run.modes_after == run.modes_before, f"{plat}: {run.modes_before} -> {run.modes_after}"
    native = _native(["/bin/sh", "-c", "stty raw -echo -isig"])
    assert native.modes_after != native.modes_before  # the check can fail: natively the modes stay changed


PROMPT = b"PROMPT> "
SHELLS = {"bash": [BASH, "--norc", "--noprofile", "-i"], "busybox-sh": [harness.BUSYBOX, "sh", "-i"]}


def _typed(*lines):
    return [Step(PROMPT, line) for line in lines]


def _pause(seconds):
    return Step(None, lambda proc, master: time.sleep(seconds))


SESSIONS = {
    "commands": _typed(b"echo hello $((6 * 7)); tty | tr 0-9 N; cd /tmp && pwd\n", b"exit 3\n"),
    "ctrl-z-fg": [Step(PROMPT, b"sleep 100\n"), _pause(0.7), Step(None, b"\x1a"), *_typed(b"jobs\n", b"fg\n"),
                  Step(b"sleep 100", None), _pause(0.7), Step(None, b"\x03"),
                  *_typed(b"echo status $?\n", b"exit\n")],
    "ctrl-z-bg": [Step(PROMPT, b"sleep 100\n"), _pause(0.7), Step(None, b"\x1a"),
                  *_typed(b"bg\n", b"jobs\n", b"fg\n"), Step(b"sleep 100", None), _pause(0.7), Step(None, b"\x03"),
                  *_typed(b"echo status $?\n", b"exit\n")],
    "ctrl-c-prompt": [Step(PROMPT, b"echo not run"), Step(b"not run", None), _pause(0.5), Step(None, b"\x03"), *_typed(b"echo after\n", b"exit\n")],
    "trap": [*_typed(b"trap 'echo trapped' INT; sleep 100\n"), _pause(0.7), Step(None, b"\x03"),
             *_typed(b"exit\n")],
}


@pytest.mark.parametrize("session", list(SESSIONS))
@pytest.mark.parametrize("shell", list(SHELLS))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_interactive_shell(platform, shell, session):
    argv = SHELLS[shell]
    steps = SESSIONS[session]
    env = {"PS1": PROMPT.decode()}
    _same(_native(argv, steps, env=env, cwd="/"),
          _sandboxed(platform, argv, steps, env=env, options=("--workdir", "/")), f"{shell} {session}")


INTERACTIVE = {
    "python-repl": (["/usr/bin/python3", "-q"], [Step(b">>> ", b"import os; 6*7\n"), Step(b">>> ", b"input('na' 'me? ')\n"),
                                                Step(b"name? ", b"bob\n"), Step(b">>> ", b"\x04")]),
    "less": (["/usr/bin/less", "/etc/debian_version"], [Step(b"(END)", b"q")]),  # (lent; /etc/hostname is the sandbox's)
    "vim": (["/usr/bin/vim", "-u", "NONE", "-i", "NONE", "typed.txt"],
            # typed once its first screen is drawn (the terminal is raw by then), not after a fixed
            # pause: a slow start would have the line discipline echo the keys first
            [Step(b"[New File]", None), _pause(0.3), Step(None, b"ihello\x1b:wq\n")]),
    "perl-prompt": (["/usr/bin/perl", "-e", "print 'name? '; $a = <STDIN>; print 'got ', $a"],
                    [Step(b"name? ", b"alice\n")]),
}


@pytest.mark.parametrize("name", list(INTERACTIVE))
@pytest.mark.parametrize("platform", PLATFORMS)
def test_interactive_program(platform, name, tmp_path):
    argv, steps = INTERACTIVE[name]
    harness.require_program(argv[0])
    # It runs in a fresh directory: natively the test's own, in the sandbox its memory /tmp.
    native = _native(argv, steps, cwd=str(tmp_path))
    _same(native, _sandboxed(platform, argv, steps, options=("--workdir", "/tmp")), name)


# --- the user's signals ---------------------------------------------------------------------------
HANDLER = ("import signal, sys, time\n"
           "def on(sig, frame):\n"
           "    print('handled', signal.Signals(sig).name, flush=True); sys.exit(3)\n"
           "signal.signal(signal.SIGINT, on); signal.signal(signal.SIGTERM, on)\n"
           "print('ready', flush=True)\n"
           "time.sleep(100)\n")


def _kill_sentry(sig):
    """sig to the foreground job of the test's terminal: the sentry this test started, never another."""
    return lambda proc, master: os.killpg(os.tcgetpgrp(master), sig)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ctrl_c_runs_the_handler(platform):
    # (a pause: the program is past its write of "ready" when ^C comes, on an emulator too)
    steps = [Step(b"ready", None), _pause(0.5), Step(None, b"\x03")]
    _same(_native([PYTHON, "-c", HANDLER], steps), _sandboxed(platform, [PYTHON, "-c", HANDLER], steps), "Ctrl-C")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sigint_to_sentry_without_a_terminal(platform):
    """SIGINT sent to sentry on pipes: the first program's group takes it, its handler runs."""
    import subprocess
    proc = subprocess.Popen(harness.sentry_argv(platform, PYTHON, ["-c", HANDLER]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=harness.sentry_host_env(), cwd=str(harness.REPO),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (3, b"handled SIGINT\n", b"")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sigterm_then_sigcont_as_timeout_sends(platform):
    """coreutils' `timeout` sends SIGTERM and at once SIGCONT: each is passed on as itself
    (the second once replaced the first, half the time, and the sandbox ran to its end)."""
    import subprocess
    for _ in range(3):
        proc = subprocess.Popen(harness.sentry_argv(platform, "/bin/sh", ["-c", "echo ready; exec sleep 100"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.sentry_host_env(),
                                cwd=str(harness.REPO))
        try:
            assert proc.stdout.readline() == b"ready\n"
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=20)  # the sleep would take 100 s
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert (proc.returncode, out, err) == (128 + signal.SIGTERM, b"", b"")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ctrl_c_ends_a_pipeline(platform):
    argv = ["/bin/dash", "-c", "echo ready; sleep 100 | cat; echo not reached"]
    steps = [Step(b"ready", None), _pause(0.7), Step(None, b"\x03")]
    _same(_native(argv, steps), _sandboxed(platform, argv, steps), "Ctrl-C in a pipeline")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ctrl_backslash_quits(platform):
    argv = ["/bin/sh", "-c", "echo ready; exec sleep 100"]
    steps = [Step(b"ready", None), _pause(0.7), Step(None, b"\x1c")]
    _same(_native(argv, steps), _sandboxed(platform, argv, steps), "Ctrl-\\")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sigterm_runs_the_handler(platform):
    steps = [Step(b"ready", None), _pause(0.5), Step(None, _kill_sentry(signal.SIGTERM))]
    run = _sandboxed(platform, [PYTHON, "-c", HANDLER], steps)
    assert (run.status, run.text()) == (3, "ready\nhandled SIGTERM\n")


IGNORES_TERM = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('ready', flush=True)\ntime.sleep(100)\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sigterm_ignored_then_grace_period(platform):
    """A program that ignores SIGTERM: everything ends after --grace, with one line, and no
    stub process of the sandbox is left on the host."""
    stubs = set()

    def terminate(proc, master):
        stubs.update(stubwatch.stub_descendants(proc.pid))
        _kill_sentry(signal.SIGTERM)(proc, master)
    start = time.monotonic()
    run = _sandboxed(platform, [PYTHON, "-c", IGNORES_TERM], [Step(b"ready", terminate)],
                     options=("--grace", "1"))
    took = time.monotonic() - start
    assert run.status == 137, run.text()
    assert run.text().endswith("sentry: SIGTERM: the sandbox had not ended 1 s after it; "
                               "everything in it was killed\n"), run.text()
    assert took < 30, took
    if platform == "ptrace":
        assert stubs, "no stub process was seen under the sentry"
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{pid}") and stubwatch._exe(pid) and "sentry-stub" in stubwatch._exe(pid)
              for pid in stubs) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in stubs if stubwatch._exe(pid) and "sentry-stub" in stubwatch._exe(pid)]
    assert not left, f"stub processes left: {left}"


IGNORES_INT = ("import signal, time\n"
               "signal.signal(signal.SIGINT, lambda *a: print('ignored', flush=True))\n"
               "print('ready', flush=True)\n"
               "while True: time.sleep(1)\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_second_ctrl_c_kills_everything(platform):
    steps = [Step(b"ready", None), _pause(0.5), Step(None, b"\x03"), Step(b"ignored", None), _pause(0.5),
             Step(None, b"\x03")]
    run = _sandboxed(platform, [PYTHON, "-c", IGNORES_INT], steps)
    assert run.status == 137, run.text()
    assert run.text().endswith("sentry: interrupted twice: everything in the sandbox was killed\n"), run.text()


def _command_line(platform, argv) -> bytes:
    """The `sentry run` command line a user types for argv."""
    import shlex
    return " ".join(shlex.quote(a) for a in harness.sentry_argv(platform, argv[0], argv[1:])).encode()


def _in_users_bash(steps):
    """steps typed at the user's own interactive bash, the terminal's session leader (as a
    terminal emulator starts it), which runs sentry as one of its jobs."""
    host_env = harness.sentry_host_env()
    host_env.update({**TERM_ENV, "PS1": PROMPT.decode()})
    return run_on_pty(SHELLS["bash"], env=host_env, cwd=str(harness.REPO), steps=steps, timeout=TIMEOUT,
                      as_job=False)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ctrl_z_stops_sentry_and_fg_continues(platform):
    """A program that is no shell, stopped with Ctrl-Z from the user's own interactive
    bash: sentry stops too, so that bash's job control takes over (its prompt comes
    back, the program's time passes without it); `fg` continues both."""
    # (markers split in the source: the typed command line does not show them)
    program = "import time\nprint('rea' 'dy', flush=True)\ntime.sleep(1.5)\nprint('woke' ' up', flush=True)\n"
    command = _command_line(platform, [PYTHON, "-c", program])
    run = _in_users_bash([Step(PROMPT, command + b"\n"), Step(b"ready", None), _pause(0.3), Step(None, b"\x1a"),
                          Step(PROMPT, None), _pause(2.5), Step(None, b"jobs; fg\n"), Step(b"woke up", None),
                          Step(PROMPT, b"echo status $?; exit\n")])
    text = run.text()
    assert run.failed_step is None and run.status == 0, text
    stopped = text.index("Stopped")
    assert "woke up" not in text[:stopped] and text.count("woke up") == 1, text
    assert text.index("woke up") > text.index("jobs; fg"), text
    assert "status 0" in text, text


@pytest.mark.parametrize("platform", PLATFORMS)
def test_background_job_reading_stops_until_fg(platform):
    """`sentry run cat &` in the user's bash: reading the terminal from the background stops
    sentry (SIGTTIN), as it stops cat natively; `fg` then gives it the terminal."""
    command = _command_line(platform, ["/bin/cat"])
    run = _in_users_bash([Step(PROMPT, command + b" &\n"), Step(PROMPT, None), _pause(1.5), Step(None, b"jobs\n"),
                          Step(b"Stopped", None), Step(PROMPT, b"fg\n"), _pause(1), Step(None, b"typed line\n"),
                          Step(b"typed line", None), Step(b"typed line", b"\x04"),
                          Step(PROMPT, b"echo status $?; exit\n")])
    assert run.failed_step is None and run.status == 0, run.text()
    assert "status 0" in run.text(), run.text()


WINCH = ("import os, signal\n"
         "signal.signal(signal.SIGWINCH, lambda *a: print('resized', os.get_terminal_size(), flush=True) or exit(0))\n"
         "print('ready', flush=True)\n"
         "signal.pause()\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_window_resize_reaches_the_program(platform):
    def resize(proc, master):
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
    steps = [Step(b"ready", None), _pause(0.5), Step(None, resize)]
    _same(_native([PYTHON, "-c", WINCH], steps), _sandboxed(platform, [PYTHON, "-c", WINCH], steps), "SIGWINCH")


def test_tiocsti_is_refused():
    """TIOCSTI would type into the host's terminal, which outlives the sandbox."""
    program = ("import fcntl, termios\n"
               "try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x')\nexcept OSError as e:\n    print(e.strerror)\n")
    for platform in PLATFORMS:
        run = _sandboxed(platform, [PYTHON, "-c", program])
        assert run.text() == "Input/output error\n", run.text()


VHANGUP = ("import ctypes, os, signal, sys, termios\n"
           "got = []\n"
           "signal.signal(signal.SIGHUP, lambda *a: got.append('HUP'))\n"
           "signal.signal(signal.SIGCONT, lambda *a: got.append('CONT'))\n"
           "r = ctypes.CDLL(None, use_errno=True).vhangup()\n"
           "def attempt(fn):\n"
           "    try:\n        return fn()\n    except (OSError, termios.error) as e:\n        return str(e)\n"
           "w = attempt(lambda: os.write(1, b'x'))\n"
           "rd = attempt(lambda: os.read(0, 10))\n"
           "t = attempt(lambda: termios.tcgetattr(0) and 'modes')\n"
           "d = attempt(lambda: os.open('/dev/tty', os.O_RDWR) and 'opened')\n"
           "again = attempt(lambda: os.write(os.open('/dev/pts/0', os.O_WRONLY | os.O_NOCTTY), b'after\\n'))\n"
           "open(sys.argv[1], 'w').write(repr((r, got, w, rd, t, d, again)))\n")


def test_vhangup_hangs_up_the_sandbox_terminal_only(tmp_path):
    """vhangup (root has CAP_SYS_TTY_CONFIG) hangs up the sandbox's view of the terminal:
    its open files read 0 and fail writes with EIO, the session loses it (its leader, the
    user's shell, is outside: no SIGHUP comes in); a new open works. The host terminal is not hung up (natively it
    would be, for every process on it): the test's own side still works afterwards."""
    for platform in PLATFORMS:
        result = tmp_path / f"{platform}.txt"
        run = _sandboxed(platform, [PYTHON, "-c", VHANGUP, str(result)], options=("--mount", f"{tmp_path}:{tmp_path}:rw"))
        assert run.status == 0, run.text()
        assert result.read_text() == ("(0, [], '[Errno 5] Input/output error', b'', "
                                      "\"(5, 'Input/output error')\", "
                                      "\"[Errno 6] No such device or address: '/dev/tty'\", 6)"), \
            result.read_text()
        assert run.text() == "after\n"


IGNORED = ("import signal\n"
           "print(*(signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)))\n")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_signals_ignored_by_whoever_started_sentry_stay_ignored(platform):
    """nohup, a script's background job: SIGHUP and SIGINT ignored when sentry starts are
    ignored by the program, as by a program exec'd there; the others are not."""
    import subprocess

    def ignoring():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    native = subprocess.run([PYTHON, "-c", IGNORED], capture_output=True, preexec_fn=ignoring, timeout=TIMEOUT)
    sandbox = subprocess.run(harness.sentry_argv(platform, PYTHON, ["-c", IGNORED]), capture_output=True,
                             preexec_fn=ignoring, env=harness.sentry_host_env(), cwd=str(harness.REPO),
                             timeout=TIMEOUT)
    assert native.stdout == b"True True False\n"
    assert (sandbox.returncode, sandbox.stdout, sandbox.stderr) == (0, native.stdout, b"")
