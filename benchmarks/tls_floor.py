"""The floor of TLS over ``ssl.MemoryBIO``: what a sans-IO engine costs before any of our code.

Issue #10 asks for a TLS engine over ``SSLObject`` + ``MemoryBIO`` (sans-IO) *and* bulk
throughput >= 0.9x the stdlib's ``SSLSocket``. This measures the bare designs side by side,
unpatched, in one client process, against one stdlib TLS server in another process:

* ``sslsocket``: ``SSLSocket.recv_into`` (64 KiB) / ``sendall`` (256 KiB): OpenSSL reads and
  writes the fd itself (socket BIO: kernel -> record buffer -> decrypt -> caller).
* ``memorybio``: the smallest possible MemoryBIO driver, no loop, no greenlet, no lock:
  ``recv_into`` 256 KiB from the kernel, ``MemoryBIO.write``, ``SSLObject.read`` into the
  caller's 64 KiB buffer until ``SSLWantReadError``; sending: ``SSLObject.write`` 256 KiB,
  ``MemoryBIO.read``, ``send``. Each byte costs two copies more than the socket BIO
  (caller buffer -> BIO, whose write first zero-fills the bytes it grows into -> OpenSSL's
  record buffer; on the way out, BIO -> a new ``bytes``), while the kernel is called ~30
  times less (the socket BIO reads a record's 5-byte header and its body separately).
  On this 2-core VM (2026-12-06, loaded): receive 1.04x, send 0.91-1.00x of ``sslsocket``.

Reported: client CPU seconds per GB (``time.process_time``; best and median of rounds, modes
interleaved) and the ratio memorybio / sslsocket, for receive and send. The patched socket
(``tls_patched.py``) can at best reach this ratio of the stdlib.
Not a test: ``python benchmarks/tls_floor.py --rounds 9 --mib 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tls_patched import CHUNK, make_pki  # noqa: E402

MODES = ("sslsocket", "memorybio")
READ_BUF = 64 * 1024


def recv_sslsocket(s: ssl.SSLSocket, total: int) -> None:
    buf = bytearray(READ_BUF)
    got = 0
    while got < total:
        n = s.recv_into(buf)
        if not n:
            raise RuntimeError(f"download ended at {got} of {total}")
        got += n


def send_sslsocket(s: ssl.SSLSocket, total: int) -> None:
    piece = os.urandom(CHUNK)
    for _ in range(total // CHUNK):
        s.sendall(piece)


def handshake_bio(raw: socket.socket, ctx: ssl.SSLContext) -> tuple[Any, Any, Any]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            data = raw.recv(CHUNK)
            if not data:
                raise RuntimeError("EOF during the handshake") from None
            incoming.write(data)
    if outgoing.pending:
        raw.sendall(outgoing.read())
    return obj, incoming, outgoing


def recv_memorybio(raw: socket.socket, obj: Any, incoming: Any, total: int) -> None:
    kbuf = bytearray(CHUNK)
    kview = memoryview(kbuf)
    buf = bytearray(READ_BUF)
    got = 0
    while got < total:
        try:
            got += obj.read(READ_BUF, buf)
        except ssl.SSLWantReadError:
            n = raw.recv_into(kbuf)
            if not n:
                raise RuntimeError(f"download ended at {got} of {total}") from None
            incoming.write(kview[:n])


def send_memorybio(raw: socket.socket, obj: Any, outgoing: Any, total: int) -> None:
    piece = os.urandom(CHUNK)
    for _ in range(total // CHUNK):
        obj.write(piece)
        raw.sendall(outgoing.read())


def one_round(mode: str, ctx: ssl.SSLContext, ports: dict[str, int], total: int
              ) -> dict[str, float]:
    out = {}
    for name in ("recv", "send"):
        raw = socket.create_connection(("127.0.0.1", ports[name]), timeout=60)
        if mode == "sslsocket":
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            c0 = time.process_time()
            s.sendall(total.to_bytes(8, "big"))
            if name == "recv":
                recv_sslsocket(s, total)
            else:
                send_sslsocket(s, total)
                int.from_bytes(s.recv(8), "big")
            out[name] = time.process_time() - c0
            s.close()
        else:
            obj, incoming, outgoing = handshake_bio(raw, ctx)
            c0 = time.process_time()
            obj.write(total.to_bytes(8, "big"))
            raw.sendall(outgoing.read())
            if name == "recv":
                recv_memorybio(raw, obj, incoming, total)
            else:
                send_memorybio(raw, obj, outgoing, total)
                while True:  # the server's 8-byte acknowledgement
                    try:
                        obj.read(8)
                        break
                    except ssl.SSLWantReadError:
                        incoming.write(raw.recv(CHUNK))
            out[name] = time.process_time() - c0
            raw.close()
    return {k: v / (total / 1e9) for k, v in out.items()}  # CPU seconds per GB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()
    total = args.mib * 1024 * 1024
    workdir = tempfile.mkdtemp(prefix="reseau-tls-floor-")
    make_pki(workdir)
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("tls_patched.py")), "--server", workdir,
         "--mib", str(args.mib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=os.path.join(workdir, "ca.pem"))
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    try:
        ports = json.loads(server.stdout.readline())
        for r in range(args.rounds):
            for mode in MODES[r % 2:] + MODES[:r % 2]:
                rounds[mode].append(one_round(mode, ctx, ports, total))
                print(f"round {r + 1} {mode}: {rounds[mode][-1]}", file=sys.stderr)
    finally:
        server.stdin.close()
        server.terminate()
        server.wait(10)
    print(f"TLS floor: client CPU seconds per GB, {args.rounds} interleaved rounds, "
          f"{args.mib} MiB each (lower is better)")
    print(f"{'':8}{'sslsocket':>22}{'memorybio':>22}{'ratio (speed)':>28}")
    print(f"{'':8}{'best':>11}{'median':>11}{'best':>11}{'median':>11}{'best':>14}{'median':>14}")
    for name in ("recv", "send"):
        s = [x[name] for x in rounds["sslsocket"]]
        m = [x[name] for x in rounds["memorybio"]]
        print(f"{name:<8}{min(s):>11.3f}{statistics.median(s):>11.3f}{min(m):>11.3f}"
              f"{statistics.median(m):>11.3f}{min(s) / min(m):>13.2f}x"
              f"{statistics.median(s) / statistics.median(m):>13.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rounds, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
