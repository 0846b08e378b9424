"""Signals and fork under the patch, in either mode (run under ``reseau_patch run``).

Usage: signals_and_fork.py CASE.
"""

import os
import signal
import socket
import sys
import threading
import time

import gevent


def handler_exception_reaches_the_blocked_sendall():
    # The handler runs while another greenlet holds the CPU, not in the hub's poll: its
    # exception must still come out of the sendall() that is waiting, as in the stdlib.
    def raising_handler(signum, frame):
        raise ZeroDivisionError("from the handler")

    old = signal.signal(signal.SIGALRM, raising_handler)
    assert signal.getsignal(signal.SIGALRM) is raising_handler
    c, s = socket.socketpair()
    try:
        for timeout in (None, 5.0):
            c.settimeout(timeout)

            def busy():
                end = time.monotonic() + 0.6
                while time.monotonic() < end:
                    pass

            gevent.spawn(busy)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            try:
                c.sendall(b"x" * (64 << 20))
            except ZeroDivisionError:
                pass
            else:
                raise AssertionError("sendall() finished although the handler raised")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        assert signal.signal(signal.SIGALRM, old) is raising_handler
        c.close()
        s.close()


def fork_in_a_real_thread_then_waitpid_in_main():
    # thread=False: a real thread forks (socketserver.ForkingMixIn does), the main thread
    # reaps (server_close()); the forking thread must survive its fork.
    pids, errors = [], []

    def forker():
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(3)
            pids.append(pid)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=forker)
    t.start()
    t.join(30)
    assert not t.is_alive() and not errors and pids, errors
    with gevent.Timeout(30):
        pid, status = os.waitpid(pids[0], 0)
    assert pid == pids[0] and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3, status


def pthread_kill_with_a_green_thread_ident():
    # thread=True: threading.get_ident() names a green thread; pthread_kill(3) with it was
    # undefined behaviour (ESRCH, or a hang). It reaches the OS thread the greenlet runs in.
    got = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    main_ident = threading.get_ident()
    try:
        t = threading.Thread(target=signal.pthread_kill, args=(main_ident, signal.SIGUSR1))
        t.start()
        t.join(30)
        with gevent.Timeout(30):
            while not got:
                gevent.sleep(0.01)
        assert got == [signal.SIGUSR1], got
    finally:
        signal.signal(signal.SIGUSR1, old)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok", sys.argv[1])
