"""Signal behaviour that cannot be compared with a native run: kill(-1, ...) reaches
every process the caller may signal, which on the host would be the whole
machine. Run only in the sandbox (its signals are the sentry's own, never the
host's), checked against what Linux does inside a pid namespace."""
import subprocess

import pytest

import harness
from harness import PLATFORMS

KILL_ALL = r"""
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/wait.h>
static volatile sig_atomic_t got;
static void on_term(int s) { (void)s; got++; }
int main(void) {
    int r = kill(-1, 0);
    printf("kill(-1, 0) with no other process: %d %s\n", r, errno == ESRCH ? "ESRCH" : "?");
    signal(SIGTERM, on_term);
    int ready[2];
    if (pipe(ready)) return 99;
    pid_t a = fork();
    if (a == 0) {                       /* waits for its sibling, then signals everyone */
        signal(SIGTERM, SIG_DFL);
        char c;
        if (read(ready[0], &c, 1) != 1) _exit(98);
        _exit(kill(-1, SIGTERM) == 0 ? 0 : 97);
    }
    pid_t b = fork();
    if (b == 0) {
        signal(SIGTERM, SIG_DFL);
        if (write(ready[1], "r", 1) != 1) _exit(96);
        for (;;) pause();
    }
    int st;
    waitpid(a, &st, 0);
    printf("the sender: %s %d\n", WIFEXITED(st) ? "exited" : "killed by", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    waitpid(b, &st, 0);
    printf("its sibling: %s %d\n", WIFEXITED(st) ? "exited" : "killed by", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    printf("pid %d got SIGTERM %d times\n", (int)getpid(), (int)got);
    return 0;
}
"""


@pytest.fixture(scope="module")
def kill_all(tmp_path_factory):
    d = tmp_path_factory.mktemp("killall")
    src = d / "killall.c"
    src.write_text(KILL_ALL)
    exe = d / "killall"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(exe), str(src)], capture_output=True, timeout=120)
    if r.returncode:
        raise harness.HarnessError(f"cannot build killall.c: {r.stderr.decode(errors='replace')}")
    return exe  # never run natively: kill(-1) on the host would signal every process of the user


@pytest.mark.parametrize("platform", PLATFORMS)
def test_kill_minus_one_spares_pid_1_and_the_sender(kill_all, platform):
    run = harness.run_sandbox(platform, kill_all)
    harness.check_sentry_sane(run)
    assert run.status == 0, run.stderr_text()
    assert run.stdout == (b"kill(-1, 0) with no other process: -1 ESRCH\n"
                          b"the sender: exited 0\n"
                          b"its sibling: killed by 15\n"
                          b"pid 1 got SIGTERM 0 times\n"), run.stdout
