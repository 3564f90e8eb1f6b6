"""The embedding API's surface (sentry/api.py): what it takes, how it refuses what it cannot
take, what it documents, and `sentry run --json` / `sentry test --json` built on it. The
limits under hostile programs are tests/test_api_limits.py's."""
import io
import json
import pydoc
import subprocess
import sys

import pytest

import harness
from harness import PLATFORMS

SENTRY = [sys.executable, "-m", "sentry"]


def test_the_names_import_from_the_package():
    import sentry
    import sentry.api
    from sentry import Limits, Mount, Result, Sandbox
    assert (Sandbox, Limits, Result, Mount) == (sentry.api.Sandbox, sentry.api.Limits, sentry.api.Result,
                                                sentry.api.Mount)
    with pytest.raises(AttributeError):
        sentry.NoSuchName


def test_sentry_cli_does_not_load_the_api():
    """`sentry run` starts through the package: the API (dataclasses, json) loads only when used."""
    r = subprocess.run([sys.executable, "-c", "import sys, sentry.cli; print('sentry.api' in sys.modules, "
                        "'dataclasses' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert r.stdout == "False False\n", r


@pytest.mark.parametrize("name", ["Sandbox", "Limits", "Result", "Mount"])
def test_help_documents_every_field(name):
    import dataclasses

    import sentry
    cls = getattr(sentry, name)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("doc"), f"{name}.{f.name} has no documentation"
        assert f"{f.name}: " in text, f"help({name}) does not document {f.name}"
    for attr in vars(cls):
        if not attr.startswith("_") and callable(getattr(cls, attr)):
            assert getattr(cls, attr).__doc__, f"{name}.{attr} has no docstring"


BAD = [
    (lambda L, M, S: L(timeout="abc"), TypeError, "Limits.timeout"),
    (lambda L, M, S: L(timeout=0), ValueError, "Limits.timeout"),
    (lambda L, M, S: L(cpu_time=-1), ValueError, "Limits.cpu_time"),
    (lambda L, M, S: L(memory=-5), ValueError, "Limits.memory"),
    (lambda L, M, S: L(memory=1.5), TypeError, "Limits.memory"),
    (lambda L, M, S: L(max_procs=0), ValueError, "Limits.max_procs"),
    (lambda L, M, S: L(max_procs=True), TypeError, "Limits.max_procs"),
    (lambda L, M, S: L(max_output=-1), ValueError, "Limits.max_output"),
    (lambda L, M, S: L(max_open_files=0), ValueError, "Limits.max_open_files"),
    (lambda L, M, S: L(tmpfs_size="1G"), TypeError, "Limits.tmpfs_size"),
    (lambda L, M, S: L(timeout=float("inf")), ValueError, "Limits.timeout"),
    (lambda L, M, S: M("/tmp", "relative/path"), ValueError, "Mount.guest"),
    (lambda L, M, S: M("/no/such/dir/here", "/x"), ValueError, "Mount.host"),
    (lambda L, M, S: M("/tmp", "/x", writable="yes"), TypeError, "Mount.writable"),
    (lambda L, M, S: M(3, "/x"), TypeError, "Mount.host"),
    (lambda L, M, S: S(mounts=["/tmp"]), ValueError, "mounts"),
    (lambda L, M, S: S(mounts=["/tmp:/x:rx"]), ValueError, "mounts"),
    (lambda L, M, S: S(mounts=["/no/such/dir/here:/x"]), ValueError, "mounts"),
    (lambda L, M, S: S(mounts=[("/tmp", "/x")]), TypeError, "mounts"),
    (lambda L, M, S: S(mounts="/tmp:/x"), TypeError, "mounts"),
    (lambda L, M, S: S(platform="qemu"), ValueError, "platform"),
    (lambda L, M, S: S(limits={"timeout": 1}), TypeError, "limits"),
    (lambda L, M, S: S(net="bridge"), ValueError, "net"),
    (lambda L, M, S: S(publish="8080:80"), TypeError, "publish"),
    (lambda L, M, S: S(publish=["nonsense"]), ValueError, "publish"),
    (lambda L, M, S: S(seed="x"), TypeError, "seed"),
    (lambda L, M, S: S(workdir="tmp"), ValueError, "workdir"),
    (lambda L, M, S: S(env={"A": 1}), TypeError, "env"),
    (lambda L, M, S: S(env={"A=B": "1"}), ValueError, "env"),
    (lambda L, M, S: S(rootfs="/no/such/dir/here"), ValueError, "rootfs"),
    (lambda L, M, S: S().run([]), TypeError, "argv"),
    (lambda L, M, S: S().run(42), TypeError, "argv"),
    (lambda L, M, S: S().run(["/bin/true"], stdin="text"), TypeError, "stdin"),
    (lambda L, M, S: S().run(["/bin/true"], stdin=io.StringIO("text")), TypeError, "stdin"),
    (lambda L, M, S: S().run(["/bin/true"], env={"A": None}), TypeError, "env"),
    (lambda L, M, S: S().run(["/bin/true"], workdir="rel"), ValueError, "workdir"),
    (lambda L, M, S: S().run(["/bin/true"], timeout=-1), ValueError, "Limits.timeout"),
]


@pytest.mark.parametrize("make, error, name", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_refused_up_front_by_name(make, error, name):
    from sentry import Limits, Mount, Sandbox
    with pytest.raises(error) as e:
        make(Limits, Mount, Sandbox)
    assert str(e.value).startswith(name), str(e.value)


def test_mount_forms(tmp_path):
    from sentry import Mount, Sandbox
    (tmp_path / "in").write_text("lent\n")
    assert Mount.parse(f"{tmp_path}:/data:rw") == Mount(str(tmp_path), "/data", writable=True)
    assert Mount.parse(f"{tmp_path}:/data") == Mount(tmp_path, "/data/")  # a PathLike; normalised
    box = Sandbox(mounts=[Mount(tmp_path, "/ro"), f"{tmp_path}:/rw:rw"])
    r = box.run(["/bin/sh", "-c", "cat /ro/in; echo x > /ro/out; echo y > /rw/out && cat /rw/out"])
    assert (r.exit_code, r.stdout) == (0, b"lent\ny\n"), r
    assert b"Read-only file system" in r.stderr, r
    assert (tmp_path / "out").read_text() == "y\n"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_run_forms(platform, tmp_path):
    """argv a str is one program path; stdin bytes or a binary file; env and workdir of the
    Sandbox, overridden per run."""
    from sentry import Sandbox
    box = Sandbox(platform=platform, workdir="/tmp", env={"A": "box", "B": "box"})
    assert box.run("/bin/true").exit_code == 0
    r = box.run(["/bin/sh", "-c", 'pwd; echo "$A $B"; cat'], stdin=b"in\n")
    assert (r.exit_code, r.stdout) == (0, b"/tmp\nbox box\nin\n"), r
    (tmp_path / "stdin").write_bytes(b"from a file\n")
    with open(tmp_path / "stdin", "rb") as f:
        r = box.run(["/bin/sh", "-c", 'pwd; echo "$A $B"; cat'], stdin=f, env={"B": "run"}, workdir="/")
    assert (r.exit_code, r.stdout) == (0, b"/\nbox run\nfrom a file\n"), r
    r = box.run([b"/bin/sh", "-c", "kill -TERM $$"])
    assert (r.exit_code, r.signal, r.limit_hit) == (143, 15, None), r
    assert type(r.signal) is int


def test_a_program_that_cannot_start_raises():
    from sentry import Sandbox
    from sentry.errors import SentryError
    with pytest.raises(SentryError, match="command not found"):
        Sandbox().run("no-such-program-here")
    with pytest.raises(SentryError, match="Is a directory"):
        Sandbox().run("/")


def test_result_as_json():
    from sentry import Result
    r = Result(exit_code=0, signal=0, stdout=b"text\n", stderr=b"\xff\xfe", cpu_time=0.5, wall_time=1.0,
               peak_memory=4096)
    d = json.loads(r.to_json())
    assert d["stdout"] == "text\n" and d["stdout_size"] == 5
    assert "stderr" not in d and d["stderr_base64"] == "//4=" and d["stderr_size"] == 2
    assert d["exit_code"] == 0 and d["limit_hit"] is None and d["output_truncated"] is False
    assert "stdout" not in r.to_dict(output=False) and r.to_dict(output=False)["stdout_size"] == 5


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sentry_run_json(platform):
    """--json: one JSON object on stdout (the output inside it), the program's exit status,
    sentry's own message on stderr."""
    r = subprocess.run([*SENTRY, "run", "--platform", platform, "--json", "/bin/sh", "-c",
                        "echo out; echo err >&2; exit 4"], capture_output=True, timeout=60)
    d = json.loads(r.stdout)
    assert r.stdout.count(b"\n") == 1 and (r.returncode, r.stderr) == (4, b""), r
    assert (d["exit_code"], d["signal"], d["limit_hit"], d["stdout"], d["stderr"]) == (4, 0, None, "out\n", "err\n")
    assert d["cpu_time"] > 0 and d["wall_time"] > 0 and d["peak_memory"] > 0
    capped = subprocess.run([*SENTRY, "run", "--platform", platform, "--json", "--max-output", "5", "/bin/sh", "-c",
                             "echo out; echo err >&2; exit 4"], capture_output=True, timeout=60)
    d = json.loads(capped.stdout)
    assert (capped.returncode, d["exit_code"], d["signal"], d["limit_hit"], d["output_truncated"]) == \
        (141, 141, 13, "output", True), capped
    assert (d["stdout"] + d["stderr"], d["stdout_size"] + d["stderr_size"]) == ("out\ne", 5)
    assert capped.stderr == b"sentry: output: writes were refused beyond --max-output 5 (EPIPE, SIGPIPE)\n"


def test_sentry_run_max_output_needs_json():
    r = subprocess.run([*SENTRY, "run", "--max-output", "5", "/bin/true"], capture_output=True, timeout=60)
    assert r.returncode == 125 and r.stderr.startswith(b"sentry: --max-output") and r.stderr.count(b"\n") == 1, r


def test_sentry_test_json():
    r = subprocess.run([*SENTRY, "test", "--json", "/bin/true", "/bin/false"], capture_output=True, timeout=120)
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1, r
    assert [(d["name"], d["outcome"], d["status"]) for d in lines[:2]] == [("/bin/true", "pass", 0),
                                                                          ("/bin/false", "fail", 1)]
    assert lines[2] == {"summary": {"passed": 1, "failed": 1, "timed_out": 0, "skipped": 0}}


def test_max_open_files_from_the_cli():
    r = subprocess.run([*SENTRY, "run", "--max-open-files", "40", harness.BUSYBOX, "sh", "-c", "ulimit -n; ulimit -Hn"],
                       capture_output=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, b"40\n40\n"), r
