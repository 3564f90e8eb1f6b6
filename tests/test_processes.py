"""Real programs nobody here wrote, running many processes, compared with
native runs (issue 5, "What must be shown"): busybox sh and the host's dash
running a script with pipelines, subshells, `$(...)`, background jobs and
`wait`, `xargs`, `trap`; `yes | head | wc`; python3's subprocess (pipes,
capture_output), os.fork/os.waitpid, signal.alarm and multiprocessing.

Every script is deterministic: what background jobs print is sorted, and no
pid is printed.  The sentry may add its own `sentry: ...` lines on stderr
(an unsupported syscall, named once), nothing else.
"""
from __future__ import annotations


import pytest

import harness
from harness import PLATFORMS

BB = harness.BUSYBOX
DASH = "/bin/dash"
PYTHON = "/usr/bin/python3"
TIMEOUT = 60  # per program run


def _compare(platform, argv, **kw):
    return harness.compare_program(platform, argv, timeout=TIMEOUT, **kw)


def _shell(name: str) -> list[str]:
    if name == "busybox":
        harness.require_busybox()
        return [BB, "sh", "-c"]
    harness.require_program(DASH)
    return [DASH, "-c"]


# --------------------------------------------------------------------------
# shells

SCRIPT = r'''
set -e
echo "start"
x=$(echo hello | tr a-z A-Z)
echo "substitution: $x"
echo "nested: $(echo "$(echo inner) outer")"
y=`echo backticks`
echo "$y"
(cd /usr; echo "subshell pwd: $(pwd)"; exit 3) || echo "subshell exit: $?"
echo "pwd after the subshell: $(pwd)"
{ echo grouped; echo commands; } | tr a-z A-Z
seq 1 2000 | grep 7 | sort -rn | head -n 5
printf '%s\n' a b c d e | xargs -n 2 echo pair
printf '%s\n' one two three | xargs -I{} sh -c 'echo "xargs ran sh for {}"'
printf '%s\n' 1 2 3 | while read n; do echo "read line $n"; done
count=0; for w in $(seq 1 50); do count=$((count + w)); done; echo "sum: $count"
sleep 0.2 & p1=$!
(echo background job; exit 7) & p2=$!
wait $p1; echo "wait p1: $?"
wait $p2 || echo "wait p2: $?"
{ for i in 1 2 3 4 5; do (echo "job $i"; exit $i) & done; wait; } | sort
false || echo "false failed: $?"
sh -c 'exit 5' || echo "sh -c exit: $?"
if command -v nosuchcommand >/dev/null; then echo found; else echo "no such command"; fi
out=$(nosuchcommand-xyz 2>&1) || echo "missing command status: $?"
echo "a b c" | { read p q r; echo "read: $r $q $p"; }
trap 'echo "trapped USR1"' USR1
kill -USR1 $$
echo "after the trap"
trap 'echo "trapped TERM in subshell"; exit 9' TERM
(trap 'echo "subshell trap"; exit 4' USR2; kill -USR2 $(sh -c 'echo $PPID'); sleep 5) || echo "subshell trap exit: $?"
trap - TERM
trap 'echo "EXIT trap"' EXIT
n=$(yes | head -n 100000 | wc -l); echo "yes lines: $n"
exec 3>&1; echo "to fd 3" >&3; exec 3>&-
echo "end"
'''


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("shell", ["busybox", "dash"])
def test_shell_script(shell, platform):
    argv = _shell(shell) + [SCRIPT]
    native, _ = _compare(platform, argv, label=f"{shell} script")
    for line in (b"substitution: HELLO\n", b"job 5\n", b"trapped USR1\n", b"yes lines: 100000\n", b"EXIT trap\n"):
        assert line in native.stdout, f"native {shell}: {line!r} missing:\n{native.stdout.decode()}"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("shell", ["busybox", "dash"])
def test_yes_head_wc(shell, platform):
    native, _ = _compare(platform, _shell(shell) + ["yes | head -n 100000 | wc -l"], label=f"{shell}: yes|head|wc")
    assert native.stdout.strip() == b"100000"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_shell_exit_statuses(platform):
    """The status of the last command of a pipeline, a killed child, exec."""
    script = ('sh -c "kill -TERM \\$\\$"; echo "killed child: $?"; '
              '(exit 300); echo "exit 300: $?"; '
              'echo x | false | true; echo "pipeline: $?"; '
              'exec sh -c "exit 12"')
    native, _ = _compare(platform, [BB, "sh", "-c", script], label="busybox sh statuses")
    assert native.status == 12 and b"killed child: 143\n" in native.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_xargs_parallel(platform):
    """xargs -P runs several children at once; their output is sorted by sort."""
    harness.require_busybox()
    script = "seq 1 40 | xargs -n 3 -P 4 echo | sort -n; echo status $?"
    _compare(platform, [BB, "sh", "-c", script], label="xargs -P 4")


