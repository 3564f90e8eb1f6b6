"""The syscalls real programs meet in normal use are answered as Linux answers them.

The distribution's programs (coreutils, util-linux, procps, python3, node, perl,
bash, git, gcc, make, tar, xz, sqlite3, openssl, busybox applets) run natively and
under each platform, from a pipe and under a pseudo terminal. Every run must
leave no syscall unanswered: none may be named in the sentry's "unsupported
syscall" notes (--verbose), and every call in its --strace record must have a
handler or a deliberate refusal in the registry (syscalls/registry.py). Where the
output is deterministic it must equal the native run's; otherwise (ps, top, df,
the kernel log) it is checked against what Linux would show in the sandbox.
"""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

import harness
from harness import PLATFORMS

PY, NODE, PERL, SH = "/usr/bin/python3", "/usr/bin/node", "/usr/bin/perl", "/bin/bash"
# Calls still missing from the registry that belong to other work: each must still be
# missing (test_known_gaps_are_still_missing), so an entry goes the day its call comes.
KNOWN_GAPS: dict[str, str] = {}
HOME = {"HOME": "/tmp"}  # git and friends keep their files there


def _tmpdir(script: str) -> list[str]:
    """A bash script run in a fresh scratch directory (the host's /tmp natively, the
    sandbox's memory /tmp inside), removed afterwards."""
    return [SH, "-c", f'd=$(mktemp -d) && cd "$d" && {{ {script} ; }}; s=$?; cd / && rm -rf "$d"; exit $s']


PY_IMPORTS = (
    "import os, subprocess, multiprocessing, asyncio, ssl, sqlite3, ctypes, threading\n"
    "print(subprocess.run(['echo', 'from a child'], capture_output=True).stdout.decode().strip())\n"
    "with multiprocessing.Pool(2) as p: print(p.map(abs, [-1, -2, 3]))\n"
    "async def main():\n    await asyncio.sleep(0.01)\n    return 'asyncio ok'\n"
    "print(asyncio.run(main()))\n"
    "ssl.create_default_context(); print('ssl', ssl.OPENSSL_VERSION.split()[0])\n"
    "print(sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0])\n"
    "print(ctypes.CDLL(None).getpid() == os.getpid())\n"
    "t = threading.Thread(target=lambda: None); t.start(); t.join(); print('thread joined')\n"
)
PY_SYSTEM = (
    "import os, mmap, ctypes\n"
    "os.nice(3); print('nice', os.getpriority(os.PRIO_PROCESS, 0))\n"
    "m = mmap.mmap(-1, 1 << 16); m[0] = 1; m.madvise(mmap.MADV_DONTNEED); print('madvise', m[0])\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print('mlockall', libc.mlockall(3), libc.munlockall())\n"
    "r, w = os.pipe(); r2, w2 = os.pipe(); os.write(w, b'spliced')\n"
    "print(os.splice(r, w2, 7), os.read(r2, 7))\n"
    "print('personality', hex(libc.personality(0xffffffff)))\n"
    "print('affinity', len(os.sched_getaffinity(0)) == os.cpu_count())\n"
    "print('scheduler', os.sched_getscheduler(0))\n"
)
NODE_FS = ("const fs = require('fs'); const d = fs.mkdtempSync('/tmp/n');"
           "fs.writeFileSync(d + '/x', 'written and read'); console.log(fs.readFileSync(d + '/x', 'utf8'));"
           "console.log(fs.readdirSync(d)); fs.rmSync(d, {recursive: true})")
NODE_CHILD = "console.log(require('child_process').execSync('echo from a child').toString().trim())"
NODE_WORKER = ("const {Worker} = require('worker_threads');"
               "const w = new Worker('require(\"worker_threads\").parentPort.postMessage(6 * 7)', {eval: true});"
               "w.on('message', m => { console.log('worker says', m); w.terminate(); })")
NODE_OS = ("const os = require('os'); os.setPriority(4);"
           "console.log(os.getPriority(), os.cpus().length > 0, os.totalmem() > 0, os.loadavg().length)")
GIT = ("git init -q repo && cd repo && for i in 1 2 3; do echo $i > f$i && git add f$i && "
       "git -c user.email=a@b -c user.name=n commit -qm m$i || exit 1; done && git gc -q && "
       "git log --format=%s && git show --stat --format=%s HEAD~1 && git status --short")

