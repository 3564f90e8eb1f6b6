"""busybox (the static build at /bin/busybox), a real program nobody here
wrote: its applets compared with native runs, and the sandbox's view of the
filesystem through `ls`."""
from __future__ import annotations

import hashlib

import pytest

import harness
from harness import PLATFORMS

BB = harness.BUSYBOX

STDIN_BYTES = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(300_000))
STDIN_TEXT = b"".join(b"%d bottles of beer\n" % (i * 7919 % 1000) for i in range(2000))

# (id, argv after "busybox", stdin, expected native status)
APPLETS = [
    ("echo", ["echo", "hello", "world"], None, 0),
    ("echo-n", ["echo", "-n", "no newline"], None, 0),
    ("echo-e", ["echo", "-e", "a\\tb\\nc"], None, 0),
    ("true", ["true"], None, 0),
    ("false", ["false"], None, 1),
    ("printf", ["printf", "%s-%d-%x-%5.2f|%c\\n", "str", "42", "255", "3.14159", "z"], None, 0),
    ("seq", ["seq", "1", "1000"], None, 0),
    ("seq-step", ["seq", "-s", ",", "10", "-3", "-20"], None, 0),
    ("cat-stdin", ["cat"], STDIN_BYTES, 0),
    ("cat-dash", ["cat", "-"], STDIN_TEXT, 0),
    ("wc-c", ["wc", "-c"], STDIN_BYTES, 0),
    ("wc", ["wc"], STDIN_TEXT, 0),
    ("sha256sum", ["sha256sum"], STDIN_BYTES, 0),
    ("md5sum", ["md5sum"], STDIN_TEXT, 0),
    ("sort", ["sort", "-n"], STDIN_TEXT, 0),
    ("uniq-c", ["uniq", "-c"], STDIN_TEXT, 0),
    ("tr", ["tr", "a-z", "A-Z"], STDIN_TEXT, 0),
    ("head-c-zero", ["head", "-c", "100", "/dev/zero"], None, 0),
    ("od-zero", ["od", "-An", "-tx1", "-N", "16", "/dev/zero"], None, 0),
    ("basename", ["basename", "/a/b/c.txt", ".txt"], None, 0),
    ("expr", ["expr", "6", "*", "7"], None, 0),
    ("expr-false", ["expr", "0"], None, 1),
    ("sh-arith", ["sh", "-c", "x=20; echo $((x * 2 + 2)); exit 3"], None, 3),
    ("cat-missing", ["cat", "/nonexistent/file"], None, 1),
    ("cat-dev-null", ["cat", "/dev/null"], None, 0),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("applet,argv,stdin,status", APPLETS, ids=[a[0] for a in APPLETS])
def test_applet(applet, argv, stdin, status, platform):
    harness.require_busybox()
    native = harness.run_native(BB, argv, stdin=stdin)
    assert native.status == status, f"native busybox {applet}: exit {native.status}\n{native.stderr_text()}"
    sandbox = harness.run_sandbox(platform, BB, argv, stdin=stdin)
    harness.compare(native, sandbox, label=f"busybox {' '.join(argv)}")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_cat_program_file(platform):
    """`busybox cat /bin/busybox` in the sandbox gives the host file's bytes:
    the program file is in the sandbox at the path given."""
    harness.require_busybox()
    want = open(BB, "rb").read()
    run = harness.run_sandbox(platform, BB, ["cat", BB])
    harness.check_sentry_sane(run)
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    assert run.stdout == want, harness.bytes_diff(want, run.stdout, "host file", "sandbox cat")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sha256_of_program_file(platform):
    harness.require_busybox()
    want = hashlib.sha256(open(BB, "rb").read()).hexdigest()
    run = harness.run_sandbox(platform, BB, ["sha256sum", BB])
    harness.check_sentry_sane(run)
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    assert run.stdout.decode(errors="replace") == f"{want}  {BB}\n"


def _ls(platform, path, *opts, options=()):
    run = harness.run_sandbox(platform, BB, ["ls", *opts, path], options=options)
    harness.check_sentry_sane(run)
    assert run.status == 0, f"busybox ls {path}: exit {run.status}\n{run.stderr_text()}"
    return run.stdout.decode(errors="replace").split()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ls_root_is_the_sandbox_view(platform):
    """The sandbox's / is the default view: dev, tmp, proc, the host's system
    directories (read-only), root (the sandbox's own HOME, empty), not the host's
    home, var or srv; with --no-cwd, not the current directory's either.
    (Native `ls /` differs on purpose.)"""
    harness.require_busybox()
    names = _ls(platform, "/", options=["--no-cwd"])
    view = ("dev", "tmp", "bin", "usr", "etc", "proc", "root")
    for want in view:
        assert want in names, f"{want!r} missing from the sandbox's /: {names}"
    for host_only in {"home", "var", "srv", "opt", "boot", harness.REPO.parts[1]} - set(view):
        assert host_only not in names, f"host directory {host_only!r} visible in the sandbox: {names}"
    assert _ls(platform, "/root", "-A", options=["--no-cwd"]) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ls_dev(platform):
    harness.require_busybox()
    names = _ls(platform, "/dev")
    for want in ("null", "zero", "full", "random", "urandom"):
        assert want in names, f"/dev/{want} missing: {names}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ls_tmp_is_empty(platform):
    harness.require_busybox()
    assert _ls(platform, "/tmp", "-A", options=["--no-cwd"]) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ls_program_dir(platform):
    """The program's own file is listed where it was given."""
    harness.require_busybox()
    assert "busybox" in _ls(platform, "/bin")