# --------------------------------------------------------------------------
# python3

PY_SUBPROCESS = r'''
import os, signal, subprocess, sys
r = subprocess.run(["/bin/echo", "hello from echo"], capture_output=True)
print("run:", r.returncode, r.stdout, r.stderr)
r = subprocess.run("echo out; echo err >&2; exit 3", shell=True, capture_output=True, text=True)
print("shell:", r.returncode, repr(r.stdout), repr(r.stderr))
r = subprocess.run(["/usr/bin/tr", "a-z", "A-Z"], input=b"piped through tr\n" * 5000, capture_output=True)
print("tr:", r.returncode, len(r.stdout), r.stdout[:17])
p1 = subprocess.Popen(["/usr/bin/seq", "1", "100000"], stdout=subprocess.PIPE)
p2 = subprocess.Popen(["/usr/bin/wc", "-l"], stdin=p1.stdout, stdout=subprocess.PIPE)
p1.stdout.close()
print("pipeline:", p2.communicate()[0].strip(), p1.wait(), p2.wait())
print("check_output:", subprocess.check_output([sys.executable, "-c", "print(6 * 7)"]).strip())
try:
    subprocess.run(["/nonexistent/prog"])
except FileNotFoundError as e:
    print("missing program: errno", e.errno)
try:
    subprocess.run(["/bin/sleep", "10"], timeout=0.3)
except subprocess.TimeoutExpired:
    print("timeout expired")
print("done")
'''

PY_FORK = r'''
import os, signal
pid = os.fork()
if pid == 0:
    os._exit(42)
wpid, status = os.waitpid(pid, 0)
print("fork/waitpid:", wpid == pid, os.WIFEXITED(status), os.WEXITSTATUS(status))
r, w = os.pipe()
me = os.getpid()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"child's parent is us: %r" % (os.getppid() == me))
    os._exit(0)
os.close(w)
print("child wrote:", os.read(r, 100), os.waitpid(pid, 0)[1])
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(1)
print("killed child:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
kids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        os._exit(10 + i)
    kids.append(pid)
codes = sorted(os.waitstatus_to_exitcode(os.waitpid(-1, 0)[1]) for _ in kids)
print("five children:", codes)
try:
    os.waitpid(-1, 0)
except ChildProcessError:
    print("no children left")
pid = os.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", "exit 17"])
print("fork+exec:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print("done")
'''

PY_ALARM = r'''
import os, signal, time
hits = []
signal.signal(signal.SIGALRM, lambda s, f: hits.append(s))
signal.alarm(1)
t = time.monotonic()
while not hits and time.monotonic() - t < 10:
    time.sleep(0.05)
print("alarm:", hits, 0.5 < time.monotonic() - t < 5)
signal.signal(signal.SIGALRM, lambda s, f: hits.append("again"))
signal.alarm(1)
signal.pause()
print("pause:", hits)
def boom(s, f):
    raise TimeoutError("alarm")
signal.signal(signal.SIGALRM, boom)
r, w = os.pipe()
signal.alarm(1)
try:
    os.read(r, 1)
except TimeoutError as e:
    print("read interrupted by", e)
print("left:", signal.alarm(0))
print("done")
'''

PY_POOL = r'''
import multiprocessing as mp
def square(x):
    return x * x
ctx = mp.get_context("fork")
with ctx.Pool(2) as pool:
    print(sum(pool.map(square, range(1000))))
    print(pool.apply(square, (12,)))
p = ctx.Process(target=square, args=(3,))
p.start(); p.join()
print("process exitcode", p.exitcode)
print("done")
'''

PYTHON_CASES = [
    pytest.param("subprocess", PY_SUBPROCESS, id="subprocess"),
    pytest.param("fork", PY_FORK, id="fork"),
    pytest.param("alarm", PY_ALARM, id="alarm"),
    pytest.param("pool", PY_POOL, id="pool"),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,script", PYTHON_CASES)
def test_python(name, script, platform):
    harness.require_program(PYTHON)
    native, _ = _compare(platform, [PYTHON, "-I", "-c", script], guest_tracebacks=True, label=f"python3 {name}")
    assert native.status == 0 and native.stdout.endswith(b"done\n"), native.stdout.decode() + native.stderr_text()
