"""IPC namespaces' ids and knobs against the host kernel: tests/ipc_sysctls.py, and
util-linux's ipcmk/ipcs/ipcrm, run natively in a fresh IPC namespace of their own
(`unshare --ipc`: nothing of the host's IPC is touched, its sysctls included) and in
the sandbox, whose first IPC namespace is fresh too; both must print the same (keys
ipcmk draws at random and pids masked). Also python3's multiprocessing.shared_memory
(POSIX shared memory in /dev/shm, shared with forked children) vs native."""
import shutil

import pytest

import harness
from harness import PLATFORMS

SCRIPT = "tests/ipc_sysctls.py"
IPC_TOOLS = r"""
ipcmk -M 4096 -p 0640 >/dev/null; ipcmk -Q >/dev/null; ipcmk -S 3 >/dev/null
ipcs | sed 's/^0x[0-9a-f]*/KEY/'
ipcs -l
ipcs -u
ipcs -m -i 0 | grep -v time | sed 's/key=0x[0-9a-f]*/key=KEY/; s/pid=[0-9]*/pid=P/g'
ipcs -p | awk '{print $1, $2}'
ipcrm -a; echo "ipcrm -a: $?"
ipcs
"""
SHARED_MEMORY = r"""
import multiprocessing as mp
from multiprocessing import Process, shared_memory

def child(name):
    s = shared_memory.SharedMemory(name=name)
    s.buf[:5] = b"child"
    s.close()

def set_first(name):
    shared_memory.ShareableList(name=name)[0] = 42

if __name__ == "__main__":
    mp.set_start_method("fork")
    s = shared_memory.SharedMemory(create=True, size=4096)
    s.buf[:5] = b"paren"
    p = Process(target=child, args=(s.name,))
    p.start(); p.join()
    print("child exit", p.exitcode, bytes(s.buf[:5]))
    lst = shared_memory.ShareableList([1, 2.5, "three", None])
    p = Process(target=set_first, args=(lst.shm.name,))
    p.start(); p.join()
    print(list(lst))
    lst.shm.close(); lst.shm.unlink()
    s.close(); s.unlink()
    print("done")
"""


@pytest.fixture(scope="module")
def native_namespace():
    unshare = shutil.which("unshare")
    python3 = harness.require_program("/usr/bin/python3")
    run = harness.run_native(unshare, ["--ipc", python3, SCRIPT], timeout=120)
    assert run.status == 0 and b"done\n" in run.stdout, run.stderr_text()
    return run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_fresh_namespace(platform, native_namespace):
    sandbox = harness.run_sandbox(platform, "/usr/bin/python3", [SCRIPT], timeout=180)
    harness.compare(native_namespace, sandbox)


@pytest.fixture(scope="module")
def native_tools():
    run = harness.run_native(shutil.which("unshare"), ["--ipc", "/bin/sh", "-c", IPC_TOOLS], timeout=60)
    assert run.status == 0 and b"ipcrm -a: 0" in run.stdout, run.stderr_text()
    return run


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ipc_tools(platform, native_tools):
    harness.compare(native_tools, harness.run_sandbox(platform, "/bin/sh", ["-c", IPC_TOOLS], timeout=120))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_multiprocessing_shared_memory(platform):
    harness.compare_program(platform, ["/usr/bin/python3", "-c", SHARED_MEMORY], timeout=120)
