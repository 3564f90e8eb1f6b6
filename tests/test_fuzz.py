"""Fuzzing the sentry (issue 15): random syscalls from inside the sandbox, and mutated ELF
binaries given to `sentry run`. Whatever the guest does, the sentry must end normally: no
Python traceback, no "internal error", the guest's own exit status, bounded memory, and
the host unchanged.

CI runs a bounded amount; more with the environment:
  SENTRY_FUZZ_CALLS=N    syscalls per platform (default 5000)
  SENTRY_FUZZ_MUTANTS=N  ELF mutants per platform (default 100)
  SENTRY_FUZZ_SEED=N     the seed (default 1): a failure names its seed, and the same
                         seed reproduces it

fixtures/fuzz_syscalls.c is never run natively (it refuses unless it is pid 1 of the
sandbox's host name): it would call anything on the host.
"""
from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import harness
import stubwatch
from harness import PLATFORMS

CALLS = int(os.environ.get("SENTRY_FUZZ_CALLS", "5000"))
MUTANTS = int(os.environ.get("SENTRY_FUZZ_MUTANTS", "100"))
SEED = int(os.environ.get("SENTRY_FUZZ_SEED", "1"))
BATCH = 50
SENTRY = [sys.executable, "-m", "sentry", "run"]
PEAK_RSS = 400 << 20  # the sentry's; a fuzzed run takes well under 100 MB




