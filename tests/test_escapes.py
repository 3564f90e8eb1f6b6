"""Escape attempts (issue 4): each must fail to read or change the host.

fixtures/escape.c runs a list of operations (read, list, create, symlink,
link, rename, ...) and prints one line per result.  Its answers are compared
with what the sandbox must say, not with a native run: natively these paths
lead to the host, which is exactly what they would escape to.

Each test builds its own scene under pytest's tmp dir:

    BASE/outside/canary.txt     holds a unique secret; never mounted
    BASE/outside/sub/...
    BASE/mnt/                   the mount (ro or rw), at the same path in the sandbox
    BASE/mnt2/                  a second mount, for cross-mount links and renames

and checks, besides the printed answers, that the secret never shows up in
the output and that the host tree under BASE is unchanged after the run, or
changed only inside a :rw mount.  Host files that the test did not create are
never written to, not even as a target of an attempt that should fail:
attempts on the system directories only try to create fresh unique names.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest

import harness
from harness import PLATFORMS

TIMEOUT = 40
# What the default view has at its root (DESIGN.md): the host's system
# directories, /tmp, /dev, /proc; plus the directories leading to the program.
VIEW_ROOT = {"usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin", "etc", "tmp", "dev", "proc",
             "root"}  # root: the sandbox's own HOME, in memory
HOST_ONLY = ("home", "var", "srv", "opt", "boot", "mnt", "media", "run", "sys")


def _program(variant: str = "glibc-static") -> Path:
    return harness.build("escape", variant)


class Scene:
    def __init__(self, base: Path):
        self.base = base
        self.secret = f"CANARY-{uuid.uuid4().hex}"
        self.outside = base / "outside"
        (self.outside / "sub").mkdir(parents=True)
        self.canary = self.outside / "canary.txt"
        self.canary.write_text(self.secret + "\n")
        (self.outside / "sub" / "canary2.txt").write_text(self.secret + " (2)\n")
        self.mnt = base / "mnt"
        (self.mnt / "sub").mkdir(parents=True)
        (self.mnt / "inside.txt").write_text("inside\n")
        (self.mnt / "sub" / "file.txt").write_text("in sub\n")
        self.mnt2 = base / "mnt2"
        self.mnt2.mkdir()
        (self.mnt2 / "file2.txt").write_text("in mnt2\n")

    def manifest(self) -> dict:
        return harness.tree_manifest(self.base)

    def mount(self, which: Path, mode: str) -> list[str]:
        return ["--mount", f"{which}:{which}:{mode}"]


@pytest.fixture
def scene(tmp_path) -> Scene:
    return Scene(tmp_path)


class Answers:
    """The fixture's output: `label: result` lines, in order."""

    def __init__(self, run: harness.Run):
        self.run = run
        self.lines: list[tuple[str, str]] = []
        for line in run.stdout.decode(errors="replace").splitlines():
            label, sep, rest = line.partition(": ")
            if sep:
                self.lines.append((label, rest))

    def text(self) -> str:
        return harness._clip(self.run.stdout.decode(errors="replace"), 6000)

    def get(self, label: str) -> list[str]:
        got = [rest for lab, rest in self.lines if lab == label]
        assert got, f"no answer for {label!r} in the output:\n{self.text()}\n{self.run.stderr_text()}"
        return got

    def one(self, label: str) -> str:
        return self.get(label)[-1]

    def expect(self, label: str, *allowed: str) -> None:
        got = self.one(label)
        assert got in allowed, (f"{label}: got {got!r}, expected {' or '.join(map(repr, allowed))}\n"
                                f"--- output:\n{self.text()}")

    def failed(self, label: str) -> None:
        """The attempt failed, whichever way (and, for the secret, see run())."""
        got = self.one(label)
        assert got.startswith("-1 ") or " -1 " in got, f"{label}: succeeded with {got!r}\n--- output:\n{self.text()}"

    def names(self, label: str) -> set[str] | None:
        """The names a `list` found, or None if the listing failed."""
        got = self.get(label)
        if got[-1].startswith("-1") or " -1 " in got[-1]:
            return None
        assert got[-1].endswith(" entries"), f"{label}: {got}"
        return {r.split(" ")[0] for r in got[:-1]}


