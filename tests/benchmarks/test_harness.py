"""The benchmark harness end to end (``--quick``) and its aggregation; nothing is timed.

The quick run checks that every workload runs under every implementation it declares,
that results land in JSON, RESULTS.md and plots, and that the front doors agree. Values
are checked for being measured (positive, finite), never against a speed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import harness, report  # noqa: E402
from benchmarks.impls import IMPLS  # noqa: E402
from benchmarks.registry import WORKLOADS  # noqa: E402


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_quick_run_of_every_workload(tmp_path: Path) -> None:
    proc = _bench("--quick", "--out", str(tmp_path), timeout=580)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "round 1/1" in proc.stderr  # the progress line
    md = (tmp_path / "RESULTS.md").read_text()
    assert "<!-- headline:start" in md
    for name in WORKLOADS:
        if harness.missing(name):
            assert not (tmp_path / f"{name}.json").exists()
            continue
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        wl = doc["workload"]
        assert doc["quick"] and doc["rounds"] == 1
        assert doc["pinned"] == (len(harness.cpus()) > 0)
        assert wl["pinned"] == (name != "wsgi"), name  # wrk needs a CPU of its own
        assert doc["machine"]["cpus"] >= 1 and doc["machine"]["python"]
        for impl in wl["impls"]:
            row = wl["rows"][impl]
            assert row["errors"] == [], (name, impl, row["errors"])
            if row["skipped"]:  # an optional package (uvloop) is not installed
                assert harness.impl_missing(harness.load(name).module, impl), (name, impl)
                assert not row["metrics"], (name, impl)
                continue
            assert row["metrics"], (name, impl)
            for key, m in row["metrics"].items():
                assert math.isfinite(m["median"]) and m["median"] >= 0, (name, impl, key)
        # The baseline measured every metric that anything measured: ratios exist.
        base = wl["rows"][wl["baseline"]]["metrics"]
        assert base, name
        assert f"`{name}`" in md
        if importlib.util.find_spec("matplotlib") is not None:  # the bench extra
            png = tmp_path / "plots" / f"{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A cache hit of reseau's resolver switches no greenlet at all.
    dns = json.loads((tmp_path / "dns.json").read_text())["workload"]
    assert dns["rows"]["reseau"]["metrics"]["switches"]["median"] == 0


def test_a_pinned_child_runs_on_one_cpu_and_its_peers_on_the_others() -> None:
    cpu = harness.cpus()[-1]
    # The child, then a peer it starts (which moves itself to the CPUs left for peers).
    probe = ("import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)), "
             "os.environ['PYTHONHASHSEED'], os.environ.get('GEVENT_LOOP')); sys.stdout.flush(); "
             "subprocess.run([sys.executable, '-c', 'from benchmarks.pinning import pin_peer; "
             "import os; pin_peer(); print(sorted(os.sched_getaffinity(0)))'])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, **harness.child_settings("gevent", cpu, "7"))
    assert proc.returncode == 0, proc.stderr
    peers = [c for c in harness.cpus() if c != cpu] or [cpu]
    assert proc.stdout.split("\n")[:2] == [f"[{cpu}] 7 libev-cext", str(peers)]
    unpinned = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, **harness.child_settings("stdlib", None, "3"))
    assert unpinned.stdout.split("\n")[:2] == [f"{harness.cpus()} 3 None", str(harness.cpus())]


def test_front_door_lists_the_same_workloads() -> None:
    proc = subprocess.run([sys.executable, "-m", "reseau_patch", "bench", "--list"],
                          cwd=ROOT / "tests", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert listed == list(WORKLOADS)
    for line in proc.stdout.splitlines():
        assert ("not available" in line) == bool(harness.missing(line.split()[0])), line


def test_unknown_workload_is_refused_before_anything_runs(tmp_path: Path) -> None:
    proc = _bench("no_such_workload", "--out", str(tmp_path), timeout=60)
    assert proc.returncode != 0
    assert "unknown workload 'no_such_workload'" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_every_workload_declares_a_valid_contract() -> None:
    for name in WORKLOADS:
        w = harness.load(name)
        assert w.baseline in w.impls and w.subject in w.impls, name
        assert all(i in IMPLS or i in getattr(w.module, "LABELS", {}) for i in w.impls), name
        for key, metric in w.metrics.items():
            assert metric.part in w.parts or (metric.part == "" and w.parts == ("",)), key
        for key in getattr(w.module, "TARGETS", {}):
            assert key in w.metrics, (name, key)


def test_no_benchmark_imports_the_demo() -> None:
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text()
        assert "reseau_patch.demo" not in text and "from reseau_patch import demo" not in text, \
            path


def _sample(values: dict[str, float]) -> dict:
    return {"values": values, "note": "", "info": {}}


def test_aggregate_best_median_and_ratio_follow_each_metrics_direction() -> None:
    w = harness.load("patched_socket")
    samples = {
        "gevent": [_sample({"pingpong": 100.0, "bulk": 10.0}),
                   _sample({"pingpong": 300.0, "bulk": 30.0}),
                   _sample({"pingpong": 200.0, "bulk": 20.0})],
        "reseau": [_sample({"pingpong": 150.0, "bulk": 5.0}),
                   {"error": "exit 1: boom", "values": {}, "note": "", "info": {}}],
    }
    agg = harness.aggregate(w, samples)
    g = agg["rows"]["gevent"]["metrics"]["pingpong"]
    assert (g["best"], g["median"], g["ratio"]) == (300.0, 200.0, 1.0)
    r = agg["rows"]["reseau"]
    assert r["errors"] == ["exit 1: boom"]
    assert r["metrics"]["pingpong"]["ratio"] == pytest.approx(0.75)
    assert r["metrics"]["bulk"]["ratio"] == pytest.approx(0.25)
    assert agg["rows"]["stdlib"]["metrics"] == {}
    pp = next(t for t in agg["targets"] if t["metric"] == "pingpong")
    assert pp["met"] is False and pp["ratio"] == pytest.approx(0.75)

    lower = harness.load("hub_micro")
    agg = harness.aggregate(lower, {"libev-cext": [_sample({"sleep0": 2.0}),
                                                   _sample({"sleep0": 4.0})],
                                    "reseau-loop": [_sample({"sleep0": 3.0})]})
    m = agg["rows"]["libev-cext"]["metrics"]["sleep0"]
    assert m["best"] == 2.0 and m["median"] == 3.0  # lower is better: best is the minimum
    sleep0 = next(t for t in agg["targets"] if t["metric"] == "sleep0")
    assert sleep0["met"] is True  # 3.0 / 3.0 <= 1.1

    doc = {"command": "x", "started": "2026-01-01T00:00:00Z", "rounds": 2, "quick": False,
           "machine": harness.machine(), "workload": agg}
    text = "\n".join(report.workload_table(doc))
    assert "| sleep(0), µs ↓ | 3.00 (1.00×) | 3.00 (1.00×) | — | — | — |" in text


def test_results_name_the_whole_run_after_a_subset_run() -> None:
    """RESULTS.md's first line says how to regenerate everything, not the subset that ran
    last (each section names its own command); the committed file agrees."""
    from benchmarks.__main__ import regenerate_command

    assert regenerate_command(7, False) == "python -m benchmarks --rounds 7"
    assert regenerate_command(1, True) == "python -m benchmarks --quick --rounds 1"
    first = next(line for line in (ROOT / "benchmarks" / "RESULTS.md").read_text().splitlines()
                 if line.startswith("Regenerate everything"))
    assert "`python -m benchmarks --rounds " in first, first


def test_readme_headline_is_the_committed_results_headline(tmp_path: Path) -> None:
    """The README's table is regenerated with RESULTS.md, between its markers, from the
    saved JSON; what surrounds the markers is kept. The committed pair agrees."""
    docs = harness.load_saved(ROOT / "benchmarks" / "results")
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{report.README_START}\nold table\n{report.README_END}\nafter\n")
    assert report.update_readme(docs, readme)
    text = readme.read_text()
    table = "\n".join(report.headline(docs))
    assert text == f"before\n{report.README_START}\n{table}\n{report.README_END}\nafter\n"
    assert table in (ROOT / "README.md").read_text()
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not report.update_readme(docs, plain)
    assert plain.read_text() == "no markers\n"
