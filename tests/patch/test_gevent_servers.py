"""With the patch on, gevent's own StreamServer and pywsgi run over our sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(__file__)


def test_gevent_streamserver_and_pywsgi_run_over_patched_sockets():
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "scenarios", "gevent_servers_patched.py")],
        capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["echo"] == "HELLO"
    assert out["pywsgi"] == "pywsgi got data"
    assert out["tls_echo"] == "cba"
    for key in ("listener", "accepted"):
        assert out[key].startswith("reseau_patch.patch."), out
    assert out["tls_accepted"].startswith("reseau_patch.patch."), out


def test_install_refuses_an_unpatched_socket_module():
    """In this (unpatched) process: gevent's servers must not be pointed at a blocking
    stdlib socket class."""
    import pytest

    from reseau_patch.patch import gevent_servers

    with pytest.raises(RuntimeError, match="not the patched class"):
        gevent_servers.install()
