"""Soak: 100,000 keep-alive HTTP requests through the patch (``http.client`` under
``patch_all``) against a fast server in another process; afterwards the client's fd count,
live greenlets and RSS are flat (compared with after a warm-up).

The server is our WSGI server when ``reseau_patch.server`` is installed, else a minimal
keep-alive responder on the Sockets API (``scenarios/soak_server.py`` says which).
Marked ``soak``: ``RESEAU_SOAK_COUNT`` sets the request count (default 100,000, about a
minute on 2 busy cores); CI may run it smaller.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys

import pytest

COUNT = int(os.environ.get("RESEAU_SOAK_COUNT", "100000"))


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("the soak server did not start in time")
    return proc.stdout.readline()


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_keepalive_soak_is_flat(tools):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tools.ROOT), env.get("PYTHONPATH"))
                                        if p)
    server = subprocess.Popen([sys.executable, str(tools.SCENARIOS / "soak_server.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        kind, port = _first_line(server, 30).split()
        proc = tools.run_scenario("soak_client.py", port, timeout=840,
                                  env={"RESEAU_SOAK_COUNT": str(COUNT)})
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        server.stdout.close()
    print(f"soak against the {kind} server: {out}")
    assert out["requests"] == COUNT and out["failures"] == 0
    before, after = out["before"], out["after"]
    assert after["fds"] <= before["fds"]
    assert after["greenlets"] <= before["greenlets"]
    assert after["rss_mib"] - before["rss_mib"] < 16
