"""WSGI servers under ``wrk``: our WSGIServer vs gevent.pywsgi vs gunicorn's gevent worker vs
uvicorn with a bare ASGI app; and memory per idle keep-alive connection.

Implementations (each its own process tree; ``workers`` 1 = a standalone server where one
exists, 2 = gunicorn/uvicorn with two worker processes):

* ``reseau``          our ``reseau_patch.server.WSGIServer`` (2: gunicorn -k
  ``reseau_patch.gunicorn.Worker``);
* ``gevent-pywsgi``   **the baseline**: ``gevent.pywsgi.WSGIServer`` under
  ``gevent.monkey.patch_all()`` (2: gunicorn -k ``gevent_pywsgi``);
* ``gunicorn-gevent`` gunicorn's gevent worker (``-k gevent``, both counts);
* ``uvicorn-asgi``    uvicorn (uvloop + httptools) serving a bare ASGI app.

Apps: ``hello`` (13 bytes) and ``64k`` (a 64 KiB body), both with Content-Length.

Contract of the workload functions (for the benchmark harness; each is self-contained, runs
on 127.0.0.1 only, and cleans up its processes):

* :func:`workload(impl, app, connections, workers, duration)` -> ``{"rps": float,
  "p99_ms": float, "errors": int, ...}`` — starts the server, a 1 s ``wrk`` warm-up, then
  ``wrk -t2 -c<connections> -d<duration>s --latency``; ``errors`` counts wrk's socket
  errors and non-2xx answers.
* :func:`idle_memory(impl, n)` -> ``{"rss_per_conn": bytes, "rss_base": bytes,
  "rss_loaded": bytes, "n": int}`` — one worker; a client process opens ``n`` keep-alive
  connections, makes one request on each, and holds them; RSS of the serving process is
  read from /proc before and after.

Goals (issue #13): requests/s >= 1.2x gevent-pywsgi with p99 no worse, on 1 and 2 workers,
for both apps at c=50 and c=1000; memory per idle connection at 10,000 connections <=
gevent's. Rounds are interleaved (implementations rotate within each round) and the
report gives the median of the rounds as ratios against the baseline.

``python benchmarks/wsgi_servers.py --rounds 3 --duration 5`` (needs ``wrk``: apt-get
install wrk; ``pip install -e '.[bench]'``); ``--memory 10000`` adds the memory test;
``--profile`` runs our server in this process under cProfile while wrk loads it;
``--parsers`` prints the per-request cost of httptools vs h11 (why the server uses httptools).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = "gevent-pywsgi"
IMPLS = ("reseau", "gevent-pywsgi", "gunicorn-gevent", "uvicorn-asgi")
APPS = ("hello", "64k")
RPS_GOAL = 1.2
HELLO = b"Hello, World!"
BIG = b"x" * 65536
_BODIES = {"hello": HELLO, "64k": BIG}


# ---------------------------------------------------------------------------- the apps
def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def big_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    return [BIG]


async def _asgi(body: bytes, scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def asgi_hello(scope, receive, send):
    await _asgi(HELLO, scope, receive, send)


async def asgi_big(scope, receive, send):
    await _asgi(BIG, scope, receive, send)


_WSGI_NAMES = {"hello": "hello_app", "64k": "big_app"}
_ASGI_NAMES = {"hello": "asgi_hello", "64k": "asgi_big"}


# ---------------------------------------------------------------------------- servers
def _serve_standalone(impl: str, port: int, app: str) -> None:
    """Child process body: one standalone server (workers=1 for reseau / pywsgi)."""
    wsgi = hello_app if app == "hello" else big_app
    if impl == "reseau":
        from reseau_patch.server import WSGIServer

        WSGIServer(("127.0.0.1", port), wsgi, backlog=2048).serve_forever()
    elif impl == "gevent-pywsgi":
        from gevent import monkey

        monkey.patch_all()
        from gevent.pywsgi import WSGIServer as PyWSGIServer

        PyWSGIServer(("127.0.0.1", port), wsgi, log=None, backlog=2048).serve_forever()
    else:
        raise ValueError(f"no standalone server for {impl!r}")


def _command(impl: str, port: int, app: str, workers: int) -> list[str]:
    py = sys.executable
    bind = f"127.0.0.1:{port}"
    gunicorn = [py, "-m", "gunicorn", "--chdir", str(HERE), "-b", bind, "-w", str(workers),
                "--backlog", "2048", "--worker-connections", "20000", "--keep-alive", "300",
                "--log-level", "warning", "--no-control-socket"]
    if impl in ("reseau", "gevent-pywsgi") and workers == 1:
        return [py, str(Path(__file__).resolve()), "--serve", impl, str(port), app]
    if impl == "reseau":
        return gunicorn + ["-k", "reseau_patch.gunicorn.Worker",
                           f"wsgi_servers:{_WSGI_NAMES[app]}"]
    if impl == "gevent-pywsgi":
        return gunicorn + ["-k", "gevent_pywsgi", f"wsgi_servers:{_WSGI_NAMES[app]}"]
    if impl == "gunicorn-gevent":
        return gunicorn + ["-k", "gevent", f"wsgi_servers:{_WSGI_NAMES[app]}"]
    if impl == "uvicorn-asgi":
        return [py, "-m", "uvicorn", "--app-dir", str(HERE), "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--log-level", "warning",
                "--no-access-log", "--timeout-keep-alive", "300", "--backlog", "2048",
                "--loop", "uvloop", "--http", "httptools", f"wsgi_servers:{_ASGI_NAMES[app]}"]
    raise ValueError(f"unknown implementation {impl!r}; known: {', '.join(IMPLS)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process tree on a free port; ``with`` waits until it answers."""

    def __init__(self, impl: str, app: str, workers: int) -> None:
        self.impl, self.app, self.workers = impl, app, workers
        self.port = _free_port()
        self.proc = subprocess.Popen(_command(impl, self.port, app, workers),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.impl} exited: {self.proc.stderr.read().decode()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        if self.workers > 1:
                            time.sleep(1.0)  # let the other workers boot too
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.impl} did not start within 60 s")

    def serving_pids(self) -> list[int]:
        """The processes that serve: the workers of a master, else the process itself."""
        kids = _children(self.proc.pid)
        return kids or [self.proc.pid]

    def __exit__(self, *exc: object) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.proc.stderr.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# ---------------------------------------------------------------------------- wrk
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _wrk(port: int, connections: int, duration: float) -> dict[str, Any]:
    threads = 2 if connections >= 2 else 1
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s",
                          "--latency", "--timeout", "10s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rps": rps, "p99_ms": p99, "errors": errors}


