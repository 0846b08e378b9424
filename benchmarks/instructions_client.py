"""``python -m benchmarks.instructions_client IMPL OP N PORT [CA]``: N operations of one
kind through IMPL's patched socket, for :mod:`benchmarks.instructions` to run under
callgrind. Patches before anything imports ``socket``; the peer is another process,
started by the caller (callgrind does not follow it). OP ``sockets`` patches nothing: an
in-process echo through ``reseau_patch.sockets`` (IMPL reseau) or gevent's own sockets.
"""

from __future__ import annotations

import sys


def main(impl: str, op: str, n: int, port: int, ca: str | None) -> None:
    if op == "sockets":  # nothing patched: the Sockets API, or gevent's own sockets
        from benchmarks import sockets_echo as se

        api, _ = se.setup_api("reseau" if impl == "reseau" else "gevent-libev")
        echo_port, stop = api.serve(se.echo_handler(api))
        se.pingpong(api, echo_port, n, 10)
        stop()
        return
    from benchmarks import impls

    impls.prepare(impl)
    import socket

    if op == "pingpong":
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view = memoryview(bytearray(64))
        ping = b"p" * 64
        for _ in range(n):
            s.sendall(ping)
            got = 0
            while got < 64:
                k = s.recv_into(view[got:])
                if not k:
                    raise ConnectionError("echo peer closed")
                got += k
        s.close()
        return
    import requests

    url = f"{'https' if ca else 'http'}://127.0.0.1:{port}/"
    with requests.Session() as session:
        for _ in range(n):
            r = session.get(url, verify=ca or False, timeout=60)
            if r.content != b"Hello, world!":
                raise RuntimeError(f"bad response {r.status_code} {r.content[:40]!r}")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), a[4] if len(a) > 4 else None)
