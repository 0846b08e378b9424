"""Out-of-process peers for client-side workloads: ``python -m benchmarks.servers KIND``.

The peer runs on uvloop (asyncio when uvloop is missing) in its own process, the same for
every implementation, so a table compares only the clients. It prints its port on the
first stdout line and serves until its stdin closes (the client process ending closes it,
so a crashed child leaves no server behind). Kinds:

* ``echo``   writes back what it reads;
* ``source`` reads an 8-byte big-endian count, sends that many bytes, half-closes;
* ``http``   HTTP/1.1 keep-alive ``200 OK`` "Hello, world!" to every request;
* ``hold``   accepts and keeps connections open, sending nothing (idle connections).

``--tls DIR``: TLS with a test CA made here (``DIR/ca.pem`` for the client to trust,
certificate for 127.0.0.1 and localhost). Use :func:`peer` from a workload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .pinning import pin_peer

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
            b"Hello, world!")
CHUNK = 256 * 1024


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)

    def pause_writing(self) -> None:  # the peer reads slower than it sends
        self.t.pause_reading()

    def resume_writing(self) -> None:
        self.t.resume_reading()


class Source(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.left = -1
        self.paused = False

    def data_received(self, data: bytes) -> None:
        if self.left >= 0:
            return
        self.buf += data
        if len(self.buf) >= 8:
            self.left = int.from_bytes(self.buf[:8], "big")
            self.pump()

    def pump(self) -> None:
        block = b"\xab" * CHUNK
        while self.left > 0 and not self.paused:
            n = min(self.left, CHUNK)
            self.left -= n
            self.t.write(block[:n] if n < CHUNK else block)
        if self.left == 0:
            self.left = -2
            if self.t.can_write_eof():
                self.t.write_eof()
            else:
                self.t.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


class Http(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")  # GETs only: no request bodies
        if n:
            self.t.write(RESPONSE * n)
            buf = buf[buf.rindex(b"\r\n\r\n") + 4:]
        self.buf = buf


class Hold(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        pass


KINDS = {"echo": Echo, "source": Source, "http": Http, "hold": Hold}


def raise_nofile(want: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def make_tls(directory: Path) -> ssl.SSLContext:
    """A CA (``ca.pem``) and a server context for 127.0.0.1/localhost signed by it."""
    from reseau_patch.pki import make_ca

    ca = make_ca("reseau benchmark CA")
    leaf = ca.issue(["localhost"], ["127.0.0.1"])
    (directory / "ca.pem").write_bytes(ca.cert_pem())
    cert, key = directory / "server.pem", directory / "server.key"
    cert.write_bytes(leaf.cert_pem())
    key.write_bytes(leaf.key_pem())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(kind: str, tls_dir: str | None) -> None:
    loop = asyncio.get_running_loop()
    ctx = make_tls(Path(tls_dir)) if tls_dir else None
    server = await loop.create_server(KINDS[kind], "127.0.0.1", 0, backlog=4096, ssl=ctx,
                                      ssl_handshake_timeout=60 if ctx else None)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until stdin closes: the client process is gone (or done with us).
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    server.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=list(KINDS))
    ap.add_argument("--tls", metavar="DIR", help="serve TLS; write the CA to DIR/ca.pem")
    args = ap.parse_args()
    pin_peer()  # on the CPUs the harness left for peers, if it pinned the client
    raise_nofile(1 << 20)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args.kind, args.tls))
    return 0


@contextlib.contextmanager
def peer(kind: str, tls: bool = False) -> Iterator[tuple[int, str | None]]:
    """Start a peer process; yields ``(port, ca_file or None)``; stops it on exit.

    Call it before the timed part: under a patched implementation ``subprocess`` is green.
    """
    with tempfile.TemporaryDirectory(prefix="reseau-bench-") as tmp:
        cmd = [sys.executable, "-m", "benchmarks.servers", kind] + (["--tls", tmp] if tls else [])
        env = {k: v for k, v in os.environ.items() if not k.startswith("GEVENT_")}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                cwd=Path(__file__).resolve().parent.parent)
        try:
            line = proc.stdout.readline()
            if not line.strip().isdigit():
                raise RuntimeError(f"benchmark peer {kind} did not start (said {line!r})")
            yield int(line), (os.path.join(tmp, "ca.pem") if tls else None)
        finally:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
