"""A socket nobody closed is finalized the moment its last reference goes, as the stdlib's.

Usage: prompt_finalization.py plain|tls. Run under ``reseau_patch run`` (either thread
mode) or unpatched, where the cases that need no greenlets check the stdlib itself: the
expectations below are the stdlib's, not ours.

With the cyclic gc disabled, each case leaves sockets in one state (parked, timed out,
cancelled, unwrapped...) and hands them back unclosed; dropping each one's last reference
must free it at once (weakref dead), close its fd and emit its ResourceWarning right there.
A socket caught in a reference cycle would survive until some later gc pass, whose
ResourceWarning then fails an unrelated test (urllib3's suite runs with warnings as errors).
A survivor is reported with the chain of objects holding it.
"""

import concurrent.futures
import errno
import gc
import os
import select
import selectors
import socket
import ssl
import sys
import threading
import warnings
import weakref
from contextlib import nullcontext

import gevent

BOUND = 10.0
KIND = sys.argv[1] if len(sys.argv) > 1 else "plain"
PATCHED = socket.socket.__module__ != "socket"  # GreenSocket under reseau_patch run

if KIND == "tls":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tls_common


# --------------------------------------------------------------------------- checking
class Gone:
    """An object (by weak reference) that must already be freed when the case returns."""

    def __init__(self, obj, what):
        self.ref = weakref.ref(obj)
        self.what = what


class Via:
    """Drop ``holder`` (the last reference to ``sock``): ``sock`` goes, warning or not."""

    def __init__(self, holder, sock, warns):
        self.holder, self.sock, self.warns = holder, sock, warns


def _label(o):
    if type(o).__name__ == "frame":
        return f"frame {o.f_code.co_name} ({os.path.basename(o.f_code.co_filename)}:{o.f_lineno})"
    if isinstance(o, dict):
        return f"dict keys={list(o)[:6]!r}"
    if isinstance(o, (list, tuple, set)):
        return f"{type(o).__qualname__} len={len(o)}"
    return f"{type(o).__qualname__} {repr(o)[:90]}"


def _cycle(obj, limit=20000):
    """The shortest path obj -> ... -> obj over gc.get_referents (what holds what), or None."""
    parent = {id(obj): None}
    keep = [obj]
    frontier = [obj]
    while frontier and len(parent) < limit:
        nxt = []
        for cur in frontier:
            for ref in gc.get_referents(cur):
                if ref is obj:
                    path = [cur]
                    while parent[id(path[-1])] is not None:
                        path.append(parent[id(path[-1])])
                    return list(reversed(path)) + [obj]
                if id(ref) in parent or isinstance(ref, (type, type(sys))):
                    continue
                parent[id(ref)] = cur
                keep.append(ref)
                nxt.append(ref)
        frontier = nxt
    return None


def _holders(obj):
    """What keeps ``obj`` alive (an objgraph-style walk on the stdlib gc): the chain of
    referrers from ``obj`` up to the first one that sits in a reference cycle (printed) or
    that nothing visible to gc holds (a root: C code, the running stack)."""
    ignore = set()
    parent = {id(obj): None}
    keep = [obj]
    frontier = [obj]
    ignore.update((id(ignore), id(parent), id(keep), id(frontier), id(sys._getframe())))

    def chain(o):
        out = [o]
        while parent[id(out[-1])] is not None:
            out.append(parent[id(out[-1])])
        return "\n      <- held by ".join(_label(x) for x in out)

    for _ in range(12):
        nxt = []
        ignore.add(id(nxt))
        for i in range(len(frontier)):
            cur = frontier[i]
            cycle = _cycle(cur)
            if cycle is not None:
                return ["    " + chain(cur), "    which is in a cycle:\n      " +
                        "\n      -> ".join(_label(x) for x in cycle)]
            refs = gc.get_referrers(cur)
            ignore.add(id(refs))
            found = False
            for j in range(len(refs)):
                r = refs[j]
                if id(r) in ignore or type(r).__name__ == "frame" and \
                        r.f_code.co_filename == __file__:
                    continue
                found = True
                if id(r) not in parent:
                    parent[id(r)] = cur
                    keep.append(r)
                    nxt.append(r)
            if not found:
                return ["    " + chain(cur) + "\n      (nothing gc sees holds that)"]
        frontier = nxt
    return ["    (no root found within 12 levels)"]


def _fd_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError as e:
        assert e.errno == errno.EBADF, e
        return False


