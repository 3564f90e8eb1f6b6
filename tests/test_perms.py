"""File permissions on host files, checked against the rules the sandbox sets
itself (sentry/vfs/hostfs.py, sentry/vfs/perm.py): there is no native oracle
for them, since natively the same program is the host's root.

- The system directories lent by the default view are a stranger's to every
  sandbox process, its root included: /etc/shadow, /etc/gshadow and the ssh
  host keys do not open (EACCES); stat shows their host mode, and as owner the
  overflow id 65534 (nobody in the sandbox, as a user namespace shows an
  unmapped id: sentry/vfs/hostids.py).
- In a directory the user lends (--mount, ro or rw), the host user's files are
  the sandbox root's own; another host owner's get their "other" bits only,
  for the sandbox's root too (stat shows them as 65534); uid 65534 is a
  stranger to all of them.
- Through a :rw mount no set-user-ID or set-group-ID file, no device, FIFO
  or socket node, and no change of owner reaches the host; what the sandbox
  makes there belongs to the host user who runs the sentry.

The differential side (Linux's rules on the sandbox's own files, as root and
as 65534) is fixtures/perms.c in tests/test_fixtures.py.
"""
from __future__ import annotations

import glob
import os
import stat

import pytest

import harness
from harness import PLATFORMS

VARIANT = "glibc-static"
SECRETS = ["/etc/shadow", "/etc/gshadow"] + sorted(glob.glob("/etc/ssh/ssh_host_*_key"))
STRANGER = 12345  # a host uid that is nobody in the sandbox


def _read(platform: str, paths, *, options=(), as_nobody=False) -> dict[str, tuple[str, str]]:
    """{path: (its "uid=.. gid=.. mode=.." line, its read result)} from `perms --read` in the sandbox."""
    prog = harness.build("perms", VARIANT)
    args = ["--read"] + (["--as-nobody"] if as_nobody else []) + list(paths)
    run = harness.run_sandbox(platform, prog, args, options=list(options))
    harness.check_sentry_sane(run)
    assert run.status == 0, f"exit {run.status}\n{run.stderr_text()}"
    lines = run.stdout.decode().splitlines()
    assert len(lines) == 2 * len(paths), run.stdout.decode()
    out = {}
    for path, owner, read in zip(paths, lines[::2], lines[1::2]):
        assert owner.startswith(path + ": ") and read.startswith("  read: "), run.stdout.decode()
        out[path] = (owner[len(path) + 2:], read[len("  read: "):])
    return out


def _shown_line(path: str, lent: bool = False) -> str:
    """The line of a host file as the sandbox shows it: its host mode; in a lent directory,
    the host user's ids as the sandbox root's (0), any other owner as 65534."""
    st = os.lstat(path)
    uid = 0 if lent and st.st_uid == os.geteuid() else 65534
    gid = 0 if lent and st.st_gid == os.getegid() else 65534
    return f"uid={uid} gid={gid} mode={stat.S_IMODE(st.st_mode):04o}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_system_secrets_are_closed_to_the_sandbox_root(platform):
    """The system directories' files are a stranger's: the sandbox's root reads what
    any host user may (/etc/passwd), never what the host keeps from them."""
    secrets = [p for p in SECRETS if os.path.exists(p)]
    assert "/etc/shadow" in secrets, "no /etc/shadow on this host"
    for p in secrets:
        assert not os.lstat(p).st_mode & stat.S_IROTH, f"{p} is readable by others on the host: no test"
    seen = _read(platform, secrets + ["/etc/passwd"])
    for p in secrets:
        assert seen[p] == (_shown_line(p), "-1 EACCES"), f"{p}: {seen[p]}"
    assert seen["/etc/passwd"] == (_shown_line("/etc/passwd"), "ok")


def _lent_tree(tmp_path) -> str:
    d = tmp_path / "lent"
    d.mkdir()
    os.chmod(d, 0o755)  # 65534 may cross it (the sandbox's view of its parents is its own)
    for name, mode, uid in (("own600", 0o600, None), ("own644", 0o644, None),
                            ("stranger600", 0o600, STRANGER), ("stranger644", 0o644, STRANGER),
                            ("stranger660", 0o660, STRANGER)):
        (d / name).write_text(name + "\n")
        os.chmod(d / name, mode)
        if uid is not None:
            os.chown(d / name, uid, os.getegid())
    return str(d)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_lent_files_of_other_host_owners(mode, platform, tmp_path):
    """In a --mount, the host user's files are the sandbox root's; another owner's give
    every sandbox process their "other" bits only (the group bits for the host
    user's group); 65534 is a stranger to all."""
    d = _lent_tree(tmp_path)
    names = ["own600", "own644", "stranger600", "stranger644", "stranger660"]
    paths = [f"{d}/{n}" for n in names]
    options = ["--mount", f"{d}:{d}:{mode}"]
    before = harness.tree_manifest(d)
    root = _read(platform, paths, options=options)
    assert {n: root[p][1] for n, p in zip(names, paths)} == {
        "own600": "ok", "own644": "ok", "stranger600": "-1 EACCES", "stranger644": "ok",
        "stranger660": "ok"}, root  # 0660 with the host user's group: the sandbox root's group
    for p in paths:
        assert root[p][0] == _shown_line(p, lent=True), f"stat of {p} inside: {root[p][0]}"
    nobody = _read(platform, paths, options=options, as_nobody=True)
    assert {n: nobody[p][1] for n, p in zip(names, paths)} == {
        "own600": "-1 EACCES", "own644": "ok", "stranger600": "-1 EACCES", "stranger644": "ok",
        "stranger660": "-1 EACCES"}, nobody
    assert not harness.manifest_diff(before, harness.tree_manifest(d), "before", "after")


