"""Run CPython test modules under one mode, each in a watched child, a hang failing one test.

Per module, cpython_entry.py runs in its own session (so a kill takes every process it
started) and streams a start and an end event per test. The watchdog polls that stream:

    running --(test exceeds per-test budget)--> killed: test recorded "hang" --> restart
    running --(process dies inside a test)----> test recorded "error" (crash) --> restart
    running --(no test for 2 budgets, e.g. a hanging setUpClass)--> killed, module ends
    running --(mode deadline)-----------------> killed, status "timeout", module ends
    running --(process exits between tests)---> module ends

A restart skips every test an earlier attempt reached (ended, hung or crashed) plus the
exclusions, so each test runs at most once per mode. Class breaker: once CLASS_HANG_LIMIT tests
of one class have hung one after another, its tests not yet run are recorded as ``hang``
without running (their message says so), so a class whose every test hangs (a whole TLS server
class) costs three budgets, not one per test; this keeps a mode within its bound. Modules of
one mode may run ``jobs`` at a time; all share the mode's deadline. Threads here only wait on
children (the runner is not patched).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cpython_suite
from modes import Mode
from outcomes import ModeResult, TestOutcome, read_events

ENTRY = Path(__file__).resolve().parent / "cpython_entry.py"
PATCH_ERROR_EXIT = 90
POLL_SECONDS = 1.0
MAX_RESTARTS = 40
CLASS_HANG_LIMIT = 3
PLAN_ID = "<plan>"  # cpython_entry.PLAN_ID


@dataclass(frozen=True)
class Budget:
    """Time bounds of one mode: per test, and for all modules of the mode together."""

    per_test: float
    deadline: float  # time.monotonic() value

    def left(self) -> float:
        """Seconds until the mode's deadline."""
        return self.deadline - time.monotonic()


def _paths(runs_dir: Path, mode: str) -> dict[str, Path]:
    runs_dir.mkdir(parents=True, exist_ok=True)
    return {k: runs_dir / f"{mode}.{k}"
            for k in ("status.json", "events.jsonl", "out", "err", "skip", "cwd", "stacks")}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's own process group (events are flushed per test: nothing to save)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def _ask_for_stacks(proc: subprocess.Popen[bytes], wait: float = 3.0) -> None:
    """SIGUSR2 the child (cpython_entry dumps greenlet stacks) and give it a moment."""
    try:
        os.kill(proc.pid, signal.SIGUSR2)
        proc.wait(timeout=wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass


def _state(events: list[dict], settled: set[str]) -> tuple[set[str], str | None]:
    """(ids that ended, id of a test started but not ended) from the event stream; ``settled``
    are tests an earlier attempt's watchdog already decided (hung or crashed)."""
    ended = {ev["id"] for ev in events if ev["when"] == "end"} | settled
    open_ = [ev["id"] for ev in events if ev["when"] == "start" and ev["id"] not in ended]
    return ended, (open_[-1] if open_ else None)


def _attempt(
    cmd: list[str], paths: dict[str, Path], env: dict[str, str], budget: Budget,
    settled: set[str],
) -> tuple[int | None, str, str | None]:
    """One child run: (exit code, "exited" | "hang" | "stall" | "timeout", open test id)."""
    with paths["out"].open("ab") as out, paths["err"].open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True,
                                cwd=paths["cwd"])
        seen_open: str | None = None
        since = time.monotonic()
        last_size = -1
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                _, open_id = _state(read_events(paths["events.jsonl"]), settled)
                return proc.returncode, "exited", open_id
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            size = paths["events.jsonl"].stat().st_size if paths["events.jsonl"].exists() else 0
            if size != last_size:
                last_size = size
                _, open_id = _state(read_events(paths["events.jsonl"]), settled)
                if open_id != seen_open or open_id is None:
                    seen_open, since = open_id, now
            if budget.left() <= 0:
                _kill(proc)
                return proc.returncode, "timeout", seen_open
            if seen_open is not None and now - since > budget.per_test:
                _ask_for_stacks(proc)
                _kill(proc)
                return proc.returncode, "hang", seen_open
            if seen_open is None and now - since > 2 * budget.per_test:
                _kill(proc)
                return proc.returncode, "stall", None


