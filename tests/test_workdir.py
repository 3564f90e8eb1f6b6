"""The working directory and the program's lookup, as a user runs `sentry run`:
the host's current directory is lent read-only at its own path and is the
working directory (--workdir, --no-cwd and --rootfs say otherwise); PROGRAM is
looked up in what the sandbox sees (its PATH, its working directory, its
mounts); a relative interpreter (`#!sh`, a PT_INTERP of "x") is looked up from
the working directory, as Linux's open_exec does.

Each program runs natively in the same directory with the sandbox's
environment (harness.run_native) where there is a native oracle."""
from __future__ import annotations

import os
import shutil
import struct

import pytest

import harness
from harness import PLATFORMS

PYTHON = "/usr/bin/python3"
SCRIPT = """import os
print("cwd", os.getcwd())
print("data", open("data.txt").read().strip())
print("home", os.path.expanduser("~"))
try:
    open("new.txt", "w")
    print("write: ok")
except OSError as e:
    print("write:", e.strerror)
"""


def _prog(directory, name="prog", variant="glibc-dynamic"):
    dst = directory / name
    shutil.copyfile(harness.build("hello", variant), dst)
    os.chmod(dst, 0o755)
    return dst


def _project(tmp_path):
    """A directory as a user has one: a script, a data file, a program."""
    d = tmp_path / "project"
    d.mkdir()
    (d / "s.py").write_text(SCRIPT)
    (d / "data.txt").write_text("from the host\n")
    _prog(d)
    return d


def _same(platform, argv, cwd, *, options=(), native_cwd=None, stderr="notes"):
    native = harness.run_native(argv[0], argv[1:], cwd=native_cwd or cwd)
    sandbox = harness.run_sandbox(platform, argv[0], argv[1:], cwd=cwd, options=options)
    harness.compare(native, sandbox, stderr=stderr, label=" ".join(map(str, argv)))
    return native, sandbox


@pytest.mark.parametrize("platform", PLATFORMS)
def test_python3_script_in_the_current_directory(platform, tmp_path):
    """`cd project && sentry run python3 s.py`: python3 through the sandbox's PATH, the
    script and its data through the lent directory, which is read-only."""
    harness.require_program(PYTHON)
    d = _project(tmp_path)
    before = harness.tree_manifest(d)
    sandbox = harness.run_sandbox(platform, "python3", ["s.py"], cwd=d)
    harness.check_sentry_sane(sandbox)
    assert sandbox.stdout.decode() == (f"cwd {d}\ndata from the host\nhome /root\n"
                                       "write: Read-only file system\n"), sandbox.stderr_text()
    assert harness.tree_manifest(d) == before


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("variant", ["glibc-static", "glibc-dynamic"])
def test_dot_slash_program(platform, variant, tmp_path):
    """`sentry run ./prog` runs the program in the current directory, argv[0] as typed."""
    _prog(tmp_path, variant=variant)
    native, _ = _same(platform, ["./prog", "an arg"], tmp_path)
    assert b"argv[0]=[./prog]" in native.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_relative_program_from_another_directory(platform, tmp_path):
    """`cd a && sentry run ../b/prog`: b is not under the lent directory, so it is lent
    for the program (its directory, read-only), and the relative path still works."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _prog(tmp_path / "b")
    _same(platform, ["../b/prog", "x"], tmp_path / "a")
    _same(platform, ["b/prog", "y"], tmp_path)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_lookup_through_a_mount(platform, tmp_path):
    """PROGRAM is what the sandbox sees: /b/prog through --mount, a bare name through the
    sandbox's PATH (after --env), ./prog from --workdir. The host has no /b."""
    _prog(tmp_path)
    mount = ["--mount", f"{tmp_path}:/b"]
    for options, program in ((mount, "/b/prog"), (mount + ["--env", "PATH=/b:/usr/bin"], "prog"),
                             (mount + ["--workdir", "/b"], "./prog")):
        run = harness.run_sandbox(platform, program, ["z"], options=options, cwd="/")
        harness.check_sentry_sane(run)
        assert run.status == 0 and f"argv[0]=[{program}]".encode() in run.stdout, (options, run.stderr_text())
    run = harness.run_sandbox(platform, "prog", options=mount)  # the default PATH has no /b
    line = harness.sentry_error_line(run)
    assert run.status == 127 and "prog: command not found" in line, line


