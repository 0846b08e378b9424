"""Micro-benchmarks of gevent's hub on the Reseau loop vs libev-cext and libuv-cffi.

Usage::

    python benchmarks/hub_micro.py [--rounds 3] [--repeat 3] [--scale 1.0]
                                   [--loops reseau,libev-cext,libuv-cffi] [--profile]

Each loop runs in its own interpreter (``GEVENT_LOOP`` is read once per process); the
loops take turns for ``--rounds`` rounds. Reported: the best of all measurements
(``timeit``'s rule: load on a shared machine only adds time), plus the median of the
per-process medians to show the spread, in µs per operation:

* ``sleep0``    ``gevent.sleep(0)`` in a tight loop (callback queue + two switches);
* ``iteration`` ``gevent.socket.wait_write`` on an always-writable socket: one full loop
  iteration (io watcher start → poll → dispatch → stop);
* ``pingpong``  a 64-byte request/response between two gevent TCP sockets on 127.0.0.1
  (TCP_NODELAY) in one process: echo greenlet + client greenlet.

Ratios are against libev-cext. Targets for the Reseau loop: iteration ≤ 1.5×,
sleep(0) ≤ 1.2×, ping-pong ≤ 1.3×. ``--profile`` runs the Reseau loop under cProfile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPS = {
    "reseau": "reseau_patch.hub.loop.ReseauLoop",
    "libev-cext": "libev-cext",
    "libuv-cffi": "libuv-cffi",
}
TARGETS = {"sleep0": 1.2, "iteration": 1.5, "pingpong": 1.3}


def _child(repeat: int, scale: float, profile: bool) -> None:
    """Runs inside the per-loop interpreter; prints one JSON line."""
    import socket as std_socket
    import time

    import gevent
    from gevent import socket

    n_sleep = int(200_000 * scale)
    n_iter = int(50_000 * scale)
    n_pp = int(20_000 * scale)

    def bench_sleep0() -> float:
        sleep = gevent.sleep
        t = time.perf_counter()
        for _ in range(n_sleep):
            sleep(0)
        return (time.perf_counter() - t) / n_sleep * 1e6

    a, b = socket.socketpair()

    def bench_iteration() -> float:
        wait_write = socket.wait_write
        fd = a.fileno()
        t = time.perf_counter()
        for _ in range(n_iter):
            wait_write(fd)
        return (time.perf_counter() - t) / n_iter * 1e6

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_NODELAY, 1)

    def echo() -> None:
        recv, sendall = server.recv, server.sendall
        while True:
            data = recv(65536)
            if not data:
                return
            sendall(data)

    echo_g = gevent.spawn(echo)
    payload = b"x" * 64

    def bench_pingpong() -> float:
        sendall, recv = client.sendall, client.recv
        t = time.perf_counter()
        for _ in range(n_pp):
            sendall(payload)
            got = 0
            while got < 64:
                got += len(recv(64 - got))
        return (time.perf_counter() - t) / n_pp * 1e6

    benches = {"sleep0": bench_sleep0, "iteration": bench_iteration,
               "pingpong": bench_pingpong}
    if profile:
        import cProfile
        import pstats

        for name, fn in benches.items():
            pr = cProfile.Profile()
            pr.enable()
            fn()
            pr.disable()
            print(f"===== profile: {name}", file=sys.stderr)
            pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(14)
    out = {}
    for name, fn in benches.items():
        fn()  # warm-up
        runs = [fn() for _ in range(repeat)]
        out[name] = min(runs)
        out[name + "_median"] = statistics.median(runs)
    client.close()
    echo_g.join(5)
    for s in (server, listener, a, b):
        s.close()
    print(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description="gevent hub micro-benchmarks per loop")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per process")
    ap.add_argument("--rounds", type=int, default=3, help="processes per loop, interleaved")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply iteration counts")
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--profile", action="store_true", help="cProfile the Reseau loop instead")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.repeat, args.scale, args.profile)
        return 0
    names = ["reseau"] if args.profile else [n.strip() for n in args.loops.split(",")]
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    # Loops take turns, round after round, so drifting machine load hits all of them.
    for _ in range(1 if args.profile else args.rounds):
        for name in names:
            env = dict(os.environ, GEVENT_LOOP=LOOPS.get(name, name))
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
            cmd = [sys.executable, __file__, "--child", "--repeat", str(args.repeat),
                   "--scale", str(args.scale)] + (["--profile"] if args.profile else [])
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if args.profile:
                sys.stderr.write(proc.stderr)
            if proc.returncode:
                print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
                continue
            samples[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    # Best of all runs (timeit's rule: on a shared machine, load only ever adds time);
    # the median of the per-process medians is printed too, to show the spread.
    results = {n: {b: min(x[b] for x in xs) for b in TARGETS}
               for n, xs in samples.items() if xs}
    medians = {n: {b: statistics.median(x[b + "_median"] for x in xs) for b in TARGETS}
               for n, xs in samples.items() if xs}
    base = results.get("libev-cext")
    print(f"{'loop':<12}" + "".join(f"{b:>22}" for b in TARGETS))
    for name, r in results.items():
        cells = []
        for b in TARGETS:
            ratio = f" ({r[b] / base[b]:.2f}x)" if base else ""
            cells.append(f"{r[b]:>10.2f} µs{ratio:>9}")
        print(f"{name:<12}" + "".join(f"{c:>22}" for c in cells))
    print("medians (µs): " + "; ".join(
        f"{n}: " + ", ".join(f"{b} {m[b]:.2f}" for b in TARGETS) for n, m in medians.items()))
    if base and "reseau" in results:
        print("targets (reseau / libev-cext): " + ", ".join(
            f"{b} {results['reseau'][b] / base[b]:.2f}x "
            f"{'ok' if results['reseau'][b] / base[b] <= t else 'MISSED'} (≤{t}x)"
            for b, t in TARGETS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