def _stacks(path: Path, test_id: str, lines: int = 120) -> str:
    """The thread stacks faulthandler dumped while ``test_id`` hung (its last section)."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    marker = f"\n== {test_id}\n"
    if marker not in text:
        return ""
    section = text.rsplit(marker, 1)[1].strip().splitlines()
    if not section:
        return ""
    return "\nthread stacks just before the kill (innermost first):\n" + "\n".join(
        section[:lines])


def _class_of(test_id: str) -> str:
    return test_id.rsplit(".", 1)[0]


def _break_classes(events: list[dict], reached: set[str], extra: dict[str, TestOutcome]) -> None:
    """Record as ``hang`` (not run) the unreached tests of each class whose last
    CLASS_HANG_LIMIT reached tests (in run order) all hung: a class where only some tests hang
    (test_ssl's ThreadedTests) keeps running its other tests."""
    plans = [ev for ev in events if ev["when"] == "plan"]
    order = plans[0]["ids"] if plans else []
    by_class: dict[str, list[str]] = {}
    for test_id in order:
        if test_id in reached or test_id in extra:
            by_class.setdefault(_class_of(test_id), []).append(test_id)
    broken = set()
    for cls, ids in by_class.items():
        last = ids[-CLASS_HANG_LIMIT:]
        if len(last) == CLASS_HANG_LIMIT and all(
                t in extra and extra[t].outcome == "hang" and
                not extra[t].message.startswith("not run") for t in last):
            broken.add(cls)
    for test_id in order:
        cls = _class_of(test_id)
        if cls in broken and test_id not in reached and test_id not in extra:
            extra[test_id] = TestOutcome(
                "hang", f"not run: the {CLASS_HANG_LIMIT} tests of {cls.rsplit('.', 1)[-1]} "
                "before it hung one after another (class breaker); counted as a hang")


def _outcomes(events: list[dict]) -> dict[str, TestOutcome]:
    out: dict[str, TestOutcome] = {}
    for ev in events:
        if ev["when"] == "end":
            out[ev["id"]] = TestOutcome(ev["outcome"], ev.get("message", ""))
    return out


def _last_event_id(events: list[dict]) -> str:
    return events[-1]["id"] if events else "<module start>"


def run_module(
    module: str, mode: Mode, runs_dir: Path, budget: Budget, select: list[str] | None = None
) -> ModeResult:
    """Run ``test.<module>`` under ``mode``; artifacts in ``runs_dir``. ``select``: fnmatch
    patterns of test ids to keep (a partial run), None for all."""
    suite = cpython_suite.PREFIX + module
    paths = _paths(runs_dir, mode.name)
    shutil.rmtree(paths["cwd"], ignore_errors=True)
    for p in paths.values():
        p.unlink(missing_ok=True)
    # The tests' working directory (regrtest runs them in a temporary one: they write TESTFN
    # files there, and a killed attempt leaves its files behind); removed when the module ends.
    paths["cwd"].mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GEVENT"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["COMPAT_MATRIX_HANG_DUMP"] = str(paths["stacks"])
    env["COMPAT_MATRIX_DUMP_AFTER"] = f"{max(1.0, budget.per_test - 3):g}"
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.monotonic()
    extra: dict[str, TestOutcome] = {}
    status, error, code = "ok", "", None
    for attempt in range(MAX_RESTARTS + 1):
        events = read_events(paths["events.jsonl"])
        reached = {ev["id"] for ev in events if ev["when"] != "plan"} | set(extra)
        _break_classes(events, reached, extra)
        lines = [*cpython_suite.EXCLUDED, *sorted(reached | set(extra))]
        paths["skip"].write_text("\n".join(lines) + "\n", encoding="utf-8")
        cmd = [sys.executable, str(ENTRY), str(paths["status.json"]),
               str(paths["events.jsonl"]), mode.patcher, json.dumps(mode.kwargs), mode.name,
               module, str(paths["skip"]), *(["--select", *select] if select else [])]
        code, how, open_id = _attempt(cmd, paths, env, budget, set(extra))
        if how == "hang" and open_id:
            extra[open_id] = TestOutcome(
                "hang", f"hang: still running after {budget.per_test:g} s; process killed, "
                "module restarted past it" + _stacks(paths["stacks"], open_id))
        elif how == "exited" and open_id:
            extra[open_id] = TestOutcome(
                "error", f"crash: the process exited (code {code}) inside this test; module "
                "restarted past it")
        elif how == "exited":
            break
        elif how == "stall":
            last = _last_event_id(read_events(paths["events.jsonl"]))
            status, error = "stalled", (f"no test started for {2 * budget.per_test:g} s after "
                                        f"{last} (a hanging class or module fixture)")
            break
        elif how == "timeout":
            status, error = "timeout", "mode deadline reached; module stopped"
            if open_id:
                extra[open_id] = TestOutcome("hang", "hang: running when the mode deadline hit")
            break
        if attempt == MAX_RESTARTS:
            status, error = "crashed", f"gave up after {MAX_RESTARTS} restarts"
    shutil.rmtree(paths["cwd"], ignore_errors=True)
    res = ModeResult(suite, mode.name, status, code, round(time.monotonic() - t0, 1), started)
    res.source = "events"
    res.outcomes = {**_outcomes(read_events(paths["events.jsonl"])), **extra}
    restarts = [k for k, v in extra.items() if not v.message.startswith("not run")]
    if restarts:
        note = f"{len(restarts)} test(s) killed (hang/crash) and restarted past: " + ", ".join(
            restarts)
        broken = len(extra) - len(restarts)
        note += f"; {broken} more not run by the class breaker" if broken else ""
        error = f"{error}; {note}" if error else note
    res.error = error
    st = json.loads(paths["status.json"].read_text()) if paths["status.json"].exists() else {}
    res.patch_info = st.get("patch_info", {})
    if code == PATCH_ERROR_EXIT and "patch_error" in st:
        res.status, res.error, res.stderr_tail = "patch-error", st["patch_error"], st["traceback"]
    elif not res.outcomes and res.status == "ok":
        res.status, res.error = "no-tests", f"exit code {code}, no test ran"
    if res.status != "ok":
        tail = paths["err"].read_text(errors="replace")[-3000:] if paths["err"].exists() else ""
        res.stderr_tail = res.stderr_tail or tail
    res.pytest_summary = summary(res)
    return res


def summary(res: ModeResult) -> str:
    """A regrtest-like one-line summary of a module run."""
    c = res.counts()
    parts = [f"{c[k]} {k}" for k in ("passed", "failed", "error", "hang", "skipped") if c[k]]
    return ", ".join(parts or ["no tests"]) + f" in {res.seconds:.1f}s"


def run_mode(
    modules: list[str], mode: Mode, runs_dir_of: Callable[[str], Path], per_test: float,
    mode_timeout: float,
    jobs: int, select: list[str] | None = None, on_done=None,  # type: ignore[no-untyped-def]
) -> list[ModeResult]:
    """Every module under ``mode`` (artifacts in ``runs_dir_of(module)``), ``jobs`` at a time,
    within ``mode_timeout`` seconds in all.
    ``on_done(result)`` is called (from a worker thread) as each module finishes."""
    budget = Budget(per_test, time.monotonic() + mode_timeout)

    def one(module: str) -> ModeResult:
        if budget.left() <= 0:
            res = ModeResult(cpython_suite.PREFIX + module, mode.name, "not-run",
                             error=f"mode bound of {mode_timeout:g} s spent before it started")
        else:
            res = run_module(module, mode, runs_dir_of(module), budget, select)
        if on_done is not None:
            on_done(res)
        return res

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, modules))
