"""Small fake services for conductor's tests (stdlib only, so they start in ~20 ms).

python fakes.py http  --port P [--delay S] [--status N]   HTTP listener after a delay
python fakes.py tcp   --port P [--delay S]                bare TCP listener
python fakes.py crash [--delay S] [--code N]              prints, then exits
python fakes.py never                                     runs, never gets ready
python fakes.py stubborn --port P                         ignores SIGTERM
python fakes.py daemon --port P --pidfile F               double-forks a setsid daemon
python fakes.py daemon-bare --port P --pidfile F          the same, with an empty environment
python fakes.py flood --port P --mb N                     writes N MB, then listens
python fakes.py logline [--delay S] [--text T]            prints a readiness line
python fakes.py die-later --port P --text SECONDS --code N  ready, then dies
python fakes.py child-ignores-term --port P --pidfile F   a child that ignores SIGTERM
python fakes.py late-bind --port P                        loses the race for P: waits until
                                                          another program listens on P, then
                                                          retries binding it, never succeeds
python fakes.py setsid-server --port P                    a setsid child listens, not the leader
python fakes.py orphans --port P --pidfile F              double-forks 3 helpers that exit
python fakes.py longline --mb N [--rate R] [--text T]     an N MB line with no newline (at
                                                          R MB/s if given), then T on a line
python fakes.py crash-longline --mb N [--code C]          a last line of N MB, then exits
"""

from __future__ import annotations

import argparse
import http.server
import os
import pathlib
import signal
import socket
import sys
import threading
import time


def serve_tcp(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    print(f"listening on {port}", flush=True)
    while True:
        conn, _ = sock.accept()
        conn.close()


def serve_http(port: int, status: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"fake {self.path}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print("request", self.path, flush=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"http on {port}", flush=True)
    server.serve_forever()


def await_pid(pidfile: str) -> None:
    """Serve (become ready) only once the process the test looks for has written its
    pid: a test that reads the file right after the service is ready must find it."""
    deadline = time.monotonic() + 30
    written = pathlib.Path(pidfile)
    while not (written.exists() and written.read_text().strip()):
        if time.monotonic() > deadline:
            sys.exit(f"fake: {pidfile} was not written within 30 s")
        time.sleep(0.01)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def long_line(mb: int, rate: float) -> None:
    """`mb` MiB of one line, written a MiB at a time (throttled to `rate` MiB/s if set)."""
    block = b"x" * (1 << 20)
    out = sys.stdout.buffer
    for _ in range(mb):
        out.write(block)
        out.flush()
        if rate:
            time.sleep(1 / rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--code", type=int, default=3)
    parser.add_argument("--pidfile", default="")
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--text", default="READY to serve")
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    print(f"fake {args.mode} pid {os.getpid()}", flush=True)
    time.sleep(args.delay)
    if args.mode == "http":
        serve_http(args.port, args.status)
    elif args.mode == "tcp":
        serve_tcp(args.port)
    elif args.mode == "crash":
        print("boom: something went wrong", file=sys.stderr, flush=True)
        sys.exit(args.code)
    elif args.mode == "never":
        sleep_forever()
    elif args.mode == "stubborn":
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
        serve_tcp(args.port)
    elif args.mode == "daemon":
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(args.pidfile, "w") as handle:
                    handle.write(str(os.getpid()))
                sleep_forever()
            os._exit(0)
        await_pid(args.pidfile)
        serve_tcp(args.port)
    elif args.mode == "daemon-bare":
        # Escapes its group and, with an empty environment, the run's mark too.
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(3600)"
                os.execve(sys.executable, [sys.executable, "-c", code, args.pidfile], {})
            os._exit(0)
        await_pid(args.pidfile)
        serve_tcp(args.port)
    elif args.mode == "child-ignores-term":
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with open(args.pidfile, "w") as handle:
                handle.write(str(os.getpid()))
            sleep_forever()
        await_pid(args.pidfile)
        serve_tcp(args.port)
    elif args.mode == "orphans":
        # What a browser launch does: helpers whose parent exits first, so they are
        # adopted by the nearest subreaper, and which then exit themselves.
        for _ in range(3):
            child = os.fork()
            if child == 0:
                if os.fork() == 0:
                    with open(args.pidfile, "a") as handle:
                        handle.write(f"{os.getpid()}\n")
                    os._exit(0)
                os._exit(0)
            os.waitpid(child, 0)
        serve_tcp(args.port)
    elif args.mode == "flood":
        chunk = b"x" * 1023 + b"\n"
        out = sys.stdout.buffer
        started = time.perf_counter()
        for _ in range(args.mb * 1024):
            out.write(chunk)
        out.flush()
        print(f"flooded {args.mb} MB in {time.perf_counter() - started:.3f}s", flush=True)
        serve_tcp(args.port)
    elif args.mode == "die-later":
        threading.Thread(target=serve_tcp, args=(args.port,), daemon=True).start()
        time.sleep(float(args.text) if args.text[0].isdigit() else 1.0)
        print("dying now", flush=True)
        os._exit(args.code)
    elif args.mode == "late-bind":
        while True:  # until the other program listens (a real condition, not a delay)
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        while True:  # what servers with a retry loop do
            try:
                serve_tcp(args.port)
            except OSError as exc:
                print(f"cannot bind {args.port}: {exc}; retrying", flush=True)
                time.sleep(0.1)
    elif args.mode == "setsid-server":
        if os.fork() == 0:
            os.setsid()  # out of the service's process group; only the marker leads here
            serve_tcp(args.port)
        sleep_forever()
    elif args.mode == "logline":
        print("warming up", flush=True)
        print(args.text, flush=True)
        sleep_forever()
    elif args.mode == "longline":
        long_line(args.mb, args.rate)
        if args.text:
            print("\n" + args.text, flush=True)
        sleep_forever()
    elif args.mode == "crash-longline":
        print("boom: something went wrong", flush=True)
        long_line(args.mb, 0)
        print(flush=True)
        sys.exit(args.code)
    else:
        parser.error(f"unknown mode {args.mode}")


if __name__ == "__main__":
    threading.current_thread().name = "fake"
    main()
