"""The command line surface: `sentry test`, `sentry syscalls`, usage errors, the
program's environment and lookup (the working directory: test_workdir.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import harness

SENTRY = [sys.executable, "-m", "sentry"]


def test_sentry_test_reports_each_binary(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(harness.build("hello", "musl-static"), corpus / "a_passes")
    shutil.copy(harness.build("exitcode", "musl-static"), corpus / "b_fails")  # no argument: exits 2
    report = tmp_path / "junit.xml"
    r = subprocess.run([*SENTRY, "test", "--jobs", "2", "--junit", str(report), str(corpus)],
                       capture_output=True, timeout=120)
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 1, r.stderr
    assert lines[0].startswith("PASS") and lines[0].split()[1].endswith("a_passes")
    assert lines[1].startswith("FAIL") and "exit 2" in lines[1]
    assert lines[-1] == "1 passed, 1 failed, 0 skipped"
    xml = report.read_text()
    assert 'tests="2" failures="1" skipped="0"' in xml and "exit status 2" in xml


RUNTEST = """#DESCRIPTION: a corpus in LTP's runtest format
passes   test "$CORPUS_VAR" = given && test -f /data/marker
fails    echo failing; exit 1

broken   exit 2
tconf    exit 32
tconf_and_fail exit 33
not_selected exit 1
not_pid1 sh -c 'test $$ != 1'
"""


@pytest.mark.parametrize("platform", harness.PLATFORMS)
def test_sentry_test_runs_a_runtest_corpus(platform, tmp_path):
    """An LTP runtest file: each TAG's command through the sandbox's sh, with the corpus's
    environment and mounts; LTP's exit convention (32 alone is a skip); --tags selects; a
    command is a child of the sandbox's first process, never pid 1 itself (as under LTP's runner)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "marker").write_text("x")
    runtest = tmp_path / "runtest"
    runtest.write_text(RUNTEST)
    tags = tmp_path / "tags"
    tags.write_text("passes\nfails\nbroken\ntconf\ntconf_and_fail\n# not_selected\nnot_pid1\n")
    report = tmp_path / "junit.xml"
    r = subprocess.run([*SENTRY, "test", "--platform", platform, "--convention", "ltp", "--env", "CORPUS_VAR=given",
                        "--mount", f"{tmp_path / 'data'}:/data", "--tags", str(tags), "--junit", str(report),
                        str(runtest)], capture_output=True, timeout=120)
    assert r.returncode == 1, r.stderr
    outcomes = {line.split()[1]: (line.split()[0], line.split()[3]) for line in r.stdout.decode().splitlines()[:-1]}
    assert outcomes == {"passes": ("PASS", "0"), "fails": ("FAIL", "1"), "broken": ("FAIL", "2"),
                        "tconf": ("SKIP", "32"), "tconf_and_fail": ("FAIL", "33"), "not_pid1": ("PASS", "0")}, r.stdout
    assert r.stdout.decode().splitlines()[-1] == "2 passed, 3 failed, 1 skipped"
    xml = report.read_text()
    assert 'tests="6" failures="3" skipped="1"' in xml and "<skipped" in xml and "failing" in xml


def test_sentry_test_bad_runtest_is_one_line(tmp_path):
    runtest = tmp_path / "runtest"
    runtest.write_text("lonely_tag\n")
    r = subprocess.run([*SENTRY, "test", str(runtest)], capture_output=True, timeout=60)
    assert r.returncode == 125 and r.stderr.count(b"\n") == 1 and b"expected TAG COMMAND" in r.stderr


def test_sentry_test_missing_path_is_one_line():
    r = subprocess.run([*SENTRY, "test", "/nonexistent/dir"], capture_output=True, timeout=60)
    assert r.returncode == 127 and r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"sentry: ")


def test_syscalls_table_formats():
    r = subprocess.run([*SENTRY, "syscalls", "--format", "json"], capture_output=True, timeout=60)
    rows = json.loads(r.stdout)
    assert {"nr": 0, "name": "read", "status": "full", "note": ""} in rows
    r = subprocess.run([*SENTRY, "syscalls", "--arch", "aarch64"], capture_output=True, timeout=60)
    assert b"  63  read" in r.stdout