def workload(impl: str, app: str, connections: int, workers: int,
             duration: float) -> dict[str, Any]:
    """One measurement (see the module docstring for the contract)."""
    with Server(impl, app, workers) as srv:
        _wrk(srv.port, min(connections, 50), 1.0)  # warm-up
        result = _wrk(srv.port, connections, duration)
    result.update(impl=impl, app=app, connections=connections, workers=workers)
    return result


# ---------------------------------------------------------------------------- memory
def _hold_connections(port: int, n: int) -> None:
    """Child process body: open ``n`` keep-alive connections, one request each, hold."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
    conns = []
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(req)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        conns.append(s)
    print("ready", flush=True)
    sys.stdin.readline()  # hold until told to go
    for s in conns:
        s.close()


def idle_memory(impl: str, n: int) -> dict[str, Any]:
    """RSS per idle keep-alive connection, one worker (see the module docstring)."""
    with Server(impl, "hello", 1) as srv:
        _wrk(srv.port, 10, 1.0)  # warm-up: code paths and pools touched once
        time.sleep(0.5)
        (pid,) = srv.serving_pids()[:1]
        base = _rss(pid)
        holder = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--hold",
                                   str(srv.port), str(n)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            line = holder.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"connection holder failed for {impl}")
            time.sleep(1.0)
            loaded = _rss(pid)
        finally:
            holder.stdin.close()
            holder.wait(60)
    return {"impl": impl, "n": n, "rss_base": base, "rss_loaded": loaded,
            "rss_per_conn": (loaded - base) / n}


# ---------------------------------------------------------------------------- profile
def profile(app: str = "hello", connections: int = 50, duration: float = 5.0) -> None:
    """Our server in this process under cProfile while wrk loads it; top functions."""
    import cProfile
    import pstats

    import gevent

    from reseau_patch.server import WSGIServer

    srv = WSGIServer(("127.0.0.1", 0), hello_app if app == "hello" else big_app)
    srv.start()
    port = srv.server_port
    wrk = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
                            f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
    prof = cProfile.Profile()
    prof.enable()
    while wrk.poll() is None:
        gevent.sleep(0.1)
    prof.disable()
    srv.stop(timeout=1)
    print(wrk.stdout.read())
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


# ---------------------------------------------------------------------------- parsers
def parser_cost(n: int = 20000) -> dict[str, float]:
    """Microseconds per wrk-style request: httptools parsing (with the Python callbacks
    our server uses) vs h11 parsing plus serializing the response (h11 does both)."""
    import timeit

    import h11
    import httptools

    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"

    class Callbacks:
        def on_url(self, url: bytes) -> None:
            pass

        def on_header(self, name: bytes, value: bytes) -> None:
            pass

        def on_headers_complete(self) -> None:
            pass

        def on_message_complete(self) -> None:
            pass

    parser = httptools.HttpRequestParser(Callbacks())
    conn = h11.Connection(h11.SERVER)
    answer = [h11.Response(status_code=200, headers=[("Content-Length", "13")]),
              h11.Data(data=HELLO), h11.EndOfMessage()]

    def with_h11() -> None:
        conn.receive_data(req)
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass
        for event in answer:
            conn.send(event)
        conn.start_next_cycle()

    return {"httptools_us": timeit.timeit(lambda: parser.feed_data(req), number=n) / n * 1e6,
            "h11_us": timeit.timeit(with_h11, number=n) / n * 1e6}


# ---------------------------------------------------------------------------- main
def _summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median per (app, connections, workers, impl) and ratios against the baseline."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["app"], r["connections"], r["workers"], r["impl"]), []).append(r)
    med = {k: {"rps": statistics.median(x["rps"] for x in v),
               "p99_ms": statistics.median(x["p99_ms"] for x in v),
               "errors": sum(x["errors"] for x in v)} for k, v in groups.items()}
    rows = []
    for (app, c, w, impl), m in sorted(med.items()):
        base = med.get((app, c, w, BASELINE))
        row = {"app": app, "connections": c, "workers": w, "impl": impl, **m}
        if base:
            row["rps_ratio"] = m["rps"] / base["rps"] if base["rps"] else float("inf")
            row["p99_ratio"] = m["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", nargs=3, metavar=("IMPL", "PORT", "APP"), help=argparse.SUPPRESS)
    ap.add_argument("--hold", nargs=2, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--apps", default=",".join(APPS))
    ap.add_argument("--connections", default="50,1000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory", type=int, default=0, help="idle connections for the memory test")
    ap.add_argument("--json", default="", help="write all results to this file")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--parsers", action="store_true", help="httptools vs h11 cost per request")
    args = ap.parse_args(argv)
    if args.serve:
        impl, port, app = args.serve
        _serve_standalone(impl, int(port), app)
        return
    if args.hold:
        _hold_connections(int(args.hold[0]), int(args.hold[1]))
        return
    if args.profile:
        profile()
        return
    if args.parsers:
        print(json.dumps(parser_cost()))
        return
    impls = args.impls.split(",")
    results = []
    for rnd in range(args.rounds):
        for app in args.apps.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                for c in (int(x) for x in args.connections.split(",")):
                    k = rnd % len(impls)
                    for impl in impls[k:] + impls[:k]:  # interleaved: rotate the order
                        r = workload(impl, app, c, workers, args.duration)
                        r["round"] = rnd
                        results.append(r)
                        print(json.dumps(r), flush=True)
    rows = _summary(results)
    print(f"\n{'app':5} {'c':>5} {'w':>2} {'impl':16} {'req/s':>10} {'p99 ms':>8} "
          f"{'err':>5} {'rps/base':>8} {'p99/base':>8}")
    for r in rows:
        print(f"{r['app']:5} {r['connections']:>5} {r['workers']:>2} {r['impl']:16} "
              f"{r['rps']:>10.0f} {r['p99_ms']:>8.2f} {r['errors']:>5} "
              f"{r.get('rps_ratio', float('nan')):>8.2f} {r.get('p99_ratio', float('nan')):>8.2f}")
    memory = []
    if args.memory:
        for impl in impls:
            m = idle_memory(impl, args.memory)
            memory.append(m)
            print(f"memory {impl:16} {m['rss_per_conn']:>9.0f} bytes/idle connection "
                  f"(n={m['n']}, base {m['rss_base'] >> 20} MiB)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": rows,
                                               "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
