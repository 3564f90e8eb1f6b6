"""--net host and --publish (sentry/net/hostnet.py, sentry/net/publish.py).

--net host, differential: the same client script runs natively and in the
sandbox against servers this test starts on the host's 127.0.0.1 (python
urllib, curl, busybox nc, UDP request/response shaped as a DNS query,
getsockname/getpeername against what the server saw, ECONNREFUSED, a
non-blocking connect with poll); the outputs must be equal. That a host
server is NOT reached without --net host is tests/test_inet.py's
test_host_network_unreachable.

--publish: `python3 -m http.server` in the sandbox fetched from the host (a
10 MB file, sha256), a UDP echo server reached through /udp by two host
clients, a slow host client stopping the sandbox's writer (its non-blocking
writes run dry while the sentry holds a bounded amount), a connection before
the sandbox listens reset; the host ports are free once the sandbox ends.
The API's net= and publish=, and bad --publish strings (one-line errors).
Every host port is an ephemeral one picked free here."""
from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

import harness
from harness import PLATFORMS, REPO

PYTHON = "/usr/bin/python3"
TIMEOUT = 120


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, kind=socket.SOCK_STREAM) -> bool:
    """Nothing holds the port: for TCP no listener (SO_REUSEADDR: the connections the
    sentry closed first may stay in TIME_WAIT, as any server's do)."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            if kind == socket.SOCK_STREAM:
                s.listen()
            return True
        except OSError:
            return False


class HostServers:
    """On the host's 127.0.0.1: an HTTP server with one file, a TCP server answering each
    connection with the client's address as it saw it, and a UDP echo server."""

    def __init__(self):
        self.data = bytes(range(251)) * 4000  # 1 MB
        data = self.data

        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.who = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.sink = socket.create_server(("127.0.0.1", 0))
        self.stop = False
        self.threads = [threading.Thread(target=self.http.serve_forever, daemon=True),
                        threading.Thread(target=self._who, daemon=True),
                        threading.Thread(target=self._sink, daemon=True),
                        threading.Thread(target=self._udp, daemon=True)]
        for t in self.threads:
            t.start()

    def _who(self):
        while not self.stop:
            try:
                c, addr = self.who.accept()
            except OSError:
                return
            with c:
                c.sendall(f"{addr[0]}:{addr[1]}\n".encode())

    def _sink(self):
        """Reads to end of file, then answers how much it read and its sha256 (a half-close)."""
        while not self.stop:
            try:
                c, _ = self.sink.accept()
            except OSError:
                return
            with c:
                h, n = hashlib.sha256(), 0
                while chunk := c.recv(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                c.sendall(f"{n} {h.hexdigest()[:16]}\n".encode())

    def _udp(self):
        while not self.stop:
            try:
                data, addr = self.udp.recvfrom(65536)
            except OSError:
                return
            self.udp.sendto(data[:2] + b"\x81\x80" + data[4:] + f"|{addr[1]}".encode(), addr)

    def ports(self):
        return [self.http.server_address[1], self.who.getsockname()[1], self.udp.getsockname()[1], free_port(),
                self.sink.getsockname()[1]]

    def close(self):
        self.stop = True
        self.http.shutdown()
        self.http.server_close()
        self.who.close()
        self.sink.close()
        self.udp.close()


CLIENT = r'''
import errno, hashlib, select, socket, subprocess, sys, urllib.request
http_port, who_port, udp_port, closed_port, sink_port = map(int, sys.argv[1:6])
body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/f", timeout=20).read()
print("urllib", len(body), hashlib.sha256(body).hexdigest()[:16])
r = subprocess.run(["curl", "-s", f"http://127.0.0.1:{http_port}/f"], capture_output=True, timeout=30)
print("curl", r.returncode, len(r.stdout), hashlib.sha256(r.stdout).hexdigest()[:16])
r = subprocess.run(["busybox", "nc", "127.0.0.1", str(who_port)], input=b"", capture_output=True, timeout=30)
print("busybox nc", r.returncode, r.stdout.count(b"127.0.0.1:"))
# the server saw the address this socket says it has
c = socket.create_connection(("127.0.0.1", who_port), timeout=10)
seen = c.makefile().readline().strip()
me = c.getsockname()
print("getsockname is what the server saw:", seen == f"{me[0]}:{me[1]}", "peer:", c.getpeername()[1] == who_port)
c.close()
# an upload, then a half-close: the answer comes after the server read our end of file
c = socket.create_connection(("127.0.0.1", sink_port), timeout=20)
data = bytes(range(256)) * 40000
c.sendall(data)
c.shutdown(socket.SHUT_WR)
print("upload:", c.makefile().readline().strip() == f"{len(data)} {hashlib.sha256(data).hexdigest()[:16]}",
      "then end of file:", c.recv(10) == b"")
c.close()
# UDP: a DNS-shaped query, answered with our port as the server saw it
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
u.sendto(query, ("127.0.0.1", udp_port))
answer, src = u.recvfrom(512)
print("udp sendto:", answer[:2] == b"\x12\x34", answer[2:4].hex(), src[1] == udp_port,
      answer.endswith(f"|{u.getsockname()[1]}".encode()))
uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
uc.settimeout(10)
uc.connect(("127.0.0.1", udp_port))
uc.send(b"\x00\x07\x01\x00ping")
answer = uc.recv(512)
print("udp connected:", answer[:2] == b"\x00\x07", uc.getsockname()[0], uc.getpeername()[1] == udp_port,
      answer.endswith(f"|{uc.getsockname()[1]}".encode()))
try:
    socket.create_connection(("127.0.0.1", closed_port), timeout=10)
    print("closed port reached")
except OSError as e:
    print("closed port:", errno.errorcode.get(e.errno, e.errno))
s = socket.socket()
s.setblocking(False)
print("non-blocking connect:", errno.errorcode.get(s.connect_ex(("127.0.0.1", who_port))))
p = select.poll()
p.register(s, select.POLLOUT)
print("poll:", bool(p.poll(10000)), "SO_ERROR", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
s.setblocking(True)
print("then reads:", s.makefile().readline().startswith("127.0.0.1:"))
s.close()
s = socket.socket()
s.setblocking(False)
s.connect_ex(("127.0.0.1", closed_port))
p = select.poll()
p.register(s, select.POLLOUT)
ev = p.poll(10000)
print("refused non-blocking:", bool(ev and ev[0][1] & select.POLLERR),
      errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_net_host_reaches_host_servers(platform):
    harness.require_program(PYTHON)
    harness.require_busybox()
    servers = HostServers()
    try:
        args = ["-c", CLIENT, *map(str, servers.ports())]
        native = harness.run_native(PYTHON, args, timeout=TIMEOUT)
        sandbox = harness.run_sandbox(platform, PYTHON, args, options=["--net", "host"], timeout=TIMEOUT)
    finally:
        servers.close()
    harness.check_sentry_sane(sandbox)
    assert native.status == 0, native.stderr
    assert b"urllib 1004000" in native.stdout
    harness.compare(native, sandbox, label="net host client")


SERVE_ONE = r'''
import socket, sys
s = socket.create_server((sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
c, peer = s.accept()
print("peer is the loopback:", peer[0] == "127.0.0.1", flush=True)
data = b""
while not data.endswith(b"\n"):
    data += c.recv(100)
c.sendall(data.upper())
c.close()
'''


def _connect_retrying(port: int, deadline: float, rcvbuf: int = 0):
    """A connection to the published port once the sandbox listens (before, it is reset)."""
    while True:
        try:
            c = socket.socket()
            if rcvbuf:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # (before the window is agreed)
            c.settimeout(10)
            c.connect(("127.0.0.1", port))
        except (ConnectionRefusedError, ConnectionResetError):  # not listening yet, or reset
            assert time.monotonic() < deadline, "the sentry never listened on the published port"
            time.sleep(0.2)
            continue
        try:
            c.sendall(b"hello\n")
            got = c.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        if got:
            return c, got
        c.close()
        assert time.monotonic() < deadline, "the published port never reached the sandbox's server"
        time.sleep(0.2)


def _sentry(platform, options, argv, **kw):
    return subprocess.Popen(harness.sentry_argv(platform, argv[0], argv[1:], options=options),
                            env=harness.sentry_host_env(), cwd=str(REPO), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _end(proc) -> tuple[bytes, bytes]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=30)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_publish_http_server(platform):
    """python3 -m http.server in the sandbox, a 10 MB file fetched by a host client through
    --publish intact; the host port is free again once the sandbox ends."""
    harness.require_program(PYTHON)
    root = tempfile.mkdtemp(prefix="sentry-publish-")
    data = os.urandom(1 << 20) * 10
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(data)
    host_port, guest_port = free_port(), 8000
    proc = _sentry(platform, ["--publish", f"{host_port}:{guest_port}", "--mount", f"{root}:/srv", "--workdir",
                              "/srv", "--timeout", str(TIMEOUT)],
                   [PYTHON, "-m", "http.server", str(guest_port), "--bind", "127.0.0.1"])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/big.bin", timeout=60) as r:
                    body = r.read()
                break
            except (ConnectionError, urllib.error.URLError, OSError):
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the published server never answered"
                time.sleep(0.3)
        assert len(body) == len(data) and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    finally:
        out, err = _end(proc)
        for name in os.listdir(root):
            os.unlink(os.path.join(root, name))
        os.rmdir(root)
    assert b"Traceback" not in err and b"internal error" not in err, err
    assert port_is_free(host_port), "the published port is still held after the sandbox ended"


STALLED_WRITER = r'''
import select, socket, sys
s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
c, _ = s.accept()
c.recv(100)
c.setblocking(False)
total, chunk = 0, b"x" * 65536
p = select.poll()
p.register(c, select.POLLOUT)
while total < (256 << 20):
    try:
        total += c.send(chunk)
    except BlockingIOError:
        if not p.poll(3000):
            break  # the host client reads nothing: our writes stay stopped
print("stalled after", total, flush=True)
sys.stdin.readline()
c.close()
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_publish_flow_control(platform):
    """A host client that reads nothing stops the sandbox's writer: its non-blocking sends
    run dry after a bounded amount (what the host's buffers, the sentry's and the
    sandbox's hold), and the client then reads exactly what was sent."""
    harness.require_program(PYTHON)
    host_port = free_port()
    proc = subprocess.Popen(harness.sentry_argv(platform, PYTHON, ["-c", STALLED_WRITER, "9000"],
                                                options=["--publish", f"{host_port}:9000", "--timeout",
                                                         str(TIMEOUT)]),
                            env=harness.sentry_host_env(), cwd=str(REPO), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        c, first = _connect_retrying(host_port, time.monotonic() + 60)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        line = proc.stdout.readline().decode()
        assert line.startswith("stalled after"), (line, proc.stderr.read() if proc.poll() is not None else "")
        total = int(line.split()[-1])
        assert 0 < total < (32 << 20), total
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        got = len(first)
        c.settimeout(30)
        while True:
            chunk = c.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        c.close()
        assert got == total
    finally:
        _end(proc)
    assert port_is_free(host_port)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_net_host_wildcard_listener(platform):
    """--net host: a server on 0.0.0.0 is listened for on the host too (as sharing the
    host's network would); one on 127.0.0.1 stays the sandbox's own; the host port is
    free again after."""
    harness.require_program(PYTHON)
    private, public = free_port(), free_port()
    script = SERVE_ONE.replace('print("listening", flush=True)', f'''
p = socket.create_server(("127.0.0.1", {private}))
socket.create_connection(("127.0.0.1", {private}), timeout=5).close()
print("own 127.0.0.1 listener reached inside")
print("listening", flush=True)''')
    proc = _sentry(platform, ["--net", "host", "--timeout", str(TIMEOUT)],
                   [PYTHON, "-c", script, str(public), "0.0.0.0"])
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines == [b"own 127.0.0.1 listener reached inside\n", b"listening\n"], (lines, proc.stderr.peek())
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", private), timeout=5)
        c, got = _connect_retrying(public, time.monotonic() + 60)
        c.close()
        assert got == b"HELLO\n"
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        _end(proc)
    assert out == b"peer is the loopback: True\n", (out, err)
    assert port_is_free(public) and port_is_free(private)


WRITE_AND_EXIT = r'''
import socket, sys
s = socket.create_server(("127.0.0.1", 9001))
c, _ = s.accept()
c.recv(100)
c.sendall(bytes(range(256)) * (int(sys.argv[1]) // 256))
c.close()
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_publish_data_outlives_the_sandbox(platform):
    """A server that writes and exits at once: the host client still reads every byte
    (a closed socket's data is sent after its process ends, as Linux sends it)."""
    harness.require_program(PYTHON)
    host_port, size = free_port(), 16 << 20
    proc = _sentry(platform, ["--publish", f"{host_port}:9001", "--timeout", str(TIMEOUT)],
                   [PYTHON, "-c", WRITE_AND_EXIT, str(size)])
    try:
        c, got = _connect_retrying(host_port, time.monotonic() + 60, rcvbuf=16384)
        deadline = time.monotonic() + 60
        while proc.poll() is None:  # the sandbox ends with megabytes still to send
            assert time.monotonic() < deadline, "the sandbox did not end"
            got += c.recv(65536)
        c.settimeout(30)
        while True:
            chunk = c.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        c.close()
    finally:
        _end(proc)
    assert len(got) == size and got == bytes(range(256)) * (size // 256)


UDP_ECHO = r'''
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", int(sys.argv[1])))
for _ in range(int(sys.argv[2])):
    data, addr = u.recvfrom(65536)
    u.sendto(data.upper() + b" from " + str(addr[0]).encode(), addr)
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_publish_udp(platform):
    harness.require_program(PYTHON)
    host_port = free_port(socket.SOCK_DGRAM)
    proc = _sentry(platform, ["--publish", f"127.0.0.1:{host_port}:5353/udp", "--timeout", str(TIMEOUT)],
                   [PYTHON, "-c", UDP_ECHO, "5353", "1000"])
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        for i, u in enumerate(clients):
            u.settimeout(0.5)
            while True:  # (datagrams before the sandbox binds are dropped)
                u.sendto(b"ping %d" % i, ("127.0.0.1", host_port))
                try:
                    answer = u.recv(100)
                    break
                except socket.timeout:
                    assert proc.poll() is None and time.monotonic() < deadline, "no answer through --publish /udp"
            assert answer == b"PING %d from 127.0.0.1" % i
        u = clients[0]
        u.settimeout(10)
        u.sendto(b"x" * 60000, ("127.0.0.1", host_port))
        assert u.recv(65536) == b"X" * 60000 + b" from 127.0.0.1"
    finally:
        for u in clients:
            u.close()
        _end(proc)
    assert port_is_free(host_port, socket.SOCK_DGRAM)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_publish_before_listening_is_reset(platform):
    """A connection that arrives while nothing in the sandbox listens on GUEST_PORT is reset."""
    harness.require_program(PYTHON)
    host_port = free_port()
    proc = _sentry(platform, ["--publish", f"{host_port}:7000", "--timeout", str(TIMEOUT)],
                   [PYTHON, "-c", "import time; time.sleep(100)"])  # (ended by _end)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", host_port), timeout=10)
            except ConnectionRefusedError:  # the sentry is not listening yet
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
                continue
            except ConnectionResetError:
                got = "reset"  # (the reset came before connect returned)
                break
            c.settimeout(10)
            try:
                got = c.recv(10)
            except ConnectionResetError:
                got = "reset"
            c.close()
            break
        assert got == "reset"
    finally:
        _end(proc)


def test_publish_port_in_use_and_bad_strings():
    harness.require_program(PYTHON)
    held = socket.create_server(("127.0.0.1", 0))
    try:
        run = harness.run_sentry_cli(["run", "--publish", f"{held.getsockname()[1]}:80", "/bin/true"], timeout=60)
    finally:
        held.close()
    assert run.status == 125 and run.stderr.count(b"\n") == 1 and b"Address already in use" in run.stderr, run
    for bad in ("80", "a:80", "80:b", "1.2.3:80:90", "80:90/sctp", "70000:80", "80:0", "[::1]80:90", ":80"):
        run = harness.run_sentry_cli(["run", "--publish", bad, "/bin/true"], timeout=60)
        assert run.status == 125 and run.stderr.startswith(b"sentry: --publish ") \
            and run.stderr.count(b"\n") == 1, (bad, run.stderr)


API_CLIENT = r'''
import sys, urllib.request
print(len(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/f", timeout=20).read()))
'''


@pytest.mark.parametrize("platform", PLATFORMS)
def test_api_net_and_publish(platform):
    harness.require_program(PYTHON)
    sys.path.insert(0, str(REPO))
    from sentry.api import Limits, Sandbox
    # (a message names the argument first; a wrong type is a TypeError: sentry/api.py)
    for bad, error, name in (({"net": "bridge"}, ValueError, "net:"), ({"publish": "8080:80"}, TypeError, "publish:"),
                             ({"publish": ["8080"]}, ValueError, "publish '8080'")):
        with pytest.raises(error) as e:
            Sandbox(**bad)
        assert str(e.value).startswith(name), e.value
    servers = HostServers()
    try:
        port = servers.ports()[0]
        r = Sandbox(platform=platform, limits=Limits(timeout=TIMEOUT)).run([PYTHON, "-c", API_CLIENT, str(port)])
        assert r.exit_code != 0 and b"Errno 111" in r.stderr  # --net none: the host's server is not reached
        r = Sandbox(net="host", platform=platform, limits=Limits(timeout=TIMEOUT)).run(
            [PYTHON, "-c", API_CLIENT, str(port)])
        assert (r.exit_code, r.stdout) == (0, b"1004000\n"), r.stderr
    finally:
        servers.close()
    host_port = free_port()
    box = Sandbox(publish=[f"127.0.0.1:{host_port}:7001"], platform=platform, limits=Limits(timeout=TIMEOUT))
    answers = []

    def client():
        c, got = _connect_retrying(host_port, time.monotonic() + 60)
        answers.append(got)
        c.close()
    t = threading.Thread(target=client)
    t.start()
    r = box.run([PYTHON, "-c", SERVE_ONE, "7001"])
    t.join(timeout=TIMEOUT)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == b"listening\npeer is the loopback: True\n" and answers == [b"HELLO\n"]
    assert port_is_free(host_port)


def test_rootfs_gets_the_host_resolver():
    """--rootfs with --net host: the host's resolv.conf, hosts and nsswitch.conf over the
    rootfs's own (which a rootfs keeps without --net host)."""
    busybox = harness.require_busybox()
    root = tempfile.mkdtemp(prefix="sentry-rootfs-")
    try:
        os.makedirs(os.path.join(root, "bin"))
        os.makedirs(os.path.join(root, "etc"))
        with open(busybox, "rb") as src, open(os.path.join(root, "bin", "busybox"), "wb") as dst:
            dst.write(src.read())
        os.chmod(os.path.join(root, "bin", "busybox"), 0o755)
        with open(os.path.join(root, "etc", "resolv.conf"), "w") as f:
            f.write("nameserver 192.0.2.99\n")
        argv = ["run", "--rootfs", root, "/bin/busybox", "cat", "/etc/resolv.conf"]
        own = harness.run_sentry_cli(argv, timeout=60)
        host = harness.run_sentry_cli(argv[:1] + ["--net", "host"] + argv[1:], timeout=60)
        hosts = harness.run_sentry_cli(["run", "--net", "host", "--rootfs", root, "/bin/busybox", "cat",
                                        "/etc/hosts"], timeout=60)
    finally:
        import shutil
        shutil.rmtree(root)
    assert own.stdout == b"nameserver 192.0.2.99\n", own
    with open("/etc/resolv.conf", "rb") as f:
        assert host.stdout == f.read(), host
    with open("/etc/hosts", "rb") as f:
        assert hosts.stdout == f.read(), hosts
