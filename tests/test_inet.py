"""TCP and UDP over the sandbox's own loopback under real programs nobody here
wrote, compared with a native run: python3's http.server reached by urllib
(IPv4 by name and address, IPv6), an asyncio TCP server and client, the socket
module (UDP, timeouts, selectors, a non-blocking connect), a new network
namespace's own lo (down until SIOCSIFFLAGS, its ports its own). Natively these bind
only 127.0.0.1 / ::1 ephemeral ports and leave no listener.

Isolation, sandbox only (no native oracle): a host listener on 127.0.0.1 is
not reached from inside and sees no connection, another address is
ENETUNREACH, and two sandboxes running at once both bind the same port.

The calls one by one are fixtures/inet.c (tests/test_fixtures.py).
"""
from __future__ import annotations

import socket
import subprocess
import threading

import pytest

import harness
from harness import PLATFORMS

PYTHON = "/usr/bin/python3"
TIMEOUT = 120

PY_HTTP = r'''
import hashlib, http.server, os, shutil, socket, tempfile, threading, urllib.request

root = tempfile.mkdtemp()
data = bytes(range(251)) * 12000  # 3 MB, a period that does not divide the buffer sizes
with open(os.path.join(root, "f.bin"), "wb") as f:
    f.write(data)

class Quiet(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def log_message(self, *a):
        pass

class V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet), V6(("::1", 0), Quiet)]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
p4, p6 = servers[0].server_address[1], servers[1].server_address[1]
for url in (f"http://localhost:{p4}/f.bin", f"http://127.0.0.1:{p4}/f.bin", f"http://[::1]:{p6}/f.bin"):
    with urllib.request.urlopen(url) as r:
        body = r.read()
        print(url.split(":")[1].strip("/["), r.status, r.headers["Content-Length"],
              hashlib.sha256(body).digest() == hashlib.sha256(data).digest())
try:
    urllib.request.urlopen(f"http://127.0.0.1:{p4}/missing")
except urllib.error.HTTPError as e:
    print("missing:", e.code)
listing = urllib.request.urlopen(f"http://127.0.0.1:{p4}/").read()
print("listing names f.bin:", b"f.bin" in listing)
for s in servers:
    s.shutdown()
    s.server_close()
shutil.rmtree(root)
'''

PY_ASYNCIO = r'''
import asyncio

async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = []
        async def client(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            got = []
            for i in range(50):
                writer.write(b"client %d line %d\n" % (n, i))
                await writer.drain()
                got.append(await reader.readline())
            writer.write_eof()
            print("client", n, "eof after:", await reader.read() == b"")
            writer.close()
            await writer.wait_closed()
            results.append((n, len(got), got[-1]))
        await asyncio.gather(*(client(n) for n in range(5)))
        print(sorted(results))
        big_r, big_w = await asyncio.open_connection("127.0.0.1", port)
        blob = b"x" * 60000 + b"\n"  # under StreamReader's 64 KiB line limit
        async def read_back():
            n = 0
            for _ in range(20):
                n += len(await big_r.readline())
            return n
        reading = asyncio.create_task(read_back())
        big_w.write(blob * 20)
        await big_w.drain()
        total = await reading
        print("a 1.2 MB echo came back:", total)
        big_w.close()
        await big_w.wait_closed()

asyncio.run(main())
'''

PY_SOCKET = r'''
import errno, selectors, socket

u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u1.bind(("127.0.0.1", 0))
u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u2.settimeout(0.2)
u2.sendto(b"ping", u1.getsockname())
msg, addr = u1.recvfrom(100)
u1.sendto(msg.upper(), addr)
print("udp:", u2.recvfrom(100)[0], addr[0])
try:
    u2.recvfrom(100)
except socket.timeout:
    print("udp recv timed out")
l = socket.create_server(("127.0.0.1", 0))
c = socket.socket()
c.setblocking(False)
print("connect_ex:", errno.errorcode.get(c.connect_ex(l.getsockname()), 0))
sel = selectors.DefaultSelector()
sel.register(c, selectors.EVENT_WRITE)
print("writable:", len(sel.select(2)))
print("SO_ERROR:", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
a, _ = l.accept()
sel.modify(c, selectors.EVENT_READ)
a.sendall(b"hi")
print("readable:", len(sel.select(2)), c.recv(10))
a.close()
sel.select(2)
print("eof:", c.recv(10))
c.close()
l.close()
try:
    socket.create_connection(("127.0.0.1", 1), timeout=2)
except OSError as e:
    print("port 1:", errno.errorcode[e.errno])
print(socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4])
print(socket.if_nametoindex("lo"))
'''

PY_NETNS = r'''
import ctypes, errno, fcntl, os, socket, struct
outer = socket.create_server(("127.0.0.1", 0))
port = outer.getsockname()[1]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
print("unshare:", libc.unshare(CLONE_NEWUSER | CLONE_NEWNET))
def attempt(label, fn):
    try:
        fn()
        print(label, "ok")
    except OSError as e:
        print(label, errno.errorcode[e.errno])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack_from("<H", fcntl.ioctl(s, 0x8913, struct.pack("16s24x", b"lo")), 16)[0]
print("lo up in a new namespace:", bool(flags & 1))
attempt("bind 127.0.0.1", lambda: socket.socket().bind(("127.0.0.1", 0)))
attempt("connect to the outer listener", lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))
flags = struct.unpack_from("<H", fcntl.ioctl(s, 0x8913, struct.pack("16s24x", b"lo")), 16)[0]
print("after SIOCSIFFLAGS IFF_UP:", bool(flags & 1))
attempt("bind 127.0.0.1", lambda: socket.socket().bind(("127.0.0.1", 0)))
attempt("connect to the outer listener", lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
inner = socket.create_server(("127.0.0.1", port))
c = socket.create_connection(("127.0.0.1", port), timeout=2)
print("the same port, this namespace's own listener:", inner.accept()[0] is not None)
'''

