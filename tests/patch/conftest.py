"""Patch tests run each scenario in a fresh interpreter: patching is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
