"""Server tests run in greenlets of the main thread's hub, on the Reseau loop."""

from __future__ import annotations

import pytest

import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub


@pytest.fixture(scope="session", autouse=True)
def _hub(green_hub):
    """The hub, made before the first leak-check snapshot (tests/conftest.py)."""
    return green_hub


@pytest.fixture(autouse=True)
def _let_hub_finish(hub_settles):
    """The hub finishes the closes a test started, before the leak check runs."""


class Client:
    """A keep-alive HTTP/1.1 client on ``sockets.connect``; h11 parses what the server
    sent, so the server's framing is checked by an independent parser."""

    def __init__(self, port: int, *, timeout: float = 20.0, **connect_kw) -> None:
        import h11

        from reseau_patch import sockets

        self.sock = sockets.connect(port, timeout=timeout, **connect_kw)
        self.sock.settimeout(timeout)
        self.conn = h11.Connection(h11.CLIENT)
        self.informational: list = []

    def send_raw(self, data: bytes) -> None:
        self.sock.write(data)

    def request(self, method: str = "GET", target: str = "/", headers=(), body: bytes = b""
                ) -> tuple[int, dict[str, str], bytes]:
        import h11

        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = [("Host", "test")] + list(headers)
        if body and not any(k.lower() in ("content-length", "transfer-encoding")
                            for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        self.sock.write(data)
        return self.response()

    def response(self) -> tuple[int, dict[str, str], bytes]:
        import h11

        status, headers, chunks = None, {}, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.readavailable())
                continue
            if isinstance(event, h11.InformationalResponse):
                self.informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, headers, b"".join(chunks)

    def read_until_close(self) -> bytes:
        out = []
        while True:
            data = self.sock.readavailable()
            if not data:
                return b"".join(out)
            out.append(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client_factory():
    """``client_factory(port, **kw)`` -> :class:`Client`; closes them all at teardown."""
    made: list[Client] = []

    def make(port: int, **kw) -> Client:
        c = Client(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def wsgi_server():
    """``wsgi_server(app, **kw)`` -> a started WSGIServer on 127.0.0.1:0; stopped after."""
    from reseau_patch.server import WSGIServer

    made = []

    def make(app, **kw):
        srv = WSGIServer(("127.0.0.1", 0), app, **kw)
        srv.start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop(timeout=2)