SCRIPTS = {"http_server": PY_HTTP, "asyncio_tcp": PY_ASYNCIO, "socket_module": PY_SOCKET, "net_namespace": PY_NETNS}


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_python_inet(name, platform):
    harness.require_program(PYTHON)
    harness.compare_program(platform, [PYTHON, "-c", SCRIPTS[name]], timeout=TIMEOUT, label=name)


PY_ISOLATION = r'''
import errno, socket, sys
port = int(sys.argv[1])
for host in ("127.0.0.1", "localhost"):
    try:
        socket.create_connection((host, port), timeout=2)
        print(host, "reached")
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, e.errno))
for host in ("10.0.0.1", "192.0.2.1", "8.8.8.8"):
    try:
        socket.create_connection((host, 80), timeout=2)
        print(host, "reached")
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, e.errno))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("192.0.2.1", 53))
except OSError as e:
    print("udp", errno.errorcode.get(e.errno, e.errno))
s6 = socket.socket(socket.AF_INET6)
try:
    s6.connect(("2001:db8::1", 80))
except OSError as e:
    print("v6", errno.errorcode.get(e.errno, e.errno))
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_host_network_unreachable(platform):
    """A host server on 127.0.0.1 is not the sandbox's loopback: refused, and it
    logs no connection; addresses off the loopback are ENETUNREACH."""
    harness.require_program(PYTHON)
    host = socket.create_server(("127.0.0.1", 0))
    host.settimeout(0.2)
    port = host.getsockname()[1]
    seen = []

    def watch():
        while not stop.is_set():
            try:
                conn, _ = host.accept()
                seen.append(conn)
            except OSError:
                pass

    stop = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = harness.run_sandbox(platform, PYTHON, ["-c", PY_ISOLATION, str(port)], timeout=TIMEOUT)
    finally:
        stop.set()
        watcher.join()
        host.close()
    harness.check_sentry_sane(run)
    assert run.stdout.decode().splitlines() == [
        "127.0.0.1 ECONNREFUSED", "localhost ECONNREFUSED", "10.0.0.1 ENETUNREACH", "192.0.2.1 ENETUNREACH",
        "8.8.8.8 ENETUNREACH", "udp ENETUNREACH", "v6 ENETUNREACH"], run.stdout
    assert seen == [], "the host listener saw a connection from the sandbox"


PY_HOLD_8000 = r'''
import socket, sys, time
s = socket.create_server(("127.0.0.1", MINE))
print("bound", flush=True)
sys.stdin.readline()  # both sandboxes hold the port at once
try:
    socket.create_connection(("127.0.0.1", OTHER), timeout=2)
    print("reached the other sandbox")
except OSError as e:
    print("the other sandbox's port refused:", e.errno == 111)
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_two_sandboxes_own_loopbacks(platform):
    """Two sandboxes at once both bind 127.0.0.1:8000 (each its own loopback), and
    neither reaches a port the other listens on."""
    harness.require_program(PYTHON)
    procs = []
    for mine, other in ((8000, 8001), (8001, 8000)):
        src = PY_HOLD_8000.replace("MINE", str(mine)).replace("OTHER", str(other))
        argv = harness.sentry_argv(platform, PYTHON, ["-c", src])
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=harness.sentry_host_env(), cwd=str(harness.REPO)))
    try:
        for p in procs:
            assert p.stdout.readline() == b"bound\n"
        # Both hold their ports now; a third sandbox binds 8000 too.
        third = harness.run_sandbox(platform, PYTHON, ["-c", "import socket; socket.create_server(('127.0.0.1', "
                                                       "8000)); print('bound')"], timeout=TIMEOUT)
        assert third.stdout == b"bound\n", third.stderr_text()
        outs = [p.communicate(b"\n", timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert outs == [b"the other sandbox's port refused: True\n"] * 2, outs


SH_CLIENTS = r'''
mkdir -p /tmp/www && cd /tmp/www && printf 'served from inside\n' > f.txt
python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &
server=$!
i=0
until busybox nc 127.0.0.1 8000 </dev/null 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done
curl -s http://localhost:8000/f.txt
wget -q -O - http://127.0.0.1:8000/f.txt
busybox wget -q -O - http://127.0.0.1:8000/f.txt
kill $server
busybox nc -l -p 7000 > /tmp/nc.out &
listener=$!
sleep 0.5
echo "through busybox nc" | busybox nc 127.0.0.1 7000
wait $listener
cat /tmp/nc.out
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_clients_inside_one_sandbox(platform):
    """curl, wget and busybox's wget fetch from python3 -m http.server in the same
    sandbox (a fixed port: the sandbox's own loopback); busybox nc both ways."""
    for program in (PYTHON, "/usr/bin/curl", "/usr/bin/wget"):
        harness.require_program(program)
    busybox = harness.require_busybox()
    run = harness.run_sandbox(platform, busybox, ["sh", "-c", SH_CLIENTS], timeout=240)
    harness.check_sentry_sane(run)
    assert run.stdout == b"served from inside\n" * 3 + b"through busybox nc\n", run.stderr_text()
