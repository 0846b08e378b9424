"""Compiled hot paths and their pure-Python fallback (io/accel.py, setup.py).

CI runs the suite twice: compiled with ``RESEAU_PATCH_EXPECT_COMPILED=1`` (then a missing
or stale build fails ``test_this_process_runs_what_the_environment_asks``) and with
``RESEAU_PATCH_PURE_PYTHON=1``.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reseau_patch
from reseau_patch.io import accel

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).parent / "scenarios" / "accel_report.py"
PURE_REQUESTED = "pure: requested (RESEAU_PATCH_PURE_PYTHON / PURE_PYTHON)"


def _report(**env: str) -> dict:
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("RESEAU_PATCH_PURE_PYTHON", "PURE_PYTHON")}
    child_env.update(env)
    proc = subprocess.run([sys.executable, str(SCENARIO)], env=child_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_this_process_runs_what_the_environment_asks():
    status = reseau_patch.compiled_status()
    assert set(status) == set(accel.ACCELERATED)
    if accel.pure_python_requested():
        assert set(status.values()) == {PURE_REQUESTED}
        assert not reseau_patch.compiled()
        return
    if os.environ.get("RESEAU_PATCH_EXPECT_COMPILED") == "1":
        # CI installed with `pip install -e .`: the build must have happened and be in use.
        assert reseau_patch.compiled(), status
    # All or none: compiled exactly when every twin is built, fresh and importable.
    expected = "compiled" if accel.build_problem() is None else None
    for name in accel.ACCELERATED:
        assert (status[name] == "compiled") == (expected == "compiled"), (name, status)


@pytest.mark.parametrize("var", ["RESEAU_PATCH_PURE_PYTHON", "PURE_PYTHON"])
def test_pure_python_is_requested_by_environment(var):
    report = _report(**{var: "1"})
    assert set(report["status"].values()) == {PURE_REQUESTED}
    assert report["compiled"] is False
    assert report["event_loop_class_module"] == "reseau_patch.io.event_loop"
    assert report["io_watcher_class_module"] == "reseau_patch.hub.io_watcher"


@pytest.mark.parametrize("value", ["0", ""])
def test_a_false_pure_python_value_does_not_request_it(value):
    report = _report(RESEAU_PATCH_PURE_PYTHON=value)
    assert PURE_REQUESTED not in report["status"].values()


def test_io_imports_no_gevent_either_way():
    for env in ({}, {"RESEAU_PATCH_PURE_PYTHON": "1"}):
        report = _report(**env)
        assert report["gevent_after_io"] == [], env
        expected = "compiled" if report["compiled"] else PURE_REQUESTED if env else None
        if expected is not None:
            assert set(report["io_status"].values()) == {expected}, (env, report)


def test_compiled_classes_replace_the_pure_ones_everywhere():
    report = _report()
    if not report["compiled"]:
        pytest.skip(f"compiled twins not in use here: {report['status']}")
    # Importers of the pure module see the compiled classes, under the pure module's name.
    assert report["event_loop_class_module"] == "reseau_patch.io._event_loop_c"
    assert report["io_watcher_class_module"] == "reseau_patch.hub._io_watcher_c"


def test_a_missing_extension_falls_back_silently(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "hot.py").write_text("X = 1\n")
    problem = accel.build_problem({"pkg.hot": "pkg._hot_c"}, str(tmp_path))
    assert problem is not None and "pkg._hot_c not built" in problem


def test_a_build_older_than_its_source_or_pxd_is_not_used(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    source, pxd = pkg / "hot.py", pkg / "_hot_c.pxd"
    ext = pkg / ("_hot_c" + importlib.machinery.EXTENSION_SUFFIXES[0])
    for f in (source, pxd, ext):
        f.write_text("")
    mapping = {"pkg.hot": "pkg._hot_c"}
    os.utime(source, (1_000, 1_000))
    os.utime(pxd, (1_000, 1_000))
    os.utime(ext, (2_000, 2_000))
    assert accel.build_problem(mapping, str(tmp_path)) is None
    os.utime(source, (3_000, 3_000))  # edited since the build
    assert "older than hot.py" in accel.build_problem(mapping, str(tmp_path))
    os.utime(source, (1_000, 1_000))
    os.utime(pxd, (3_000, 3_000))
    assert "older than _hot_c.pxd" in accel.build_problem(mapping, str(tmp_path))


def test_any_twin_unusable_keeps_every_module_pure(monkeypatch):
    # The compiled io_watcher makes C calls into the compiled IOWatcher: mixing is unsafe.
    monkeypatch.delenv("RESEAU_PATCH_PURE_PYTHON", raising=False)
    monkeypatch.delenv("PURE_PYTHON", raising=False)
    monkeypatch.setattr(accel, "_state", {})
    monkeypatch.setattr(accel, "_why_pure", "reseau_patch.io._event_loop_c not built")
    globs = {"__name__": "reseau_patch.hub.io_watcher", "X": 1}
    accel.import_c_accel(globs, "reseau_patch.hub._io_watcher_c")
    assert globs == {"__name__": "reseau_patch.hub.io_watcher", "X": 1}
    assert accel._state == {"reseau_patch.hub.io_watcher":
                            "pure: reseau_patch.io._event_loop_c not built"}


def test_the_compiled_module_itself_is_left_alone(monkeypatch):
    monkeypatch.setattr(accel, "_state", {})
    globs = {"__name__": "reseau_patch.io._nothing_c", "X": 1}
    accel.import_c_accel(globs, "reseau_patch.io._nothing_c")
    assert globs == {"__name__": "reseau_patch.io._nothing_c", "X": 1}
    assert accel._state == {}


def test_setup_builds_exactly_the_accelerated_modules():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    hot = next(ast.literal_eval(node.value) for node in ast.walk(tree)
               if isinstance(node, ast.Assign)
               and any(getattr(t, "id", None) == "HOT_MODULES" for t in node.targets))
    assert hot == {cname: name.replace(".", "/") + ".py"
                   for name, cname in accel.ACCELERATED.items()}
