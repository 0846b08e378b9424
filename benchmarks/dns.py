"""DNS benchmark: our gevent resolver vs gevent's thread resolver vs the stdlib, and Happy
Eyeballs vs ``socket.create_connection`` when the first address is blackholed.

Two measurements, loopback only:

* resolve: ``getaddrinfo("localhost", 80)`` called ``--calls`` times after ``--warmup``
  untimed calls; microseconds per call. Through gevent (``gevent.socket.getaddrinfo``, i.e.
  the hub's resolver) with ``reseau_patch.hub.resolver.Resolver`` on the Reseau loop (a
  cache hit after the first call), with ``gevent.resolver.thread.Resolver`` on gevent's
  default loop and on the Reseau loop (a libc lookup on a worker thread per call), and the
  stdlib ``socket.getaddrinfo`` with no gevent at all. Every answer is checked against the
  stdlib's.
* connect: a name whose static answer is [127.0.0.2:P, 127.0.0.3:P]. 127.0.0.2:P is a
  ``listen(0)`` listener whose accept queue is full, so the kernel drops further SYNs
  (the connect hangs); 127.0.0.3:P accepts. ``reseau_patch.sockets.connect`` races them
  with Happy Eyeballs (default 250 ms attempt delay); the stdlib path is what
  ``socket.create_connection`` does with that address list: each address in order with
  ``timeout=--stdlib-timeout``, so it waits the whole timeout out on the first one.
  Milliseconds per connect over ``--reps`` connects (after one untimed direct connect).

Each implementation runs in its own subprocess (``--worker NAME``), so loops, resolvers and
their caches cannot influence each other. This is a benchmark, not a test: run it by hand,
e.g. ``python benchmarks/dns.py --calls 20000 --reps 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST, PORT = "localhost", 80
BLACKHOLE, GOOD = "127.0.0.2", "127.0.0.3"
STATIC_NAME = "blackholed-first.test"
RESEAU_ENV = {"GEVENT_LOOP": "reseau_patch.hub.loop.ReseauLoop",
              "GEVENT_RESOLVER": "reseau_patch.hub.resolver.Resolver"}
#: resolve workers: name -> extra environment for the subprocess.
RESOLVE: dict[str, dict[str, str]] = {
    "reseau": RESEAU_ENV,
    "gevent-thread": {"GEVENT_LOOP": "libev-cext", "GEVENT_RESOLVER": "thread"},
    "gevent-thread/reseau-loop": {"GEVENT_LOOP": RESEAU_ENV["GEVENT_LOOP"],
                                  "GEVENT_RESOLVER": "thread"},
    "stdlib": {},
}
#: connect workers: name -> extra environment for the subprocess.
CONNECT: dict[str, dict[str, str]] = {
    "reseau-happy-eyeballs": {},
    "stdlib-in-order": {},
}
Result = dict[str, Any]


def _canonical(infos: list[tuple]) -> list[list[Any]]:
    """getaddrinfo tuples as plain JSON values (enums become ints) for comparison."""
    return [[int(f), int(t), int(p), c, list(sa)] for f, t, p, c, sa in infos]


# ---------------------------------------------------------------------------- resolve
def _time_calls(fn: Callable[[], list[tuple]], calls: int, warmup: int,
                budget: float) -> Result:
    for _ in range(warmup):
        fn()
    answer = fn()
    done = 0
    deadline = time.perf_counter() + budget
    t0 = time.perf_counter()
    while done < calls:
        fn()
        done += 1
        if done % 256 == 0 and time.perf_counter() > deadline:
            break  # bounded: report what was measured
    seconds = time.perf_counter() - t0
    return {"us_per_call": seconds / done * 1e6, "calls": done, "seconds": seconds,
            "answer": _canonical(answer)}


def resolve_gevent(calls: int, warmup: int, budget: float) -> Result:
    """``gevent.socket.getaddrinfo`` on the hub's resolver (named by GEVENT_RESOLVER)."""
    import gevent
    from gevent import socket as gsocket

    hub = gevent.get_hub()
    res = _time_calls(lambda: gsocket.getaddrinfo(HOST, PORT), calls, warmup, budget)
    loop, resolver = type(hub.loop), type(hub.resolver)
    res["note"] = (f"{resolver.__module__}.{resolver.__qualname__} on "
                   f"{loop.__module__}.{loop.__qualname__}")
    stats = getattr(getattr(hub.resolver, "resolver", None), "hits", None)
    if stats is not None:
        res["note"] += f"; cache hits {stats}, misses {hub.resolver.resolver.misses}"
    return res


