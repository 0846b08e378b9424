"""The patched select/poll/epoll/selectors answer as the stdlib's (scenario file, fresh
interpreter): no event cap, POLLPRI, regular files, DefaultSelector is EpollSelector,
closed fds, bad input, and waits that yield to other greenlets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).parent / "scenarios" / "foreign_select_semantics.py"


@pytest.mark.parametrize("flags", [(), ("--no-thread", "--no-aggressive", "--no-queue")],
                         ids=["default", "nothread"])
def test_select_poll_selectors_semantics(flags):
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run", *flags, str(SCENARIO)],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.rstrip().endswith("done"), proc.stdout
    assert "poll ready 300" in proc.stdout
    assert "DefaultSelector EpollSelector" in proc.stdout
    assert "cancelled waits leave nothing" in proc.stdout


def test_tls_bytes_buffered_in_user_space_count_as_readable():
    scenario = SCENARIO.parent / "foreign_select_tls_buffered.py"
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run", str(scenario)],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "buffered TLS bytes count as readable" in proc.stdout
