"""Echo benchmark: ``reseau_patch.sockets.TCPSocket`` vs gevent's cooperative socket.

Both sides are blocking-style code in greenlets on one hub; what differs is the stack under
them: our ``TCPSocket`` (channel pipeline on the Reseau loop) against gevent's socket on its
libev-cext loop (the baseline) and its libuv-cffi loop. Two measurements, on 127.0.0.1, with
the echo server and the client as greenlets of the same process:

* ping-pong: one connection, 64 bytes sent only after the previous echo fully arrived;
  seconds for ``--rounds`` round trips after ``--warmup`` untimed ones;
* bulk: one connection, a sender greenlet streams ``--bulk-mib`` MiB in 64 KiB writes and
  half-closes while the receiver greenlet reads the echo back concurrently; MB/s (10**6
  bytes) of payload.

Two more bulk workloads (issue 10), each a self-contained function, when ``--tls-mib`` /
``--channel-mib`` are not 0: TLS echo bulk (``tls_bulk``: our ``connect``/``listen`` with
``tls=True`` against gevent's ``ssl`` wrapping of its cooperative socket, the object
``gevent.monkey`` puts behind ``ssl.SSLContext.wrap_socket``), and plaintext bulk through
the channel (``channel_bulk``: TCPSockets kept off the direct path by a pass-through
handler, so every byte goes SocketHandler -> channel -> TCPSocket; gevent runs its plain
socket). The sender streams N MiB in 64 KiB writes, the receiver counts the echo.
Goal: TLS bulk >= 0.8x gevent.

Goals for reseau (from the issue): ping-pong time <= 1.3x gevent libev-cext's, bulk
throughput >= 0.9x its MB/s. Each implementation runs in its own subprocess (``--worker``);
``--repeat N`` keeps the best of N runs (rounds interleaved across implementations).
``--profile`` instead runs the reseau worker in this
process under cProfile and prints each workload's top functions by own time. This is a
benchmark, not a test: ``python benchmarks/sockets_echo.py --bulk-mib 256 --repeat 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PING = b"p" * 64
CHUNK = 64 * 1024
BASELINE = "gevent-libev"
PINGPONG_GOAL = 1.3  # reseau time / baseline time, at most
BULK_GOAL = 0.9  # reseau MB/s / baseline MB/s, at least
TLS_BULK_GOAL = 0.8  # reseau TLS MB/s / baseline TLS MB/s, at least
#: name -> extra environment for its subprocess.
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "reseau": {},
    "gevent-libev": {"GEVENT_LOOP": "libev-cext"},
    "gevent-libuv": {"GEVENT_LOOP": "libuv-cffi"},
}
Result = dict[str, Any]


class Api:
    """The few calls the workloads need, bound to one socket implementation."""

    #: Start listening on 127.0.0.1 and accept forever, spawning ``handler(conn)``.
    serve: Callable[[Callable[[Any], None]], tuple[int, Callable[[], None]]]
    #: Connect to 127.0.0.1:port.
    connect: Callable[[int], Any]
    #: ``write_all(conn, data)``; ``read_into(conn, buf) -> n`` (0 at EOF).
    write_all: Callable[[Any, Any], None]
    read_into: Callable[[Any, Any], int]
    #: Half-close the sending direction; close.
    closewrite: Callable[[Any], None]
    close: Callable[[Any], None]


def _reseau_api() -> Api:
    from reseau_patch import sockets
    from reseau_patch.sockets.tcp import TCPSocket

    api = Api()

    def serve(handler: Callable[[Any], None]) -> tuple[int, Callable[[], None]]:
        port, server = sockets.listenany("127.0.0.1", 0)
        acceptor = sockets.accept(server, handler)

        def stop() -> None:
            server.close()
            acceptor.join(5)

        return port, stop

    api.serve = serve
    api.connect = lambda port: sockets.connect("127.0.0.1", port)
    api.write_all = TCPSocket.write
    api.read_into = TCPSocket.readinto
    api.closewrite = TCPSocket.closewrite
    api.close = TCPSocket.close
    return api


def _gevent_api() -> Api:
    import gevent
    from gevent import socket as gsocket

    api = Api()

    def serve(handler: Callable[[Any], None]) -> tuple[int, Callable[[], None]]:
        listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(511)

        def accept_forever() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
                gevent.spawn(handler, conn)

        acceptor = gevent.spawn(accept_forever)

        def stop() -> None:
            acceptor.kill(block=True, timeout=5)
            listener.close()

        return listener.getsockname()[1], stop

    def connect(port: int) -> Any:
        conn = gsocket.create_connection(("127.0.0.1", port))
        conn.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        return conn

    api.serve = serve
    api.connect = connect
    api.write_all = gsocket.socket.sendall
    api.read_into = gsocket.socket.recv_into
    api.closewrite = lambda conn: conn.shutdown(gsocket.SHUT_WR)
    api.close = gsocket.socket.close
    return api


# ---------------------------------------------------------------------------- workloads
def echo_handler(api: Api) -> Callable[[Any], None]:
    """Server side: read whatever is there, write it back, until EOF; then close."""
    def handler(conn: Any) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        read_into, write_all = api.read_into, api.write_all
        try:
            while n := read_into(conn, buf):
                write_all(conn, view[:n])
        finally:
            api.close(conn)
    return handler


def pingpong(api: Api, port: int, rounds: int, warmup: int) -> float:
    """Seconds for ``rounds`` 64-byte round trips after ``warmup`` untimed ones."""
    conn = api.connect(port)
    buf = bytearray(len(PING))
    view = memoryview(buf)
    read_into, write_all = api.read_into, api.write_all
    try:
        t0 = 0.0
        for i in range(warmup + rounds):
            if i == warmup:
                t0 = time.perf_counter()
            write_all(conn, PING)
            got = 0
            while got < len(PING):
                n = read_into(conn, view[got:])
                if not n:
                    raise ConnectionError("echo closed during ping-pong")
                got += n
        return time.perf_counter() - t0
    finally:
        api.close(conn)


def bulk(api: Api, port: int, nbytes: int) -> tuple[float, int]:
    """(seconds, bytes echoed) for streaming ``nbytes`` through the echo."""
    import gevent

    conn = api.connect(port)
    block = memoryview(bytes(range(256)) * (CHUNK // 256))
    write_all = api.write_all

    def send() -> None:
        left = nbytes
        while left >= CHUNK:
            write_all(conn, block)
            left -= CHUNK
        if left:
            write_all(conn, block[:left])
        api.closewrite(conn)

    buf = bytearray(CHUNK)
    read_into = api.read_into
    received = 0
    try:
        t0 = time.perf_counter()
        sender = gevent.spawn(send)
        while n := read_into(conn, buf):
            received += n
        elapsed = time.perf_counter() - t0
        sender.get()
    finally:
        api.close(conn)
    return elapsed, received


def _stream_echo(conn: Any, read_into: Callable[[Any, Any], int],
                 write_all: Callable[[Any, Any], None], close: Callable[[Any], None]) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        while n := read_into(conn, buf):
            write_all(conn, view[:n])
    except OSError:
        pass  # the client closed without a TLS close_notify: the echo is over
    finally:
        close(conn)


def _count_echo(conn: Any, nbytes: int, read_into: Callable[[Any, Any], int],
                write_all: Callable[[Any, Any], None]) -> float:
    """Stream ``nbytes`` from a sender greenlet and read the echo back; seconds."""
    import gevent

    block = memoryview(bytes(range(256)) * (CHUNK // 256))

    def send() -> None:
        left = nbytes
        while left > 0:
            write_all(conn, block[:min(left, CHUNK)])
            left -= CHUNK

    buf = bytearray(CHUNK)
    received = 0
    t0 = time.perf_counter()
    sender = gevent.spawn(send)
    while received < nbytes:
        n = read_into(conn, buf)
        if not n:
            raise ConnectionError(f"echo ended after {received} of {nbytes} bytes")
        received += n
    elapsed = time.perf_counter() - t0
    sender.get()
    return elapsed


def tls_bulk(name: str, nbytes: int, cert_dir: str) -> float:
    """TLS echo bulk, MB/s: ``name`` "reseau" uses the sockets API with ``tls=True``;
    any other name gevent's ssl over its cooperative socket (as under gevent.monkey)."""
    import gevent

    cert, key, ca = (os.path.join(cert_dir, f) for f in ("cert.pem", "key.pem", "ca.pem"))
    if name == "reseau":
        from reseau_patch import sockets
        from reseau_patch.sockets.tcp import TCPSocket

        srv = sockets.listen(("127.0.0.1", 0), tls=True, ssl_cert=cert, ssl_key=key)
        acceptor = sockets.accept(srv, lambda c: _stream_echo(
            c, TCPSocket.readinto, TCPSocket.write, TCPSocket.close))
        conn = sockets.connect("127.0.0.1", srv.getsockname()[1], tls=True, ssl_cacert=ca)
        try:
            secs = _count_echo(conn, nbytes, TCPSocket.readinto, TCPSocket.write)
        finally:
            conn.close()
            srv.close()
            acceptor.join(5)
        return nbytes / secs / 1e6
    from gevent import socket as gsocket
    from gevent import ssl as gssl

    sctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = gssl.SSLContext(gssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(ca)
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        raw, _ = listener.accept()
        raw.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        conn = sctx.wrap_socket(raw, server_side=True)
        _stream_echo(conn, type(conn).recv_into, type(conn).sendall, type(conn).close)

    server = gevent.spawn(serve)
    raw = gsocket.create_connection(listener.getsockname())
    raw.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
    conn = cctx.wrap_socket(raw, server_hostname="localhost")
    try:
        secs = _count_echo(conn, nbytes, type(conn).recv_into, type(conn).sendall)
    finally:
        conn.close()
        server.join(5)
        listener.close()
    return nbytes / secs / 1e6


def channel_bulk(name: str, nbytes: int) -> float:
    """Plaintext echo bulk through the channel, MB/s (gevent: its plain socket)."""
    import gevent

    if name != "reseau":
        api = _gevent_api()
        port, stop = api.serve(echo_handler(api))
        conn = api.connect(port)
        try:
            secs = _count_echo(conn, nbytes, api.read_into, api.write_all)
        finally:
            api.close(conn)
            stop()
        return nbytes / secs / 1e6
    import socket as stdsocket

    from reseau_patch.io.channel import Channel, ChannelHandler
    from reseau_patch.io.socket import Socket as IoSocket
    from reseau_patch.io.socket_handler import SocketHandler
    from reseau_patch.sockets.parking import current_io_loop
    from reseau_patch.sockets.tcp import TCPSocket

    class PassThrough(ChannelHandler):
        def initial_window_size(self) -> int:
            return 0  # grants exactly what the TCPSocket grants

    def on_channel(raw: stdsocket.socket) -> TCPSocket:
        raw.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        loop = current_io_loop()
        ch = Channel(loop, back_pressure=True)
        ch.activate()
        ch.add_handler(SocketHandler(IoSocket(loop, sock=raw)))
        ch.add_handler(PassThrough())
        tcp = TCPSocket(loop)
        tcp.attach(ch)
        ch.on_shutdown = lambda c, err: (tcp.on_channel_shutdown(c, err), c.destroy())
        ch.add_handler(tcp)
        ch.trigger_read()
        return tcp

    with stdsocket.create_server(("127.0.0.1", 0)) as lsock:
        a = stdsocket.create_connection(lsock.getsockname(), timeout=5)
        b, _ = lsock.accept()
    client, server = on_channel(a), on_channel(b)
    echo = gevent.spawn(_stream_echo, server, TCPSocket.readinto, TCPSocket.write,
                        TCPSocket.close)
    try:
        secs = _count_echo(client, nbytes, TCPSocket.readinto, TCPSocket.write)
    finally:
        client.close()
        echo.join(5)
    return nbytes / secs / 1e6


def setup_api(name: str) -> tuple[Api, str]:
    """The API for ``name`` and a note naming the loop actually used."""
    import gevent

    if name == "reseau":
        api = _reseau_api()  # selects the Reseau loop before the hub exists
    else:
        api = _gevent_api()
    loop = gevent.get_hub().loop
    if name != "reseau" and getattr(loop, "io_loop", None) is not None:
        raise RuntimeError(f"{name}: expected gevent's own loop, got {type(loop)}")
    backend = getattr(getattr(loop, "io_loop", None), "backend", None) or type(loop).__module__
    return api, f"gevent {gevent.__version__} {backend}"


def run_worker(name: str, rounds: int, warmup: int, nbytes: int, timeout: float,
               profile: Callable[[str, Callable[[], Any]], Any] | None = None,
               tls_bytes: int = 0, channel_bytes: int = 0, cert_dir: str = "") -> Result:
    """Both workloads for ``name`` in this process; ``profile(label, fn)`` wraps each."""
    import gevent

    api, note = setup_api(name)
    wrap = profile or (lambda _label, fn: fn())
    port, stop = api.serve(echo_handler(api))
    io_loop = getattr(gevent.get_hub().loop, "io_loop", None)
    try:
        ticks0 = io_loop.stats.ticks if io_loop is not None else 0
        with gevent.Timeout(timeout, TimeoutError(f"{name} ping-pong exceeded {timeout} s")):
            pp_s = wrap("ping-pong", lambda: pingpong(api, port, rounds, warmup))
        ticks1 = io_loop.stats.ticks if io_loop is not None else 0
        with gevent.Timeout(timeout, TimeoutError(f"{name} bulk exceeded {timeout} s")):
            bulk_s, received = wrap("bulk", lambda: bulk(api, port, nbytes))
        ticks2 = io_loop.stats.ticks if io_loop is not None else 0
        extra: Result = {}
        if tls_bytes:
            with gevent.Timeout(timeout, TimeoutError(f"{name} TLS bulk exceeded {timeout} s")):
                extra["tls_mbps"] = wrap("tls-bulk",
                                         lambda: tls_bulk(name, tls_bytes, cert_dir))
        if channel_bytes:
            with gevent.Timeout(timeout, TimeoutError(f"{name} channel bulk exceeded "
                                                      f"{timeout} s")):
                extra["channel_mbps"] = wrap("channel-bulk",
                                             lambda: channel_bulk(name, channel_bytes))
    finally:
        stop()
    if received != nbytes:
        raise RuntimeError(f"bulk echo returned {received} of {nbytes} bytes")
    res: Result = {"pingpong_s": pp_s, "pingpong_us": pp_s / rounds * 1e6,
                   "bulk_s": bulk_s, "bulk_mbps": nbytes / bulk_s / 1e6, "note": note, **extra}
    if io_loop is not None:
        res["ticks_per_rt"] = (ticks1 - ticks0) / (rounds + warmup)
        res["ticks_per_mib"] = (ticks2 - ticks1) / (nbytes / (1 << 20))
    return res


# ---------------------------------------------------------------------------- profiling
def _profile_reseau(args: argparse.Namespace) -> int:
    """Run the reseau worker here under cProfile; print each workload's top functions."""
    import cProfile
    import pstats

    def profiled(label: str, fn: Callable[[], Any]) -> Any:
        prof = cProfile.Profile()
        prof.enable()
        try:
            return fn()
        finally:
            prof.disable()
            print(f"\n=== cProfile, reseau {label} (sorted by tottime) ===")
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(
                args.profile_top)

    res = run_worker("reseau", args.rounds, args.warmup, args.bulk_mib << 20, args.timeout,
                     profile=profiled, tls_bytes=args.tls_mib << 20,
                     channel_bytes=args.channel_mib << 20, cert_dir=args.certs)
    print(json.dumps(res))
    return 0


# ---------------------------------------------------------------------------- driver
def _run_worker(name: str, args: argparse.Namespace) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--rounds", str(args.rounds), "--warmup", str(args.warmup),
           "--bulk-mib", str(args.bulk_mib), "--timeout", str(args.timeout),
           "--tls-mib", str(args.tls_mib), "--channel-mib", str(args.channel_mib),
           "--certs", args.certs]
    env = {k: v for k, v in os.environ.items() if k != "GEVENT_LOOP"}
    env.update(IMPLEMENTATIONS[name])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    limit = 2 * args.timeout + 30
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"worker killed after {limit:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(results: list[Result]) -> Result:
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    fastest = min(ok, key=lambda r: r["pingpong_s"])
    widest = max(ok, key=lambda r: r["bulk_mbps"])
    best = {**fastest, **{k: widest[k] for k in ("bulk_s", "bulk_mbps", "ticks_per_mib")
                          if k in widest}}
    for key in ("tls_mbps", "channel_mbps"):
        if any(key in r for r in ok):
            best[key] = max(r.get(key, 0.0) for r in ok)
            # Every round's value, in round order (rounds are interleaved across names, so
            # round i of two names ran under similar load: their ratio is paired).
            best[key + "_rounds"] = [r.get(key) for r in results]
    return best


