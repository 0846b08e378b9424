"""Patch tests run each scenario in a fresh interpreter: patching is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def run_patched(tmp_path):
    """Run ``code`` under ``python -m reseau_patch run [flags]``; return the process."""

    def runner(code: str, *flags: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
        script = tmp_path / "scenario.py"
        script.write_text(textwrap.dedent(code))
        proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m",
                               "reseau_patch", "run", *flags,
                               str(script)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"scenario failed ({proc.returncode}):\n{proc.stdout}\n"
                                 f"{proc.stderr[-4000:]}")
        return proc

    return runner


SCENARIOS = Path(__file__).parent / "scenarios"
NO_THREAD = ("--no-thread", "--no-aggressive", "--no-queue")


def run_script(name: str, *flags: str, patched: bool = True, timeout: float = 120.0) -> str:
    """stdout of ``scenarios/<name>`` under ``reseau_patch run [flags]`` (or plain python
    with ``patched=False``); fails with its output unless it exits 0."""
    script = str(SCENARIOS / name)
    cmd = [sys.executable, "-W", "error::DeprecationWarning"]
    cmd += ["-m", "reseau_patch", "run", *flags, script] if patched else [script]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture
def run_scenario():
    """Run ``scenarios/<name>.py case`` under ``reseau_patch run [flags]`` (or plain python
    with ``patched=False``); fail with its output unless it exits 0 and prints ``ok case``."""

    def runner(name: str, case: str, *flags: str, patched: bool = True,
               timeout: float = 120.0) -> subprocess.CompletedProcess:
        script = str(SCENARIOS / f"{name}.py")
        cmd = [sys.executable, "-W", "error::DeprecationWarning"]
        cmd += ["-m", "reseau_patch", "run", *flags, script] if patched else [script]
        proc = subprocess.run([*cmd, case], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or f"ok {case}" not in proc.stdout:
            raise AssertionError(f"{name} {case} {flags} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr[-4000:]}")
        return proc

    return runner