def _check_one(item, seen_warnings, problems):
    if isinstance(item, Gone):
        obj = item.ref()
        if obj is not None:
            problems.append(f"{item.what} outlives the case:\n" + "\n".join(_holders(obj)))
        return
    if isinstance(item, Via):
        holder, sock, warns = item.holder, item.sock, item.warns
        item.holder = item.sock = None
    else:
        holder, sock, warns = item, item, True
    del item
    fd = sock.fileno()
    ref = weakref.ref(sock)
    desc = repr(sock)
    del sock
    seen_warnings.clear()
    del holder  # the last reference: the socket must be finalized inside this statement
    got = list(seen_warnings)
    obj = ref()
    if obj is not None:
        problems.append(f"{desc} survives its last reference:\n" + "\n".join(_holders(obj)))
        obj = None
        return
    if fd >= 0 and _fd_open(fd):
        problems.append(f"{desc}: fd {fd} still open after the socket was freed")
    unclosed = [m for c, m in got if c is ResourceWarning and "unclosed" in m]
    if warns and not any(f"fd={fd}," in m for m in unclosed):
        problems.append(f"{desc}: no ResourceWarning when it was freed (got {got!r})")
    if not warns and unclosed:
        problems.append(f"{desc}: unexpected {unclosed!r}")


def _open_fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def check(case):
    """Run ``case`` with gc off; every socket it returns must die by reference counting."""
    gc.collect()
    before = _open_fds()
    seen_warnings = []

    def record(message, category, filename, lineno, file=None, line=None):
        seen_warnings.append((category, str(message)))  # never the source: it resurrects

    problems = []
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            items = case()
            while items:
                _check_one(items.pop(), seen_warnings, problems)
            del items
    finally:
        gc.enable()
        gc.collect()  # a survivor must not spill into the next case
    after = _open_fds()
    if after != before:
        problems.append(f"fds before {before}, after {after}")
    return problems


# --------------------------------------------------------------------------- helpers
def background(fn, *args):
    """``fn(*args)`` concurrently: a greenlet when patched, a real thread otherwise."""
    if PATCHED:
        return gevent.spawn(fn, *args)
    box = []
    t = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    t.start()
    t.value_box = box
    return t


def finish(task):
    if PATCHED:
        return task.get(timeout=BOUND)
    task.join(BOUND)
    assert not task.is_alive()
    return task.value_box[0] if task.value_box else None


def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(BOUND)
    return srv


def server_wrap(conn):
    return tls_common.server_context().wrap_socket(conn, server_side=True)


def client_wrap(sock):
    return tls_common.client_context().wrap_socket(sock, server_hostname="localhost")


def pair(via="create_connection"):
    """(client, accepted server side), connected, TLS-wrapped for the tls kind."""
    with listener() as srv:
        if via == "connect":
            cli = socket.socket()
            cli.settimeout(BOUND)
            if KIND == "tls":
                cli = client_wrap(cli)
                task = background(cli.connect, srv.getsockname())  # handshake needs a peer
            else:
                cli.connect(srv.getsockname())
                task = None
        else:
            cli = socket.create_connection(srv.getsockname(), timeout=BOUND)
            task = background(client_wrap, cli) if KIND == "tls" else None
        conn, _ = srv.accept()
        if KIND == "tls":
            conn = server_wrap(conn)
            got = finish(task)
            cli = got if got is not None else cli
            # TLS 1.3 tickets follow the handshake: one byte each way reads them, so the
            # fds are quiet when a case starts.
            conn.sendall(b"!")
            assert cli.recv(1) == b"!"
            cli.sendall(b"?")
            assert conn.recv(1) == b"?"
        elif task is not None:
            finish(task)
    return [cli, conn]


def refused_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()  # nothing listens there once it is closed


def drain(sock, n):
    got = 0
    while got < n:
        data = sock.recv(65536)
        assert data, "EOF before all data"
        got += len(data)
    return got


# --------------------------------------------------------------------------- cases
def after_connect():
    return pair("connect")


def after_create_connection():
    return pair("create_connection")


def listener_after_accept():
    srv = listener()
    task = background(socket.create_connection, srv.getsockname(), BOUND)
    conn, _ = srv.accept()  # parks until the client connects (EAGAIN first when patched)
    cli = finish(task)
    return [srv, conn, cli]


