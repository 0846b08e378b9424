"""The README's main job: ``python -m reseau_patch demo`` (and the io-level demo)."""

from __future__ import annotations

import subprocess
import sys


def test_https_demo_runs_and_reports_our_layers():
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "demo", "--clients", "10",
                           "--requests", "2", "--timeout", "60"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    assert "result: 20/20 HTTPS responses correct" in out
    assert "client TLS engine _ssl._SSLSocket over memory BIOs" in out
    assert "reseau_patch.hub.loop.ReseauLoop" in out
    assert out.rstrip().endswith("OK")


def test_io_demo_verifies_echoes():
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "io-demo", "--clients", "5",
                           "--bytes", "64K"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "5/5 clients got a byte-exact echo" in proc.stdout
    assert "reseau_patch io-demo:" in proc.stdout  # names itself, not "demo"


def test_help_shows_no_rest_markup():
    for args in ([], ["demo"], ["io-demo"]):
        proc = subprocess.run([sys.executable, "-m", "reseau_patch", *args, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "``" not in proc.stdout and ":mod:" not in proc.stdout, proc.stdout
