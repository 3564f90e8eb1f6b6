"""The ptrace stub's defences (sentry/platform/ptrace.py, stub.py; issue 15): an injection
that does not come back to the stub's trap kills the process, and the host's seccomp
filter kills a process whose stub asks for a clone the sentry never injects."""
import os
import signal
from types import SimpleNamespace

import pytest

from sentry.platform.stub import STUB_TRAP


def _gone():
    from sentry.platform.ptrace import TaskGone
    return TaskGone


@pytest.fixture
def proc():
    from sentry.platform.ptrace import PtracePlatform
    p, cpu = PtracePlatform().new_process()
    yield p
    p.close()


def _killed_by(proc) -> int | None:
    status = proc.cpu.gone
    return os.WTERMSIG(status) if status is not None and status >= 0 and os.WIFSIGNALED(status) else None


def test_injection_faulting_in_the_stub_kills_the_process(proc, capfd):
    """The int3 after the stub's syscall replaced (as a guest that took the stub's page
    would): the injection ends in SIGILL, not the trap; the process is killed, never
    resumed, and the sentry says so (here with no kernel: on stderr); the call itself
    gets an ordinary ESRCH (TaskGone)."""
    from sentry.platform.ptrace import NR_MPROTECT
    os.pwrite(proc.mem, b"\x0f\x0b", STUB_TRAP - 1)  # ud2 over `int3`
    with pytest.raises(_gone()):
        proc.inject(NR_MPROTECT, 0x10000, 0x1000, 0)
    assert b"stub did not return from an injected syscall" in capfd.readouterr().err.encode()
    proc.close()
    assert _killed_by(proc) == signal.SIGKILL


def test_injection_that_does_not_return_ends_the_sandbox(proc):
    """With a task running, the breach ends the whole sandbox through the kernel's ended_by
    (a `sentry:` line)."""
    from sentry.platform.ptrace import NR_MPROTECT, TaskGone
    kernel = SimpleNamespace(ended_by=None)
    proc.cpu.task = SimpleNamespace(kernel=kernel)
    os.pwrite(proc.mem, b"\x0f\x0b", STUB_TRAP - 1)
    with pytest.raises(TaskGone):
        proc.inject(NR_MPROTECT, 0x10000, 0x1000, 0)
    assert "stub did not return" in kernel.ended_by
    assert proc.platform.pending or proc.cpu.gone is None  # its end still to be reported by a wait


@pytest.mark.parametrize("flags", [0x800000 | signal.SIGCHLD, 0x100 | 0x800000 | signal.SIGCHLD,
                                   signal.SIGCHLD | (1 << 32)])
def test_clone_with_other_flags_is_killed_by_the_host(proc, flags):
    """CLONE_UNTRACED (or any flags but the sentry's own) from the stub itself: the host's
    filter kills the process with SIGSYS before a child exists."""
    from sentry.platform.ptrace import NR_CLONE
    with pytest.raises(_gone()):
        proc.inject(NR_CLONE, flags, 0, 0, 0, 0)
    assert _killed_by(proc) == signal.SIGSYS
    assert proc.forked_pid is None


def test_injection_looping_in_a_changed_stub_is_killed_at_its_next_stop(proc, capfd):
    """`jmp .` over the stub's trap: the injection never stops by itself. The next stop a
    signal makes (here SIGURG, as wake() sends) finds the stub's code changed: killed."""
    import threading

    from sentry.platform import hostcalls as hc
    from sentry.platform.ptrace import NR_MPROTECT
    os.pwrite(proc.mem, b"\xeb\xfe", STUB_TRAP)  # jmp . right after the int3, which goes too
    os.pwrite(proc.mem, b"\x90", STUB_TRAP - 1)  # nop over int3: the call falls into the loop
    poke = threading.Timer(0.3, hc.tgkill, (proc.pid, proc.pid, signal.SIGURG))
    poke.start()
    try:
        with pytest.raises(_gone()):
            proc.inject(NR_MPROTECT, 0x10000, 0x1000, 0)
    finally:
        poke.cancel()
    assert b"stub's code changed or left" in capfd.readouterr().err.encode()