def resolve_stdlib(calls: int, warmup: int, budget: float) -> Result:
    """The stdlib ``socket.getaddrinfo`` (glibc, blocking), no gevent imported."""
    res = _time_calls(lambda: socket.getaddrinfo(HOST, PORT), calls, warmup, budget)
    res["note"] = f"socket.getaddrinfo; gevent imported: {'gevent' in sys.modules}"
    return res


# ---------------------------------------------------------------------------- connect
def _listeners() -> tuple[int, socket.socket, socket.socket, list[socket.socket], int]:
    """(P, blackholed listener on 127.0.0.2:P, accepting listener on 127.0.0.3:P, the
    sockets filling the blackhole's queue, how many of them connected)."""
    for _ in range(50):
        hole = socket.socket()
        hole.bind((BLACKHOLE, 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        good = socket.socket()
        try:
            good.bind((GOOD, port))
        except OSError:
            good.close()
            hole.close()
            continue
        good.listen(64)
        good.settimeout(5)
        break
    else:
        raise RuntimeError(f"no port free on both {BLACKHOLE} and {GOOD}")
    # listen(0) keeps one connection in the accept queue (Linux: full when the queue holds
    # more than the backlog); once full, the kernel drops SYNs (tcp_conn_request), so a
    # connect hangs in SYN_SENT. Connect until one no longer completes.
    fillers: list[socket.socket] = []
    connected = 0
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex((BLACKHOLE, port))
        fillers.append(c)
        _, writable, _ = select.select([], [c], [], 0.3)
        if not writable:
            break
        if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            raise RuntimeError("a filler connect to the blackhole listener failed")
        connected += 1
    else:
        raise RuntimeError(f"{BLACKHOLE}:{port} kept accepting SYNs: cannot blackhole it")
    return port, hole, good, fillers, connected


def _connect_bench(connect: Callable[[int], tuple[Any, Callable[[], None]]], reps: int,
                   note: str) -> Result:
    port, hole, good, fillers, filled = _listeners()
    try:
        # Untimed warm-up: one direct connect to the good address (imports, hub, loop).
        peer, close = connect(-port)
        close()
        good.accept()[0].close()
        times, peers = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            peer, close = connect(port)
            times.append(time.perf_counter() - t0)
            peers.append(peer)
            close()
            good.accept()[0].close()
    finally:
        for s in (*fillers, good, hole):
            s.close()
    if any(p != GOOD for p in peers):
        raise RuntimeError(f"connected to {peers}, expected {GOOD} every time")
    return {"ms": [t * 1e3 for t in times], "port": port,
            "note": f"{note}; blackhole queue filled by {filled} connect(s)"}


def connect_reseau(reps: int, stdlib_timeout: float) -> Result:
    """``reseau_patch.sockets.connect`` with a static resolver answering both addresses."""
    from reseau_patch import sockets
    from reseau_patch.io.happy_eyeballs import HappyEyeballsConfig
    from reseau_patch.io.resolver import StaticResolver

    resolver = StaticResolver({STATIC_NAME: [BLACKHOLE, GOOD]})

    def connect(port: int) -> tuple[Any, Callable[[], None]]:
        if port < 0:
            s = sockets.connect(GOOD, -port, timeout=10)
        else:
            s = sockets.connect(STATIC_NAME, port, resolver=resolver, timeout=10)
        return str(s.getpeername()[0]), s.close

    delay = HappyEyeballsConfig().attempt_delay
    res = _connect_bench(connect, reps, f"Happy Eyeballs, attempt delay {delay * 1e3:.0f} ms")
    res["lookups"] = resolver.lookups
    return res


def connect_stdlib(reps: int, stdlib_timeout: float) -> Result:
    """``socket.create_connection`` per address, in order, as it does for a name."""
    errors: list[str] = []

    def connect(port: int) -> tuple[Any, Callable[[], None]]:
        if port < 0:
            s = socket.create_connection((GOOD, -port), timeout=10)
            return s.getpeername()[0], s.close
        for addr in (BLACKHOLE, GOOD):
            try:
                s = socket.create_connection((addr, port), timeout=stdlib_timeout)
            except OSError as exc:
                errors.append(f"{addr}: {type(exc).__name__}")
                continue
            return s.getpeername()[0], s.close
        raise ConnectionError(f"every address failed: {errors[-2:]}")

    res = _connect_bench(connect, reps, f"create_connection(timeout={stdlib_timeout:g}) "
                         f"per address")
    res["first_address_errors"] = sorted(set(errors))
    return res


WORKERS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "reseau": lambda a: resolve_gevent(a.calls, a.warmup, a.budget),
    "gevent-thread": lambda a: resolve_gevent(a.calls, a.warmup, a.budget),
    "gevent-thread/reseau-loop": lambda a: resolve_gevent(a.calls, a.warmup, a.budget),
    "stdlib": lambda a: resolve_stdlib(a.calls, a.warmup, a.budget),
    "reseau-happy-eyeballs": lambda a: connect_reseau(a.reps, a.stdlib_timeout),
    "stdlib-in-order": lambda a: connect_stdlib(a.reps, a.stdlib_timeout),
}


# ---------------------------------------------------------------------------- driver
def _run_worker(name: str, env_extra: dict[str, str], args: argparse.Namespace,
                limit: float) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--calls", str(args.calls), "--warmup", str(args.warmup), "--budget", str(args.budget),
           "--reps", str(args.reps), "--stdlib-timeout", str(args.stdlib_timeout)]
    env = {**os.environ, **env_extra}
    for key in ("GEVENT_LOOP", "GEVENT_RESOLVER"):
        if key not in env_extra:
            env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"worker killed after {limit:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_resolve(results: dict[str, Result], base: str) -> list[str]:
    odd = []
    ref = results.get(base, {}).get("us_per_call")
    want = results.get("stdlib", {}).get("answer")
    header = f"{'resolver':26} {'us/call':>9} {f'x {base}':>9} {'calls':>7}  notes"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:26} {'FAILED':>9} {'':>9} {'':>7}  {r['error']}")
            continue
        ratio = f"{r['us_per_call'] / ref:>8.2f}x" if ref else f"{'n/a':>9}"
        print(f"{name:26} {r['us_per_call']:>9.2f} {ratio} {r['calls']:>7}  {r['note']}")
        if want is not None and r["answer"] != want:
            odd.append(f"{name} answered {r['answer']}, the stdlib {want}")
    return odd


