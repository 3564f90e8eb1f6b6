"""AF_NETLINK under real programs nobody here wrote, compared with a native run in a
fresh network namespace (`unshare -rn`: only a new lo, down at first, so the host's
interfaces never show): iproute2's `ip addr`, `ip link`, `ip route` (and `ip -d
link`, `ip -6 route`, `ip route show table all`, `ip route get`, `ip neigh`)
before and after `ip link set lo up`, and `ip link set lo mtu`; busybox's ip applet;
python3's socket.if_nameindex() and if_nametoindex(), and its socket module on
NETLINK_ROUTE and NETLINK_USERSOCK. Inside the sandbox the same commands
run under its own `unshare -rn`; the sandbox's first namespace (lo up) is checked
against the namespace natively brought up.

NETLINK_KOBJECT_UEVENT in a new namespace (silent, as natively). Sandbox only (the
host kernel has them): the netlink protocols the sandbox does not have answer
EPROTONOSUPPORT, as a kernel built without them.

The calls one by one are fixtures/netlink.c (tests/test_fixtures.py).
"""
from __future__ import annotations

import pytest

import harness
from harness import PLATFORMS

IP = "/usr/sbin/ip"
UNSHARE = "/usr/bin/unshare"
SH = "/bin/sh"
PYTHON = "/usr/bin/python3"
TIMEOUT = 120

IP_FRESH = ("ip addr; ip link; ip route show table all; ip link set lo up; ip addr; ip -d link; ip route; "
            "ip -6 route; ip route show table all; ip route get 127.0.0.1; ip route get ::1; "
            "ip route get 192.0.2.1; ip neigh; ip link set lo mtu 1500; ip link show lo; "
            "ip link add sentry0 type sentry-nonesuch; ip link del lo; echo end")
IP_UP = "ip addr; ip link; ip route show table all; ip -6 route; ip -4 route; echo end"

PY_NAMES = r'''
import socket
print(socket.if_nameindex())
print(socket.if_nametoindex("lo"), socket.if_indextoname(1))
try:
    socket.if_nametoindex("eth0")
except OSError as e:
    print("eth0:", type(e).__name__)
'''


def _compare(platform: str, native_argv, sandbox_argv, label: str) -> None:
    native = harness.run_native(native_argv[0], native_argv[1:], timeout=TIMEOUT)
    sandbox = harness.run_sandbox(platform, sandbox_argv[0], sandbox_argv[1:], timeout=TIMEOUT)
    harness.compare(native, sandbox, label=label)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ip_in_a_new_namespace(platform):
    """iproute2 in a fresh namespace: lo down, then up, its routes, route lookups, the
    MTU, and what the sandbox's network cannot make (a link kind, deleting lo)."""
    harness.require_program(IP)
    harness.require_program(UNSHARE)
    argv = [UNSHARE, "-rn", SH, "-c", IP_FRESH]
    _compare(platform, argv, argv, "ip in a new namespace")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_ip_in_the_sandbox_namespace(platform):
    """The sandbox's own namespace starts with lo up: as a native namespace brought up."""
    harness.require_program(IP)
    harness.require_program(UNSHARE)
    _compare(platform, [UNSHARE, "-rn", SH, "-c", "ip link set lo up; " + IP_UP], [SH, "-c", IP_UP],
             "ip in the sandbox's namespace")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_busybox_ip(platform):
    """busybox's own ip applet (its netlink code, not iproute2's) in the sandbox's
    namespace vs a native one brought up."""
    bb = harness.require_busybox()
    harness.require_program(UNSHARE)
    script = (f"{bb} ip addr; {bb} ip link; {bb} ip route; {bb} ip -6 route; {bb} ip link set lo mtu 1400; "
              f"{bb} ip link show lo; echo end")
    _compare(platform, [UNSHARE, "-rn", SH, "-c", f"{bb} ip link set lo up; " + script], [SH, "-c", script],
             "busybox ip")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_python_if_nameindex(platform):
    harness.require_program(PYTHON)
    harness.require_program(UNSHARE)
    _compare(platform, [UNSHARE, "-rn", PYTHON, "-c", PY_NAMES], [PYTHON, "-c", PY_NAMES], "if_nameindex")