# Programs whose output is the same natively and in the sandbox: (id, argv, env).
COMPARED = [
    # (-g -o: no owner or group, which the sandbox shows as a user namespace would, 65534)
    ("ls", ["/bin/ls", "-l", "-g", "-o", "/usr/share/doc/bash"], {}),
    ("python3-imports", [PY, "-c", PY_IMPORTS], {}),
    ("python3-system", [PY, "-c", PY_SYSTEM], {}),
    ("bash", [SH, "-c", "x=$(echo sub); echo $x; for i in 1 2; do echo $i; done | cat; (exit 3); echo $?"], {}),
    ("perl", [PERL, "-e", 'my @a = map { $_ * 2 } 1..3; print "@a\\n"; system("echo", "from system");'
              'print getpriority(0, 0), "\\n"; setpriority(0, 0, 2); print getpriority(0, 0), "\\n"'], {}),
    ("node-console", [NODE, "-e", "console.log(1)"], {}),
    ("node-fs", [NODE, "-e", NODE_FS], {}),
    ("node-child-process", [NODE, "-e", NODE_CHILD], {}),
    ("node-worker-threads", [NODE, "-e", NODE_WORKER], {}),
    ("node-os", [NODE, "-e", NODE_OS], {}),
    ("git", _tmpdir(GIT), HOME),
    ("find", [SH, "-c", "find /usr/share/doc/bash | sort"], {}),
    ("tar", _tmpdir("tar czf a.tgz -C /usr/share/doc bash && tar tzf a.tgz | sort"), {}),
    ("xz", [SH, "-c", "head -c 300000 /usr/bin/perl | xz -T2 | xz -d | md5sum"], {}),
    ("gzip", [SH, "-c", "seq 10000 | gzip -9 | gzip -d | tail -1"], {}),
    ("make", _tmpdir("printf 'all: a b\\na:\\n\\t@echo a\\nb:\\n\\t@echo b\\n' > Makefile && make -s -j2 | sort"), {}),
    ("gcc", _tmpdir("printf '#include <stdio.h>\\nint main(void) { puts(\"compiled\"); return 0; }\\n' > h.c"
                    " && gcc -O2 -o h h.c && ./h"), {}),
    ("sqlite3", ["/usr/bin/sqlite3", ":memory:", "create table t(a); insert into t values (1), (2); "
                 "select sum(a) from t;"], {}),
    ("less", ["/usr/bin/less", "/etc/os-release"], {}),
    ("more", ["/usr/bin/more", "/etc/os-release"], {}),
    ("stat", ["/usr/bin/stat", "-c", "%n %s %F %a %Y", "/etc/os-release"], {}),
    ("id", ["/usr/bin/id"], {}),
    ("env", ["/usr/bin/env", "-i", "A=1", "/usr/bin/env"], {}),
    ("date", ["/usr/bin/date", "-u", "-d", "@86400"], {}),
    ("du", ["/usr/bin/du", "-sb", "/usr/share/doc/bash"], {}),
    ("timeout", ["/usr/bin/timeout", "5", "/bin/echo", "in time"], {}),
    ("nproc", ["/usr/bin/nproc"], {}),
    ("sort", [SH, "-c", "seq 20000 | sort --parallel=2 -S 1M -rn | head -3"], {}),
    ("openssl-dgst", [SH, "-c", "printf hello | openssl dgst -sha256"], {}),
    ("nice", ["/usr/bin/nice", "-n", "5", "/usr/bin/nice"], {}),
    ("ionice", ["/usr/bin/ionice", "-c3", "/usr/bin/ionice"], {}),
    ("setarch", ["/usr/bin/setarch", "linux32", "/usr/bin/uname", "-m"], {}),
    ("chrt", [SH, "-c", "chrt -b 0 sh -c 'chrt -p $$' | sed 's/^pid [0-9]*/pid N/'"], {}),
    ("taskset", ["/usr/bin/taskset", "-c", "0", "/bin/echo", "pinned"], {}),
    # what /proc shows of them: nice and priority in stat, the personality, the OOM adjustment (inherited)
    ("proc-views", [SH, "-c", "echo 500 > /proc/self/oom_score_adj && cat /proc/self/oom_score_adj; "
                    "nice -n 7 cut -d' ' -f18,19 /proc/self/stat; setarch linux32 cat /proc/self/personality"], {}),
    ("busybox", [SH, "-c", "busybox nice; busybox ionice; busybox linux32 busybox uname -m; "
                 "busybox renice -n 2 -p $$; busybox nice; busybox nproc"], {}),
]


def _strace_names(path) -> set[str]:
    try:
        text = open(path, errors="replace").read()
    except FileNotFoundError:
        return set()
    return set(re.findall(r"^\[pid \d+\] (\w+)\(", text, re.M))


