"""Real programs nobody here wrote, over a fixture tree, compared with native
runs: the host's dynamically linked coreutils, grep, find, tar and python3,
and busybox's applets (issue 4, "What must be shown").

One small deterministic tree (nested directories, a few hundred files of
known content, symlinks inside the tree, a hard link, odd names and modes,
fixed mtimes) is built under pytest's tmp dir.  Its parent ROOT is mounted in
the sandbox at the SAME path, read-only, and the program runs with --workdir
TREE natively and sandboxed, so that paths, `..` of the tree, owners and
times are the same on both sides.  Programs that write get a fresh OUT
directory mounted :rw at its own path; the native run writes there first, the
tree it leaves is recorded and removed, then the sandboxed run writes there,
and the two trees must be the same.

Most runs are one program, its stdin fed by the test; the `*-pipe` writers
join two programs of the sandbox with a pipe, and `ldd` runs ld.so from a
shell script.  Output whose order is the directory's (find,
grep -r, busybox tar) is compared sorted: the sandbox may list a directory in
another order than the host's filesystem does.  The sentry may add its own
`sentry: ...` lines on stderr (unsupported syscalls), nothing else.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass

import pytest

import harness
from harness import PLATFORMS

BB = harness.BUSYBOX
PYTHON = "/usr/bin/python3"
TIMEOUT = 40  # per program run

# Fixed times: 2020-09-13 + i hours, with nanoseconds that a truncation would lose.
T0 = 1_600_000_000
NS = 123_456_789

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def _rng(seed: int):
    x = seed * 2654435761 % (1 << 64) or 1
    while True:
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        yield x


def _text(seed: int, lines: int) -> bytes:
    r = _rng(seed)
    out = []
    for i in range(lines):
        n = 3 + next(r) % 8
        words = [WORDS[next(r) % len(WORDS)] for _ in range(n)]
        if next(r) % 13 == 0:
            words.insert(next(r) % len(words), "needle")
        out.append(f"{i:04d} " + " ".join(words))
    return ("\n".join(out) + "\n").encode()


def build_tree(tree: str) -> list[str]:
    """Create the fixture tree at `tree` (which must not exist); return the
    relative paths of its regular files, sorted."""
    os.makedirs(tree)
    files: dict[str, bytes] = {}
    files["README.txt"] = b"A fixture tree for sentry's real-program tests.\nneedle in the readme\n"
    files["data/words.txt"] = _text(1, 3000)  # ~120 KiB: several reads, more than a pipe holds
    files["data/numbers.csv"] = b"".join(b"%s,%d,%d\n" % (WORDS[i % 26].encode(), (i * 7919) % 1000, i)
                                         for i in range(500))
    files["data/config.json"] = json.dumps(
        {"name": "tree", "version": [1, 2, 3], "nested": {"k": "v", "list": list(range(20))},
         "unicode": "\u00fcn\u00efc\u00f6d\u00e9", "float": 2.5, "none": None}, indent=2, sort_keys=True).encode()
    files["data/empty.txt"] = b""
    files["bin/blob.bin"] = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(6400))  # 200 KiB
    files["bin/run.sh"] = b"#!/bin/sh\necho run\n"
    files["name with spaces.txt"] = b"spaces in the name\n"
    files["\u00fcn\u00efc\u00f6d\u00e9.txt"] = "unicode name, needle too\n".encode()
    files[".hidden"] = b"hidden file\n"
    files["private/secret.txt"] = b"only the owner reads this\n"
    for p in range(6):
        for m in range(5):
            for f in range(10):
                seed = 1000 + p * 100 + m * 10 + f
                files[f"src/pkg{p}/mod{m}/file{f}.txt"] = _text(seed, 1 + seed % 37)
    for rel, data in files.items():
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    os.makedirs(os.path.join(tree, "empty"))
    os.chmod(os.path.join(tree, "bin/run.sh"), 0o755)
    os.chmod(os.path.join(tree, "src/pkg0/mod0/file0.txt"), 0o600)
    os.chmod(os.path.join(tree, "private/secret.txt"), 0o400)
    os.chmod(os.path.join(tree, "private"), 0o700)
    # links inside the tree
    os.symlink("data/words.txt", os.path.join(tree, "link-rel"))
    os.symlink("src/pkg1", os.path.join(tree, "link-dir"))
    os.symlink("../README.txt", os.path.join(tree, "data/link-up"))
    os.symlink("does-not-exist", os.path.join(tree, "dangling"))
    os.link(os.path.join(tree, "data/words.txt"), os.path.join(tree, "data/words-hard.txt"))
    names = sorted(files) + ["data/words-hard.txt"]
    regular = sorted(names)
    sums = "".join(f"{hashlib.sha256(files.get(n, files['data/words.txt'])).hexdigest()}  {n}\n" for n in regular)
    with open(os.path.join(tree, "SHA256SUMS"), "w") as fh:
        fh.write(sums)
    return sorted(regular + ["SHA256SUMS"])


def set_times(top: str) -> None:
    """Give every entry under top (and top) a fixed mtime/atime, children first."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in sorted(dirnames + filenames):
            entries.append(os.path.join(dirpath, n))
    entries.sort(key=lambda p: (-p.count("/"), p))
    for i, p in enumerate(entries + [top]):
        t = (T0 + 3600 * i) * 10**9 + NS
        os.utime(p, ns=(t, t), follow_symlinks=False)


