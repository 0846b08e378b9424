"""gevent's hub, greenlets and sockets on the Reseau loop, sharing it with raw io users."""

from __future__ import annotations

import errno
import socket as std_socket
import time

import gevent
import gevent.event
import pytest
from gevent import socket as gsocket

from reseau_patch.hub import LOOP_PATH
from reseau_patch.hub.loop import ReseauLoop
from reseau_patch.io.event_loop import READ, WRITE, IOWatcher

from .conftest import WAIT_S, run_python


def test_hub_runs_on_reseau_loop(_hub) -> None:
    assert isinstance(_hub.loop, ReseauLoop)
    assert _hub.loop.default


def test_sleep_timeout_and_errors_in_callbacks(_hub, no_greenlet_leaks) -> None:
    t = time.monotonic()
    gevent.sleep(0.05)
    assert 0.04 <= time.monotonic() - t < WAIT_S
    with pytest.raises(gevent.Timeout):
        with gevent.Timeout(0.02):
            gevent.sleep(5)
    # An error in a loop callback is reported; the hub keeps running.
    errors: list = []
    old = _hub.handle_error
    _hub.handle_error = lambda ctx, t, v, tb: errors.append(t)
    try:
        _hub.loop.run_callback(lambda: 1 / 0)
        gevent.sleep(0.01)
    finally:
        del _hub.handle_error
        assert _hub.handle_error == old
    assert errors == [ZeroDivisionError]


def _echo_io_side(loop, srv: std_socket.socket, done: list) -> list:
    """A non-blocking echo on ``srv`` driven by raw IOWatchers of the hub's EventLoop."""
    ev = loop._ev
    pending = bytearray()
    state = {"echoed": 0}
    rw = IOWatcher(ev, srv.fileno(), READ)
    ww = IOWatcher(ev, srv.fileno(), WRITE)

    def on_write(_bits: int) -> None:
        try:
            n = srv.send(pending)
        except BlockingIOError:
            return
        del pending[:n]
        if not pending:
            ww.stop()

    def on_read(_bits: int) -> None:
        try:
            data = srv.recv(65536)
        except BlockingIOError:
            return
        if not data:
            rw.stop()
            ww.stop()
            srv.shutdown(std_socket.SHUT_WR)  # the client saw every echo: pass EOF on
            done.append(state["echoed"])
            return
        state["echoed"] += len(data)
        pending.extend(data)
        if not ww.active:
            ww.start(on_write)

    rw.start(on_read)
    return [rw, ww]


def test_100_greenlets_with_raw_io_echo_on_same_loop(_hub, no_greenlet_leaks) -> None:
    """Greenlets (sleeps, events, gevent sockets) and an IOWatcher echo share one EventLoop."""
    loop = _hub.loop
    io_srv, io_cli = std_socket.socketpair()
    io_srv.setblocking(False)
    done: list[int] = []
    watchers = _echo_io_side(loop, io_srv, done)
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    addr = listener.getsockname()
    start_evt = gevent.event.Event()
    results: list[int] = []

    def serve_one(conn) -> None:
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)

    def acceptor() -> None:
        for _ in range(50):
            conn, _ = listener.accept()
            gevent.spawn(serve_one, conn)

    def socket_worker(i: int) -> None:
        start_evt.wait()
        with gsocket.create_connection(addr) as c:
            for _ in range(5):
                msg = f"{i:04d}".encode() * 16
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    got += c.recv(len(msg) - len(got))
                assert got == msg
                gevent.sleep(0.001)
        results.append(i)

    def sleeper(i: int) -> None:
        start_evt.wait()
        for _ in range(5):
            gevent.sleep(0.002 * (i % 5))
        results.append(i)

    def io_client() -> None:
        # The raw side's peer, in a greenlet using a gevent socket over the same fd pair.
        c = gsocket.socket(fileno=io_cli.detach())
        with c:
            for n in range(200):
                msg = n.to_bytes(2, "big") * 32
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    got += c.recv(len(msg) - len(got))
                assert got == msg
            c.shutdown(std_socket.SHUT_WR)
            assert c.recv(1) == b""

    acc = gevent.spawn(acceptor)
    workers = [gevent.spawn(socket_worker, i) for i in range(50)]
    workers += [gevent.spawn(sleeper, i) for i in range(50, 100)]
    io_g = gevent.spawn(io_client)
    gevent.sleep(0)
    start_evt.set()
    with gevent.Timeout(WAIT_S * 3):
        gevent.joinall(workers + [io_g, acc], raise_error=True)
        while not done:
            gevent.sleep(0.01)
    assert sorted(results) == list(range(100))
    assert done == [200 * 64]
    for w in watchers:
        w.stop()
    io_srv.close()
    listener.close()
    gevent.sleep(0.01)  # let serve_one greenlets see EOF and finish


