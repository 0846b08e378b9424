"""gunicorn with ``-k reseau_patch.gunicorn.Worker``: load, a killed worker, SIGTERM,
--max-requests, --worker-connections, --keep-alive, --timeout heartbeats."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import gevent
import pytest

HERE = os.path.dirname(__file__)
WORKER = "reseau_patch.gunicorn.Worker"
START_BOUND = 60.0


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def _wait_for(cond, bound: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        gevent.sleep(step)
    raise AssertionError(f"{what} within {bound} s")


class Gunicorn:
    """A gunicorn master on a listener this test bound (passed as ``fd://``)."""

    def __init__(self, tmp_path, *args: str) -> None:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        self.port = lsock.getsockname()[1]
        self.log = open(tmp_path / "gunicorn.log", "w+")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-k", WORKER, "--chdir",
                 os.path.join(HERE, "scenarios"), "--bind", f"fd://{lsock.fileno()}",
                 "--graceful-timeout", "10", "--no-control-socket", *args,
                 "gunicorn_app:app"],
                pass_fds=[lsock.fileno()], stdout=self.log, stderr=subprocess.STDOUT)
        finally:
            lsock.close()

    def workers(self) -> set[int]:
        return _children(self.proc.pid)

    def wait_workers(self, n: int, exclude: set[int] = frozenset()) -> set[int]:
        return _wait_for(lambda: (w := self.workers() - exclude) and len(w) >= n and w,
                         START_BOUND, f"{n} workers up")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def gunicorn(tmp_path):
    made: list[Gunicorn] = []

    def start(*args: str) -> Gunicorn:
        g = Gunicorn(tmp_path, *args)
        made.append(g)
        return g

    yield start
    for g in made:
        g.stop()


def _get(client_factory, port, path="/", **kw):
    """One request on a new connection, closed afterwards (an idle keep-alive connection
    would hold one of the worker's --worker-connections)."""
    c = client_factory(port, **kw)
    try:
        return c.request("GET", path)
    finally:
        c.close()


def _served(client_factory, port) -> bool:
    try:
        return _get(client_factory, port)[0] == 200
    except OSError:
        return False


def test_two_workers_serve_under_load_survive_a_kill_and_exit_on_sigterm(
        run, gunicorn, client_factory):
    g = gunicorn("-w", "2")

    def body():
        first = g.wait_workers(2)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving")
        pids = set()

        def load(i):
            c = client_factory(g.port)
            for j in range(40):
                body = b"%d-%d " % (i, j) * 20
                status, headers, got = c.request("POST", "/echo", body=body)
                assert status == 200 and got == body
                pids.add(int(headers["x-pid"]))

        jobs = [gevent.spawn(load, i) for i in range(30)]
        gevent.joinall(jobs, timeout=90, raise_error=True)
        assert all(j.successful() for j in jobs)
        assert pids <= first

        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_for(lambda: (w := g.workers()) and len(w) == 2 and victim not in w
                             and w, START_BOUND, "the arbiter replaced the killed worker")
        assert len(replaced - first) == 1
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving again")
        for _ in range(20):
            assert _get(client_factory, g.port)[0] == 200

        # Graceful SIGTERM: an in-flight request finishes, then everything exits cleanly.
        slow = gevent.spawn(_get, client_factory, g.port, "/slow?t=1")
        gevent.sleep(0.3)
        g.proc.send_signal(signal.SIGTERM)
        status, _, _ = slow.get(timeout=30)
        assert status == 200
        _wait_for(lambda: g.proc.poll() is not None, 30, "gunicorn exited after SIGTERM")
        assert g.proc.returncode == 0, g.output()
        with pytest.raises(ConnectionRefusedError):
            client_factory(g.port, timeout=5)

    run(body, timeout=115)
    assert "Traceback" not in g.output(), g.output()


def test_max_requests_restarts_the_worker(run, gunicorn, client_factory):
    g = gunicorn("-w", "1", "--max-requests", "10", "--max-requests-jitter", "0")

    def body():
        (first,) = g.wait_workers(1)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving")
        seen = set()
        for _ in range(30):
            try:
                status, headers, _ = _get(client_factory, g.port)
            except OSError:
                continue  # connecting while the worker changes hands
            if status == 200:
                seen.add(int(headers["x-pid"]))
            if len(seen) >= 2:
                break
            gevent.sleep(0.05)
        assert first in seen and len(seen) >= 2, seen

    run(body, timeout=110)
    assert "Autorestarting worker after current request" in g.output()


def test_worker_connections_caps_concurrency(run, gunicorn, client_factory):
    g = gunicorn("-w", "1", "--worker-connections", "2")

    def body():
        g.wait_workers(1)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving")
        jobs = [gevent.spawn(_get, client_factory, g.port, "/slow?t=0.5") for _ in range(5)]
        gevent.joinall(jobs, timeout=60, raise_error=True)
        peaks = [int(j.value[1]["x-peak"]) for j in jobs]
        assert all(j.value[0] == 200 for j in jobs)
        assert max(peaks) == 2, peaks  # never more than --worker-connections at once

    run(body, timeout=110)


def test_keep_alive_setting_closes_idle_connections(run, gunicorn, client_factory):
    g = gunicorn("-w", "1", "--keep-alive", "1", "--access-logfile", "-")

    def body():
        g.wait_workers(1)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving")
        c = client_factory(g.port)
        assert c.request("GET", "/")[0] == 200
        assert c.request("GET", "/")[0] == 200  # kept alive between requests
        assert c.read_until_close() == b""  # then closed by the server after 1 s idle

    run(body, timeout=110)
    assert '"GET / HTTP/1.1" 200 ' in g.output()  # gunicorn's access log format


def test_timeout_heartbeat_keeps_idle_workers_and_replaces_a_blocked_one(
        run, gunicorn, client_factory):
    g = gunicorn("-w", "1", "--timeout", "2")

    def body():
        (first,) = g.wait_workers(1)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving")
        gevent.sleep(4)  # twice --timeout, idle: the heartbeat keeps the worker alive
        assert g.workers() == {first}
        blocked = gevent.spawn(_get, client_factory, g.port, "/block?t=30")
        g.wait_workers(1, exclude={first})  # the arbiter killed the blocked worker
        with pytest.raises(Exception):  # noqa: B017 - connection cut: h11 or OSError
            blocked.get(timeout=30)
        _wait_for(lambda: _served(client_factory, g.port), START_BOUND, "serving again")

    run(body, timeout=115)


def test_tls_certfile_keyfile_through_our_engine(run, gunicorn, tmp_path):
    import ssl

    import trustme

    from reseau_patch import sockets

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    g = gunicorn("-w", "1", "--certfile", str(cert), "--keyfile", str(key))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)

    def https_get() -> bytes:
        sock = sockets.connect("127.0.0.1", g.port, ssl_context=ctx, timeout=10)
        sock.settimeout(10)
        try:
            sock.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while data := sock.readavailable():
                got += data
            return got
        finally:
            sock.close()

    def body():
        (pid,) = g.wait_workers(1)
        got = _wait_for(lambda: _try(https_get), START_BOUND, "serving TLS")
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        assert got.endswith(str(pid).encode())

    run(body, timeout=110)


def _try(fn):
    try:
        return fn()
    except OSError:
        return None