class Tree:
    def __init__(self, root: str):
        self.root = root  # mounted read-only at the same path
        self.path = os.path.join(root, "tree")  # the workdir
        self.files = build_tree(self.path)
        set_times(root)
        self.manifest = harness.tree_manifest(self.path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    return Tree(str(tmp_path_factory.mktemp("realprogs")))


def _options(tree: Tree, out: str | None = None) -> list[str]:
    opts = ["--mount", f"{tree.root}:{tree.root}:ro", "--workdir", tree.path]
    if out is not None:
        opts += ["--mount", f"{out}:{out}:rw"]
    return opts


def _native(tree: Tree, argv, stdin=None):
    run = harness.run_native(argv[0], argv[1:], stdin=stdin, cwd=tree.path, timeout=TIMEOUT)
    assert not run.timed_out, f"native {argv} timed out"
    return run


def _sandbox(platform, tree: Tree, argv, stdin=None, out=None):
    return harness.run_sandbox(platform, argv[0], argv[1:], stdin=stdin, options=_options(tree, out),
                               timeout=TIMEOUT)


def _sorted_lines(run: harness.Run) -> harness.Run:
    lines = run.stdout.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    return harness.Run(run.where, run.argv, run.status, b"".join(sorted(lines)), run.stderr,
                       run.timed_out, run.extra)


def _label(argv) -> str:
    argv = [str(a) for a in argv]
    if argv[0] == PYTHON and "-c" in argv:  # not the whole script
        i = argv.index("-c") + 1
        argv[i] = "<file-work script>"
    return " ".join(argv)[:200]


def _check_tree_intact(tree: Tree) -> None:
    now = harness.tree_manifest(tree.path)
    diff = harness.manifest_diff(tree.manifest, now, "before", "after")
    assert not diff, f"the read-only fixture tree changed on the host:\n{diff}"


# --------------------------------------------------------------------------
# programs that only read the tree: stdout, exit status and stderr as native


@dataclass(frozen=True)
class Prog:
    id: str
    argv: tuple  # "{files}" expands to every regular file of the tree, "{out}" to the rw directory
    stdin: bytes | str | None = None  # bytes, or "tar"/"bbtar": an archive of the tree made natively
    sort: bool = False  # compare stdout sorted (the order is the directory's)
    status: int = 0  # the native exit status
    unicorn: bool = False  # also under unicorn (see _params)


def _params(progs):
    """Every program runs under ptrace.  The path walk, the VFS and the
    handlers are the same on both platforms, and the emulator makes the
    compute of these programs slow (busybox grep -r or python3's start take
    seconds), so under unicorn runs a subset that still goes through every
    kind of file syscall (reads, getdents, stat, readlink, writes)."""
    out = []
    for prog in progs:
        for platform in PLATFORMS:
            if platform == "ptrace" or prog.unicorn:
                out.append(pytest.param(prog, platform, id=f"{prog.id}-{platform}"))
    return out


STDIN_WORDS = b"".join(_text(7, 2000).splitlines(keepends=True)[::-1])

READERS = [
    # -R: the tree's `..` is ROOT, which is mounted too, so every line is comparable
    Prog("ls-laR", ("/bin/ls", "-laR", "--time-style=+", "."), unicorn=True),
    Prog("ls-laR-full-time", ("/bin/ls", "-laR", "--time-style=full-iso", ".")),
    Prog("ls-1", ("/bin/ls", "-1AR", "--indicator-style=classify", ".", "link-dir", "dangling")),
    # (no -i: inode numbers of lent files are the sandbox's own; link counts show the hard link)
    Prog("ls-ld", ("/bin/ls", "-ld", "--time-style=+", "data/words.txt", "data/words-hard.txt", "link-rel", "src"),
         unicorn=True),
    Prog("ls-missing", ("/bin/ls", "-la", "no-such-file"), status=2),
    Prog("cat", ("/bin/cat", "data/words.txt", "bin/blob.bin", "name with spaces.txt", "link-rel", "data/link-up",
                 "\u00fcn\u00efc\u00f6d\u00e9.txt", "data/empty.txt"), unicorn=True),
    Prog("cat-errors", ("/bin/cat", "src", "dangling", "private/secret.txt"), status=1, unicorn=True),
    Prog("sort", ("/usr/bin/sort", "data/words.txt")),
    Prog("sort-keys", ("/usr/bin/sort", "-t,", "-k2,2n", "-k1,1r", "data/numbers.csv")),
    Prog("sort-stdin", ("/usr/bin/sort", "-u", "-k2"), stdin=STDIN_WORDS, unicorn=True),
    Prog("grep-r", ("/bin/grep", "-rn", "needle", "."), sort=True),
    Prog("grep-R-count", ("/bin/grep", "-Rc", "needle", "src", "link-dir", "README.txt"), sort=True),
    Prog("grep-r-include", ("/bin/grep", "-rlw", "--include=*.txt", "zulu", "src/pkg3"), sort=True),
    Prog("find-printf", ("/usr/bin/find", ".", "-printf", "%p %y %Y %m %n %s %U %G %l %T@\\n"), sort=True,
         unicorn=True),
    Prog("find-tests", ("/usr/bin/find", ".", "-type", "f", "-size", "+1k", "-name", "*.txt",
                        "-newer", "src/pkg2/mod2/file5.txt"), sort=True),
    Prog("find-L", ("/usr/bin/find", "-L", ".", "-maxdepth", "2", "-type", "d"), sort=True),
    Prog("sha256sum", ("/usr/bin/sha256sum", "{files}"), unicorn=True),
    Prog("sha256sum-c", ("/usr/bin/sha256sum", "-c", "SHA256SUMS")),
    Prog("tar-c", ("/bin/tar", "--sort=name", "-cf", "-", "."), unicorn=True),
    Prog("bb-ls", (BB, "ls", "-laR", "."), unicorn=True),
    Prog("bb-find", (BB, "find", ".", "-type", "f", "-name", "*.txt"), sort=True),
    Prog("bb-find-all", (BB, "find", "."), sort=True, unicorn=True),
    Prog("bb-grep", (BB, "grep", "-rn", "needle", "."), sort=True),
    Prog("bb-sed", (BB, "sed", "-n", "s/needle/NEEDLE/gp", "data/words.txt")),
    Prog("bb-awk", (BB, "awk", "-F,", "{s += $2; n[$1]++} END {print s, NR; for (k in n) c++; print c}",
                    "data/numbers.csv")),
    Prog("bb-sort", (BB, "sort", "-k2", "data/words.txt")),
    Prog("bb-wc", (BB, "wc", "{files}")),
    Prog("bb-gzip", (BB, "gzip", "-c", "bin/blob.bin", "data/words.txt"), unicorn=True),
    Prog("bb-md5sum", (BB, "md5sum", "{files}")),
]


def _expand(argv, tree: Tree) -> list[str]:
    out = []
    for a in argv:
        out += tree.files if a == "{files}" else [a]
    return out


@pytest.mark.parametrize("prog,platform", _params(READERS))
def test_reader(prog: Prog, platform, tree):
    if prog.argv[0] == BB:
        harness.require_busybox()
    argv = _expand(prog.argv, tree)
    native = _native(tree, argv, prog.stdin)
    assert native.status == prog.status, f"native {_label(argv)}: exit {native.status}\n{native.stderr_text()}"
    assert native.stdout or native.stderr, f"native {_label(argv)} printed nothing: nothing to compare"
    sandbox = _sandbox(platform, tree, argv, prog.stdin)
    if prog.sort:
        native, sandbox = _sorted_lines(native), _sorted_lines(sandbox)
    harness.compare(native, sandbox, stderr="notes", label=_label(argv))
    _check_tree_intact(tree)


# --------------------------------------------------------------------------
# archives: what tar wrote, read back by another program


def _tar_members(data: bytes) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        out = []
        for m in tf.getmembers():
            content = hashlib.sha256(tf.extractfile(m).read()).hexdigest() if m.isfile() else None
            out.append((m.name, m.type, oct(m.mode), m.uid, m.gid, m.size, int(m.mtime), m.linkname, content))
    return sorted(out)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_tar_create(platform, tree):
    """busybox tar c writes members in directory order: compare the members."""
    harness.require_busybox()
    argv = [BB, "tar", "-cf", "-", "."]
    native = _native(tree, argv)
    assert native.status == 0, native.stderr_text()
    sandbox = _sandbox(platform, tree, argv)
    harness.check_sentry_sane(sandbox)
    assert sandbox.status == 0, f"exit {sandbox.status}\n{sandbox.stderr_text()}"
    assert harness.strip_sentry_notes(sandbox.stderr) == native.stderr, sandbox.stderr_text()
    try:
        got = _tar_members(sandbox.stdout)
    except tarfile.TarError as e:
        harness.fail(f"the sandbox's archive is not a tar archive ({e}): "
                     f"{len(sandbox.stdout)} bytes\n{sandbox.stderr_text()}")
    want = _tar_members(native.stdout)
    assert got == want, "archive members differ:\n" + "\n".join(
        f"  native {w}\n  sandbox {g}" for w, g in zip(want, got) if w != g)[:4000]


@pytest.mark.parametrize("prog,platform", [("gnu", "ptrace"), ("gnu", "unicorn"), ("busybox", "ptrace")])
def test_tar_list(prog, platform, tree):
    """tar tv of an archive fed on stdin (made natively from the tree)."""
    archive = _native(tree, ["/bin/tar", "--sort=name", "-cf", "-", "."]).stdout
    argv = ["/bin/tar", "-tvf", "-"] if prog == "gnu" else [BB, "tar", "-tvf", "-"]
    native = _native(tree, argv, archive)
    assert native.status == 0, native.stderr_text()
    sandbox = _sandbox(platform, tree, argv, archive)
    harness.compare(native, sandbox, stderr="notes", label=_label(argv))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_gunzip_stdin(platform, tree):
    harness.require_busybox()
    packed = _native(tree, [BB, "gzip", "-c", "data/words.txt"]).stdout
    argv = [BB, "gzip", "-dc"]
    native = _native(tree, argv, packed)
    assert native.stdout == open(os.path.join(tree.path, "data/words.txt"), "rb").read()
    sandbox = _sandbox(platform, tree, argv, packed)
    harness.compare(native, sandbox, stderr="notes", label="busybox gzip -dc")


# --------------------------------------------------------------------------
# programs that write into a :rw mount: the trees they leave must be the same


def _python_script() -> str:
    return r'''
import hashlib, json, os, shutil, sys
out = sys.argv[1]
top = sorted(os.listdir("."))
walk = []
for dirpath, dirnames, filenames in os.walk("."):
    dirnames.sort()
    for n in sorted(filenames):
        p = os.path.join(dirpath, n)
        if os.path.islink(p):
            walk.append([p, "->", os.readlink(p)])
        else:
            with open(p, "rb") as f:
                walk.append([p, hashlib.sha256(f.read()).hexdigest()[:16]])
with open("data/config.json") as f:
    config = json.load(f)
with open(os.path.join(out, "config-copy.json"), "w") as f:
    json.dump(config, f, indent=1, sort_keys=True)
with open(os.path.join(out, "config-copy.json")) as f:
    assert json.load(f) == config
shutil.copytree(".", os.path.join(out, "copy"), symlinks=True)
os.makedirs(os.path.join(out, "made/deep/er"))
with open(os.path.join(out, "made/deep/er/text.txt"), "w", encoding="utf-8") as f:
    f.write("\u00fcn\u00efc\u00f6d\u00e9\n" * 100)
os.rename(os.path.join(out, "made/deep/er/text.txt"), os.path.join(out, "made/text.txt"))
os.remove(os.path.join(out, "copy/README.txt"))
shutil.rmtree(os.path.join(out, "copy/src/pkg5"))
print(json.dumps({"top": top, "files": len(walk), "walk": walk, "config": config}, sort_keys=True))
'''


# sqlite (libsqlite3 through python3's module): byte-range locks, pwrite, fsync,
# truncation, a rollback journal, and in WAL mode a shared mapping of the -shm file.
SQLITE_SCRIPT = r'''
import os, sqlite3, sys
out = sys.argv[1]
for mode in ("delete", "truncate", "wal"):
    for page in (1024, 4096, 65536, 512):
        p = os.path.join(out, f"{mode}-{page}.db")
        c = sqlite3.connect(p)
        c.execute(f"pragma page_size={page}")
        c.execute(f"pragma journal_mode={mode}")
        c.execute("create table t(a integer primary key, b text)")
        with c:
            c.executemany("insert into t(b) values (?)", (("v%05d" % (i * 7919 % 5000),) for i in range(5000)))
        c.execute("create index ib on t(b)")
        with c:
            c.execute("delete from t where a % 3 = 0")
        reader = sqlite3.connect(p)
        print(mode, page, reader.execute("select count(*), min(b), max(b) from t").fetchone(),
              reader.execute("pragma integrity_check").fetchone()[0])
        reader.close()
        if mode != "wal":
            c.execute("vacuum")
        c.close()
print(sorted(os.listdir(out)))
'''


WRITERS = [
    Prog("cp-a", ("/bin/cp", "-a", ".", "{out}/copy"), unicorn=True),
    Prog("cp-r", ("/bin/cp", "-r", "src", "data", "{out}")),
    Prog("tar-x", ("/bin/tar", "-xf", "-", "-C", "{out}"), stdin="tar", unicorn=True),
    Prog("bb-tar-x", (BB, "tar", "-xf", "-", "-C", "{out}"), stdin="bbtar"),
    Prog("bb-cp-a", (BB, "cp", "-a", ".", "{out}/copy")),
    Prog("python3", (PYTHON, "-I", "-c", _python_script(), "{out}")),
    Prog("python3-sqlite", (PYTHON, "-I", "-c", SQLITE_SCRIPT, "{out}"), unicorn=True),
    # pipelines: two programs of the sandbox joined by a pipe (issue 4 waited for fork)
    Prog("tar-pipe", ("/bin/sh", "-c", "tar --sort=name -cf - . | tar -xf - -C {out}"), unicorn=True),
    Prog("bb-tar-pipe", (BB, "sh", "-c", "tar -cf - . | tar -xf - -C {out} && echo piped")),
]


def _native_writes(tree: Tree, argv, stdin, out: str) -> tuple[harness.Run, dict]:
    """Run natively into out; return the run and the tree it left (then removed)."""
    native = _native(tree, argv, stdin)
    assert native.status == 0, f"native {_label(argv)}: exit {native.status}\n{native.stderr_text()}"
    made = harness.tree_manifest(out, root_times=False)
    shutil.rmtree(out)
    os.mkdir(out)
    return native, made


@pytest.mark.parametrize("prog,platform", _params(WRITERS))
def test_writer(prog: Prog, platform, tree, tmp_path):
    """The program writes into OUT natively (twice: an mtime that differs
    between two native runs is "now", not compared), then in the sandbox; the
    trees must be the same, and the output too."""
    if prog.argv[0] == BB:
        harness.require_busybox()
    if prog.argv[0] == PYTHON:
        harness.require_program(PYTHON)
    out = str(tmp_path / "out")
    os.mkdir(out)
    argv = [a.replace("{out}", out) for a in prog.argv]
    stdin = prog.stdin
    if stdin == "tar":
        stdin = _native(tree, ["/bin/tar", "--sort=name", "-cf", "-", "."]).stdout
    elif stdin == "bbtar":
        stdin = _native(tree, [BB, "tar", "-cf", "-", "."]).stdout

    native, want = _native_writes(tree, argv, stdin, out)
    _, again = _native_writes(tree, argv, stdin, out)
    assert len(want) > 10, f"native {_label(argv)} wrote almost nothing: {sorted(want)}"
    assert {k: v[:-1] for k, v in want.items()} == {k: v[:-1] for k, v in again.items()}, (
        f"two native runs of {_label(argv)} left different trees:\n"
        + harness.manifest_diff(want, again, "first", "second"))
    now = {k for k in want if want[k][-1] != again[k][-1]}

    def comparable(m: dict) -> dict:
        return {k: (v[:-1] + (None,) if k in now else v) for k, v in m.items()}

    sandbox = _sandbox(platform, tree, argv, stdin, out=out)
    harness.compare(native, sandbox, stderr="notes", label=_label(argv), guest_tracebacks=argv[0] == PYTHON)
    got = harness.tree_manifest(out, root_times=False)
    diff = harness.manifest_diff(comparable(want), comparable(got))
    assert not diff, f"{_label(argv)} left another tree in the rw mount than natively:\n{diff}"
    _check_tree_intact(tree)


# --------------------------------------------------------------------------
# ldd: a shell script that runs ld.so --list


def _libraries(out: bytes) -> list[str]:
    """`name => path` or `path` of each line, without load addresses; the vDSO (which
    the sandbox does not map: its calls go through the sentry) left out."""
    libs = []
    for line in out.decode().splitlines():
        line = line.strip().rsplit(" (0x", 1)[0]
        if line and not line.startswith("linux-vdso"):
            libs.append(line)
    return libs


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ldd(platform, tree):
    argv = ["/usr/bin/ldd", "/bin/ls", "/usr/bin/python3"]
    native = _native(tree, argv)
    assert native.status == 0 and b"libc.so.6" in native.stdout, native.stderr_text()
    sandbox = _sandbox(platform, tree, argv)
    harness.check_sentry_sane(sandbox)
    assert sandbox.status == 0, sandbox.stderr_text()
    assert _libraries(sandbox.stdout) == _libraries(native.stdout)
