"""``os.close`` under ``patch_all(os=True)`` closes at once, as the stdlib's, unless this
thread's loop is watching the fd (run under ``reseau_patch run [flags]`` with a case name;
prints ``ok <case>``). A hang is the failure mode: ``signal.alarm`` bounds every case.
"""

import errno
import fcntl
import os
import signal
import sys
import threading

import gevent
from gevent.hub import get_hub


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


def assert_ebadf(fd: object) -> None:
    """``os.close(fd)`` raises what the stdlib's raises for a closed or invalid fd."""
    try:
        os.close(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF, exc
    else:
        raise AssertionError(f"os.close({fd!r}) did not raise")


def case_pipe_eof() -> None:
    """Closing our write end delivers EOF to a blocking read at once."""
    gevent.sleep(0)  # the hub exists, as in any program that did green I/O
    r, w = os.pipe()
    os.write(w, b"x")
    os.close(w)
    assert not is_open(w)
    assert os.read(r, 10) == b"x"
    assert os.read(r, 10) == b""  # hung here when the close waited for the hub
    os.close(r)


def case_thread_exit() -> None:
    """A real thread that closes fds and ends leaves none open."""
    gevent.sleep(0)
    leaked = []

    def work() -> None:
        gevent.sleep(0.001)  # this thread has a hub, which never runs again after return
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        leaked.extend(fd for fd in (r, w) if is_open(fd))

    for _ in range(10):
        t = threading.Thread(target=work)
        t.start()
        t.join(30)
    assert not leaked, f"fds still open after os.close: {leaked}"


def case_watched() -> None:
    """A watcher on the fd is woken first; the fd closes right after, in that iteration; a
    second close meanwhile is EBADF, as for any closed fd."""
    r, w = os.pipe()
    hub = get_hub()
    watcher = hub.loop.io(r, 1)
    woken = gevent.spawn(hub.wait, watcher)
    gevent.sleep(0.01)  # parked on the watcher
    os.close(r)
    assert_ebadf(r)  # closed already, whatever the kernel has been told yet
    # No timeout here: nothing else would wake the loop, so a feed that waits for the next
    # event hangs (the alarm ends the case) instead of passing late.
    woken.join()
    gevent.sleep(0)
    assert not is_open(r), "the deferred close did not happen"
    watcher.close()
    os.close(w)


def case_bad_input() -> None:
    """The stdlib's exceptions for the same bad values."""
    for bad, exc_type in (("3", TypeError), (3.0, TypeError), (None, TypeError)):
        try:
            os.close(bad)
        except exc_type as exc:
            assert "integer" in str(exc), exc
        else:
            raise AssertionError(f"os.close({bad!r}) did not raise")
    r, w = os.pipe()
    os.close(w)
    for fd in (-1, w):
        assert_ebadf(fd)
    os.close(r)


if __name__ == "__main__":
    case = sys.argv[1]
    signal.alarm(20)
    assert os.close.__module__ != "posix", "os is not patched"
    globals()[f"case_{case}"]()
    print(f"ok {case}")
