"""A greenlet parked on a patched socket wakes for data, a timeout and a same-thread close,
and every wake leaves no watcher or timer on the loop (run under ``reseau_patch run``)."""

import errno
import socket

import gevent
from gevent._hub_local import get_hub


def loop_state() -> dict:
    counts = get_hub().loop.io_loop.pending_counts()
    return {"fds": counts["fds"], "timers": counts["timers"]}


with gevent.Timeout(30):
    before = loop_state()

    # Data: the io watcher's callback switches straight to the reader.
    a, b = socket.socketpair()
    reader = gevent.spawn(a.recv, 5)
    gevent.sleep(0.01)
    b.sendall(b"hello")
    assert reader.get() == b"hello"

    # Timeout: the timer's callback wakes it with the stdlib's error.
    a.settimeout(0.05)
    try:
        a.recv(1)
    except TimeoutError as exc:
        assert str(exc) == "timed out"
    else:
        raise AssertionError("recv did not time out")
    a.settimeout(None)

    # Close from another greenlet of the same thread: EBADF, as the stdlib's.
    def blocked() -> int:
        try:
            a.recv(1)
        except OSError as exc:
            return exc.errno
        return -1

    reader = gevent.spawn(blocked)
    gevent.sleep(0.01)
    a.close()
    assert reader.get() == errno.EBADF

    # Killed while parked (gevent.Timeout, kill): nothing stays behind either.
    c, d = socket.socketpair()
    reader = gevent.spawn(c.recv, 1)
    gevent.sleep(0.01)
    reader.kill()
    c.settimeout(0.5)
    b.close()
    d.sendall(b"x")
    assert c.recv(1) == b"x"  # the watcher of the killed wait is gone: ours works
    c.close()
    d.close()
    gevent.sleep(0)
    assert loop_state() == before, (loop_state(), before)
print("ok")

# Many waits on one socket reuse one io watcher: the loop's registration for the fd is
# kept across waits (no epoll_ctl each time) and nothing is left when the socket closes.
e, f = socket.socketpair()
with gevent.Timeout(30):
    for _ in range(50):
        reader = gevent.spawn(e.recv, 1)
        gevent.sleep(0)
        f.sendall(b"y")
        assert reader.get() == b"y"
    e.close()
    f.close()
    assert loop_state() == before, (loop_state(), before)
print("ok")