def _print_table(results: dict[str, Result], rounds: int) -> None:
    base = results.get(BASELINE, {})
    header = (f"{'implementation':14} {'ping-pong s':>11} {'us/rt':>7} {'time x':>7} "
              f"{'bulk MB/s':>10} {'thru x':>7}  notes")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:14} {'FAILED':>11}  {r['error']}")
            continue
        pp_ratio = r["pingpong_s"] / base["pingpong_s"] if "pingpong_s" in base else None
        bulk_ratio = r["bulk_mbps"] / base["bulk_mbps"] if "bulk_mbps" in base else None
        note = r.get("note", "")
        if "ticks_per_rt" in r:
            note += f"; {r['ticks_per_rt']:.1f} ticks/rt, {r['ticks_per_mib']:.0f} ticks/MiB"
        print(f"{name:14} {r['pingpong_s']:>11.3f} {r['pingpong_us']:>7.1f} "
              f"{_ratio(pp_ratio):>7} {r['bulk_mbps']:>10,.1f} {_ratio(bulk_ratio):>7}  {note}")
    print(f"\n(ping-pong: {rounds} round trips; 'time x' = time / {BASELINE} time, lower is "
          f"better; 'thru x' = MB/s / {BASELINE} MB/s, higher is better)")
    r = results.get("reseau", {})
    if "error" in r or "pingpong_s" not in base or "pingpong_s" not in r:
        print("goals: not evaluated (reseau or the baseline did not run)")
        return
    pp = r["pingpong_s"] / base["pingpong_s"]
    bk = r["bulk_mbps"] / base["bulk_mbps"]
    print(f"goal ping-pong time <= {PINGPONG_GOAL}x {BASELINE}: {pp:.2f}x "
          f"{'MET' if pp <= PINGPONG_GOAL else 'MISSED'}")
    print(f"goal bulk throughput >= {BULK_GOAL}x {BASELINE}: {bk:.2f}x "
          f"{'MET' if bk >= BULK_GOAL else 'MISSED'}")
    for key, label, goal in (("tls_mbps", "TLS echo bulk", TLS_BULK_GOAL),
                             ("channel_mbps", "plaintext bulk through the channel", None)):
        if key not in r or key not in base:
            continue
        print(f"{label}: " + ", ".join(f"{n} {res[key]:,.1f} MB/s" for n, res in
                                        results.items() if key in res))
        ratio = r[key] / base[key]
        verdict = "" if goal is None else (
            f" (goal >= {goal}x: {'MET' if ratio >= goal else 'MISSED'})")
        print(f"  reseau / {BASELINE} (best of each): {ratio:.2f}x")
        mine, theirs = r.get(key + "_rounds", []), base.get(key + "_rounds", [])
        paired = [a / b for a, b in zip(mine, theirs, strict=True) if a and b]
        if paired:  # the load changes between rounds: the median paired ratio is steadier
            med = statistics.median(paired)
            verdict = "" if goal is None else (
                f" (goal >= {goal}x: {'MET' if med >= goal else 'MISSED'})")
            print("  per round: " + "; ".join(
                f"{a:,.0f} vs {b:,.0f}" for a, b in zip(mine, theirs, strict=True) if a and b))
            print(f"  reseau / {BASELINE} (median of per-round ratios): {med:.2f}x{verdict}")
        else:
            print(f"  reseau / {BASELINE}: {ratio:.2f}x{verdict}")


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _make_certs() -> str:
    """A CA and a localhost certificate in a temporary directory (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from reseau_patch import pki

    d = tempfile.mkdtemp(prefix="sockets_echo_pki_")
    atexit.register(shutil.rmtree, d, True)
    ca = pki.make_ca("sockets_echo CA")
    Path(d, "ca.pem").write_bytes(ca.cert_pem())
    cert, key = ca.issue(["localhost"], ["127.0.0.1"]).write_pem(Path(d), "server")
    os.replace(cert, os.path.join(d, "cert.pem"))
    os.replace(key, os.path.join(d, "key.pem"))
    return d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000, help="timed ping-pong round trips")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed ping-pong round trips")
    parser.add_argument("--bulk-mib", type=int, default=1024,
                        help="MiB streamed through the echo in the bulk test (default 1024)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="per-measurement timeout in seconds (default 120)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; best kept")
    parser.add_argument("--only", nargs="+", choices=list(IMPLEMENTATIONS), metavar="NAME",
                        help=f"run only these: {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--profile", action="store_true",
                        help="profile the reseau worker in this process (cProfile, by tottime)")
    parser.add_argument("--profile-top", type=int, default=25, help="rows per profile")
    parser.add_argument("--tls-mib", type=int, default=256,
                        help="MiB through the TLS echo (0: skip; default 256)")
    parser.add_argument("--channel-mib", type=int, default=256,
                        help="MiB through the plaintext channel echo (0: skip; default 256)")
    parser.add_argument("--certs", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.bulk_mib < 1 or args.repeat < 1:
        parser.error("--rounds, --bulk-mib and --repeat must be >= 1, --warmup >= 0")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    if args.tls_mib and not args.certs:
        args.certs = _make_certs()
    if args.profile:
        return _profile_reseau(args)
    if args.worker:
        res = run_worker(args.worker, args.rounds, args.warmup, args.bulk_mib << 20,
                         args.timeout, tls_bytes=args.tls_mib << 20,
                         channel_bytes=args.channel_mib << 20, cert_dir=args.certs)
        print(json.dumps(res))
        return 0

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()} on {platform.platform()}, "
          f"{os.cpu_count()} CPUs; ping-pong {args.rounds} x 64 B after {args.warmup} warm-up; "
          f"bulk {args.bulk_mib} MiB in {CHUNK // 1024} KiB writes; best of {args.repeat}")
    names = list(args.only or IMPLEMENTATIONS)
    runs: dict[str, list[Result]] = {name: [] for name in names}
    for i in range(args.repeat):  # rounds interleaved: a load change hits every name alike
        for name in names:
            started = time.perf_counter()
            runs[name].append(_run_worker(name, args))
            print(f"  round {i + 1}: ran {name} in {time.perf_counter() - started:.1f} s",
                  flush=True)
    results = {name: _best(runs[name]) for name in names}
    print()
    _print_table(results, args.rounds)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