HOST_EXPECT = """\
chmod f 06755: -1 EPERM
chmod f 04755: -1 EPERM
chmod f 02755: -1 EPERM
chmod f 0750: 0
chown f 12345: -1 EPERM
chown f -1 12345: -1 EPERM
mknod char device: -1 EPERM
mknod block device: -1 EPERM
mknod fifo: -1 EPERM
mkfifo: -1 EPERM
mknod socket: -1 EPERM
bind a socket: -1 EPERM
create 06755: ok
  owner: uid={uid} gid={gid} mode=0755
mkdir 07777: 0
  owner: uid={uid} gid={gid} mode=1755
mknod regular 06755: 0
  owner: uid={uid} gid={gid} mode=0755
O_TMPFILE 06755: 0
  owner: uid={uid} gid={gid} mode=0755
  linked: 0
write f: ok
f: uid={uid} gid={gid} mode=0750
"""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rw_mount_takes_no_setid_bits_nodes_or_owners(platform, tmp_path):
    """chmod 6755, mknod of devices, FIFOs and sockets, chown, set-id bits on new files:
    refused or stripped through a :rw mount; the host tree shows only the allowed
    changes, each new entry owned by the host user who ran the sentry."""
    d = tmp_path / "rw"
    d.mkdir()
    (d / "f").write_text("f\n")
    os.chmod(d / "f", 0o644)
    before = harness.tree_manifest(d, root_times=False)
    prog = harness.build("perms", VARIANT)
    run = harness.run_sandbox(platform, prog, ["--host", str(d)], options=["--mount", f"{d}:{d}:rw"])
    harness.check_sentry_sane(run)
    assert run.status == 0, run.stderr_text()
    assert run.stdout.decode() == HOST_EXPECT.format(uid=0, gid=0)  # the host user's: the sandbox root's
    uid, gid = os.geteuid(), os.getegid()
    after = harness.tree_manifest(d, root_times=False)
    new = {"new-setid", "new-dir", "new-node", "new-tmpfile"}
    assert set(after) == set(before) | new, harness.manifest_diff(before, after, "before", "after")
    for rel, (kind, mode, u, g, *_rest) in after.items():
        assert kind in ("file", "dir"), f"{rel} is a {kind} on the host"
        assert not int(mode, 8) & (stat.S_ISUID | stat.S_ISGID), f"{rel} has mode {mode} on the host"
        assert (u, g) == (uid, gid), f"{rel} is owned by {u}:{g} on the host"
    assert after["f"][1] == "0o750" and after["f"][6] == before["f"][6]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rootfs_owners_are_sandbox_ids(platform, tmp_path):
    """--rootfs is the sandbox's own image: its stored owners are sandbox ids, so its
    root is privileged over a file of any owner, and a file stored as 65534's is
    65534's inside (a lent directory would make both a stranger's)."""
    import shutil
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(harness.build("perms", VARIANT), root / "bin" / "perms")
    for name, uid in (("stranger600", STRANGER), ("nobody600", 65534)):
        (root / "data" / name).write_text(name + "\n")
        os.chmod(root / "data" / name, 0o600)
        os.chown(root / "data" / name, uid, uid)
    paths = ["/data/stranger600", "/data/nobody600"]
    options = ["--rootfs", str(root)]
    prog = "/bin/perms"
    for as_nobody, want in ((False, ["ok", "ok"]), (True, ["-1 EACCES", "ok"])):
        args = ["--read"] + (["--as-nobody"] if as_nobody else []) + paths
        run = harness.run_sandbox(platform, prog, args, options=options)
        harness.check_sentry_sane(run)
        reads = [line.split(": ", 1)[1] for line in run.stdout.decode().splitlines() if line.startswith("  read")]
        assert reads == want, f"as {'65534' if as_nobody else 'root'}: {run.stdout.decode()}\n{run.stderr_text()}"


def test_host_file_owners_as_the_sandbox_sees_them(tmp_path):
    """HostFS's two kinds, without running a program: lent (the host user's ids are the
    sandbox's 0, others' nobody's) and the system's (all nobody's)."""
    from sentry.vfs.hostfs import HostFS
    (tmp_path / "own").write_text("x")
    (tmp_path / "other").write_text("x")
    os.chown(tmp_path / "other", STRANGER, STRANGER)
    lent = HostFS(str(tmp_path), readonly=True, lent=True).root
    system = HostFS(str(tmp_path), readonly=True).root
    assert lent.lookup(b"own").owner() == (0, 0)
    assert lent.lookup(b"other").owner() == (None, None)
    assert system.lookup(b"own").owner() == (None, None)
    # stat shows the ids the checks use: the sandbox's, else the overflow id
    assert (lent.lookup(b"own").stat().uid, lent.lookup(b"own").stat().gid) == (0, 0)
    assert (lent.lookup(b"other").stat().uid, system.lookup(b"own").stat().gid) == (65534, 65534)
