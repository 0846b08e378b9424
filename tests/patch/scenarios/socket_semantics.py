"""Patched socket objects behave like the stdlib's (run under ``reseau_patch run``).

Usage: socket_semantics.py CASE; each CASE is a function below. Every wait is bounded by
a gevent.Timeout, so a call that parks instead of failing fast fails the case quickly.
"""

import _socket
import errno
import fcntl
import math
import os
import socket
import sys
import tempfile

import gevent

BOUND = 10.0


def fd_nonblocking(s):
    return bool(fcntl.fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK)


def fd_blocking_as_stdlib(s):
    """The fd of a blocking socket: O_NONBLOCK clear as in the stdlib under thread=False;
    set with green threads (see timeouts_and_fd_mode_follow_the_stdlib)."""
    from gevent import monkey

    return fd_nonblocking(s) if monkey.is_module_patched("threading") else not fd_nonblocking(s)


def socket_type_is_the_c_type():
    assert socket.SocketType is _socket.socket
    with socket.socket() as s:
        assert isinstance(s, socket.SocketType)
        assert repr(s.family) == "<AddressFamily.AF_INET: 2>", repr(s.family)
        assert repr(s.type) == "<SocketKind.SOCK_STREAM: 1>", repr(s.type)


def timeouts_and_fd_mode_follow_the_stdlib():
    """Timeouts are the stdlib's in every mode. The fd's O_NONBLOCK follows them as in the
    stdlib under thread=False only; with green threads it stays set, so C code working the fd
    itself (pyOpenSSL's handshake) gets EAGAIN instead of blocking every green thread."""
    from gevent import monkey

    green = monkey.is_module_patched("threading")

    def fd_mode_is(stdlib_nonblocking, s):
        assert fd_nonblocking(s) == (True if green else stdlib_nonblocking), (green, s)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
        assert s.gettimeout() == 0.0 and not s.getblocking()
        fd_mode_is(True, s)
        assert s.type == socket.SOCK_STREAM
        s.setblocking(True)
        assert s.gettimeout() is None and s.getblocking()
        fd_mode_is(False, s)
        s.settimeout(2.0)
        assert s.gettimeout() == 2.0 and s.getblocking()
        fd_mode_is(True, s)
        s.settimeout(None)
        fd_mode_is(False, s)
        s.settimeout(0)
        assert not s.getblocking()
        fd_mode_is(True, s)
    for default, nonblocking in ((None, False), (0.0, True), (2.0, True)):
        socket.setdefaulttimeout(default)
        try:
            with socket.socket() as s:
                assert s.gettimeout() == default
                fd_mode_is(nonblocking, s)
        finally:
            socket.setdefaulttimeout(None)
    a, b = socket.socketpair()
    with a, b:
        assert a.gettimeout() is None
        if green:  # a C-level read of an empty blocking socket: EAGAIN, not a hung process
            try:
                os.read(a.fileno(), 1)
            except BlockingIOError:
                pass
            else:
                raise AssertionError("os.read on an empty socket returned")


def settimeout_reads_back_as_the_c_parser():
    """Repeated and odd values read back as the C parser stores them (rounded to whole
    nanoseconds), for plain numbers the patched socket remembers; a closed socket raises."""
    values = (1 / 3, 30, 30, 2.5e-10, True, 1, 1.0, 0, 7 / 3, 1 / 3)
    with socket.socket() as s:
        for value in values + values:
            ref = _socket.socket()
            try:
                ref.settimeout(value)
                s.settimeout(value)
                assert s.gettimeout() == ref.gettimeout(), (value, s.gettimeout())
                assert type(s.gettimeout()) is float, value
                assert fd_nonblocking(s) == fd_nonblocking(ref) or fd_nonblocking(s), value
            finally:
                ref.close()
    s.close()
    try:
        s.settimeout(30)
    except OSError as e:
        assert e.errno == errno.EBADF, e
    else:
        raise AssertionError("settimeout() on a closed socket did not raise")


def bad_timeouts_and_bad_fds_raise_like_the_stdlib():
    with socket.socket() as s:
        for value, exc, text in (("x", TypeError, "'str' object cannot be interpreted as an "
                                  "integer"), (-1, ValueError, "Timeout value out of range"),
                                 (math.nan, ValueError, "Invalid value NaN (not a number)")):
            try:
                s.settimeout(value)
            except exc as e:
                assert str(e) == text, (value, e)
            else:
                raise AssertionError(f"settimeout({value!r}) did not raise")
    s0 = socket.socket()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, s0.fileno())
    s0.close()
    try:
        s.setblocking(False)
    except OSError as e:
        assert e.errno == errno.EBADF, e
    else:
        raise AssertionError("setblocking() on a closed fd did not raise")
    finally:
        s.detach()