def run_ops(platform: str, scene: Scene | None, ops: list, options=(), variant: str = "glibc-static",
            program: Path | None = None) -> Answers:
    """Run the escape fixture with these operations; the scene's secret must
    not appear anywhere in what it printed."""
    prog = program or _program(variant)
    run = harness.run_sandbox(platform, prog, [str(o) for o in ops], options=list(options), timeout=TIMEOUT)
    harness.check_sentry_sane(run)
    everything = run.stdout + run.stderr
    if scene is not None:
        assert scene.secret.encode() not in everything, (
            f"THE SANDBOX READ THE HOST CANARY {scene.canary}:\n{run.stdout.decode(errors='replace')[:4000]}")
    assert run.status == 0 and run.stdout.endswith(b"done\n"), (
        f"escape fixture: exit {run.status}\n{run.stdout.decode(errors='replace')[-3000:]}\n{run.stderr_text()}")
    assert b"fixture error" not in run.stderr, run.stderr_text()
    return Answers(run)


def native_control(scene: Scene, ops: list, cwd: Path | None = None) -> None:
    """The same attempts natively reach the canary: the paths are right, and
    the sandbox's refusal of them means something.  (Reads only: nothing on
    the host is changed, but for links the scene itself made.)"""
    run = harness.run_native(_program(), [str(o) for o in ops], cwd=cwd or scene.base, timeout=TIMEOUT)
    assert run.status == 0, f"native control: exit {run.status}\n{run.stderr_text()}"
    assert scene.secret.encode() in run.stdout, (
        f"native control: these attempts do not reach the canary even on the host, so the "
        f"test proves nothing:\n{run.stdout.decode(errors='replace')[:3000]}")


def assert_unchanged(before: dict, after: dict, allowed_prefix: str | None = None) -> None:
    """The host tree is as before, except (if given) entries under allowed_prefix."""
    if allowed_prefix is not None:
        keep = lambda p: not (p == allowed_prefix or p.startswith(allowed_prefix + "/"))  # noqa: E731
        before = {k: v for k, v in before.items() if keep(k)}
        after = {k: v for k, v in after.items() if keep(k)}
    diff = harness.manifest_diff(before, after, "before", "after")
    where = f" outside {allowed_prefix}/" if allowed_prefix else ""
    assert not diff, f"the host tree changed{where}:\n{diff}"


def check_root_listing(names: set[str] | None, label: str, prog: Path) -> None:
    """A listing that is the sandbox's root: the default view, nothing of the host's own."""
    if names is None:
        return
    allowed = VIEW_ROOT | {".", "..", Path(prog).parts[1], "tmp"}
    extra = names - allowed
    assert not extra, f"{label} shows host names that the view does not have: {sorted(extra)}"
    for name in HOST_ONLY:
        assert name not in names, f"{label} shows the host's /{name}"