def test_not_yet_options_are_refused_clearly():
    for opt in (["--deterministic"],):
        r = subprocess.run([*SENTRY, "run", *opt, "/bin/true"], capture_output=True, timeout=60)
        assert r.returncode == 125 and r.stderr.startswith(b"sentry: ") and r.stderr.count(b"\n") == 1, opt


def _closed_early(argv) -> int:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert p.stdout.read(10) == b"y\n" * 5
    p.stdout.close()
    p.wait(timeout=60)
    p.stderr.close()
    return p.returncode


def test_writing_to_a_closed_pipe_is_sigpipe_as_natively():
    native = _closed_early([harness.BUSYBOX, "yes"])
    assert native == -13
    for platform in ("ptrace", "unicorn"):
        assert _closed_early([*SENTRY, "run", "--platform", platform, harness.BUSYBOX, "yes"]) == 128 + 13


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_output_to_a_slow_reader_is_whole(platform):
    """A full host pipe parks the writer (other processes go on) and loses nothing."""
    p = subprocess.Popen([*SENTRY, "run", "--platform", platform, harness.BUSYBOX, "sh", "-c",
                          "(echo side job) & head -c 3000000 /dev/zero; wait"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time
        time.sleep(0.5)  # let the pipe fill while nobody reads
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert len(out) == 3000000 + len(b"side job\n") and out.count(b"side job\n") == 1


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_run_a_script(platform, tmp_path):
    """`sentry run script` runs its #! interpreter from the sandbox's view, as execve would."""
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh -e\necho \"script $0 got: $*\"\n")
    script.chmod(0o755)
    r = subprocess.run([*SENTRY, "run", "--platform", platform, str(script), "a b", "c"], capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"script {script} got: a b c\n".encode(), b""), r
    empty = tmp_path / "empty.sh"
    empty.write_text("#!\n")
    empty.chmod(0o755)
    r = subprocess.run([*SENTRY, "run", str(empty)], capture_output=True, timeout=60)
    assert r.returncode == 126 and r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"sentry: "), r


# ---------------------------------------------------------------------------- the environment

DEFAULT_ENV = "".join(f"{k}={v}\n" for k, v in harness.GUEST_ENV.items())


