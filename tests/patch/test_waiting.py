"""patch/waiting.py: parking a greenlet on a patched socket's fd (a scenario file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def test_parked_reader_wakes_for_data_timeout_close_and_kill_leaving_nothing():
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run",
                           str(SCENARIOS / "fd_waits.py")],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert proc.stdout.strip().endswith("ok")
