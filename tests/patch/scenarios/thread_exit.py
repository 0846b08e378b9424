"""A real thread's hub ends with the thread: no fd, hub or loop of a finished thread stays.

Run under ``reseau_patch run --no-thread ...`` (real threads get their own hubs) with one
case name; prints ``ok <case>``. Every case is bounded (timeouts on sockets and joins).
"""

import gc
import http.client
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gevent
from gevent.hub import Hub

THREADS = 40  # two fds each if hubs leaked: far above the counts' noise (0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_hubs() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Hub) and not o.dead)


def run_threads(target, n: int = THREADS) -> None:
    for _ in range(n):
        t = threading.Thread(target=target)
        t.start()
        t.join(30)
        assert not t.is_alive(), "thread did not finish"


def check_nothing_left(fds: int, hubs: int) -> None:
    assert open_fds() == fds, f"{open_fds() - fds} fds left by {THREADS} finished threads"
    assert live_hubs() == hubs, f"{live_hubs() - hubs} hubs left by finished threads"


def case_sockets() -> None:
    """Each thread connects and reads to EOF on its own hub; so does the server's thread."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(30)
    gevent.sleep(0)  # the main thread's hub exists before the count
    fds, hubs = open_fds(), live_hubs()

    def serve() -> None:
        for _ in range(THREADS):
            conn, _ = srv.accept()
            conn.sendall(b"hello")
            conn.close()

    server = threading.Thread(target=serve)
    server.start()

    def client() -> None:
        with socket.create_connection(srv.getsockname(), timeout=30) as s:
            data = b""
            while chunk := s.recv(16):
                data += chunk
            assert data == b"hello", data

    run_threads(client)
    server.join(30)
    assert not server.is_alive(), "server thread did not finish"
    check_nothing_left(fds, hubs)
    srv.close()


def case_http_server() -> None:
    """ThreadingHTTPServer: a thread per request, each blocking on its own hub."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args) -> None:
            pass

    gevent.sleep(0)  # the main thread's hub exists before the count
    fds, hubs = open_fds(), live_hubs()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    httpd.daemon_threads = False  # server_close() joins the request threads
    serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    port = httpd.server_address[1]
    for _ in range(THREADS):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello"
        conn.close()
    httpd.shutdown()
    serving.join(30)
    assert not serving.is_alive(), "serve_forever did not return"
    httpd.server_close()
    check_nothing_left(fds, hubs)


def case_parked_greenlet() -> None:
    """A thread returns while a greenlet it spawned is still parked on a socket: the hub
    and loop still go; the socket stays the caller's, and closing it later is quiet."""
    pairs = []
    fds, hubs = open_fds(), live_hubs()

    def leave_a_reader() -> None:
        a, b = socket.socketpair()
        pairs.append((a, b))
        gevent.spawn(a.recv, 1)
        gevent.sleep(0.001)  # the reader parks on this thread's loop

    run_threads(leave_a_reader)
    assert open_fds() == fds + 2 * THREADS, "only the socket pairs may stay open"
    assert live_hubs() == hubs
    for a, b in pairs:
        a.close()
        b.close()
    assert open_fds() == fds


def case_hub_never_ran() -> None:
    """A thread whose hub never ran (no call had to wait): its loop closes as the thread
    ends, not at some later garbage collection (the hub and loop are a reference cycle)."""
    gevent.sleep(0)
    gc.collect()
    gc.disable()  # the guard, not the collector, must close them
    fds = open_fds()

    def touch() -> None:
        gevent.get_hub()
        a, b = socket.socketpair()
        a.sendall(b"x")
        assert b.recv(1) == b"x"
        a.close()
        b.close()

    run_threads(touch)
    assert open_fds() == fds, f"{open_fds() - fds} fds left until a garbage collection"
    gc.enable()


def case_gevent_threadpool() -> None:
    """gevent's own thread pool destroys its workers' hubs first: the guard must not mind."""
    pool = gevent.get_hub().threadpool
    fds = open_fds()
    for _ in range(3):
        assert pool.spawn(gevent.sleep, 0.001).get(timeout=30) is None
        pool.kill()
    pool.join()
    assert open_fds() == fds, f"{open_fds() - fds} fds left by the pool's workers"


if __name__ == "__main__":
    case = sys.argv[1]
    globals()[f"case_{case}"]()
    print(f"ok {case}")