def test_socket_close_wakes_blocked_reader(_hub, no_greenlet_leaks) -> None:
    a, b = gsocket.socketpair()
    g = gevent.spawn(a.recv, 10)
    gevent.sleep(0.01)
    a.close()
    with pytest.raises(OSError) as info:
        g.get(timeout=WAIT_S)
    assert info.value.errno in (errno.EBADF, None) or isinstance(info.value, OSError)
    b.close()


def test_run_callback_threadsafe_from_thread(_hub, no_greenlet_leaks) -> None:
    import threading

    result = gevent.event.AsyncResult()
    th = threading.Thread(target=lambda: _hub.loop.run_callback_threadsafe(result.set, 42))
    th.start()
    assert result.get(timeout=WAIT_S) == 42
    th.join(WAIT_S)


def test_keyboard_interrupt_reaches_main_greenlet_while_hub_blocked() -> None:
    """A thread sends SIGINT while the hub sits in epoll_wait: the main greenlet gets it."""
    proc = run_python("""
        import os, signal, threading, time
        import gevent
        assert type(gevent.get_hub().loop).__name__ == "ReseauLoop"

        def kill_soon():
            time.sleep(0.2)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        for sender in ("pthread_kill", "os.kill"):
            t = threading.Thread(target=kill_soon if sender == "pthread_kill" else
                                 lambda: (time.sleep(0.2), os.kill(os.getpid(), signal.SIGINT)))
            t.start()
            start = time.monotonic()
            try:
                gevent.sleep(30)
            except KeyboardInterrupt:
                print("KI", sender, round(time.monotonic() - start, 1))
            t.join()
        # The hub survived: it still runs timers.
        gevent.sleep(0.01)
        print("hub alive")
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "KI pthread_kill 0.2" in proc.stdout, proc.stdout
    assert "KI os.kill 0.2" in proc.stdout, proc.stdout
    assert "hub alive" in proc.stdout


def test_subprocess_and_signals_through_gevent() -> None:
    proc = run_python("""
        from gevent import monkey; monkey.patch_all()
        import os, signal, subprocess, sys
        import gevent
        out = subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True,
                             timeout=20)
        assert out.stdout.strip() == b"child", out
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        assert os.waitpid(pid, 0) == (pid, 3 << 8)
        got = []
        gevent.signal_handler(signal.SIGUSR1, got.append, 1)
        os.kill(os.getpid(), signal.SIGUSR1)
        with gevent.Timeout(5):
            while not got:
                gevent.sleep(0.01)
        print("ok")
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_gevent_core_is_our_module() -> None:
    proc = run_python("""
        import gevent, gevent.core
        print(gevent.core.loop.__module__, gevent.core.READ, gevent.core.WRITE,
              gevent.core.EVENTS is not None, gevent.config.loop.__name__)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["reseau_patch.hub.loop", "1", "2", "True", "ReseauLoop"]


def test_use_reseau_loop_selects_and_refuses_late() -> None:
    proc = run_python("""
        from reseau_patch.hub import use_reseau_loop
        use_reseau_loop()
        use_reseau_loop()  # idempotent
        import gevent
        print(type(gevent.get_hub().loop).__name__)
    """, loop=None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ReseauLoop"
    proc = run_python("""
        import gevent
        gevent.get_hub()
        from reseau_patch.hub import use_reseau_loop
        try:
            use_reseau_loop()
        except RuntimeError as e:
            print("refused:", e)
    """, loop="libev-cext")
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "gevent.libev" in proc.stdout
    assert LOOP_PATH in proc.stdout