def tls_listener_after_accept():
    """A listening SSL socket's accept() wraps the new connection itself."""
    srv = tls_common.server_context().wrap_socket(listener(), server_side=True)
    task = background(lambda: client_wrap(socket.create_connection(srv.getsockname(), BOUND)))
    conn, _ = srv.accept()
    cli = finish(task)
    return [srv, conn, cli]


def after_dup_and_fromfd():
    a, b = pair()
    return [a, b, a.dup(), socket.fromfd(b.fileno(), b.family, b.type)]


def after_recv_parked():
    a, b = pair()
    task = background(b.sendall, b"x" * 10)  # runs once a.recv parked
    assert a.recv(10) == b"x" * 10
    finish(task)
    return [a, b]


#: One worker thread for the whole run (a real one under thread=False, with its own hub and
#: loop, which outlive a case: a thread's hub is not torn down when the thread ends).
WORKER = concurrent.futures.ThreadPoolExecutor(1)


def after_recv_parked_in_another_thread():
    """Read in the worker thread: it parks on that thread's loop."""
    a, b = pair()
    reading = WORKER.submit(a.recv, 1)
    if PATCHED:
        gevent.sleep(0.05)  # most likely parked by now (not asserted: either order passes)
    b.sendall(b"x")
    assert reading.result(BOUND) == b"x"
    del reading
    return [a, b]


def after_recv_timed_out():
    a, b = pair()
    a.settimeout(0.05)
    try:
        a.recv(1)
    except TimeoutError:
        pass
    else:
        raise AssertionError("recv did not time out")
    return [a, b]


def after_send_parked():
    a, b = pair()
    size = 8 * 1024 * 1024  # more than both kernel buffers: sendall parks on EAGAIN
    task = background(drain, b, size)
    a.sendall(b"y" * size)
    assert finish(task) == size
    return [a, b]


def after_makefile_closed():
    a, b = pair()
    with a.makefile("rwb") as f:
        f.write(b"ping\n")
        f.flush()
        assert b.recv(5) == b"ping\n"
        b.sendall(b"pong\n")
        assert f.readline() == b"pong\n"
    return [a, b]


def closed_socket_with_its_file_dropped_open():
    """close() with a makefile() open keeps the fd for the file; dropping the file closes
    it, silently (the socket was closed)."""
    a, b = pair()
    f = a.makefile("rb")
    a.close()
    return [b, Via(f, a, warns=False)]


def after_settimeout():
    a, b = pair()
    a.settimeout(1.5)
    a.setblocking(False)
    a.settimeout(None)
    b.settimeout(0)
    return [a, b]


def after_select_poll_selectors_waited():
    a, b = pair()
    for _ in range(2):  # once timing out, once woken by data
        assert select.select([a], [], [], 0.02) == ([], [], [])
        p = select.poll()
        p.register(a, select.POLLIN)
        assert p.poll(20) == []
        p.unregister(a)
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ)
            assert sel.select(0.02) == []
            sel.unregister(a)
    task = background(b.sendall, b"z")
    r, _, _ = select.select([a], [], [], BOUND)
    assert r == [a]
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        assert len(sel.select(BOUND)) == 1
    assert a.recv(1) == b"z"
    finish(task)
    return [a, b]


def hub_lets_go():
    """A gevent.Timeout or GreenletExit thrown into a parked greenlet is held by the hub
    (its timer/kill callback is suspended in the switch) until the hub runs again, and with
    it every frame in its traceback, the caller's too: gevent's own loop does the same (a
    Timeout around a gevent socket's recv keeps that socket until the hub runs). What the
    cases below check is that the cancelled wait leaves nothing of ours holding the socket."""
    gevent.sleep(0)


def after_gevent_timeout_cancelled_a_wait():
    a, b = pair()
    try:
        with gevent.Timeout(0.05):
            a.recv(1)
    except gevent.Timeout:
        pass
    else:
        raise AssertionError("the Timeout did not fire")
    hub_lets_go()
    return [a, b]


def after_kill_cancelled_a_wait():
    a, b = pair()
    g = gevent.spawn(a.recv, 1)
    gevent.sleep(0.01)  # let it park
    g.kill(block=True, timeout=BOUND)
    assert g.dead
    del g
    hub_lets_go()
    return [a, b]


def after_refused_connect():
    s = socket.socket()
    if KIND == "tls":
        s = client_wrap(s)
    try:
        s.connect(refused_address())
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("connect to a closed port succeeded")
    return [s]


