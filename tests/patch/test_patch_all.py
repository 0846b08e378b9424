"""patch_all(): the patched modules behave like the stdlib's, on the Reseau stack."""

from __future__ import annotations

import subprocess
import sys


def test_socket_class_loop_and_resolver_are_ours(run_patched):
    out = run_patched("""
        import _socket, socket, gevent
        from reseau_patch.patch import is_patched, get_original
        from reseau_patch.patch.green_socket import GreenSocket
        assert socket.socket is GreenSocket and socket.SocketType is _socket.socket
        assert issubclass(GreenSocket, get_original("socket", "socket"))
        assert is_patched() and is_patched("socket") and is_patched("socket", "socket")
        loop = gevent.get_hub().loop
        print(type(loop).__name__, type(gevent.get_hub().resolver).__module__)
    """).stdout
    assert out.startswith("ReseauLoop")


def test_closed_socket_behaves_like_the_stdlib(run_patched):
    run_patched("""
        import errno, socket
        s = socket.socket()
        s.close()
        assert s.getblocking() and s.gettimeout() is None  # no fd check, as in the stdlib
        for op in (lambda: s.settimeout(1), lambda: s.setblocking(False), lambda: s.recv(1)):
            try:
                op()
            except OSError as e:
                assert e.errno == errno.EBADF, e
            else:
                raise AssertionError("no error on a closed socket")
        assert s.fileno() == -1
        try:
            s.settimeout(-1)  # the value is checked first, as in the stdlib
        except ValueError as e:
            assert str(e) == "Timeout value out of range", e
        else:
            raise AssertionError("no ValueError")
    """)


def test_timeouts_and_nonblocking_errors(run_patched):
    run_patched("""
        import socket, time
        a, b = socket.socketpair()
        a.settimeout(0.2)
        t0 = time.monotonic()
        try:
            a.recv(1)
        except TimeoutError as e:
            assert str(e) == "timed out"
        assert 0.15 < time.monotonic() - t0 < 5
        a.setblocking(False)
        try:
            a.recv(1)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("no BlockingIOError")
        assert a.gettimeout() == 0.0 and not a.getblocking()
        b.sendall(b"x" * 10)
        a.settimeout(None)
        assert a.recv(10) == b"x" * 10
        a.close(); b.close()
    """)


def test_epoll_survives_aggressive_and_queue_fidelity(run_patched):
    run_patched("""
        import select, selectors, queue
        from unittest import mock
        assert hasattr(select, "epoll") and hasattr(selectors, "EpollSelector")
        ep = select.epoll(); ep.close()
        q = queue.Queue(0)  # unbounded, silently (warnings are errors here)
        class MyEmpty(Exception):
            pass
        with mock.patch.object(queue, "Empty", MyEmpty):
            try:
                q.get(timeout=0.01)
            except MyEmpty:
                pass
        try:
            queue.LifoQueue(1).get_nowait()
        except queue.Empty:
            pass
        q2 = queue.Queue(1); q2.put(1)
        try:
            q2.put_nowait(2)
        except queue.Full:
            pass
    """, "--aggressive", timeout=60)


def test_read_blocked_in_thread_ends_on_close_from_another_thread(run_patched):
    # thread=False: real OS threads, each with its own hub and loop.
    run_patched("""
        import socket, threading, time
        for how in ("close", "shutdown"):
            a, b = socket.socketpair()
            result = []
            def reader():
                try:
                    result.append(a.recv(10))
                except OSError as e:
                    result.append(e)
                except Exception as e:
                    result.append(("WRONG", e))
            t = threading.Thread(target=reader)
            t.start()
            time.sleep(0.2)
            if how == "close":
                a.close()
            else:
                a.shutdown(socket.SHUT_RDWR)
            t.join(5)
            assert not t.is_alive(), how
            r = result[0]
            assert r == b"" or isinstance(r, OSError), (how, r)
            a.close(); b.close()
    """, "--no-thread", "--no-queue")


def test_socket_made_in_one_thread_works_in_another(run_patched):
    run_patched("""
        import socket, threading
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        def serve():
            c, _ = srv.accept()
            while data := c.recv(100):
                c.sendall(data.upper())
            c.close()
        st = threading.Thread(target=serve); st.start()
        box = {}
        def make():
            box["s"] = socket.create_connection(("127.0.0.1", port), timeout=5)
        t = threading.Thread(target=make); t.start(); t.join(5)
        def use():
            s = box["s"]
            s.sendall(b"hello")
            box["got"] = s.recv(100)
            s.close()
        t = threading.Thread(target=use); t.start(); t.join(5)
        st.join(5); srv.close()
        assert box["got"] == b"HELLO", box
    """, "--no-thread")


