"""Attacks on the sandbox itself (issue 15): the ptrace stub cannot be taken, and hostile
corners end in an errno, a signal or a clean end, never an internal error or a hang.

fixtures/attack_stub.c goes for the stub's pages (ptrace only: on unicorn there is no
stub, and natively the address is free); fixtures/attack_misc.c holds the other
reproducers, compared with the host where the host is an oracle. Every run has a
timeout, and every sandboxed run must be free of Python tracebacks.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

import harness
from harness import PLATFORMS
from sentry.platform.stub import STUB_BASE

TIMEOUT = 60
STUB = f"{STUB_BASE:x}"


def _stub_program(variant: str = "glibc-static") -> Path:
    return harness.build("attack_stub", variant)


def _misc_program() -> Path:
    return harness.build("attack_misc", "glibc-static")


def _sane(run: harness.Run, status: int = 0) -> None:
    harness.check_sentry_sane(run)
    assert b"internal error" not in run.stderr, run.stderr_text()
    assert run.status == status, f"{run.headline()}\n{run.stdout.decode(errors='replace')}\n{run.stderr_text()}"


def _differential(platform: str, program: Path, args) -> None:
    native = harness.run_native(program, args, timeout=TIMEOUT)
    assert native.status == 0, native.stderr_text()
    sandbox = harness.run_sandbox(platform, program, args, options=["--verbose"], timeout=TIMEOUT)
    _sane(sandbox)
    harness.compare(native, sandbox, stderr="notes", label=" ".join(args))


# --- the stub's pages are the sentry's ------------------------------------------------------
# The oracle for the stub's range: the same calls natively at TASK_SIZE (2^47), the first
# address a process cannot map. The sandbox must answer at the stub exactly as Linux there.
PAST_TASK_SIZE = f"{1 << 47:x}"


def _native_past_task_size(mode: str) -> harness.Run:
    native = harness.run_native(_stub_program(), [mode, PAST_TASK_SIZE], timeout=TIMEOUT)
    assert native.status == 0, native.stderr_text()
    assert b"MAYMOVE|FIXED onto: -1 EINVAL\n" in native.stdout or b"onto the stub: -1 EINVAL\n" in native.stdout
    return native


def test_stub_pages_answer_as_past_task_size():
    """Every call that could put a page of the guest's on the stub, change it or free it
    fails there as Linux fails past TASK_SIZE (mmap, MAP_FIXED_NOREPLACE, shmat, brk ENOMEM or
    refused; munmap and mremap's target EINVAL; mprotect, madvise, mlock, mincore, msync
    ENOMEM), and injections, reads and forks still work afterwards."""
    native = _native_past_task_size("ranges")
    run = harness.run_sandbox("ptrace", _stub_program(), ["ranges", STUB], timeout=TIMEOUT)
    _sane(run)
    harness.compare(native, run, label="ranges at the stub vs natively past TASK_SIZE")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_past_task_size_as_linux(platform):
    """The same calls at TASK_SIZE itself, on both platforms, vs native."""
    native = _native_past_task_size("ranges")
    run = harness.run_sandbox(platform, _stub_program(), ["ranges", PAST_TASK_SIZE], timeout=TIMEOUT)
    _sane(run)
    harness.compare(native, run, label="ranges past TASK_SIZE")


@pytest.mark.parametrize("variant", ["glibc-static", "glibc-dynamic"])
def test_stub_hijack_reproducer(variant):
    """The issue's reproducer: a guest RWX page of `jmp .` mremapped onto the stub, then an
    injected call. The move is refused (EINVAL, as natively past TASK_SIZE) and the sentry's
    next injection returns as it should. (A dynamic program once made it an internal error.)"""
    native = harness.run_native(_stub_program(variant), ["hijack", PAST_TASK_SIZE], timeout=TIMEOUT)
    run = harness.run_sandbox("ptrace", _stub_program(variant), ["hijack", STUB],
                              options=["--memory", "64M", "--max-procs", "4"], timeout=TIMEOUT)
    _sane(run)
    assert run.stdout == (b"mremap RWX page onto the stub: -1 EINVAL\ninjection after: ok\n"
                          b"mremap NX page onto the stub: -1 EINVAL\nafter: mmap: fresh page\n"
                          b"after: read: ok\nafter: fork: child exit 7\n"), run.stdout
    harness.compare(native, run, label="hijack at the stub vs natively past TASK_SIZE")


def _host_has_pku() -> bool:
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    return {"pku", "ospke"} <= flags


def test_stub_code_is_not_readable():
    """The stub's code page is execute-only where the host has protection keys (the
    host kernel's PROT_EXEC-only key): a load from it faults; elsewhere x86 cannot refuse
    it and the first byte of the stub's ELF header (0x7f) is read."""
    run = harness.run_sandbox("ptrace", _stub_program(), ["read", STUB], timeout=TIMEOUT)
    _sane(run)
    want = b"read stub: SIGSEGV\n" if _host_has_pku() else b"read stub: 7f\n"
    assert run.stdout == want, run.stdout


@pytest.mark.parametrize("platform", PLATFORMS)
def test_clone_untraced_stays_inside(platform):
    """CLONE_UNTRACED from the guest makes an ordinary sandboxed child (the sentry makes the
    host process, with its own flags; the host's filter refuses CLONE_UNTRACED from the stub)."""
    _differential(platform, _stub_program(), ["untraced"])


