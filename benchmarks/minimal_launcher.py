"""The least a Python program does for conductor's job: the baseline of its overhead.

    python benchmarks/minimal_launcher.py '[[ARGV, PORT], ...]' -- COMMAND [ARG ...]

Spawns each service (ARGV, its output to svcN.log, a session of its own), knocks on
its port until an HTTP GET of / answers 2xx or 3xx (every 5 ms, as conductor polls),
runs COMMAND, then SIGTERMs every service and reaps it; exits with COMMAND's status.
Nothing else: no configuration, no lock, no record, no watchdog, no report. The
benchmark's row "cost over a minimal launcher" is conductor's time minus this one's.
Only the standard library, and only the modules that job needs.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time


def answers(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16)[9:10] in (b"2", b"3")  # "HTTP/1.1 200 ..."
        except OSError:
            return False


def main() -> int:
    cut = sys.argv.index("--")
    services = json.loads(sys.argv[1])
    procs = []
    for i, (argv, _port) in enumerate(services):
        with open(f"svc{i}.log", "wb") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True))
    try:
        for _argv, port in services:
            while not answers(port):
                time.sleep(0.005)
        return subprocess.call(sys.argv[cut + 1 :])
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
