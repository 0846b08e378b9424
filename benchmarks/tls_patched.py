"""TLS through the patch: ``reseau_patch.patch_all()`` vs ``gevent.monkey.patch_all()``
(libev-cext loop) vs the unpatched stdlib, as clients of one unpatched TLS server.

The server is a separate process (plain stdlib ``ssl``, a thread per connection) serving
four workloads; each client implementation runs in its own process, one process per round,
and rounds interleave the implementations so machine load hits them alike. Reported: the
median over rounds of

* ``recv``: MB/s (10**6 bytes) of a bulk TLS download read with ``recv_into`` (64 KiB);
* ``send``: MB/s of a bulk TLS upload (``sendall`` of 256 KiB pieces), until the server
  acknowledges every byte;
* ``gets``: keep-alive HTTPS GETs/s with ``requests`` (one session, one connection);
* ``handshakes``: full TLS handshakes/s (connect, handshake, close).

and ratios against gevent and the stdlib, both as wall-clock rates and per second of the
client process's CPU time (the second is far less disturbed by a loaded machine).
Targets (issue #10): recv/send >= 1.0x gevent and >= 0.9x stdlib; gets and handshakes >= 1.0x
gevent.
Not a test: ``python benchmarks/tls_patched.py --rounds 5``; ``--profile [IMPL]`` runs one
client (reseau by default) once under cProfile and prints its hot functions instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMPLS = ("reseau", "gevent", "stdlib")
WORKLOADS = ("recv", "send", "gets", "handshakes")
UNIT = {"recv": "MB/s", "send": "MB/s", "gets": "GET/s", "handshakes": "hs/s"}
CHUNK = 256 * 1024


# ---------------------------------------------------------------- the server (unpatched)
def run_server(workdir: str, mib: int) -> None:
    """Serve the four workloads on loopback; print the ports as JSON, run until stdin ends."""
    sys.path.insert(0, str(REPO))
    from benchmarks.pinning import pin_peer

    pin_peer()  # on the CPUs the harness left for peers, if it pinned the client
    import http.server
    import socket
    import ssl
    import threading

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(workdir, "server.crt"), os.path.join(workdir, "server.key"))
    payload = os.urandom(CHUNK)

    def listener(handle: Any) -> int:
        lsock = socket.create_server(("127.0.0.1", 0), backlog=128)

        def accept_loop() -> None:
            while True:
                conn, _ = lsock.accept()
                threading.Thread(target=guarded, args=(handle, conn), daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()
        return lsock.getsockname()[1]

    def guarded(handle: Any, conn: socket.socket) -> None:
        try:
            handle(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def bulk_out(conn: socket.socket) -> None:
        s = ctx.wrap_socket(conn, server_side=True)
        total = int.from_bytes(s.recv(8), "big")
        while total > 0:
            s.sendall(payload[:min(total, CHUNK)])
            total -= CHUNK
        s.recv(1)  # the client closes when it has everything
        s.close()

    def bulk_in(conn: socket.socket) -> None:
        s = ctx.wrap_socket(conn, server_side=True)
        total = int.from_bytes(s.recv(8), "big")
        buf = bytearray(CHUNK)
        got = 0
        while got < total:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
        s.sendall(got.to_bytes(8, "big"))
        s.recv(1)
        s.close()

    def handshake_only(conn: socket.socket) -> None:
        s = ctx.wrap_socket(conn, server_side=True)
        s.recv(1)
        s.close()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes
        body = b"x" * 1024

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)

        def log_message(self, *a: Any) -> None:
            pass

    http.server.ThreadingHTTPServer.request_queue_size = 128
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ports = {"recv": listener(bulk_out), "send": listener(bulk_in),
             "handshakes": listener(handshake_only), "gets": httpd.server_address[1]}
    print(json.dumps(ports), flush=True)
    sys.stdin.read()


# ---------------------------------------------------------------- a client process
def run_client(impl: str, workdir: str, ports: dict[str, int], mib: int, gets: int,
               handshakes: int, only: tuple[str, ...] = WORKLOADS,
               profiler: Any = None) -> dict[str, float]:
    """One implementation's rates; ``profiler`` (a cProfile.Profile) sees only the workloads."""
    if impl == "reseau":
        import reseau_patch

        reseau_patch.patch_all()
    elif impl == "gevent":
        from gevent import monkey

        monkey.patch_all()
    import socket
    import ssl

    import requests

    ca = os.path.join(workdir, "ca.pem")
    ctx = ssl.create_default_context(cafile=ca)

    def connect(port: int) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    total = mib * 1024 * 1024
    out: dict[str, float] = {}

    def measure(name: str, work: float, fn: Any, *args: Any) -> None:
        """Wall rate from ``fn``; CPU rate: ``work`` per second of this process's CPU
        (what the client itself costs, much less disturbed by other load than wall time)."""
        c0 = time.process_time()
        if profiler is not None:
            profiler.enable()
        out[name] = fn(*args)
        if profiler is not None:
            profiler.disable()
        out[name + "_cpu"] = work / max(time.process_time() - c0, 1e-9)

    def hs_loop() -> float:
        t0 = time.perf_counter()
        for _ in range(handshakes):
            connect(ports["handshakes"]).close()
        return handshakes / (time.perf_counter() - t0)

    if "recv" in only:
        measure("recv", total / 1e6, download, connect(ports["recv"]), total)
    if "send" in only:
        measure("send", total / 1e6, upload, connect(ports["send"]), total)
    if "gets" in only:
        measure("gets", gets, https_gets, requests, ca, ports["gets"], gets)
    if "handshakes" in only:
        measure("handshakes", handshakes, hs_loop)
    return out


