#!/usr/bin/env python3
"""A published port's throughput from a host client (issue 14), as a ratio to native.

The same server (python3: on each connection, SIZE bytes in 64 KiB sends) runs
natively on a host port and inside a sandbox published with
`--publish HOST_PORT:GUEST_PORT`; the same host client (this process) connects
and reads everything, timing from connect to end of file. Prints MB/s of both
and sandbox/native, per platform.

Usage: .venv/bin/python bench/publish.py [--size MIB] [--runs N] [--platform ptrace|unicorn ...]
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
SERVER = r'''
import socket, sys
size, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
chunk = b"x" * 65536
while True:
    c, _ = s.accept()
    c.recv(16)
    left = size
    while left > 0:
        left -= c.send(chunk[:min(left, 65536)])
    c.close()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, size: int, deadline: float) -> float:
    """Seconds from connect to the last byte (retrying while the server is not there yet)."""
    while True:
        try:
            start = time.perf_counter()
            c = socket.create_connection(("127.0.0.1", port), timeout=60)
            c.sendall(b"go")
            got = 0
            while True:
                n = len(c.recv(1 << 20))
                if not n:
                    break
                got += n
            c.close()
            if got == size:
                return time.perf_counter() - start
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server never answered")
        time.sleep(0.2)


def measure(argv, port: int, size: int, runs: int) -> float:
    """Median MB/s over `runs` fetches from a server started with argv."""
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/",
                              env={**os.environ, "PYTHONPATH": REPO})
    try:
        server.stdout.readline()
        fetch(port, size, time.monotonic() + 60)  # warm-up
        return statistics.median(size / fetch(port, size, time.monotonic() + 60) / 1e6 for _ in range(runs))
    finally:
        server.kill()
        server.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="MiB per fetch (default 256)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--platform", action="append", choices=("ptrace", "unicorn"))
    o = ap.parse_args(argv)
    size = o.size << 20
    port = free_port()
    native = measure([PYTHON, "-c", SERVER, str(size), str(port)], port, size, o.runs)
    print(f"native            {native:9.1f} MB/s")
    for platform in o.platform or ["ptrace", "unicorn"]:
        host_port = free_port()
        mbs = measure([sys.executable, "-m", "sentry", "run", "--no-cwd", "--platform", platform, "--publish",
                       f"{host_port}:8000", PYTHON, "-c", SERVER, str(size), "8000"], host_port, size, o.runs)
        print(f"sentry/{platform:<10} {mbs:9.1f} MB/s   {mbs / native:.2f}x native")
    return 0


if __name__ == "__main__":
    sys.exit(main())