def sendto_argument_errors_are_the_c_ones():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        addr = s.getsockname()
        cases = [((b"x",), "sendto() takes 2 or 3 arguments (1 given)"),
                 ((b"x", 0, addr, 4), "sendto() takes 2 or 3 arguments (4 given)"),
                 (("\u2620", addr), "a bytes-like object is required, not 'str'"),
                 ((5j, 0, addr), "a bytes-like object is required, not 'complex'")]
        for args, text in cases:
            try:
                s.sendto(*args)
            except TypeError as e:
                assert str(e) == text, (args, e)
            else:
                raise AssertionError(f"sendto{args!r} did not raise")
        assert s.sendto(b"ping", addr) == 4 and s.recvfrom(10) == (b"ping", addr)


def msg_dontwait_never_waits():
    a, b = socket.socketpair()
    with a, b, gevent.Timeout(BOUND):
        assert a.gettimeout() is None and fd_blocking_as_stdlib(a)
        for call in (lambda: a.recv(10, socket.MSG_DONTWAIT),
                     lambda: a.recv_into(bytearray(10), 0, socket.MSG_DONTWAIT),
                     lambda: a.recvfrom(10, socket.MSG_DONTWAIT),
                     lambda: a.recvmsg(10, 0, socket.MSG_DONTWAIT)):
            try:
                call()
            except BlockingIOError:
                pass
            else:
                raise AssertionError("MSG_DONTWAIT read returned data that was never sent")
        try:
            while True:
                a.sendmsg([b"a" * 4096], [], socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        try:
            a.sendall(b"b" * 65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("sendall(MSG_DONTWAIT) into a full buffer did not raise")


def blocking_fd_calls_still_cooperate():
    # Timeout None: the fd has O_NONBLOCK clear (thread=False), yet recv/accept/connect/
    # sendfile park on the hub; the greenlets that unblock them must get to run.
    with socket.socket() as lsock, gevent.Timeout(BOUND):
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        assert fd_blocking_as_stdlib(lsock)
        client = socket.socket()
        assert fd_blocking_as_stdlib(client)
        later = gevent.spawn_later(0.05, client.connect, lsock.getsockname())
        conn, _ = lsock.accept()
        later.join()
        assert fd_blocking_as_stdlib(lsock) and fd_blocking_as_stdlib(client)
        with conn, client:
            gevent.spawn_later(0.05, conn.sendall, b"hello")
            assert client.recv(5) == b"hello"
            payload = os.urandom(1 << 20)
            with tempfile.TemporaryFile() as f:
                f.write(payload)
                f.seek(0)
                got = bytearray()

                def reader():
                    while len(got) < len(payload):
                        got.extend(conn.recv(65536))

                r = gevent.spawn(reader)
                assert client.sendfile(f) == len(payload)
                r.join()
            assert bytes(got) == payload
            assert fd_blocking_as_stdlib(client)


def getnameinfo_keeps_no_reference():
    name = "some-string-" + str(os.getpid())
    before = sys.getrefcount(name)
    try:
        socket.getnameinfo(name, 0)
    except TypeError as e:
        assert str(e) == "getnameinfo() argument 1 must be a tuple", e
        assert sys.getrefcount(name) == before
    else:
        raise AssertionError("no TypeError")


def create_connection_uses_a_replaced_socket_class():
    from unittest import mock

    class Refusing(socket.socket):
        def connect(self, address):
            raise TimeoutError("from the replaced class")

    with mock.patch.object(socket, "socket", Refusing), gevent.Timeout(BOUND):
        try:
            socket.create_connection(("127.0.0.1", 9))
        except TimeoutError as e:
            assert str(e) == "from the replaced class", e
        else:
            raise AssertionError("the replaced socket class was not used")


def create_connection_to_an_ip_literal():
    """A literal address is one plain connect (no Happy Eyeballs race), with the stdlib's
    results: the connected socket, its timeout, source_address, and its errors (the error
    itself, or an ExceptionGroup of one with all_errors); no fd left behind."""
    from reseau_patch.patch.green_socket import GreenSocket

    with socket.socket() as lsock, gevent.Timeout(BOUND):
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        port = lsock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=7,
                                      source_address=("127.0.0.1", 0)) as c:
            assert type(c) is GreenSocket, type(c)
            assert c.gettimeout() == 7 and c.getsockname()[0] == "127.0.0.1"
            assert c.getpeername() == ("127.0.0.1", port), c.getpeername()
            lsock.accept()[0].close()
        with socket.create_connection(("127.0.0.1", port)) as c:
            assert c.gettimeout() is None  # the default timeout
            lsock.accept()[0].close()
    fds = len(os.listdir("/proc/self/fd"))  # the hub and its loop exist by now
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    with gevent.Timeout(BOUND):
        try:
            socket.create_connection(("127.0.0.1", refused), timeout=5)
        except ConnectionRefusedError as e:
            assert e.errno == errno.ECONNREFUSED, e
        else:
            raise AssertionError("connected to a closed port")
        try:
            socket.create_connection(("127.0.0.1", refused), all_errors=True)
        except ExceptionGroup as eg:
            assert str(eg) == "create_connection failed (1 sub-exception)", str(eg)
            assert [type(e) for e in eg.exceptions] == [ConnectionRefusedError], eg.exceptions
        else:
            raise AssertionError("no ExceptionGroup")
        try:  # the source address is bound before connecting, as the stdlib does
            socket.create_connection(("127.0.0.1", refused), source_address=("127.0.0.1", -1))
        except OverflowError:
            pass
        else:
            raise AssertionError("a bad source port was accepted")
    assert len(os.listdir("/proc/self/fd")) == fds, "create_connection leaked an fd"


def unclosed_socket_finalizer_closes_the_fd_even_if_the_warning_raises():
    """As the C finalizer: an unclosed socket's fd is closed when it is collected, also
    when ResourceWarning is an error (urllib3's suite runs so); the raise is unraisable."""
    import gc
    import warnings

    seen = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            s = socket.socket()
            fd = s.fileno()
            del s
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert seen == [ResourceWarning], seen
    try:
        os.fstat(fd)
    except OSError as e:
        assert e.errno == errno.EBADF, e
    else:
        raise AssertionError(f"fd {fd} of the collected socket is still open")


def string_ports_and_service_names():
    import http.client
    import smtplib

    with socket.socket() as lsock, gevent.Timeout(BOUND):
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        port = str(lsock.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as c:
            assert c.getpeername()[1] == int(port)
            lsock.accept()[0].close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.connect()
        lsock.accept()[0].close()
        conn.close()
        for call in (lambda: socket.create_connection(("127.0.0.1", "bogus")),
                     lambda: smtplib.SMTP("127.0.0.1", port="bogus")):
            try:
                call()
            except OSError as e:
                assert isinstance(e, socket.gaierror), e
            else:
                raise AssertionError("a bogus service name connected")
        unused = socket.socket()
        unused.bind(("127.0.0.1", 0))
        refused = unused.getsockname()[1]
        unused.close()
        try:
            socket.create_connection(("localhost", refused))
        except ConnectionRefusedError:
            pass


def iterable_arguments_survive_a_wait():
    # recvmsg_into/sendmsg take any iterable; a wait (EAGAIN, then retry) must not see a
    # generator the first try used up.
    a, b = socket.socketpair()
    with a, b, gevent.Timeout(BOUND):
        buf = bytearray(5)
        gevent.spawn_later(0.05, b.sendmsg, (x for x in [b"he", b"llo"]))
        nbytes, _, _, _ = a.recvmsg_into(o for o in [buf])
        assert nbytes == 5 and buf == b"hello", (nbytes, buf)


def resolver_threads_are_real_threads():
    # getaddrinfo blocks: the pool must run it on real OS threads even when threading is
    # patched (default mode), never in a greenlet on the hub's thread.
    from gevent.monkey import get_original

    from reseau_patch.io.resolver.system import WorkerPool

    real_ident = get_original("_thread", "get_ident")
    pool = WorkerPool(max_workers=1)
    seen = []
    pool.submit(lambda: seen.append(real_ident()))
    with gevent.Timeout(BOUND):
        while not seen:
            gevent.sleep(0.01)
    pool.close()
    assert seen[0] != real_ident(), "the resolver job ran on the hub's OS thread"


def ssl_reimported_after_patching():
    """ssl imported again once socket.socket is ours (urllib3's suite drops it from
    sys.modules): its SSLSocket subclasses GreenSocket while ssl is half-initialized."""
    import ssl as first

    del sys.modules["ssl"]
    try:
        import ssl

        assert ssl.SSLSocket is not first.SSLSocket
        assert ssl.SSLSocket._rp_fd_follows_timeout is False
    finally:
        sys.modules["ssl"] = first


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok", sys.argv[1])
