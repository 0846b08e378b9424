"""Traps a new user falls into (issue 11): each case is in ``scenarios/traps.py``."""

from __future__ import annotations

import subprocess
import sys

from .conftest import SCENARIOS


def test_gevent_monkey_first_is_refused_clearly(run_scenario) -> None:
    run_scenario("traps", "gevent_patched_first", patched=False)


def test_a_patch_all_that_raised_does_not_count(run_scenario) -> None:
    run_scenario("traps", "failed_patch_all_does_not_count", patched=False)


def test_thread_pool_executor_with_thread_false(run_scenario) -> None:
    run_scenario("traps", "thread_pool_executor_without_thread_patch", "--no-thread")


def test_run_puts_the_script_folder_on_sys_path(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run",
                           str(SCENARIOS / "sibling_import" / "main.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "imported helper_module"


def test_run_missing_script_is_one_line_and_status_2(tmp_path) -> None:
    missing = tmp_path / "nosuch.py"
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run", str(missing)],
                          capture_output=True, text=True, timeout=120)
    plain = subprocess.run([sys.executable, str(missing)], capture_output=True, text=True,
                           timeout=120)
    assert proc.returncode == plain.returncode == 2
    assert proc.stderr == plain.stderr, (proc.stderr, plain.stderr)


def test_doctor_reports_ssl_truthfully() -> None:
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "run", "-m", "reseau_patch",
                           "doctor"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()
             if line.startswith("  ")}
    assert lines["ssl"] == "patched" and lines["socket"] == "patched", proc.stdout