def _env_run(args, host_env=None, cwd=harness.REPO, platform="ptrace"):
    """`sentry run ... /usr/bin/env` on pipes (no terminal: no TERM), the sentry's own
    environment without LANG and LC_ALL but for host_env."""
    run = harness.run_sentry_cli(["run", "--platform", platform, *args], host_env=host_env, cwd=cwd, stdin=b"")
    harness.check_sentry_sane(run)
    return run


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_the_default_environment(platform):
    """PATH, HOSTNAME and HOME, as docker run gives them; the host's LANG and LC_ALL when set."""
    run = _env_run(["/usr/bin/env"], platform=platform)
    assert (run.status, run.stdout.decode(), run.stderr) == (0, DEFAULT_ENV, b""), run
    run = _env_run(["/usr/bin/env"], {"LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "dumb", "SECRET": "x"})
    assert run.stdout.decode() == DEFAULT_ENV + "LANG=C.UTF-8\nLC_ALL=C\n", run


def test_env_names_and_files(tmp_path):
    """--env NAME passes the host's value (nothing when unset); --env-file reads docker's
    format; --env-file comes first, then --env; a default is replaced in place."""
    f = tmp_path / "vars"
    f.write_bytes(b"\xef\xbb\xbf# a comment\n\nA=1\n  B=two words  \nQ=\"quoted\" 'kept'\nEQ=a=b\n"
                  b"FROM_HOST\nUNSET_ON_HOST\nHOME=/elsewhere\nC=\r\n  # indented comment\n")
    run = _env_run(["--env-file", str(f), "--env", "A=from --env", "--env", "FROM_HOST", "--env", "NOPE",
                    "/usr/bin/env"], {"FROM_HOST": "host value"})
    want = (f"PATH={harness.GUEST_PATH}\nHOSTNAME=sentry\nHOME=/elsewhere\nA=from --env\nB=two words  \n"
            "Q=\"quoted\" 'kept'\nEQ=a=b\nFROM_HOST=host value\nC=\n")
    assert (run.status, run.stdout.decode()) == (0, want), run


@pytest.mark.parametrize("args", [["--env-file", "/nonexistent/vars"], ["--env", "=x"], ["--env", "A B"]],
                         ids=["missing-file", "no-name", "whitespace"])
def test_env_errors_are_one_line(args):
    run = harness.run_sentry_cli(["run", *args, "/bin/true"])
    line = harness.sentry_error_line(run)
    assert run.status == 125, line


@pytest.mark.parametrize("platform", ("ptrace", "unicorn"))
def test_home_is_writable_and_git_config_global_works(platform, tmp_path):
    """HOME is a directory in the sandbox's memory: `~` expands to it, git writes its
    global config there; nothing reaches the host's HOME."""
    git = harness.require_program("/usr/bin/git")
    before = harness.tree_manifest(tmp_path)
    run = _env_run([git, "config", "--global", "user.name", "x"], platform=platform, cwd=tmp_path)
    assert run.status == 0, run.stderr_text()
    run = _env_run(["/bin/sh", "-c", f"{git} config --global user.name sandbox && {git} config --global user.name"
                    " && cat ~/.gitconfig && python3 -c 'import os; print(os.path.expanduser(\"~/x\"))'"
                    " && bash -c 'echo ~'"], platform=platform, cwd=tmp_path)
    assert (run.status, run.stdout.decode()) == (
        0, "sandbox\n[user]\n\tname = sandbox\n/root/x\n/root\n"), run.stderr_text()
    assert harness.tree_manifest(tmp_path) == before


def test_run_help_names_the_flags():
    run = harness.run_sentry_cli(["run", "--help"])
    text = " ".join(run.stdout.decode().split())
    for flag in ("--workdir DIR", "--no-cwd", "--env NAME[=VALUE]", "--env-file FILE", "current directory"):
        assert flag in text, flag


def test_a_bare_name_is_looked_up_in_the_sandbox(tmp_path):
    """A bare PROGRAM is searched in the sandbox's PATH, never the host's: a program only
    the host's PATH has is not found (127); python3 is found in the sandbox's /usr/bin."""
    _prog = tmp_path / "only-on-the-host"
    shutil.copyfile(harness.build("hello", "musl-static"), _prog)
    _prog.chmod(0o755)
    run = harness.run_sentry_cli(["run", "--no-cwd", _prog.name],
                                 host_env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    line = harness.sentry_error_line(run)
    assert run.status == 127 and "command not found" in line, line
    run = harness.run_sentry_cli(["run", "python3", "-c", "import sys; print(sys.executable)"])
    assert (run.status, run.stdout) == (0, b"/usr/bin/python3\n"), run


def test_arch_checks_the_program_the_sandbox_finds(tmp_path):
    shutil.copyfile(harness.build("hello", "musl-static"), tmp_path / "prog")
    (tmp_path / "prog").chmod(0o755)
    run = harness.run_sentry_cli(["run", "--arch", "aarch64", "--mount", f"{tmp_path}:/b", "/b/prog"])
    line = harness.sentry_error_line(run)
    assert run.status == 126 and "/b/prog: an x86_64 program, not aarch64" in line, line
    run = harness.run_sentry_cli(["run", "--arch", "x86_64", "--mount", f"{tmp_path}:/b", "/b/prog"])
    assert run.status == 0 and b"hello, world" in run.stdout, run


def test_the_api_environment():
    """Sandbox.run(env=...) starts from PATH, HOSTNAME and HOME, never the host's environment."""
    from sentry.api import Sandbox
    r = Sandbox().run(["env"], env={"HOME": "/elsewhere", "A": "b"})
    assert (r.exit_code, r.stdout.decode()) == (
        0, f"PATH={harness.GUEST_PATH}\nHOSTNAME=sentry\nHOME=/elsewhere\nA=b\n"), r