def test_servers_handle_200_concurrent_clients(run_patched):
    run_patched("""
        import gevent, socketserver, http.server, threading, urllib.request, socket
        from wsgiref.simple_server import make_server, WSGIRequestHandler

        class Upper(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.sendall(self.request.recv(100).upper())

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass

        class QuietWSGI(WSGIRequestHandler):
            def log_message(self, *a):
                pass

        def app(environ, start_response):
            body = environ["PATH_INFO"].encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]

        socketserver.TCPServer.request_queue_size = 512
        servers = [
            socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upper),
            http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet),
        ]
        class ThreadingWSGI(socketserver.ThreadingMixIn,
                            __import__("wsgiref.simple_server").simple_server.WSGIServer):
            daemon_threads = True
        servers.append(make_server("127.0.0.1", 0, app, server_class=ThreadingWSGI,
                                   handler_class=QuietWSGI))
        threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05})
                   for s in servers]
        for t in threads:
            t.start()

        def tcp_client(i):
            with socket.create_connection(servers[0].server_address, timeout=20) as c:
                c.sendall(b"msg%d" % i)
                return c.recv(100)

        def http_client(server, i):
            url = "http://%s:%d/p%d" % (*server.server_address[:2], i)
            return urllib.request.urlopen(url, timeout=20).read()

        jobs = [gevent.spawn(tcp_client, i) for i in range(200)]
        jobs += [gevent.spawn(http_client, servers[1], i) for i in range(200)]
        jobs += [gevent.spawn(http_client, servers[2], i) for i in range(200)]
        gevent.joinall(jobs, timeout=60, raise_error=True)
        got = [j.value for j in jobs]
        assert got[:200] == [b"MSG%d" % i for i in range(200)]
        assert got[200:400] == [b"/p%d" % i for i in range(200)]
        assert got[400:] == [b"/p%d" % i for i in range(200)]
        for s in servers:
            s.shutdown(); s.server_close()
        for t in threads:
            t.join(5)
        print("ok")
    """, timeout=120)


def test_run_cli_passes_arguments_and_doctor_reports_our_loop():
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "doctor"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "reseau_patch.hub.loop.ReseauLoop" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "reseau_patch", "run", "--no-bogus", "x.py"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--no-bogus" in bad.stderr


def test_create_connection_happy_eyeballs_source_address_all_errors(run_patched):
    run_patched("""
        import socket, time
        import reseau_patch.io.resolver as res
        from reseau_patch.io.resolver import StaticResolver

        # 127.0.0.2 drops SYNs (a listen(0) queue we fill), 127.0.0.3 accepts: same port.
        black = socket.socket(); black.bind(("127.0.0.2", 0)); black.listen(0)
        port = black.getsockname()[1]
        good = socket.socket(); good.bind(("127.0.0.3", port)); good.listen(8)
        fillers = []
        for _ in range(3):
            f = socket.socket(); f.setblocking(False); f.connect_ex(("127.0.0.2", port))
            fillers.append(f)
        time.sleep(0.05)
        static = StaticResolver({"he.test": ["127.0.0.2", "127.0.0.3"],
                                 "dead.test": ["127.0.0.4", "127.0.0.5"]})
        res.default_resolver = lambda: static
        t0 = time.monotonic()
        c = socket.create_connection(("he.test", port), timeout=10)
        elapsed = time.monotonic() - t0
        assert c.getpeername() == ("127.0.0.3", port), c.getpeername()
        assert elapsed < 5, elapsed  # not the full 10 s timeout of the first address
        assert c.gettimeout() == 10
        c.close()
        s = socket.create_connection(("127.0.0.3", port), source_address=("127.0.0.1", 0))
        assert s.getsockname()[0] == "127.0.0.1"
        s.close()
        try:
            socket.create_connection(("dead.test", 9), timeout=2)
        except ConnectionRefusedError:
            pass
        try:
            socket.create_connection(("dead.test", 9), timeout=2, all_errors=True)
        except ExceptionGroup as eg:
            assert len(eg.exceptions) == 2
            assert all(isinstance(e, ConnectionRefusedError) for e in eg.exceptions)
        else:
            raise AssertionError("no ExceptionGroup")
        for f in fillers: f.close()
        black.close(); good.close()
    """)