def _unanswered(names) -> set[str]:
    """Calls with neither a handler nor a deliberate refusal (answered ENOSYS by the dispatcher)."""
    import syscalls.handlers  # noqa: F401  (registers every family)
    from syscalls.registry import REGISTRY
    return {n for n in names if n not in REGISTRY} - set(KNOWN_GAPS)


def _check_answered(run: harness.Run, strace_file) -> None:
    notes = [line for line in run.stderr.decode(errors="replace").splitlines() if "unsupported syscall" in line]
    gaps = {m for line in notes for m in re.findall(r"unsupported syscall (\w+)", line)} - set(KNOWN_GAPS)
    if gaps:
        harness.fail(f"{run.where}: unsupported syscalls {sorted(gaps)}\n$ {' '.join(run.argv)}")
    names = _strace_names(strace_file)
    if not names:
        harness.fail(f"{run.where}: no --strace record\n$ {' '.join(run.argv)}\n{run.stderr_text()}")
    missing = _unanswered(names)
    if missing:
        harness.fail(f"{run.where}: calls no handler answers: {sorted(missing)}\n$ {' '.join(run.argv)}")


def _sandboxed(platform, argv, env, tmp_path, **kw) -> harness.Run:
    strace = tmp_path / f"strace-{platform}"
    run = harness.run_sandbox(platform, argv[0], argv[1:], env=env,
                              options=["--verbose", "--strace-file", str(strace)], **kw)
    harness.check_sentry_sane(run, guest_tracebacks=True)
    _check_answered(run, strace)
    return run


def test_known_gaps_are_still_missing():
    """A call listed in KNOWN_GAPS that has a handler now must leave the list."""
    import syscalls.handlers  # noqa: F401
    from syscalls.registry import REGISTRY
    answered = sorted(n for n in KNOWN_GAPS if n in REGISTRY)
    assert not answered, f"now answered, take them out of KNOWN_GAPS: {answered}"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,argv,env", COMPARED, ids=[c[0] for c in COMPARED])
def test_program_as_native(name, argv, env, platform, tmp_path):
    harness.require_program(argv[0])
    native = harness.run_native(argv[0], argv[1:], env=env, timeout=120)
    assert not native.timed_out and native.status == 0, f"native {name}: {native.headline()}\n{native.stderr_text()}"
    sandbox = _sandboxed(platform, argv, env, tmp_path, timeout=120)
    harness.compare(native, sandbox, stderr="notes", label=name, guest_tracebacks=True)


def _sandbox_only(platform, argv, tmp_path, env=None) -> harness.Run:
    harness.require_program(argv[0])
    run = _sandboxed(platform, argv, env or {}, tmp_path, timeout=120)
    stderr = harness.strip_sentry_notes(run.stderr)
    assert run.status == 0 and not stderr, f"{run.headline()}\n$ {' '.join(run.argv)}\n{run.stderr_text()}"
    return run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ps_shows_the_sandbox(platform, tmp_path):
    """procps' ps: the sandbox's own processes (the shell as pid 1, ps its child)."""
    run = _sandbox_only(platform, [SH, "-c", "ps aux; true"], tmp_path)
    lines = run.stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["USER", "PID"], lines
    procs = {line.split()[1]: line for line in lines[1:]}
    assert set(procs) == {"1", "2"}, lines
    assert procs["2"].endswith("ps aux") and "bash -c" in procs["1"], lines


@pytest.mark.parametrize("platform", PLATFORMS)
def test_top_shows_the_sandbox(platform, tmp_path):
    run = _sandbox_only(platform, ["/usr/bin/top", "-bn1"], tmp_path)
    out = run.stdout.decode()
    assert "Tasks:   1 total" in out and re.search(r"^\s*1 root .* top$", out, re.M), out


@pytest.mark.parametrize("platform", PLATFORMS)
def test_kernel_log_is_empty(platform, tmp_path):
    """util-linux dmesg reads the sandbox's kernel log (syslog(2)): nothing was logged."""
    run = _sandbox_only(platform, ["/usr/bin/dmesg"], tmp_path)
    assert run.stdout == b""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_setpriv_dump(platform, tmp_path):
    """busybox setpriv reads the ids, no_new_privs and every capability set (capget, prctl's
    PR_CAP_AMBIENT and PR_CAPBSET_READ): the sandbox's root, with nothing ambient."""
    run = _sandbox_only(platform, ["/bin/busybox", "setpriv", "--dump"], tmp_path)
    out = run.stdout.decode()
    assert "euid: 0\n" in out and "Ambient capabilities: [none]\n" in out, out
    assert re.search(r"^Capability bounding set: chown,dac_override,.*,cap_40$", out, re.M), out