PY_SOCKETS = r'''
import os, socket, struct
route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
route.bind((0, 0))
print("port is the pid:", route.getsockname() == (os.getpid(), 0))
route.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
body = struct.pack("<BxHiII", 0, 0, 1, 0, 0)
route.send(struct.pack("<IHHII", 16 + len(body), 18, 1, 1, 0) + body)  # RTM_GETLINK of index 1
data, anc, flags, addr = route.recvmsg(65536, 256)
print("reply type", struct.unpack_from("<H", data, 4)[0], "from", addr, "flags", flags)
print("kernel's credentials:", [(level, type_, struct.unpack("<iII", v)) for level, type_, v in anc])
a = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 2)
b = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 2)
a.bind((0, 0))
b.bind((0, 0))
a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
b.sendto(b"hello", (a.getsockname()[0], 0))
data, anc, flags, addr = a.recvmsg(100, 256)
pid, uid, gid = struct.unpack("<iII", anc[0][2])
print(data, "from b:", addr == b.getsockname(), "pid is ours:", pid == os.getpid(), "uid", uid, "gid", gid)
b.settimeout(0.5)
try:
    b.recv(10)
except OSError as e:
    print("b has nothing:", type(e).__name__)
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_python_netlink_sockets(platform):
    """python3's socket module: a NETLINK_ROUTE request and SO_PASSCRED's credentials
    of the kernel, two NETLINK_USERSOCK sockets and a receive timeout."""
    harness.require_program(PYTHON)
    harness.require_program(UNSHARE)
    _compare(platform, [UNSHARE, "-rn", PYTHON, "-c", PY_SOCKETS], [UNSHARE, "-rn", PYTHON, "-c", PY_SOCKETS],
             "netlink sockets")


PY_UEVENT = r'''
import errno, socket
s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
s.bind((0, 1))
print("bound to group", s.getsockname()[1])
for dest in ((0, 0), (0, 1), (0, 2)):
    try:
        print("send to", dest, s.sendto(b"add@/devices/x\0ACTION=add\0", dest))
    except OSError as e:
        print("send to", dest, errno.errorcode[e.errno])
s.settimeout(0.3)
try:
    s.recv(100)
    print("a uevent came")
except OSError as e:
    print("nothing came:", type(e).__name__)
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_uevent_socket(platform):
    """NETLINK_KOBJECT_UEVENT in a new namespace: joined, sent to, and silent."""
    harness.require_program(PYTHON)
    harness.require_program(UNSHARE)
    argv = [UNSHARE, "-rn", PYTHON, "-c", PY_UEVENT]
    _compare(platform, argv, argv, "uevent socket")


PY_PROTOCOLS = r'''
import errno, socket
for proto in (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 31):
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto).close()
        print(proto, "made")
    except OSError as e:
        print(proto, errno.errorcode[e.errno])
for proto in (0, 2, 15):
    socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, proto).close()
    print(proto, "made")
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_other_protocols_absent(platform):
    """Every netlink protocol but NETLINK_ROUTE, NETLINK_USERSOCK and NETLINK_KOBJECT_UEVENT
    is EPROTONOSUPPORT
    (the host's kernel has several of them: no native oracle)."""
    harness.require_program(PYTHON)
    run = harness.run_sandbox(platform, PYTHON, ["-c", PY_PROTOCOLS], timeout=TIMEOUT)
    harness.check_sentry_sane(run)
    lines = run.stdout.decode().split("\n")
    assert run.status == 0, run.stderr_text()
    assert all(line.endswith("EPROTONOSUPPORT") for line in lines[:23]), run.stdout.decode()
    assert lines[23:26] == ["0 made", "2 made", "15 made"], run.stdout.decode()