def after_refused_create_connection():
    """create_connection's own sockets are closed when it fails, and freed at once."""
    try:
        socket.create_connection(refused_address(), timeout=BOUND)
    except ConnectionRefusedError as e:
        watch = [Gone(f.f_locals["sock"], "create_connection's failed socket")
                 for f in _frames(e) if isinstance(f.f_locals.get("sock"), socket.socket)]
    else:
        raise AssertionError("connect to a closed port succeeded")
    return watch


def after_create_connection_by_name():
    """By name: the patched create_connection races addresses (Happy Eyeballs)."""
    with listener() as srv:
        cli = socket.create_connection(("localhost", srv.getsockname()[1]), timeout=BOUND)
        conn, _ = srv.accept()
    return [cli, conn]


def after_refused_create_connection_by_name():
    try:
        socket.create_connection(("localhost", refused_address()[1]), timeout=BOUND)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("connect to a closed port succeeded")
    return []  # the fd count is checked: nothing of the race may stay open


def _frames(exc):
    """The library's frames in ``exc``'s traceback. Not ours: reading a running frame's
    ``f_locals`` stores a snapshot holding the exception in that frame (a cycle)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != __file__:
            yield tb.tb_frame
        tb = tb.tb_next


def _ssl_sockets_in(exc, what):
    found = []
    for f in _frames(exc):
        s = f.f_locals.get("self")
        if isinstance(s, ssl.SSLSocket) and not any(s is x for x in found):
            found.append(s)
    return [Gone(s, what) for s in found]


def after_failed_verification():
    """Both sides of a handshake that failed: the SSL sockets _create closed are freed with
    the exception; the plain ones they replaced are detached (no fd, no warning)."""
    srv = listener()
    cli = socket.create_connection(srv.getsockname(), timeout=BOUND)
    conn, _ = srv.accept()
    srv.close()

    def server_side():
        try:
            server_wrap(conn)
        except (ssl.SSLError, OSError) as e:
            return _ssl_sockets_in(e, "the server's failed SSL socket")
        raise AssertionError("server handshake succeeded")

    task = background(server_side)
    untrusted = ssl.create_default_context()  # does not know the test CA
    try:
        untrusted.wrap_socket(cli, server_hostname="localhost")
    except ssl.SSLCertVerificationError as e:
        watch = _ssl_sockets_in(e, "the client's failed SSL socket")
    else:
        raise AssertionError("verification succeeded")
    watch += finish(task)
    assert len(watch) == 2, watch
    return [*watch, Via(cli, cli, warns=False), Via(conn, conn, warns=False)]  # detached


def after_unwrap():
    a, b = pair()
    task = background(b.unwrap)
    plain_a = a.unwrap()
    plain_b = finish(task)
    plain_a.sendall(b"clear")
    assert plain_b.recv(5) == b"clear"
    del plain_a, plain_b
    return [a, b]


COMMON = [after_connect, after_create_connection, listener_after_accept, after_recv_parked,
          after_recv_parked_in_another_thread,
          after_recv_timed_out, after_send_parked, after_makefile_closed,
          closed_socket_with_its_file_dropped_open, after_settimeout,
          after_select_poll_selectors_waited, after_refused_connect]
GREEN = [after_gevent_timeout_cancelled_a_wait, after_kill_cancelled_a_wait]
CASES = {
    "plain": COMMON + [after_refused_create_connection, after_create_connection_by_name,
                       after_refused_create_connection_by_name, after_dup_and_fromfd],
    "tls": COMMON + [tls_listener_after_accept, after_failed_verification, after_unwrap],
}


def main():
    cases = CASES[KIND] + (GREEN if PATCHED else [])
    if PATCHED:
        assert type(socket.socket()).__module__.startswith("reseau_patch"), socket.socket
    # Warm up: the hubs, their loops and the resolver pool are made once, not by a case.
    check(after_connect)
    check(after_recv_parked_in_another_thread)
    failed = 0
    for case in cases:
        with gevent.Timeout(4 * BOUND) if PATCHED else nullcontext():
            problems = check(case)
        print(("FAIL " if problems else "pass ") + case.__name__, flush=True)
        for p in problems:
            print("  " + p.replace("\n", "\n  "), flush=True)
        failed += bool(problems)
    if failed:
        sys.exit(f"{failed} case(s) failed")


if __name__ == "__main__":
    main()
    print("ok", KIND)