@pytest.mark.parametrize("platform", PLATFORMS)
def test_df_and_random(platform, tmp_path):
    run = _sandbox_only(platform, [SH, "-c", "df / | head -1; openssl rand -hex 8"], tmp_path)
    header, rand = run.stdout.decode().splitlines()
    assert header.split()[0] == "Filesystem" and re.fullmatch(r"[0-9a-f]{16}", rand), run.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_identity_calls_the_sandbox_allows(platform, tmp_path):
    """What root may do in its own sandbox and never reaches the host: its hostname, a
    chroot within the sandbox's view, a mount in the sandbox's own mount table
    (syscalls/mount.py: a tmpfs over /tmp); what it may not: set the clock (EPERM, as
    without the capability);
    what is not there: io_uring (ENOSYS, as a kernel without it)."""
    script = (
        "import ctypes, os, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.sethostname(b'box', 3), socket.gethostname(), os.uname().nodename)\n"
        "print(libc.setdomainname(b'dom', 3), open('/proc/sys/kernel/domainname').read().strip())\n"
        "epoch = (ctypes.c_long * 2)(0, 0)\n"
        "for name, call in (('settimeofday', lambda: libc.settimeofday(epoch, None)),\n"
        "                   ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),\n"
        "                   ('chroot', lambda: libc.chroot(b'/')),\n"
        "                   ('io_uring_setup', lambda: libc.syscall(425, 1, None))):\n"
        "    ctypes.set_errno(0)\n"
        "    print(name, call(), os.strerror(ctypes.get_errno()))\n"
    )
    run = _sandbox_only(platform, [PY, "-c", script], tmp_path)
    assert run.stdout.decode().splitlines() == [
        "0 box box", "0 dom", "settimeofday -1 Operation not permitted", "mount 0 Success",
        "chroot 0 Success", "io_uring_setup -1 Function not implemented"], run.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_node_protection_keys_fallback(platform, tmp_path):
    """node asks for a protection key at start (pkey_alloc): the sandbox's CPU has none and
    answers as Linux does there (EINVAL, then ENOSPC); node goes on without."""
    strace = tmp_path / "strace"
    run = harness.run_sandbox(platform, NODE, ["-e", "console.log('no pkeys needed')"],
                              options=["--strace-file", str(strace)], timeout=120)
    assert run.status == 0 and run.stdout == b"no pkeys needed\n", run.headline()
    results = re.findall(r"\] pkey_alloc\(.*\) = (.*)", strace.read_text())
    assert results and results[0].startswith("-1 EINVAL") and all(r.startswith("-1 E") for r in results), results


# --- under a terminal -------------------------------------------------------------------------
def _run_in_pty(argv, env, timeout: float = 120) -> tuple[int | None, bytes]:
    """argv with a new pseudo terminal as its stdin, stdout and stderr: (status, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(harness.REPO),
                            start_new_session=True)
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.send_signal(signal.SIGTERM)
            proc.wait(5)
            return None, bytes(out)
        return proc.wait(10), bytes(out)
    finally:
        os.close(master)


PTY_PROGRAMS = [
    ("ls", ["/bin/ls", "--color=auto", "/usr/share/doc/bash"], b"copyright"),
    ("python3", [PY, "-c", "import os, sys; print('tty', os.isatty(1), sys.stdout.isatty())"], b"tty True True"),
    ("bash", [SH, "-c", "test -t 0 && echo interactive-capable"], b"interactive-capable"),
    ("node", [NODE, "-e", "console.log('tty ' + process.stdout.isTTY)"], b"tty true"),
    ("ps", ["/bin/ps", "aux"], b"ps aux"),
    ("top", ["/usr/bin/top", "-bn1"], b"Tasks:"),
    # (a lent file: /etc/hostname is the sandbox's own)
    ("less", ["/usr/bin/less", "-FX", "/etc/debian_version"], open("/etc/debian_version", "rb").read().strip()),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,argv,expect", PTY_PROGRAMS, ids=[p[0] for p in PTY_PROGRAMS])
def test_program_under_a_terminal(name, argv, expect, platform, tmp_path):
    harness.require_program(argv[0])
    strace = tmp_path / "strace"
    sentry = harness.sentry_argv(platform, argv[0], argv[1:], options=["--verbose", "--strace-file", str(strace)])
    status, out = _run_in_pty(sentry, {**harness.sentry_host_env(), "TERM": "xterm"})
    text = out.replace(b"\r\n", b"\n")
    assert status == 0 and expect in text, f"{name} under a terminal: exit {status}\n{text[-3000:]!r}"
    assert b"unsupported syscall" not in text and b"Traceback" not in text, text[-3000:]
    missing = _unanswered(_strace_names(strace))
    assert not missing, f"calls no handler answers: {sorted(missing)}"
