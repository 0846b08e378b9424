"""Default patch: select/poll/selectors answer as the stdlib's do (issue 11 items)."""

import errno
import gc
import os
import select
import selectors
import socket
import tempfile
import unittest.mock

import gevent

from reseau_patch.patch import get_original


def open_fds():
    """Open fds, without the one os.listdir used for the listing (closed by now)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.add(int(name))
    return fds


# 1. poll: no cap on events per call (the green poll used to return at most 256).
pipes = [os.pipe() for _ in range(300)]
poller = select.poll()
for r, w in pipes:
    poller.register(r, select.POLLIN)
    os.write(w, b"x")
events = poller.poll(0)
print("poll ready", len(events))
assert len(events) == 300, len(events)
for r, w in pipes:
    os.close(r)
    os.close(w)

# 2. poll: POLLPRI for out-of-band data (TCP urgent byte), on a wait that had to park.
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname(), timeout=30)
server, _ = listener.accept()
poller = select.poll()
poller.register(server, select.POLLPRI)
sender = gevent.spawn_later(0.05, client.send, b"!", socket.MSG_OOB)
events = poller.poll(30_000)
sender.get(timeout=30)
print("POLLPRI", events)
assert events and events[0][0] == server.fileno() and events[0][1] & select.POLLPRI, events
r, _, x = select.select([], [], [server], 30)
assert x == [server], x
client.close()
server.close()
listener.close()

# 3. poll and select accept regular files (epoll refuses them with EPERM), as the stdlib does.
with tempfile.TemporaryFile() as f:
    poller = select.poll()
    poller.register(f, select.POLLIN | select.POLLOUT)
    events = poller.poll(1000)
    real = get_original("select", "poll")()
    real.register(f, select.POLLIN | select.POLLOUT)
    assert events == real.poll(0), (events, real.poll(0))
    assert select.select([f], [f], [], 1) == ([f], [f], [])
    print("regular file", events)

# 4. DefaultSelector is the stdlib's EpollSelector, on a green epoll.
assert selectors.DefaultSelector is selectors.EpollSelector
assert selectors.DefaultSelector.__name__ == "EpollSelector"
sel = selectors.DefaultSelector()
assert type(sel._selector) is select.epoll and select.epoll is not get_original("select", "epoll")
sel.close()
# test_selectors' test_modify_unregister mocks this very attribute.
with unittest.mock.patch("selectors.EpollSelector._selector_cls") as m:
    m.return_value.modify = unittest.mock.Mock(side_effect=ZeroDivisionError)
    s = selectors.DefaultSelector()
    a, b = socket.socketpair()
    s.register(a, selectors.EVENT_READ)
    try:
        s.modify(a, selectors.EVENT_WRITE)
    except ZeroDivisionError:
        pass
    assert len(s._map) == 0
    s.close()
    a.close()
    b.close()
print("DefaultSelector", selectors.DefaultSelector.__name__)

# 5. A selector holding a since-closed socket: epoll dropped the fd, select times out with [].
sel = selectors.DefaultSelector()
a, b = socket.socketpair()
sel.register(a, selectors.EVENT_READ)
a.close()
assert sel.select(0.2) == []
sel.close()
b.close()
# ... while select.select and poll report the closed fd as the stdlib does.
r, w = os.pipe()
os.close(w)
os.close(r)
try:
    select.select([r], [], [], 0.2)
except OSError as exc:
    assert exc.errno == errno.EBADF, exc
else:
    raise AssertionError("select on a closed fd did not raise")
poller = select.poll()
poller.register(r, select.POLLIN)
assert poller.poll(200) == [(r, select.POLLNVAL)]
print("closed fds as the stdlib")

# 6. Bad input: the stdlib's exceptions.
for bad, exc in ((lambda: select.select([], [], [], "x"), TypeError),
                 (lambda: select.select([], [], [], -1), ValueError),
                 (lambda: select.poll().poll("x"), TypeError),
                 (lambda: select.epoll().poll(0, 0), ValueError)):
    try:
        bad()
    except exc:
        pass
    else:
        raise AssertionError(f"{bad} did not raise {exc}")

# 7. Waits yield: while one greenlet waits in epoll.poll, another runs and wakes it.
ep = select.epoll()
a, b = socket.socketpair()
ep.register(a.fileno(), select.EPOLLIN)
ran = []
helper = gevent.spawn(lambda: (ran.append(1), b.send(b"y")))
events = ep.poll(30)
assert ran == [1] and events == [(a.fileno(), select.EPOLLIN)], (ran, events)
helper.join(30)
ep.close()
a.close()
b.close()

# 8. A green epoll kept on this thread's loop between waits is forgotten at close: the next
# file reusing its number (a directory, which epoll refuses) closes cleanly.
ep = select.epoll()
a, b = socket.socketpair()
ep.register(a.fileno(), select.EPOLLIN)
gevent.spawn_later(0.02, b.send, b"w")
assert ep.poll(30) == [(a.fileno(), select.EPOLLIN)]  # parked: its loop watched ep
number = ep.fileno()
ep.close()
folder = tempfile.mkdtemp()
dir_fd = os.open(folder, os.O_RDONLY)
assert dir_fd == number, (dir_fd, number)
os.close(dir_fd)  # gevent's os.close tells the loop; EPERM here was the bug
for _ in range(1000):  # gevent closes it for real on the loop's next iteration
    if dir_fd not in open_fds():
        break
    gevent.sleep(0.001)
else:
    raise AssertionError("os.close never closed the directory fd")
os.rmdir(folder)
a.close()
b.close()

# 9. Cancellation (gevent.Timeout) of every kind of wait leaves no fd behind.
a, b = socket.socketpair()
ep = select.epoll()
ep.register(a.fileno(), select.EPOLLIN)
poller = select.poll()
poller.register(a, select.POLLIN)
sel = selectors.DefaultSelector()
sel.register(a, selectors.EVENT_READ)
gc.collect()  # files of earlier steps still waiting in reference cycles
before = open_fds()

for wait in (lambda: select.select([a], [], [], 30), lambda: poller.poll(30_000),
             lambda: ep.poll(30), lambda: sel.select(30)):
    try:
        with gevent.Timeout(0.05):
            wait()
    except gevent.Timeout:
        pass
    else:
        raise AssertionError("a wait with nothing ready returned")

after = open_fds()
assert after == before, ("a cancelled wait left an fd", before, after)
b.send(b"z")
assert sel.select(30)[0][0].fileobj is a  # and the objects still work afterwards
assert poller.poll(30_000) == [(a.fileno(), select.POLLIN)]
sel.close()
ep.close()
a.close()
b.close()
print("cancelled waits leave nothing")
print("done")
