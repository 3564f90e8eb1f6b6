"""AF_UNIX sockets under real programs nobody here wrote: the host's python3
running asyncio (an event loop with call_later timers, gather, a queue,
wait_for timing out, the default executor's threads; subprocesses with pipes
and the socketpair asyncio gives a child's stdin; start_unix_server and
open_unix_connection on a socket file and an abstract name) and the socket
module (socketpair between threads, send_fds/recv_fds, multiprocessing.Pipe
across fork, selectors, settimeout), each compared with a native run.

The fixture fixtures/sockets.c covers the calls one by one (tests/test_fixtures.py).
Every script prints only deterministic facts; the sentry may add its own
`sentry: ...` lines on stderr, nothing else.
"""
from __future__ import annotations


import pytest

import harness
from harness import PLATFORMS

PYTHON = "/usr/bin/python3"
TIMEOUT = 120  # per program run (unicorn runs python3 several times slower)

PY_LOOP = r'''
import asyncio

async def ticker(name, n, delay, out):
    for i in range(n):
        await asyncio.sleep(delay)
        out.append((name, i))
    return name

async def main():
    loop = asyncio.get_running_loop()
    fired = []
    loop.call_later(0.05, fired.append, "later 50 ms")
    loop.call_later(0.01, fired.append, "later 10 ms")
    loop.call_later(0.02, fired.append, "cancelled").cancel()
    loop.call_soon(fired.append, "soon")
    t0 = loop.time()
    loop.call_at(t0 + 0.03, fired.append, "at +30 ms")
    out = []
    res = await asyncio.gather(ticker("a", 3, 0.01, out), ticker("b", 2, 0.015, out), ticker("c", 1, 0.001, out))
    print("gather:", res, sorted(out))
    await asyncio.sleep(0.06)
    print("timers:", fired)
    print("the loop's clock moved at least 60 ms:", loop.time() - t0 >= 0.06)
    try:
        await asyncio.wait_for(asyncio.sleep(10), 0.05)
    except asyncio.TimeoutError:
        print("wait_for timed out")
    q = asyncio.Queue(maxsize=2)
    async def produce():
        for i in range(20):
            await q.put(i)
        await q.put(None)
    async def consume():
        got = []
        while (x := await q.get()) is not None:
            got.append(x)
        return got
    print("queue:", (await asyncio.gather(produce(), consume()))[1])
    print("executor:", await loop.run_in_executor(None, sum, range(100)))
    results = await asyncio.gather(*(loop.run_in_executor(None, pow, 2, i) for i in range(8)))
    print("executor x8:", results)
    ev = asyncio.Event()
    loop.call_later(0.02, ev.set)
    await ev.wait()
    print("event set by a timer")
    print("done")

asyncio.run(main())
'''

PY_SUBPROCESS = r'''
import asyncio, sys

async def main():
    p = await asyncio.create_subprocess_exec("/bin/echo", "hello", "from", "echo", stdout=asyncio.subprocess.PIPE)
    print("echo:", await p.stdout.read(), await p.wait())
    p = await asyncio.create_subprocess_exec("/bin/cat", stdin=asyncio.subprocess.PIPE,
                                             stdout=asyncio.subprocess.PIPE)
    data = b"".join(b"line %d of the input\n" % i for i in range(20000))
    out, _ = await p.communicate(data)
    print("cat:", len(out), out == data, p.returncode)
    p = await asyncio.create_subprocess_exec("/bin/sh", "-c", "echo to stderr >&2; read x; echo got $x; exit 3",
                                             stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate(b"the line\n")
    print("sh:", out, err, p.returncode)
    procs = [await asyncio.create_subprocess_exec("/bin/sh", "-c", "sleep 0.0%d; echo %d" % (i, i),
                                                  stdout=asyncio.subprocess.PIPE) for i in range(5)]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    print("five at once:", sorted(o[0] for o in outs), [p.returncode for p in procs])
    p = await asyncio.create_subprocess_shell("exit 7")
    print("shell exit:", await p.wait())
    p = await asyncio.create_subprocess_exec("/bin/sleep", "10")
    p.terminate()
    print("terminated:", await p.wait())
    upper = "import sys; sys.stdout.write(sys.stdin.read().upper())"
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", upper,
                                             stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    p.stdin.write(b"written in pieces, ")
    await p.stdin.drain()
    p.stdin.write(b"then closed")
    p.stdin.close()
    print("python child:", await p.stdout.read(), await p.wait())
    print("done")

asyncio.run(main())
'''

