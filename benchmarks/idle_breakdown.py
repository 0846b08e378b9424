"""``python -m benchmarks.idle_breakdown IMPL PART [N] [--no-trace] [--trim]``: where an idle
connection's bytes go.

A diagnostic companion of :mod:`benchmarks.idle_memory` (same connections, same parked
readers, same peer): it opens N connections, takes a ``tracemalloc`` snapshot and an object
census, opens N more, and prints the per-connection difference — Python allocations by
source line, live objects by type, and RSS (which also counts OpenSSL's C memory, which
tracemalloc does not see). ``--trim`` calls glibc's ``malloc_trim(0)`` before each sample
(free heap pages go back to the kernel); :mod:`benchmarks.idle_memory` does not, for any
implementation. Not a workload: nothing is saved.
"""

from __future__ import annotations

import sys


def _census() -> dict[str, int]:
    import gc

    counts: dict[str, int] = {}
    for o in gc.get_objects():
        k = type(o).__qualname__
        counts[k] = counts.get(k, 0) + 1
    return counts


def _mallinfo() -> tuple[int, int, int]:
    """glibc's (bytes in use, free bytes kept in the heap, mmapped bytes)."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(k, ctypes.c_size_t) for k in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    m = libc.mallinfo2()
    return m.uordblks, m.fordblks, m.hblkhd


def _trim() -> None:
    """glibc: give free heap memory back to the kernel (``malloc_trim(0)``)."""
    import ctypes

    ctypes.CDLL(None).malloc_trim(0)


def _maps() -> dict[str, int]:
    """Resident bytes by mapping kind: [heap] (malloc), anonymous mmaps (pymalloc arenas,
    greenlet data stacks, large mallocs), and everything else."""
    out: dict[str, int] = {}
    kind = ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                kind = path if path in ("[heap]", "[stack]", "") else "files"
                kind = kind or "anon"
            elif head[0] == "Rss:":
                out[kind] = out.get(kind, 0) + int(head[1]) * 1024
    return out


def main(impl: str, part: str, n: int, trace: bool = True, trim: bool = False) -> None:
    from benchmarks import impls

    impls.prepare(impl)
    import tracemalloc

    import gevent

    from benchmarks import idle_memory as im
    from benchmarks.servers import peer, raise_nofile

    raise_nofile(3 * n + 1024)
    if trace:
        tracemalloc.start(8)
    with peer("hold", tls=part == "tls") as (port, ca):
        hold: list = []

        grown1, conns1 = _open(im, impl, n, port, ca, hold)
        if trim:
            _trim()
        rss1 = im._settle()
        mi1 = _mallinfo()
        maps1 = _maps()
        snap1 = tracemalloc.take_snapshot() if trace else None
        census1 = _census()
        grown2, conns2 = _open(im, impl, n, port, ca, hold)
        if trim:
            _trim()
        rss2 = im._settle()
        mi2 = _mallinfo()
        maps2 = _maps()
        snap2 = tracemalloc.take_snapshot() if trace else None
        census2 = _census()
        print(f"{impl} {part}: RSS per connection {(rss2 - rss1) / n / 1024:.2f} KiB "
              f"(first batch {grown1 / n / 1024:.2f} KiB)")
        used, free, mapped = (b - a for a, b in zip(mi1, mi2, strict=True))
        print(f"malloc per connection: in use {used / n:.0f} B, kept free {free / n:.0f} B, "
              f"mmapped {mapped / n:.0f} B")
        print("resident per connection by mapping: " + ", ".join(
            f"{k} {(maps2.get(k, 0) - maps1.get(k, 0)) / n:.0f} B" for k in sorted(maps2)))
        stats = snap2.compare_to(snap1, "lineno") if trace else []
        total = sum(s.size_diff for s in stats)
        print(f"tracemalloc per connection: {total / n:.0f} B")
        for s in stats[:25]:
            if abs(s.size_diff) < n * 8:
                break
            fr = s.traceback[0]
            print(f"  {s.size_diff / n:8.0f} B {s.count_diff / n:5.2f} blocks  "
                  f"{fr.filename.split('site-packages/')[-1]}:{fr.lineno}")
        print("objects per connection (gc-tracked):")
        diffs = sorted(((census2.get(k, 0) - census1.get(k, 0)) / n, k) for k in census2)
        for d, k in reversed(diffs):
            if d >= 0.5:
                print(f"  {d:5.2f} {k}")
        gevent.killall(hold, timeout=60)
        for c in [*conns1, *conns2]:
            c.close()


def _open(im, impl, n, port, ca, hold):  # noqa: ANN001, ANN202 - a diagnostic
    import gevent

    if impl == "reseau-sockets":
        from reseau_patch import sockets

        def connect():  # noqa: ANN202
            if ca:
                return sockets.connect("127.0.0.1", port, tls=True, ssl_cacert=ca, timeout=60)
            return sockets.connect("127.0.0.1", port, timeout=60)

        def park(c):  # noqa: ANN001, ANN202
            return c.read(1)
    else:
        import socket
        import ssl

        ctx = ssl.create_default_context(cafile=ca) if ca else None

        def connect():  # noqa: ANN202
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
            s.settimeout(None)
            return s

        def park(c):  # noqa: ANN001, ANN202
            return c.recv(1)

    before = im._settle()
    conns: list = []
    while len(conns) < n:
        batch = [gevent.spawn(connect) for _ in range(min(100, n - len(conns)))]
        gevent.joinall(batch, timeout=120, raise_error=True)
        for g in batch:
            conns.append(g.value)
            hold.append(gevent.spawn(park, g.value))
    gevent.sleep(0.05)
    return im._settle() - before, conns


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--no-trace", "--trim")]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 1000,
         trace="--no-trace" not in sys.argv, trim="--trim" in sys.argv)