# --------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dotdot_walks_stay_in_the_view(platform, scene):
    """`..` out of a mount reaches the sandbox's own directories above the
    mount point (memory, holding only the way to the mount), never the host's
    siblings of the mounted directory; `..` at / stays at /."""
    m, base = scene.mnt, scene.base
    deep = "../" * 20
    ops = [
        "read", f"{m}/../outside/canary.txt",
        "read", f"{m}/../../{base.name}/outside/canary.txt",
        "read", "../outside/canary.txt",
        "read", deep + str(scene.canary).lstrip("/"),
        "read", f"{m}/{deep}{str(scene.canary).lstrip('/')}",
        "readat", m, "../outside/canary.txt",
        "readat", m, "../outside/sub/canary2.txt",
        "listat", m, "..",
        "list", f"{m}/..",
        "list", f"{m}/../outside",
        "list", f"{m}/{deep}",
        "chdir", m, *sum((["chdir", ".."] for _ in range(12)), []), "cwd",
        "list", ".",
        "read", str(scene.canary)[1:],
    ]
    before = scene.manifest()
    a = run_ops(platform, scene, ops, scene.mount(m, "ro") + ["--workdir", str(m)])
    for label in (f"read {m}/../outside/canary.txt", f"read {m}/../../{base.name}/outside/canary.txt",
                  "read ../outside/canary.txt", f"read {deep}{str(scene.canary).lstrip('/')}",
                  f"read {m}/{deep}{str(scene.canary).lstrip('/')}", f"readat {m} ../outside/canary.txt",
                  f"readat {m} ../outside/sub/canary2.txt", f"list {m}/../outside", f"read {str(scene.canary)[1:]}"):
        a.expect(label, "-1 ENOENT")
    # above the mount point: the sandbox's memory directory, holding only the way to the mount
    for label in (f"listat {m} ..", f"list {m}/.."):
        assert a.names(label) == {".", "..", "mnt"}, f"{label}: {a.get(label)}"
    a.expect(f"chdir {m}", "0")
    a.expect("cwd", "/")
    prog = _program()
    check_root_listing(a.names("list ."), "`..` x 12 from the mount, then list .", prog)
    assert a.names("list .") is not None, "the sandbox's / could not be listed"
    check_root_listing(a.names(f"list {m}/{deep}"), "list MNT/../../..", prog)
    assert_unchanged(before, scene.manifest())
    for op in (["read", f"{m}/../outside/canary.txt"], ["read", "../outside/canary.txt"],
               ["readat", m, "../outside/sub/canary2.txt"], ["read", deep + str(scene.canary).lstrip("/")]):
        native_control(scene, op, cwd=m)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_symlinks_out_of_a_rw_mount(platform, scene):
    """Symlinks planted on the host inside a :rw mount, absolute and relative,
    pointing at the canary outside it: the sandbox resolves them in its own
    view (where the canary does not exist), for reads and for writes."""
    m = scene.mnt
    c = str(scene.canary)
    links = {
        "abs": c,
        "rel": "../outside/canary.txt",
        "deeprel": "../" * 20 + c.lstrip("/"),
        "absdir": str(scene.outside),
        "reldir": "../outside",
        "chain1": "chain2",
        "chain2": "abs",
        "root": "/",
        "dangling-abs": str(scene.outside / "created-through-a-link.txt"),
        "dangling-rel": "../outside/created-through-a-link.txt",
    }
    for name, target in links.items():
        os.symlink(target, m / name)
    ops = [
        "read", f"{m}/abs", "read", f"{m}/rel", "read", f"{m}/deeprel", "read", f"{m}/chain1",
        "read", f"{m}/absdir/canary.txt", "read", f"{m}/reldir/sub/canary2.txt",
        "read", f"{m}/root{c}",
        "list", f"{m}/absdir", "list", f"{m}/reldir", "list", f"{m}/root/",
        "stat", f"{m}/abs", "readlink", f"{m}/rel",
        "create", f"{m}/dangling-abs", "create", f"{m}/dangling-rel",
        "create", f"{m}/rel", "append", f"{m}/abs", "truncate", f"{m}/chain1", "chmod", f"{m}/abs",
        "mkdir", f"{m}/absdir/newdir", "unlink", f"{m}/reldir/canary.txt",
        "create", f"{m}/absdir/new.txt", "rename", f"{m}/inside.txt", f"{m}/reldir/moved.txt",
    ]
    before = scene.manifest()
    a = run_ops(platform, scene, ops, scene.mount(m, "rw"))
    for label in (f"read {m}/abs", f"read {m}/rel", f"read {m}/deeprel", f"read {m}/chain1",
                  f"read {m}/absdir/canary.txt", f"read {m}/reldir/sub/canary2.txt", f"read {m}/root{c}",
                  f"list {m}/absdir", f"list {m}/reldir",
                  f"create {m}/dangling-abs", f"create {m}/dangling-rel", f"create {m}/rel",
                  f"append {m}/abs", f"truncate {m}/chain1", f"chmod {m}/abs",
                  f"mkdir {m}/absdir/newdir", f"unlink {m}/reldir/canary.txt", f"create {m}/absdir/new.txt"):
        a.expect(label, "-1 ENOENT")
    # rename's target directory does not exist in the view: ENOENT (or EXDEV, were it another mount)
    a.expect(f"rename {m}/inside.txt {m}/reldir/moved.txt", "-1 ENOENT", "-1 EXDEV")
    check_root_listing(a.names(f"list {m}/root/"), "list MNT/root/ (host link to /)", _program())
    a.expect(f"stat {m}/abs", "lnk")
    a.expect(f"readlink {m}/rel", "[../outside/canary.txt]")
    assert not (scene.outside / "created-through-a-link.txt").exists()
    assert_unchanged(before, scene.manifest())
    for name in ("abs", "rel", "deeprel", "chain1"):
        native_control(scene, ["read", f"{m}/{name}"])
    native_control(scene, ["read", f"{m}/reldir/sub/canary2.txt"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_program_planted_symlinks(platform, scene):
    """The program itself makes symlinks to `/`, `../..` and the canary's
    host path inside a :rw mount, then follows them: they lead into the
    sandbox's view, never to the host's."""
    m, base = scene.mnt, scene.base
    c = str(scene.canary)
    ops = [
        "symlink", "/", f"{m}/to-root",
        "symlink", "../..", f"{m}/up2",
        "symlink", "..", f"{m}/up1",
        "symlink", c, f"{m}/to-canary",
        "symlink", "../outside", f"{m}/to-outside",
        "read", f"{m}/to-root{c}",
        "read", f"{m}/up2/{base.name}/outside/canary.txt",
        "read", f"{m}/up1/outside/canary.txt",
        "read", f"{m}/to-canary",
        "read", f"{m}/to-outside/canary.txt",
        "list", f"{m}/to-root/",
        "list", f"{m}/up2/",
        "list", f"{m}/up1/",
        "create", f"{m}/to-outside/planted.txt",
        "readlink", f"{m}/up2",
        "read", f"{m}/up1/mnt/inside.txt",
    ]
    before = scene.manifest()
    try:
        a = run_ops(platform, scene, ops, scene.mount(m, "rw"))
        for label in ("symlink / " + f"{m}/to-root", f"symlink ../.. {m}/up2", f"symlink .. {m}/up1",
                      f"symlink {c} {m}/to-canary", f"symlink ../outside {m}/to-outside"):
            a.expect(label, "0")
        for label in (f"read {m}/to-root{c}", f"read {m}/up2/{base.name}/outside/canary.txt",
                      f"read {m}/up1/outside/canary.txt", f"read {m}/to-canary",
                      f"read {m}/to-outside/canary.txt", f"create {m}/to-outside/planted.txt"):
            a.expect(label, "-1 ENOENT")
        check_root_listing(a.names(f"list {m}/to-root/"), "list MNT/to-root/", _program())
        assert a.names(f"list {m}/up2/") == {".", "..", base.name}, a.get(f"list {m}/up2/")
        assert a.names(f"list {m}/up1/") == {".", "..", "mnt"}, a.get(f"list {m}/up1/")
        a.expect(f"readlink {m}/up2", "[../..]")
        a.expect(f"read {m}/up1/mnt/inside.txt", "ok [inside|]")
        # on the host: the links are there, as plain links with the program's targets, and nothing else changed
        assert os.readlink(m / "to-root") == "/" and os.readlink(m / "up2") == "../.."
        assert not (scene.outside / "planted.txt").exists()
        assert_unchanged(before, scene.manifest(), allowed_prefix="mnt")
        # the very links the program made lead to the canary when the host follows them
        for path in (f"{m}/to-root{c}", f"{m}/up2/{base.name}/outside/canary.txt", f"{m}/to-canary"):
            native_control(scene, ["read", path])
    finally:
        for name in ("to-root", "up2", "up1", "to-canary", "to-outside"):
            if os.path.islink(m / name):
                os.unlink(m / name)


def _renameat2_exchange():
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    assert fn is not None, "the host libc has no renameat2 (glibc >= 2.28 has)"
    AT_FDCWD, RENAME_EXCHANGE = -100, 2

    def exchange(a: Path, b: Path) -> None:
        if fn(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), str(a))
    return exchange


@pytest.mark.parametrize("platform", PLATFORMS)
def test_symlink_swapped_during_walks(platform, scene):
    """While the program opens MNT/flip/secret.txt over and over, the host
    swaps MNT/flip between a real directory and a symlink to the canary's
    directory (absolute, and relative: ../outside) with RENAME_EXCHANGE.
    Whatever the timing, the program reads the inside file or nothing."""
    m = scene.mnt
    (scene.outside / "secret.txt").write_text(scene.secret + " (swapped)\n")
    pairs = []
    for name, target in (("flipA", str(scene.outside)), ("flipR", "../outside")):
        (m / name).mkdir()
        (m / name / "secret.txt").write_text("inside\n")
        os.symlink(target, m / f"{name}-alt")
        pairs.append((m / name, m / f"{name}-alt"))
    exchange = _renameat2_exchange()
    exchange(*pairs[0])
    exchange(*pairs[0])  # the host filesystem supports it
    stop = threading.Event()
    swaps = [0]

    def swapper():
        while not stop.is_set():
            for a_, b_ in pairs:
                exchange(a_, b_)
            swaps[0] += 1

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    try:
        ops = ["loop", f"{m}/flipA/secret.txt", 1500, "loop", f"{m}/flipR/secret.txt", 1500]
        a = run_ops(platform, scene, ops, scene.mount(m, "rw"))
    finally:
        stop.set()
        t.join(10)
    assert swaps[0] > 10, f"the host swapped only {swaps[0]} times"
    for a_, b_ in pairs:  # put the symlinks in place: natively they lead to the canary
        if not os.path.islink(a_):
            exchange(a_, b_)
        native_control(scene, ["read", f"{a_}/secret.txt"])
    for name in ("flipA", "flipR"):
        label = f"loop {m}/{name}/secret.txt 1500"
        outcomes = {r.split(" #")[0] for r in a.get(label)}
        assert outcomes <= {"ok [inside|]", "-1 ENOENT"}, f"{label}: {a.get(label)}"
        assert "ok [inside|]" in outcomes, f"{label}: never read the inside file: {a.get(label)}"
    assert scene.canary.read_text() == scene.secret + "\n"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_hard_links_out_of_the_mount(platform, scene):
    """Hard links from a :rw mount to host files outside it: the file is not
    in the view (ENOENT) or on another mount (EXDEV); inside the mount a hard
    link works (the control)."""
    m, m2 = scene.mnt, scene.mnt2
    c = str(scene.canary)
    os.symlink(c, m / "abs")
    prog = _program()
    ops = [
        "link", c, f"{m}/hl-canary",
        "linkf", f"{m}/abs", f"{m}/hl-via-symlink",
        "link", f"{m}/../outside/canary.txt", f"{m}/hl-dotdot",
        "link", f"{m2}/file2.txt", f"{m}/hl-mnt2",
        "linkfd", f"{m2}/file2.txt", f"{m}/hl-fd-mnt2",
        "linkf", "/proc/self/exe", f"{m}/hl-exe",
        "link", prog, f"{m}/hl-prog",
        "link", f"{m}/inside.txt", f"{m}/hl-inside",
    ]
    before = scene.manifest()
    prog_links = os.stat(prog).st_nlink
    a = run_ops(platform, scene, ops, scene.mount(m, "rw") + scene.mount(m2, "rw"))
    a.expect(f"link {c} {m}/hl-canary", "-1 ENOENT")
    a.expect(f"linkf {m}/abs {m}/hl-via-symlink", "-1 ENOENT")
    a.expect(f"link {m}/../outside/canary.txt {m}/hl-dotdot", "-1 ENOENT")
    a.expect(f"link {m2}/file2.txt {m}/hl-mnt2", "-1 EXDEV")
    # AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which the sandbox may not grant: ENOENT then
    a.expect(f"linkfd {m2}/file2.txt {m}/hl-fd-mnt2", "-1 EXDEV", "-1 ENOENT")
    a.expect(f"linkf /proc/self/exe {m}/hl-exe", "-1 EXDEV", "-1 ENOENT")
    a.expect(f"link {prog} {m}/hl-prog", "-1 EXDEV")
    a.expect(f"link {m}/inside.txt {m}/hl-inside", "0")
    assert os.stat(m / "hl-inside").st_ino == os.stat(m / "inside.txt").st_ino
    assert os.stat(scene.canary).st_nlink == 1 and os.stat(m2 / "file2.txt").st_nlink == 1
    assert os.stat(prog).st_nlink == prog_links
    after = scene.manifest()
    assert_unchanged(before, after, allowed_prefix="mnt")
    new = sorted(set(after) - set(before))
    assert new == ["mnt/hl-inside"], f"new host entries: {new}"
    native_control(scene, ["link", c, f"{m}/hl-control", "read", f"{m}/hl-control"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rename_across_mounts(platform, scene):
    """rename out of a :rw mount, to another mount or to the sandbox's own
    directories, is EXDEV; within the mount it works (the control)."""
    m, m2 = scene.mnt, scene.mnt2
    ops = [
        "rename", f"{m}/inside.txt", f"{m2}/moved.txt",
        "rename", f"{m}/inside.txt", "/tmp/moved.txt",
        "rename", f"{m}/sub", f"{m}/../sub-moved",
        "rename", f"{m2}/file2.txt", f"{m}/from-mnt2.txt",
        "rename", f"{m}/inside.txt", f"{m}/../outside/moved.txt",
        "rename", f"{m}/inside.txt", f"{m}/sub/renamed.txt",
    ]
    before = scene.manifest()
    a = run_ops(platform, scene, ops, scene.mount(m, "rw") + scene.mount(m2, "rw"))
    a.expect(f"rename {m}/inside.txt {m2}/moved.txt", "-1 EXDEV")
    a.expect(f"rename {m}/inside.txt /tmp/moved.txt", "-1 EXDEV")
    a.expect(f"rename {m}/sub {m}/../sub-moved", "-1 EXDEV")
    a.expect(f"rename {m2}/file2.txt {m}/from-mnt2.txt", "-1 EXDEV")
    a.expect(f"rename {m}/inside.txt {m}/../outside/moved.txt", "-1 ENOENT")
    a.expect(f"rename {m}/inside.txt {m}/sub/renamed.txt", "0")
    after = scene.manifest()
    assert_unchanged(before, after, allowed_prefix="mnt")
    assert (m / "sub" / "renamed.txt").read_text() == "inside\n" and not (m / "inside.txt").exists()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_proc_links_stay_in_the_view(platform, scene):
    """/proc/self/root, /proc/1/root and /proc/1/cwd lead to the sandbox's
    root and working directory (pid 1 is the sandbox's first process), never
    to the host's; without a procfs yet they do not exist at all."""
    m, c = scene.mnt, str(scene.canary)
    ops = [
        "readlink", "/proc/self/root",
        "list", "/proc/self/root/",
        "read", f"/proc/self/root{c}",
        "read", f"/proc/1/root{c}",
        "read", f"/proc/1/root/../../..{c}",
        "list", "/proc/1/root/",
        "list", "/proc/1/cwd/",
        "read", "/proc/1/cwd/../outside/canary.txt",
        "read", "/proc/self/cwd/../outside/canary.txt",
        "list", "/proc/self/cwd/..",
        "read", "/proc/self/exe/../../canary.txt",
        "read", "/proc/1/environ",
        "list", "/proc/1/fd/",
    ]
    a = run_ops(platform, scene, ops, scene.mount(m, "ro") + ["--workdir", str(m)])
    a.expect("readlink /proc/self/root", "[/]", "-1 ENOENT")
    for label in (f"read /proc/self/root{c}", f"read /proc/1/root{c}", f"read /proc/1/root/../../..{c}",
                  "read /proc/1/cwd/../outside/canary.txt", "read /proc/self/cwd/../outside/canary.txt",
                  "read /proc/self/exe/../../canary.txt"):
        a.failed(label)
    prog = _program()
    check_root_listing(a.names("list /proc/self/root/"), "list /proc/self/root/", prog)
    check_root_listing(a.names("list /proc/1/root/"), "list /proc/1/root/", prog)
    cwd = a.names("list /proc/1/cwd/")
    assert cwd is None or cwd == {".", "..", "inside.txt", "sub"}, f"/proc/1/cwd is not the workdir: {sorted(cwd)}"
    up = a.names("list /proc/self/cwd/..")
    assert up is None or up == {".", "..", "mnt"}, f"/proc/self/cwd/.. shows {sorted(up)}"
    # the sandbox's pid 1 is the program: its environment is the guest's, not host init's
    env = a.one("read /proc/1/environ")
    own = "".join(f"{k}={v}." for k, v in harness.GUEST_ENV.items())
    assert env.startswith("-1 ") or env == f"ok [{own}]", f"/proc/1/environ: {env}"
    fds = a.names("list /proc/1/fd/")
    assert fds is None or len(fds) < 12, f"/proc/1/fd/ of the sandbox lists {len(fds)} entries: {sorted(fds)}"
    native_control(scene, ["read", f"/proc/self/root{c}"])
    native_control(scene, ["read", "/proc/self/cwd/../outside/canary.txt"], cwd=m)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_system_dirs_are_read_only(platform, tmp_path):
    """The lent system directories and the program's own directory refuse
    every write with EROFS; nothing appears on the host.  On the system
    directories only fresh unique names are tried; the program's directory is
    a copy the test made, with a victim file in it."""
    tag = f"sentry-escape-{uuid.uuid4().hex[:12]}"
    progdir = tmp_path / "progdir"
    progdir.mkdir()
    prog = progdir / "escape"
    shutil.copy2(_program(), prog)
    victim = progdir / "victim.txt"
    victim.write_text("victim\n")
    fresh = [f"/etc/{tag}", f"/usr/bin/{tag}", f"/bin/{tag}", f"/usr/lib/{tag}", f"/sbin/{tag}", f"{progdir}/{tag}"]
    ops = []
    for p in fresh:
        ops += ["create", p, "mkdir", p + "-d", "symlink", "/", p + "-l"]
    ops += ["link", str(victim), f"{progdir}/{tag}-hl"]
    for op in ("append", "truncate", "chmod", "utime", "unlink", "create"):
        ops += [op, str(victim)]
    ops += ["rename", str(victim), f"{progdir}/{tag}-renamed", "rmdir", str(progdir), "read", str(victim)]
    before = harness.tree_manifest(tmp_path)
    try:
        a = run_ops(platform, None, ops, program=prog)
        for p in fresh:
            a.expect(f"create {p}", "-1 EROFS")
            a.expect(f"mkdir {p}-d", "-1 EROFS")
            a.expect(f"symlink / {p}-l", "-1 EROFS")
        a.expect(f"link {victim} {progdir}/{tag}-hl", "-1 EROFS")
        for op in ("append", "truncate", "chmod", "utime", "unlink", "create"):
            a.expect(f"{op} {victim}", "-1 EROFS")
        a.expect(f"rename {victim} {progdir}/{tag}-renamed", "-1 EROFS")
        a.expect(f"rmdir {progdir}", "-1 EROFS", "-1 EBUSY")
        a.expect(f"read {victim}", "ok [victim|]")
        assert_unchanged(before, harness.tree_manifest(tmp_path))
        for p in fresh:
            for q in (p, p + "-d", p + "-l", p + "-hl"):
                assert not os.path.lexists(q), f"{q} appeared on the host"
    finally:  # only our own unique names, had the sandbox let them through
        for p in fresh:
            for q in (p, p + "-l", p + "-hl"):
                if os.path.islink(q) or os.path.isfile(q):
                    os.unlink(q)
            if os.path.isdir(p + "-d") and not os.path.islink(p + "-d"):
                os.rmdir(p + "-d")


# A write-heavy run over a host tree: every kind of change, many files.
def _scribble_ops(t: Path) -> list:
    ops = []
    for i in range(40):
        ops += ["create", f"{t}/new{i:02d}.txt"]
    ops += [
        "append", f"{t}/existing.txt",
        "truncate", f"{t}/big.bin",
        "mkdir", f"{t}/newdir",
        "create", f"{t}/newdir/inner.txt",
        "rmdir", f"{t}/emptydir",
        "unlink", f"{t}/victim.txt",
        "rename", f"{t}/a.txt", f"{t}/a-renamed.txt",
        "chmod", f"{t}/mode.txt",
        "utime", f"{t}/time.txt",
        "symlink", "existing.txt", f"{t}/newlink",
        "link", f"{t}/existing.txt", f"{t}/newhard",
        "create", f"{t}/sub/deeper/x.txt",
        "unlink", f"{t}/sub/deeper/gone.txt",
    ]
    return ops


def _scribble_tree(t: Path) -> None:
    (t / "sub" / "deeper").mkdir(parents=True)
    (t / "emptydir").mkdir()
    for name in ("existing.txt", "victim.txt", "a.txt", "mode.txt", "time.txt", "sub/deeper/gone.txt"):
        (t / name).write_text(f"{name}\n")
    (t / "big.bin").write_bytes(os.urandom(300_000))
    for i in range(100):
        (t / "sub" / f"f{i:03d}.txt").write_text(f"file {i}\n" * i)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("mode", ["unmounted", "ro", "rw"])
def test_write_heavy_run_changes_only_a_rw_mount(mode, platform, tmp_path):
    """A hash of a host tree before and after a run that writes all over it:
    unchanged when the tree is not mounted or mounted read-only; changed only
    inside the tree when it is mounted :rw, and a sibling tree is untouched."""
    t = tmp_path / "tree"
    sibling = tmp_path / "sibling"
    _scribble_tree(t)
    _scribble_tree(sibling)
    ops = _scribble_ops(t) + ["rename", f"{t}/existing.txt", f"{sibling}/stolen.txt",
                              "create", f"{sibling}/planted.txt", "create", f"{t}/../planted.txt"]
    options = [] if mode == "unmounted" else ["--mount", f"{t}:{t}:{mode}"]
    before = harness.tree_manifest(tmp_path)
    a = run_ops(platform, None, ops, options)
    after = harness.tree_manifest(tmp_path)
    if mode == "rw":
        assert_unchanged(before, after, allowed_prefix="tree")
        bad = [f"{label}: {rest}" for label, rest in a.lines[:-3]
               if rest.startswith("-1") or " -1 " in rest]
        assert not bad, "writes refused in a :rw mount:\n" + "\n".join(bad)
        a.expect(f"rename {t}/existing.txt {sibling}/stolen.txt", "-1 EXDEV", "-1 ENOENT")
        a.expect(f"create {sibling}/planted.txt", "-1 ENOENT")
        a.expect(f"create {t}/../planted.txt", "-1 EROFS", "-1 EACCES", "-1 ENOENT", "wrote 23")
        assert (t / "new39.txt").read_text() == "written by the sandbox\n"
        assert (t / "existing.txt").read_text() == "existing.txt\nwritten by the sandbox\n"
        assert (t / "big.bin").stat().st_size == 0 and not (t / "victim.txt").exists()
        assert os.readlink(t / "newlink") == "existing.txt" and not (t / "emptydir").exists()
        assert (t / "newhard").stat().st_ino == (t / "existing.txt").stat().st_ino
        assert not (tmp_path / "planted.txt").exists()
    else:
        want = "-1 EROFS" if mode == "ro" else "-1 ENOENT"
        # newdir/inner.txt: its directory was never made, so ENOENT either way
        wrong = [f"{label}: {rest}" for label, rest in a.lines[:-3]
                 if rest != ("-1 ENOENT" if label.endswith("/newdir/inner.txt") else want)]
        assert not wrong, f"expected {want} for every write:\n" + "\n".join(wrong[:30])
        assert_unchanged(before, after)