PY_UNIX_SERVER = r'''
import asyncio, os, stat, tempfile

async def handle(reader, writer):
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()

async def client(addr, i):
    r, w = await asyncio.open_unix_connection(addr)
    for k in range(3):
        w.write(b"client %d line %d\n" % (i, k))
    await w.drain()
    w.write_eof()
    data = await r.read()
    w.close()
    await w.wait_closed()
    return data

async def main():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "sock")
    server = await asyncio.start_unix_server(handle, path)
    print("a socket file:", stat.S_ISSOCK(os.stat(path).st_mode))
    for data in await asyncio.gather(*(client(path, i) for i in range(6))):
        print(data)
    big = b"x" * 1000000 + b"\n"
    r, w = await asyncio.open_unix_connection(path)
    w.write(big)
    w.write_eof()
    back = await r.read()
    print("1 MB echoed:", len(back), back == big.upper())
    w.close()
    server.close()
    await server.wait_closed()
    try:
        await asyncio.open_unix_connection(path)
    except ConnectionRefusedError as e:
        print("after the server closed:", e.errno)
    os.unlink(path)
    try:
        await asyncio.open_unix_connection(path)
    except FileNotFoundError as e:
        print("after the unlink:", e.errno)
    os.rmdir(d)
    name = "\0sentry-test-%d" % os.getpid()
    server = await asyncio.start_unix_server(handle, name)
    print("abstract:", await client(name, 99))
    server.close()
    await server.wait_closed()
    print("done")

asyncio.run(main())
'''

PY_SOCKET = r'''
import multiprocessing as mp, os, selectors, socket, struct, threading, time

a, b = socket.socketpair()
got = []
def reader():
    while data := b.recv(7):
        got.append(data)
th = threading.Thread(target=reader)
th.start()
for i in range(5):
    a.sendall(b"message %d;" % i)
    time.sleep(0.005)
a.shutdown(socket.SHUT_WR)
th.join()
print("thread read:", b"".join(got))
cred = struct.unpack("3i", b.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
print("peer credentials:", cred[0] == os.getpid())
a.close(); b.close()

a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
r, w = os.pipe()
socket.send_fds(a, [b"with a pipe"], [r])
msg, fds, flags, addr = socket.recv_fds(b, 100, 4)
os.write(w, b"through it")
print("recv_fds:", msg, len(fds), os.read(fds[0], 100))
for fd in (r, w, *fds):
    os.close(fd)
a.close(); b.close()

def child(conn):
    while (x := conn.recv()) is not None:
        conn.send({k: v * 2 for k, v in x.items()})
    conn.close()
ctx = mp.get_context("fork")
parent, kid = ctx.Pipe()
p = ctx.Process(target=child, args=(kid,))
p.start()
out = []
for i in range(10):
    parent.send({"n": i, "s": "x" * i})
    out.append(parent.recv())
parent.send(None)
p.join()
print("multiprocessing.Pipe:", out[9], len(out), p.exitcode)

a, b = socket.socketpair()
a.setblocking(False); b.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(b, selectors.EVENT_READ, "b")
print("nothing ready:", sel.select(timeout=0))
a.send(b"ping")
print("ready:", [(k.data, ev) for k, ev in sel.select(timeout=1)])
b.recv(10)
b.settimeout(0.05)
t = time.monotonic()
try:
    b.recv(10)
except socket.timeout:
    print("timed out after at least 40 ms:", time.monotonic() - t >= 0.04)
a.close()
print("after close:", b.recv(10))
sel.close(); b.close()

s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
print("socket(AF_UNIX, SOCK_SEQPACKET):", s.type == socket.SOCK_SEQPACKET, s.getsockname())
s.close()
print("done")
'''

CASES = [
    pytest.param("loop", PY_LOOP, id="asyncio-loop"),
    pytest.param("subprocess", PY_SUBPROCESS, id="asyncio-subprocess"),
    pytest.param("unix-server", PY_UNIX_SERVER, id="asyncio-unix-server"),
    pytest.param("socket", PY_SOCKET, id="socket-module"),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("name,script", CASES)
def test_python_sockets(name, script, platform):
    harness.require_program(PYTHON)
    argv = [PYTHON, "-I", "-c", script]
    native = harness.run_native(argv[0], argv[1:], timeout=TIMEOUT)
    assert not native.timed_out, f"native python3 {name} timed out"
    assert native.status == 0 and native.stdout.endswith(b"done\n"), native.stdout.decode() + native.stderr_text()
    sandbox = harness.run_sandbox(platform, argv[0], argv[1:], timeout=TIMEOUT)
    harness.compare(native, sandbox, stderr="notes", label=f"python3 {name}", guest_tracebacks=True)


def test_skb_sizes_are_linuxs():
    """The flow-control model of sentry/net/unix.py against figures measured on Linux 6.18
    (x86-64): what a non-blocking stream write takes into an empty socketpair with the
    default SO_SNDBUF, and SIOCOUTQ (the truesize charged) after it."""
    from sentry.net.unix import WMEM_DEFAULT, dgram_truesize, stream_piece

    def fill(size):
        wmem = sent = calls = 0
        while wmem < WMEM_DEFAULT:  # one send() per call, pieces while there is room
            calls += 1
            left = size
            while left and wmem < WMEM_DEFAULT:
                n, truesize = stream_piece(left, WMEM_DEFAULT)
                wmem += truesize
                sent += n
                left -= n
        return sent, calls, wmem

    assert fill(1 << 20) == (219264, 1, 222720)
    assert fill(100) == (27800, 278, 213504)
    assert fill(4000) == (176000, 44, 214016)
    assert fill(36545) == (219269, 6, 226560)
    assert dgram_truesize(10) == 768
    assert stream_piece(1 << 20, 16384) == (8128, 768 + 8192)  # sndbuf/2 - 64 per piece
