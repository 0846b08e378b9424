"""Traps a new user falls into (usage: traps.py CASE; how each CASE is run is in
tests/patch/test_traps.py)."""

import sys


def gevent_patched_first():
    # Plain python: gevent.monkey first, then ours -> a clear refusal, nothing changed.
    import gevent.monkey

    gevent.monkey.patch_all()
    import reseau_patch

    try:
        reseau_patch.patch_all()
    except RuntimeError as e:
        assert "gevent.monkey already patched socket" in str(e), e
        assert "instead of gevent.monkey.patch_all()" in str(e), e
    else:
        raise AssertionError("patch_all() after gevent.monkey.patch_all() did not refuse")
    assert not reseau_patch.is_patched()
    import socket

    socket.socket().close()  # gevent's socket class still works


def failed_patch_all_does_not_count():
    # Plain python: a plug-in that raises makes patch_all() raise; it is not "done".
    import socket

    import zope.event

    import reseau_patch

    calls = []

    def fail_once(event):
        if not calls:
            calls.append(event)
            raise OSError("plug-in failed")

    zope.event.subscribers.append(fail_once)
    try:
        reseau_patch.patch_all()
    except OSError:
        pass
    else:
        raise AssertionError("the plug-in's error did not propagate")
    assert not reseau_patch.is_patched()
    assert reseau_patch.patch_all() is True
    from reseau_patch.patch.green_socket import GreenSocket

    assert socket.socket is GreenSocket and reseau_patch.is_patched("socket")


def thread_pool_executor_without_thread_patch():
    # Under `run --no-thread`: real worker threads, queue left to the stdlib.
    import queue
    from concurrent.futures import ThreadPoolExecutor

    import reseau_patch

    assert not reseau_patch.is_patched("queue") and queue.Queue.__module__ == "queue"
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(pow, 2, n) for n in range(40)]
        assert [f.result(timeout=30) for f in futures] == [2 ** n for n in range(40)]


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok", sys.argv[1])