def test_host_syscall_let_through_is_killed_by_the_host():
    """Test-only mode SENTRY_TEST_HOST_SYSCALL=NR lets the guest's own getppid through to the
    host kernel, as a tracer bug would: the seccomp filter kills the process (SIGSYS) instead
    of running it, and the sentry says so and ends the sandbox."""
    program = _stub_program()
    control = harness.run_sentry_cli(["run", "--platform", "ptrace", program, "getppid"], timeout=TIMEOUT)
    _sane(control)
    assert control.stdout == b"getppid ran: 1\n"
    run = harness.run_sentry_cli(["run", "--platform", "ptrace", program, "getppid"], timeout=TIMEOUT,
                                 host_env={"SENTRY_TEST_HOST_SYSCALL": "110"})
    _sane(run, status=128 + 31)
    assert run.stdout == b"", run.stdout
    assert b"sentry: the host kernel killed a sandbox process" in run.stderr, run.stderr_text()


# --- internal errors and hangs ----------------------------------------------------------------
@pytest.mark.parametrize("platform", PLATFORMS)
def test_int80_is_a_fault(platform):
    """int 0x80 from 64-bit code: the sandbox has no 32-bit syscall table, so both platforms
    do what a kernel without IA32 emulation does: SIGSEGV at the instruction (the host here
    would run the 32-bit getpid)."""
    run = harness.run_sandbox(platform, _misc_program(), ["int80"], timeout=TIMEOUT)
    _sane(run)
    assert run.stdout == b"int 0x80: SIGSEGV\nstill running: yes\n", run.stdout


def test_vsyscall_is_emulated():
    """Calls through the vsyscall page answer as the host's vsyscall=xonly does (the host
    kernel emulates them and the filter hands them to the sentry); reading the page faults.
    (unicorn maps no vsyscall page: a call there is a SIGSEGV.)"""
    _differential("ptrace", _misc_program(), ["vsyscall"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_epoll_loop_is_eloop(platform):
    _differential(platform, _misc_program(), ["epoll"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_mmap_file_offsets_past_the_end(platform):
    """mmap of a file at the last positive page offset or a negative one: EOVERFLOW as
    file_mmap_ok, for private and shared mappings, files and /dev/zero."""
    _differential(platform, _misc_program(), ["mmapoff"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_clone_noncanonical_tls(platform):
    """clone(CLONE_SETTLS) with a TLS base outside user space: EPERM, no task made, and the
    sentry ends (it once waited for ever on the thread it had killed)."""
    _differential(platform, _misc_program(), ["clonetls"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_noncanonical_entry_is_a_segfault(platform, tmp_path):
    """An ELF whose entry is outside user space (found by the ELF fuzzer, seed 7): SIGSEGV
    as natively (the ptrace platform once took the fault for a trapped rdtsc and read the
    instruction at a pc past 2^63: an internal error)."""
    import struct
    data = bytearray(harness.build("hello", "glibc-static").read_bytes())
    struct.pack_into("<Q", data, 24, 0xF76D73829EEFE343)  # e_entry
    program = tmp_path / "noncanonical-entry"
    program.write_bytes(bytes(data))
    program.chmod(0o755)
    native = harness.run_native(program, timeout=TIMEOUT)
    assert native.status == 128 + 11, native.headline()
    _sane(harness.run_sandbox(platform, program, timeout=TIMEOUT), native.status)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_timeout_during_thread_bomb(platform):
    """--timeout while threads multiply and call mprotect (injected on ptrace): the thread
    killed under an injection is an ordinary event. Several runs: the race is timing's."""
    for _ in range(3 if platform == "ptrace" else 1):
        started = time.monotonic()
        run = harness.run_sandbox(platform, _misc_program(), ["threadbomb"],
                                  options=["--verbose", "--timeout", "1.5", "--max-procs", "200"], timeout=TIMEOUT)
        harness.check_sentry_sane(run)
        assert run.status == 137, run.headline() + "\n" + run.stderr_text()
        lines = [line for line in run.stderr.decode(errors="replace").splitlines()
                 if "unsupported syscall" not in line]
        assert lines == ["sentry: timeout: the program was killed after 1.5 s"], run.stderr_text()
        assert time.monotonic() - started < 30


@pytest.mark.parametrize("where", ["tmp", "lent"])
def test_fifo_program_is_refused(tmp_path, where):
    """`sentry run FIFO` never opens the FIFO for reading (that waits for a writer before
    any --timeout runs): a FIFO is not a regular file (execve's EACCES; exit 126)."""
    base = Path("/tmp") if where == "tmp" else tmp_path
    fifo = base / f"sentry-test-fifo-{uuid.uuid4().hex}"
    os.mkfifo(fifo, 0o755)
    try:
        started = time.monotonic()
        run = harness.run_sentry_cli(["run", "--timeout", "5", fifo], timeout=20)
        harness.check_sentry_sane(run)
        assert run.status == 126, run.headline()
        assert run.stderr == f"sentry: {fifo}: not a regular file\n".encode(), run.stderr_text()
        assert time.monotonic() - started < 10
    finally:
        fifo.unlink()
