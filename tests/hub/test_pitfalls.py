"""The pitfalls listed in gevent-loop-contract.md §1.8, one test each (fresh interpreters
where monkey-patching or signal dispositions are involved)."""

from __future__ import annotations

import os
import socket

from reseau_patch.hub.loop import READ, ReseauLoop

from .conftest import run_python


def test_patch_all_removes_epoll_and_the_loop_still_works() -> None:
    """Pitfall 1 (+ the loop's own lock): after patch_all, select.epoll is gone, os.close /
    os.waitpid / threading.Lock are gevent's; the hub built afterwards must not use them."""
    proc = run_python("""
        from gevent import monkey; monkey.patch_all()
        import select, threading, os
        assert not hasattr(select, "epoll")
        import gevent
        from gevent import socket
        hub = gevent.get_hub()
        assert hub.loop._ev.backend == "epoll"
        # A real thread posting to the hub: the EventLoop's post lock must be a real lock.
        import gevent.event
        start_thread = monkey.get_original("_thread", "start_new_thread")
        done = gevent.event.Event()
        start_thread(lambda: hub.loop.run_callback_threadsafe(done.set), ())
        assert done.wait(5)
        a, b = socket.socketpair()
        a.sendall(b"x")
        assert b.recv(1) == b"x"
        a.close(); b.close()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_fd_number_reuse_while_a_watcher_stays_active(loop: ReseauLoop) -> None:
    """Pitfall 2: an fd closed behind the loop's back and reused by a new socket; a new
    watcher with the same mask on the reused number must still fire."""
    a, b = socket.socketpair()
    old = loop.io(a.fileno(), READ)
    old.start(lambda: None)  # stays active across the close, as in gevent.subprocess
    fd = a.fileno()
    a.close()  # raw close: the kernel drops it from the epoll set
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:  # make the new socket take the old number
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        got: list[int] = []
        new = loop.io(fd, READ)
        new.start(lambda: (got.append(1), new.stop(), old.stop()))
        d.send(b"!")
        t = loop.timer(5)
        t.start(loop.break_)  # bound the wait if the watcher never fires
        loop.run()
        t.close()
        assert got == [1]
    finally:
        old.stop()
        for s in (b, c, d):
            s.close()


def test_error_handler_failures_do_not_escape_run(loop: ReseauLoop) -> None:
    """Pitfall 3: even a failing error handler must not make run() raise."""
    loop.error_handler = lambda *a: 1 / 0
    loop.run_callback(lambda: 1 / 0)
    t = loop.timer(0)
    t.start(lambda: 1 / 0)
    loop.run()  # must return normally


def test_closed_fork_watcher_restarts(loop: ReseauLoop) -> None:
    """Pitfall 4: ThreadPool closes its fork watcher and starts it again."""
    f = loop.fork(ref=False)
    f.start(lambda: None)
    f.close()
    f.start(lambda: None)
    assert f.active
    f.stop()


def test_sigchld_wakeup_fd_sees_one_byte_per_child() -> None:
    """Pitfall 6: a program watching SIGCHLD through gevent's signal/set_wakeup_fd gets
    exactly one byte per child exit (no Python-level SIGCHLD handler of ours)."""
    proc = run_python("""
        import gevent.monkey; gevent.monkey.patch_all()
        import os, signal, subprocess, sys
        from gevent import Timeout
        from gevent.os import make_nonblocking, nb_read
        r, w = os.pipe()
        make_nonblocking(r); make_nonblocking(w)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.set_wakeup_fd(w, warn_on_full_buffer=True)
        with subprocess.Popen([sys.executable, "-c", "pass"]):
            pass
        with Timeout(5):
            data = nb_read(r, 65535)
        print(repr(data))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(bytes([17]))


def test_loop_modules_do_not_import_gevent_hub_at_top_level() -> None:
    """Pitfall 7: the loop module is imported while ``gevent`` is half initialised, so no
    module of the package may import ``gevent.hub`` (or gevent.socket) at top level."""
    import ast
    from pathlib import Path

    import reseau_patch.hub as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # top level only; function-local imports are fine
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name not in ("gevent.hub", "gevent.socket"), f"{path.name}: {name}"
    import reseau_patch.hub.loop as m

    assert m.loop is m.ReseauLoop and "loop" in m.__all__
