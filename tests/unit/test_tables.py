"""The generated syscall tables and the registry agree with their sources."""
import subprocess
import sys
from pathlib import Path

from syscalls.compat import render, rows
from syscalls.registry import FULL, PARTIAL, REGISTRY, UNSUPPORTED, table_for
from syscalls.tables import AARCH64, X86_64

ROOT = Path(__file__).resolve().parents[2]


def test_tables_are_fresh():
    """scripts/gen-syscall-tables --check fails when syscalls/tables.py is stale."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-syscall-tables"), "--check"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, "syscalls/tables.py is stale: run scripts/gen-syscall-tables"


def test_well_known_numbers():
    assert X86_64[0] == "read" and X86_64[60] == "exit" and X86_64[231] == "exit_group"
    assert X86_64[257] == "openat" and X86_64[435] == "clone3" and X86_64[462] == "mseal"
    assert AARCH64[63] == "read" and AARCH64[93] == "exit" and AARCH64[56] == "openat"


def test_every_handler_is_a_real_syscall_with_a_status():
    table_for("x86_64")
    names = set(X86_64) | set(AARCH64)
    for name, entry in REGISTRY.items():
        assert name in names, f"{name} is registered but no architecture has it"
        assert entry.status in (FULL, PARTIAL, UNSUPPORTED)
        if entry.status != FULL:
            assert entry.note, f"{name} is {entry.status} and must say why"


def test_compat_table_lists_every_number():
    listed = {nr for nr, *_ in rows("x86_64")}
    assert listed == {nr for nr, name in enumerate(X86_64) if name}
    text = render("x86_64", "markdown")
    assert "| 257 | openat | full |" in text
    assert "| 334 | rseq | unsupported |" in text
    assert "missing" in render("x86_64", "table")


def test_the_handlers_issue_3_names_are_registered():
    needed = """read write readv writev pread64 pwrite64 openat open close lseek fstat stat lstat
    newfstatat statx access faccessat getcwd chdir mkdir unlink getdents64 readlink brk mmap munmap
    mprotect mremap madvise arch_prctl set_tid_address set_robust_list rseq prlimit64 getrlimit
    getrandom uname clock_gettime gettimeofday time nanosleep getpid getppid gettid getuid geteuid
    getgid getegid ioctl rt_sigaction rt_sigprocmask exit exit_group""".split()
    table_for("x86_64")
    assert [n for n in needed if n not in REGISTRY] == []