def download(s: Any, total: int) -> float:
    s.sendall(total.to_bytes(8, "big"))
    buf = bytearray(64 * 1024)
    got = 0
    t0 = time.perf_counter()
    while got < total:
        n = s.recv_into(buf)
        if not n:
            raise RuntimeError(f"download ended at {got} of {total}")
        got += n
    s.close()
    return total / (time.perf_counter() - t0) / 1e6


def upload(s: Any, total: int) -> float:
    piece = os.urandom(CHUNK)
    t0 = time.perf_counter()
    s.sendall(total.to_bytes(8, "big"))
    for _ in range(total // CHUNK):
        s.sendall(piece)
    ack = int.from_bytes(s.recv(8), "big")
    rate = total / (time.perf_counter() - t0) / 1e6
    if ack != total:
        raise RuntimeError(f"server got {ack} of {total}")
    s.close()
    return rate


def https_gets(requests: Any, ca: str, port: int, gets: int) -> float:
    session = requests.Session()
    url = f"https://localhost:{port}/"
    for _ in range(5):
        session.get(url, verify=ca).raise_for_status()
    t0 = time.perf_counter()
    for _ in range(gets):
        r = session.get(url, verify=ca)
        if r.status_code != 200 or len(r.content) != 1024:
            raise RuntimeError(f"bad response {r.status_code}")
    rate = gets / (time.perf_counter() - t0)
    session.close()
    return rate


# ---------------------------------------------------------------- the driver
def make_pki(workdir: str) -> None:
    sys.path.insert(0, str(REPO))
    from reseau_patch import pki

    ca = pki.make_ca("tls benchmark CA")
    ca.issue(["localhost"]).write_pem(workdir, "server")
    with open(os.path.join(workdir, "ca.pem"), "wb") as f:
        f.write(ca.cert_pem())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=128, help="MiB per bulk transfer")
    ap.add_argument("--gets", type=int, default=1000)
    ap.add_argument("--handshakes", type=int, default=300)
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated workloads (default: all)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--profile", nargs="?", const="reseau", choices=IMPLS, metavar="IMPL",
                    help="run one client (default reseau) under cProfile instead")
    ap.add_argument("--sort", default="tottime", help="pstats order for --profile")
    ap.add_argument("--server", metavar="WORKDIR", help=argparse.SUPPRESS)
    ap.add_argument("--client", metavar="IMPL", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.server:
        run_server(args.server, args.mib)
        return 0
    if args.client:
        res = run_client(args.client, args.workdir, json.loads(args.ports), args.mib,
                         args.gets, args.handshakes, tuple(args.only.split(",")))
        print(json.dumps(res))
        return 0

    workdir = tempfile.mkdtemp(prefix="reseau-tls-bench-")
    make_pki(workdir)
    server = subprocess.Popen([sys.executable, __file__, "--server", workdir, "--mib",
                               str(args.mib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        ports = server.stdout.readline()
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            if args.profile == "gevent":
                import gevent

                gevent.config.loop = "libev-cext"
            res = run_client(args.profile, workdir, json.loads(ports), args.mib, args.gets,
                             args.handshakes, tuple(args.only.split(",")), prof)
            print(res)
            pstats.Stats(prof).sort_stats(args.sort).print_stats(30)
            return 0
        results: dict[str, list[dict[str, float]]] = {i: [] for i in IMPLS}
        env = dict(os.environ, GEVENT_LOOP="libev-cext", PYTHONPATH=str(REPO))
        for r in range(args.rounds):
            order = IMPLS[r % len(IMPLS):] + IMPLS[:r % len(IMPLS)]
            for impl in order:
                proc = subprocess.run(
                    [sys.executable, __file__, "--client", impl, "--workdir", workdir,
                     "--ports", ports, "--mib", str(args.mib), "--gets", str(args.gets),
                     "--handshakes", str(args.handshakes), "--only", args.only],
                    capture_output=True, text=True, timeout=600,
                    env=env if impl == "gevent" else dict(os.environ, PYTHONPATH=str(REPO)))
                if proc.returncode != 0:
                    raise SystemExit(f"{impl} failed:\n{proc.stderr[-3000:]}")
                results[impl].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {impl}: {results[impl][-1]}", file=sys.stderr)
    finally:
        server.stdin.close()
        server.terminate()
        server.wait(10)
    workloads = [w for w in WORKLOADS if w in args.only.split(",")]
    keys = workloads + [w + "_cpu" for w in workloads]
    med = {i: {k: statistics.median(x[k] for x in results[i]) for k in keys} for i in IMPLS}
    print(f"TLS through the patch, medians of {args.rounds} interleaved rounds "
          f"({args.mib} MiB bulk, {args.gets} GETs, {args.handshakes} handshakes)")
    for title, suffix in (("wall-clock rate", ""), ("per client CPU second", "_cpu")):
        print(f"{title:<17}{'reseau':>10}{'gevent':>10}{'stdlib':>10}"
              f"{'vs gevent':>11}{'vs stdlib':>11}")
        for w in workloads:
            k = w + suffix
            r, g, s = med["reseau"][k], med["gevent"][k], med["stdlib"][k]
            print(f"  {w + ' ' + UNIT[w]:<15}{r:>10.1f}{g:>10.1f}{s:>10.1f}"
                  f"{r / g:>10.2f}x{r / s:>10.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": results, "medians": med}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
