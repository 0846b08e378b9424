"""Daemon threads whose hubs wake while the interpreter finalizes must not crash the exit."""

from __future__ import annotations

import subprocess
import sys

SCENARIO = """
import atexit, socket, threading, time
import reseau_patch
reseau_patch.patch_all(thread=False, aggressive=False, queue=False)

peers = []
def reader(sock):
    sock.makefile("rb").readline()
    time.sleep(0.001)  # back into the hub, which then sleeps in epoll
for _ in range(8):
    a, b = socket.socketpair()
    peers.append(b)
    threading.Thread(target=reader, args=(a,), daemon=True).start()
time.sleep(0.3)

@atexit.register
def wake_them_during_exit():  # runs before ours (LIFO): the hubs wake as the exit proceeds
    for b in peers:
        b.sendall(b"x\\n")
print("exiting")
"""


def test_daemon_hub_threads_woken_at_exit_do_not_crash():
    # Without the parking this crashed (SIGSEGV, rc -11) in about 3 runs of 5 here.
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
        assert proc.stdout.strip() == "exiting"