def _run(argv, timeout: float):
    """Run the sentry in a session of its own; return (status, stdout, stderr, seconds,
    peak RSS in bytes of the sentry and what it waited for, its session id)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=harness.sentry_host_env(), cwd=harness.REPO, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                proc.wait()
                pytest.fail(f"ran past {timeout} s: {' '.join(map(str, argv))}", pytrace=False)
            time.sleep(0.02)
        out.seek(0), err.seek(0)
        return (os.waitstatus_to_exitcode(status), out.read(), err.read(), time.monotonic() - start,
                usage.ru_maxrss * 1024, proc.pid)


def _no_sentry_failure(stderr: bytes, what: str) -> None:
    text = stderr.decode(errors="replace")
    assert "Traceback (most recent call last)" not in text, f"{what}: a Python traceback\n{text[-3000:]}"
    assert "internal error" not in text, f"{what}: an internal error\n{text[-3000:]}"


# --- syscalls -----------------------------------------------------------------------------------

@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_syscall_fuzz(platform, tmp_path):
    """SENTRY_FUZZ_CALLS random syscalls, BATCH per child, with a host directory lent
    read-write at /fz: the sentry ends with the fuzzer's own status 0, says nothing but
    `sentry: ` notes, stays under PEAK_RSS, and leaves no host process and the host
    file beside the lent directory as it was."""
    program = harness.build("fuzz_syscalls", "glibc-static")
    lent = tmp_path / "lent"
    lent.mkdir()
    canary = tmp_path / "canary"
    canary.write_bytes(b"the host's\n")
    before = os.stat(canary)
    argv = [*SENTRY, "--platform", platform, "--verbose", "--memory", "512M", "--max-procs", "64",
            "--tmpfs-size", "256M", "--timeout", "200", "--mount", f"{lent}:/fz:rw",
            str(program), str(SEED), str(CALLS), str(BATCH), "/fz"]
    status, out, err, took, rss, sid = _run(argv, timeout=230)
    what = f"{platform} seed {SEED}"
    _no_sentry_failure(err, what)
    others = [line for line in err.decode(errors="replace").splitlines() if not line.startswith("sentry: ")]
    assert not others, f"{what}: stderr lines not the sentry's: {others[:5]}"
    assert status == 0, f"{what}: exit {status}\n{out.decode(errors='replace')}\n{err.decode(errors='replace')[-2000:]}"
    # the parent's figures, its last lines (a child could still reach the run's stdout)
    figures = {m[1]: int(m[2]) for m in re.finditer(rb"^([a-z-]+) (\d+)$", out, re.M)}
    figures = {k.decode(): v for k, v in figures.items()}
    assert len(figures) == 7, f"{what}: figures not found in {out[-500:]!r}"
    print(f"\n{what}: {figures} in {took:.1f} s, sentry peak RSS {rss >> 20} MB")
    assert figures["setup-failed"] == 0, figures
    assert figures["batches"] == -(-CALLS // BATCH), figures
    assert figures["calls"] >= CALLS * 3 // 4, figures  # a batch killed early issues fewer
    assert figures["distinct"] >= min(300, CALLS // 5), figures
    assert rss < PEAK_RSS, f"{what}: sentry peak RSS {rss >> 20} MB"
    assert canary.read_bytes() == b"the host's\n"
    after = os.stat(canary)
    assert (after.st_mtime_ns, after.st_ino, after.st_mode) == (before.st_mtime_ns, before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "lent"]
    assert stubwatch.session_members(sid) == [], f"{what}: host processes of the sandbox left behind"


# --- ELF binaries ---------------------------------------------------------------------------------

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP = 1, 3
BIG = [0, 1, 0xfff, 0x1000, 1 << 31, 1 << 32, 1 << 40, 1 << 46, (1 << 47) - 0x1000, 1 << 47,
       1 << 63, (1 << 64) - 1, (1 << 64) - 0x1000]


def _bases() -> list[tuple[str, bytes]]:
    names = [("glibc-static", "hello"), ("musl-static", "hello"), ("glibc-dynamic", "hello"),
             ("glibc-static-pie", "hello")]
    out = [(f"{v}/{n}", harness.build(n, v).read_bytes()) for v, n in names]
    out.append(("/bin/true", Path("/bin/true").read_bytes()))
    return out


def _mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutant of an ELF image and what was done to it."""
    b = bytearray(data)
    ident, etype, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum, \
        shentsize, shnum, shstrndx = EHDR.unpack_from(b)
    phdrs = [list(PHDR.unpack_from(b, phoff + i * phentsize)) for i in range(phnum)]
    loads = [i for i, p in enumerate(phdrs) if p[0] == PT_LOAD]
    interp = [i for i, p in enumerate(phdrs) if p[0] == PT_INTERP]

    def big() -> int:
        return rng.choice(BIG) if rng.random() < 0.7 else rng.getrandbits(64)

    kind = rng.choice(["entry", "phdr-field", "phdr-field", "memsz", "offset", "overlap", "interp",
                       "header", "phnum", "bytes", "truncate", "type"])
    note = kind
    if kind == "entry":
        entry = rng.choice([0, 1, big(), entry + rng.randrange(-0x10000, 0x10000)]) & ((1 << 64) - 1)
        note += f" {entry:#x}"
    elif kind in ("phdr-field", "memsz", "offset", "overlap", "type") and phdrs:
        i = rng.choice(loads or range(len(phdrs)))
        p = phdrs[i]
        if kind == "phdr-field":
            f = rng.randrange(1, 8)  # flags, offset, vaddr, paddr, filesz, memsz, align
            p[f] = big() if f != 1 else rng.getrandbits(32)
            note += f" phdr {i} field {f} = {p[f]:#x}"
        elif kind == "memsz":
            p[6] = rng.choice([1 << 32, 1 << 40, 1 << 42, (1 << 47) - p[3], p[5] + rng.randrange(1 << 30)])
            note += f" phdr {i} memsz {p[6]:#x}"
        elif kind == "offset":
            p[2] = rng.choice([len(data), len(data) - 1, len(data) + 0x1000, big(), p[2] + 0x1000])
            p[5] = rng.choice([p[5], p[5] + 0x100000, big()])
            note += f" phdr {i} offset {p[2]:#x} filesz {p[5]:#x}"
        elif kind == "overlap" and len(loads) > 1:
            j = rng.choice([k for k in loads if k != i])
            p[3] = phdrs[j][3] + rng.choice([0, 0x10, 0x1000])
            note += f" phdr {i} vaddr onto phdr {j}"
        elif kind == "type":
            p[0] = rng.choice([PT_LOAD, PT_INTERP, 2, 4, 6, 7, 0x6474e551, 0x6474e553, rng.getrandbits(32)])
            note += f" phdr {i} type {p[0]:#x}"
        PHDR.pack_into(b, phoff + i * phentsize, *p)
    elif kind == "interp" and interp:
        p = phdrs[interp[0]]
        choice = rng.choice(["path", "no-nul", "size", "self"])
        paths = [b"/nonexistent/ld.so", b"/bin/true", b"/etc/passwd", b"/proc/self/exe", b"/", b"",
                 b"/dev/zero", b"lib/ld.so", b"/tmp"]
        if choice == "path":
            new = rng.choice(paths) + b"\0"
            if len(new) <= p[5]:
                b[p[2]:p[2] + p[5]] = new.ljust(p[5], b"\0")
        elif choice == "no-nul":
            b[p[2]:p[2] + p[5]] = b"A" * p[5]
        elif choice == "size":
            p[5] = rng.choice([0, 1, 4096, 1 << 20, big()])
            PHDR.pack_into(b, phoff + interp[0] * phentsize, *p)
        else:
            p[2] = 0  # the ELF header itself as the path
            PHDR.pack_into(b, phoff + interp[0] * phentsize, *p)
        note += f" {choice}"
    elif kind == "header":
        field = rng.choice(["phoff", "phentsize", "type", "machine", "class", "data", "version"])
        if field == "phoff":
            phoff = rng.choice([0, 1, len(data), len(data) - 8, big()])
        elif field == "phentsize":
            phentsize = rng.choice([0, 1, 55, 57, 64, 0xffff])
        elif field == "type":
            etype = rng.choice([0, 1, 2, 3, 4, 0xffff])
        elif field == "machine":
            machine = rng.choice([0, 3, 40, 183, 243, 0xffff])
        elif field == "class":
            ident = ident[:4] + bytes([rng.choice([0, 1, 3, 255])]) + ident[5:]
        elif field == "data":
            ident = ident[:5] + bytes([rng.choice([0, 2, 3])]) + ident[6:]
        else:
            version = rng.choice([0, 2, 0xffffffff])
        note += f" {field}"
    elif kind == "phnum":
        phnum = rng.choice([0, 1, phnum + 1, 0xffff, rng.randrange(64)])
        note += f" {phnum}"
    elif kind == "bytes":
        for _ in range(rng.randrange(1, 16)):
            at = rng.randrange(min(len(b), 4096))
            b[at] = rng.getrandbits(8)
        note += " in the first page"
    elif kind == "truncate":
        keep = rng.choice([EHDR.size - 1, EHDR.size, phoff + phentsize * phnum - 1,
                           rng.randrange(len(data)), len(data) // 2])
        return bytes(b[:max(0, keep)]), f"{note} to {keep}"
    EHDR.pack_into(b, 0, ident, etype, machine, version, entry, phoff, shoff, flags, ehsize,
                   phentsize, phnum, shentsize, shnum, shstrndx)
    return bytes(b), note


def _outcome(status: int, out: bytes, err: bytes, what: str) -> str:
    """What became of a mutant; fails on anything that is none of them."""
    _no_sentry_failure(err, what)
    lines = err.decode(errors="replace").splitlines()
    if status in (125, 126, 127) and any(line.startswith("sentry: ") for line in lines):
        assert len(lines) == 1, f"{what}: exit {status}, more than the one `sentry:` line: {lines[:5]}"
        return "sentry error"
    if status == 137 and "sentry: timeout: the program was killed after 3 s" in lines:
        return "timeout"
    if status > 128:
        return "guest signal"
    return "ran"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_elf_fuzz(platform, tmp_path):
    """SENTRY_FUZZ_MUTANTS mutants of real binaries (fixtures' hello in each variant,
    /bin/true): every run is a one-line `sentry:` error, a guest signal, a run, or the
    guest killed at --timeout; never a traceback, an internal error, or a hang past it."""
    rng = random.Random(f"{SEED}/{platform}")
    bases = _bases()
    counts: dict[str, int] = {}
    started = time.monotonic()
    for n in range(MUTANTS):
        name, data = bases[n % len(bases)]
        mutant, note = _mutate(data, rng)
        path = tmp_path / f"mutant-{n}"
        path.write_bytes(mutant)
        path.chmod(0o755)
        what = f"{platform} seed {SEED} mutant {n} of {name}: {note}"
        status, out, err, took, rss, sid = _run(
            [*SENTRY, "--platform", platform, "--timeout", "3", "--memory", "256M", "--max-procs", "16",
             "--mount", f"{tmp_path}:/m", f"/m/mutant-{n}"], timeout=30)
        outcome = _outcome(status, out, err, what)
        assert took < 15, f"{what}: {took:.1f} s with --timeout 3"
        assert rss < PEAK_RSS, f"{what}: sentry peak RSS {rss >> 20} MB"
        assert stubwatch.session_members(sid) == [], f"{what}: host processes left behind"
        counts[outcome] = counts.get(outcome, 0) + 1
        path.unlink()
    print(f"\n{platform} seed {SEED}: {MUTANTS} mutants in {time.monotonic() - started:.1f} s: {counts}")
    assert sum(counts.values()) == MUTANTS