def _print_connect(results: dict[str, Result], base: str) -> list[str]:
    odd = []
    ref = results.get(base, {}).get("ms")
    label = "x " + base.split("-")[0] + " (median)"
    header = (f"{'connect':22} {'min ms':>8} {'median ms':>10} {'max ms':>8} "
              f"{label:>19}  notes")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:22} {'FAILED':>8} {'':>10} {'':>8} {'':>19}  {r['error']}")
            continue
        ms = r["ms"]
        med = statistics.median(ms)
        ratio = (f"{med / statistics.median(ref):>18.2f}x" if ref else f"{'n/a':>19}")
        extra = ""
        if r.get("first_address_errors"):
            extra = f"; first address: {', '.join(r['first_address_errors'])}"
        print(f"{name:22} {min(ms):>8.1f} {med:>10.1f} {max(ms):>8.1f} {ratio}  "
              f"{r['note']}{extra}")
        print(f"{'':22} each: {', '.join(f'{t:.1f}' for t in ms)}")
    return odd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000,
                        help="timed getaddrinfo calls per resolver (default 20000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls before timing")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="stop a resolver's timed loop after this many seconds (default 30)")
    parser.add_argument("--reps", type=int, default=5, help="timed connects per implementation")
    parser.add_argument("--stdlib-timeout", type=float, default=2.0,
                        help="create_connection timeout per address on the stdlib path (2 s)")
    parser.add_argument("--only", choices=["resolve", "connect"],
                        help="run only one of the two measurements")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0 or args.reps < 1 or args.budget <= 0 \
            or not 0 < args.stdlib_timeout <= 30:
        parser.error("--calls, --reps >= 1, --warmup >= 0, --budget > 0, "
                     "0 < --stdlib-timeout <= 30")

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return 0

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs; "
          f"getaddrinfo({HOST!r}, {PORT}) x {args.calls} after {args.warmup} warm-up; "
          f"{args.reps} connects per implementation")
    resolve: dict[str, Result] = {}
    connect: dict[str, Result] = {}
    if args.only != "connect":
        for name, env in RESOLVE.items():
            started = time.perf_counter()
            resolve[name] = _run_worker(name, env, args, args.budget + 60)
            print(f"  ran {name} in {time.perf_counter() - started:.1f} s", flush=True)
    if args.only != "resolve":
        for name, env in CONNECT.items():
            started = time.perf_counter()
            limit = args.reps * (2 * args.stdlib_timeout + 5) + 60
            connect[name] = _run_worker(name, env, args, limit)
            print(f"  ran {name} in {time.perf_counter() - started:.1f} s", flush=True)
    odd: list[str] = []
    if resolve:
        print()
        odd += _print_resolve(resolve, "reseau")
    if connect:
        print()
        odd += _print_connect(connect, "reseau-happy-eyeballs")
    for line in odd:
        print("ODD:", line)
    failed = any("error" in r for r in (*resolve.values(), *connect.values()))
    return 1 if failed or odd else 0


if __name__ == "__main__":
    sys.exit(main())
