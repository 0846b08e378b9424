"""hub/io_watcher.py: gevent's io watcher, the same object compiled or pure (io/accel.py)."""

from __future__ import annotations

import gc
import os
import socket
import weakref

import pytest
from gevent._interfaces import IWatcher

from reseau_patch.hub.io_watcher import IoWatcher
from reseau_patch.hub.loop import WRITE, ReseauLoop


def test_io_watcher_declares_iwatcher(loop: ReseauLoop) -> None:
    a, b = socket.socketpair()
    try:
        w = loop.io(a.fileno(), WRITE)
        assert isinstance(w, IoWatcher)
        assert IWatcher.providedBy(w)  # declared with classImplements (no class decorator)
    finally:
        a.close()
        b.close()


def test_a_finished_wait_frees_its_watcher_without_the_cycle_collector(loop: ReseauLoop) -> None:
    """Every blocking socket call makes one: it must die by refcount when dropped (a bound
    method kept on itself made a cycle that lived until a gc pass)."""
    a, b = socket.socketpair()
    gc.disable()
    try:
        fired: list[int] = []
        w = loop.io(a.fileno(), WRITE)
        w.start(fired.append, pass_events=True)
        loop.run(once=True)
        assert fired == [WRITE]
        w.stop()
        w.close()
        ref = weakref.ref(w)
        del w
        assert ref() is None
    finally:
        gc.enable()
        a.close()
        b.close()


def test_io_watcher_rejects_what_gevent_rejects(loop: ReseauLoop) -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="-1"):
            loop.io(-1, WRITE)
        with pytest.raises(ValueError, match="illegal event mask: 4"):
            loop.io(a.fileno(), 4)
        w = loop.io(a.fileno(), WRITE)
        with pytest.raises(TypeError, match="Expected callable, not 3"):
            w.start(3)
        w.start(lambda: None)
        with pytest.raises(ValueError, match="priority"):
            w.priority = 1
        with pytest.raises(AttributeError, match="'fd' is read-only"):
            w.fd = b.fileno()
        w.close()
        assert w.callback is None and w.args is None and not w.active
    finally:
        a.close()
        b.close()
    closed = socket.socket()
    fd = closed.fileno()
    closed.close()
    with pytest.raises(OSError):
        loop.io(fd, WRITE)  # a closed fd fails at creation, as with libev


def test_gevent_waits_survive_an_fd_number_reused_behind_the_loops_back(_hub) -> None:
    """gevent makes a new io watcher per wait and the loop keeps the fd registered between
    waits (parked). A number closed without ``closing_fd`` and reused by another socket
    must be registered again by the next wait; a wait costs at most one epoll_ctl."""
    from gevent import socket as gsocket

    ev = _hub.loop.io_loop
    a, b = socket.socketpair()
    fd = a.fileno()
    c = d = None
    try:
        gsocket.wait_write(fd, timeout=10)
        before = ev.ctl_calls
        for _ in range(3):
            gsocket.wait_write(fd, timeout=10)
        assert ev.ctl_calls - before <= 3
        a.close()  # the stdlib's close: the loop is not told
        c, d = socket.socketpair()
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        gsocket.wait_write(fd, timeout=10)  # same mask, new file: must fire, not time out
        d.send(b"!")
        gsocket.wait_read(fd, timeout=10)
        assert c.recv(1) == b"!"
    finally:
        for s in (a, b, c, d):
            if s is not None:
                s.close()
