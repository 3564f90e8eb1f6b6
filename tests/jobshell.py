"""Run a command the way an interactive shell runs a job: in a process group of its
own, in the foreground of the shell's terminal, in the shell's session (so that it
leads no session, and its group is not orphaned: a Ctrl-Z stops it). This process
plays the shell: it is the session leader that tests/ptyrun.py makes, and it exits
with the job's status (128+N for signal N) once the job ends.

    python jobshell.py PROGRAM [ARG...]
"""
import os
import signal
import sys


def main() -> int:
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # giving the terminal back from the background
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        os.tcsetpgrp(0, os.getpgrp())
        signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        try:
            os.execv(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)
    try:
        os.setpgid(pid, pid)  # (the child does it too: whichever runs first)
    except OSError:
        pass
    while True:
        _, status = os.waitpid(pid, os.WUNTRACED)
        if os.WIFSTOPPED(status):
            continue  # a stopped job stays stopped, as a shell leaves it, until continued from outside
        os.tcsetpgrp(0, os.getpgrp())
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