@pytest.mark.parametrize("platform", PLATFORMS)
def test_no_cwd(platform, tmp_path):
    """--no-cwd: the working directory is / and the current directory is not there."""
    _prog(tmp_path)
    run = harness.run_sandbox(platform, "/bin/sh", ["-c", f"pwd; ls {tmp_path}"], cwd=tmp_path,
                              options=["--no-cwd"])
    harness.check_sentry_sane(run)
    assert run.stdout == b"/\n" and run.status != 0 and b"No such file" in run.stderr, run
    run = harness.run_sandbox(platform, "./prog", cwd=tmp_path, options=["--no-cwd"])
    line = harness.sentry_error_line(run)
    assert run.status == 127 and "./prog: No such file or directory" in line, line


@pytest.mark.parametrize("platform", PLATFORMS)
def test_where_the_working_directory_is(platform, tmp_path):
    """The edge cases: `/` is never lent (the sandbox's own /); /tmp, /dev and /proc are the
    sandbox's own; a system directory is already there; a directory under /tmp is mounted
    inside the sandbox's memory /tmp, which stays writable around it."""
    probe = "pwd; ls -A /tmp | head -3; echo x > /tmp/w && cat /tmp/w"
    cases = {"/": "/\n", "/tmp": "/tmp\n", "/dev": "/dev\n", "/proc": "/proc\n", "/usr/bin": "/usr/bin\n",
             str(tmp_path): f"{tmp_path}\n{tmp_path.relative_to('/tmp').parts[0]}\n"}
    for cwd, want in cases.items():
        run = harness.run_sandbox(platform, "/bin/sh", ["-c", probe], cwd=cwd)
        harness.check_sentry_sane(run)
        assert (run.status, run.stdout.decode()) == (0, want + "x\n"), (cwd, run.stderr_text())
    # `/` is the sandbox's: no host-only directory appears in it
    run = harness.run_sandbox(platform, "/bin/ls", ["/"], cwd="/")
    assert not {"var", "srv", "home", "boot"} & set(run.stdout.decode().split()), run.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_home_as_the_current_directory(platform):
    """The current directory is the sandbox's HOME (/root): the host's is seen read-only
    below and HOME stays writable in memory; nothing reaches the host."""
    if not os.path.isdir("/root"):
        pytest.fail("this test needs the host's /root")
    name = f"sentry-test-{os.urandom(6).hex()}"
    before = set(os.listdir("/root"))
    run = harness.run_sandbox(platform, "/bin/sh", ["-c", f"pwd; ls -A; echo kept > {name} && cat ~/{name}"],
                              cwd="/root")
    after = set(os.listdir("/root"))
    harness.check_sentry_sane(run)
    lines = run.stdout.decode().splitlines()
    assert lines[0] == "/root" and lines[-1] == "kept", run.stderr_text()
    assert before & after <= set(lines[1:-1]) <= before | after, lines  # what the host has (it may change)
    assert name not in after


# ---------------------------------------------------------------------------- interpreters


def _script(directory, interp):
    p = directory / "script"
    p.write_text(f"#!{interp}\necho ran\n")
    p.chmod(0o755)
    return p


def _elf_interp_x(directory):
    """A dynamic program whose PT_INTERP names "x", a path relative to the working directory."""
    p = _prog(directory, "xinterp")
    data = bytearray(p.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            data[offset:offset + size] = b"x".ljust(size, b"\0")
            break
    else:
        raise harness.HarnessError("the dynamic fixture has no PT_INTERP")
    p.write_bytes(bytes(data))
    return p


EXECV = """import os, errno, sys
for name in sys.argv[1:]:
    try:
        os.execv(name, [name])
    except OSError as e:
        print(name, errno.errorcode[e.errno])
"""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_relative_interpreters(platform, tmp_path):
    """`#!sh` and a PT_INTERP of "x": execve answers ENOENT inside (no sh or x in the
    working directory), as on Linux; as the first program, one line and 127."""
    harness.require_program(PYTHON)
    _script(tmp_path, "sh")
    _elf_interp_x(tmp_path)
    (tmp_path / "execv.py").write_text(EXECV)
    _same(platform, [PYTHON, "execv.py", "./script", "./xinterp"], tmp_path)
    for program in ("./script", "./xinterp"):
        run = harness.run_sandbox(platform, program, cwd=tmp_path)
        line = harness.sentry_error_line(run)
        assert run.status == 127 and "its interpreter" in line, line


@pytest.mark.parametrize("platform", PLATFORMS)
def test_relative_interpreter_found_in_the_working_directory(platform, tmp_path):
    """Linux opens a relative interpreter from the working directory: with a `sh` there,
    `#!sh` runs it, both as the first program and through execve."""
    harness.require_program(PYTHON)
    _script(tmp_path, "sh")
    os.symlink("/bin/sh", tmp_path / "sh")
    (tmp_path / "execv.py").write_text(EXECV)
    _same(platform, ["./script"], tmp_path)
    _same(platform, [PYTHON, "execv.py", "./script"], tmp_path)
