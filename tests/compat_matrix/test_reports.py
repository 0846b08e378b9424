"""The matrix's report plumbing: CI's runs never rewrite the committed report (issue 11,
trap 6), and stale expectations are pruned without touching the environment's."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "compat_matrix"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_report_written_elsewhere_leaves_the_committed_one_and_keeps_every_mode(tmp_path):
    tracked = [MATRIX / "RESULTS.md", MATRIX / "results.json"]
    before = [_digest(p) for p in tracked]
    out = tmp_path / "ci-results"
    proc = subprocess.run(
        [sys.executable, str(MATRIX / "run_suites.py"), "--suite", "requests", "--modes",
         "reseau", "--report-only", "--output", str(out), "--cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    assert [_digest(p) for p in tracked] == before
    written = json.loads((out / "results.json").read_text())
    committed = json.loads((MATRIX / "results.json").read_text())
    for suite, entry in committed["suites"].items():
        assert set(written["suites"][suite]["modes"]) >= set(entry["modes"]), suite


def _prune_module():
    spec = importlib.util.spec_from_file_location("prune_stale", MATRIX / "prune_stale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prune_drops_passed_modes_empty_entries_and_their_group_comment():
    text = (ROOT / "tests" / "compat_matrix" / "data" / "expectations_before.toml").read_text()
    want = (ROOT / "tests" / "compat_matrix" / "data" / "expectations_after.toml").read_text()
    passed = {"reseau": {"t::a", "t::b", "t::env"}, "reseau-nothread": {"t::b"}}
    new, removed = _prune_module().prune_text(text, passed)
    assert removed == 3  # a in reseau; b in both (entry gone); env is "*": untouched
    assert new == want
