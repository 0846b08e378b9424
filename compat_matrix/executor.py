"""Run one prepared suite in one mode: a bounded subprocess of mode_entry.py in the suite venv.

The child runs in its own session so that a per-mode timeout can stop it and everything it
started (servers, helper processes): SIGINT first (pytest then still writes its JUnit file and
summary), SIGKILL to the process group if that does not end it within a grace period.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from modes import Mode
from outcomes import ModeResult, TestOutcome, last_started, parse_events, parse_junit, read_events
from suites import Suite
from workspace import Prepared

ENTRY = Path(__file__).resolve().parent / "mode_entry.py"
PATCH_ERROR_EXIT = 90  # mode_entry.PATCH_ERROR_EXIT (not imported: it runs in another venv)
_SUMMARY = re.compile(
    r"^=*\s*(\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b"
    r".* in [\d.]+s\b.*?)\s*=*$"
)
_GRACE_SECONDS = 30
POLL_SECONDS = 2.0
MAX_RESUMES = 5


def _tail(path: Path, chars: int = 3000) -> str:
    if not path.exists():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


def _summary_line(stdout: Path) -> str:
    """pytest's final ``=== N passed, M failed in Xs ===`` line, if it got that far."""
    for line in reversed(_tail(stdout, 20000).splitlines()):
        m = _SUMMARY.match(line.strip())
        if m:
            return m.group(1)
    return ""


def _stop(proc: subprocess.Popen[bytes], grace: float = _GRACE_SECONDS) -> None:
    """SIGINT the child's group, then SIGKILL it after a grace period (only our own group)."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def pytest_args(
    suite: Suite, per_test_timeout: float, junit: Path, extra: list[str]
) -> list[str]:
    """The pytest command line shared by every mode (only the patch differs)."""
    return [
        "-q", "-p", "no:cacheprovider",
        f"--timeout={per_test_timeout:g}", "--timeout-method=signal",
        f"--junitxml={junit}",
        *extra,
        *suite.test_args,
    ]


def run_mode(
    prep: Prepared, mode: Mode, runs_dir: Path, per_test_timeout: float, mode_timeout: float,
    extra: list[str],
) -> ModeResult:
    """Run the suite under ``mode`` (artifacts in ``runs_dir``) and collect outcomes.

    A stall (no test started or finished for ``stall_seconds(per_test_timeout)``: a hang that
    pytest-timeout's signal could not break) stops the child, records the test it was in as
    an error, and resumes with every test already run deselected, up to MAX_RESUMES times.
    """
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = runs_dir / mode.name
    paths = {k: Path(f"{stem}.{k}")
             for k in ("status.json", "events.jsonl", "xml", "out", "err", "skip")}
    for p in paths.values():
        p.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GEVENT"))}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    deadline = time.monotonic() + mode_timeout
    hung: dict[str, str] = {}
    code: int | None = None
    timed_out = False
    for attempt in range(MAX_RESUMES + 1):
        if attempt:
            done = {ev["nodeid"] for ev in read_events(paths["events.jsonl"])}
            paths["skip"].write_text("\n".join(sorted(done)) + "\n", encoding="utf-8")
            env["COMPAT_MATRIX_SKIP_FILE"] = str(paths["skip"])
        cmd = [
            str(prep.python), str(ENTRY), str(paths["status.json"]), str(paths["events.jsonl"]),
            mode.patcher, json.dumps(mode.kwargs), mode.name,
            "--", *pytest_args(prep.suite, per_test_timeout, paths["xml"], extra),
        ]
        code, outcome = _supervise(cmd, prep.work_dir, env, paths, deadline,
                                   stall_seconds(per_test_timeout))
        if attempt and code == 5:
            code = 0  # the resumed attempt had nothing left to run: the stall was in the last test
        if outcome == "timeout":
            timed_out = True
        if outcome != "stalled":
            break
        nodeid = last_started(paths["events.jsonl"]) or "<between tests>"
        hung[nodeid] = (f"hung: no progress for {stall_seconds(per_test_timeout):g} s "
                        "(pytest-timeout did not fire); process killed, run resumed")
        if nodeid == "<between tests>" or attempt == MAX_RESUMES:
            break
    mode_seconds = mode_timeout - (deadline - time.monotonic())
    res = _collect(prep, mode, code, mode_seconds, timed_out, mode_timeout, paths, hung)
    res.started = started
    return res


def stall_seconds(per_test_timeout: float) -> float:
    """How long without any test event counts as a stall pytest-timeout failed to break."""
    return per_test_timeout * 1.5 + 30


def _supervise(
    cmd: list[str], cwd: Path, env: dict[str, str], paths: dict[str, Path], deadline: float,
    stall: float,
) -> tuple[int | None, str]:
    """Run one attempt; return (exit code, "exited" | "stalled" | "timeout")."""
    with paths["out"].open("ab") as out, paths["err"].open("ab") as err:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True
        )
        last_progress = time.monotonic()
        last_size = -1
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                return proc.returncode, "exited"
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            size = paths["events.jsonl"].stat().st_size if paths["events.jsonl"].exists() else 0
            if size != last_size:
                last_size, last_progress = size, now
            if now >= deadline:
                _stop(proc)
                return proc.returncode, "timeout"
            if now - last_progress > stall and size > 0:
                _stop(proc, grace=5)
                return proc.returncode, "stalled"


def _collect(
    prep: Prepared, mode: Mode, code: int | None, seconds: float, timed_out: bool,
    mode_timeout: float, paths: dict[str, Path], hung: dict[str, str],
) -> ModeResult:
    """Turn a finished (or stopped/resumed) child's files into a ModeResult."""
    res = ModeResult(prep.suite.name, mode.name, "ok", code, round(seconds, 1))
    status = {}
    if paths["status.json"].exists():
        status = json.loads(paths["status.json"].read_text(encoding="utf-8"))
    res.patch_info = status.get("patch_info", {})
    res.pytest_summary = _summary_line(paths["out"])
    if paths["xml"].exists() and not hung:
        res.outcomes, res.source = parse_junit(paths["xml"]), "junit"
    else:  # killed, or resumed: only the event stream spans every attempt
        res.outcomes, res.source = parse_events(paths["events.jsonl"]), "events"
    for nodeid, why in hung.items():
        res.outcomes[nodeid] = TestOutcome("error", why)
    if hung:
        res.error = f"{len(hung)} hung test(s) killed and resumed past: {', '.join(hung)}"
    if code == PATCH_ERROR_EXIT and "patch_error" in status:
        res.status, res.error = "patch-error", status["patch_error"]
        res.stderr_tail = status.get("traceback", "")
    elif timed_out:
        res.status = "timeout"
        res.error = (f"mode timeout: stopped after {mode_timeout:g} s ({len(res.outcomes)} "
                     f"tests recorded from {res.source})" + (f"; {res.error}" if hung else ""))
    elif code not in (0, 1):
        res.status = "no-tests" if code == 5 else "crashed"
        res.error = f"exit code {code} ({len(res.outcomes)} tests recorded from {res.source})"
    if res.status != "ok":
        res.stderr_tail = res.stderr_tail or (_tail(paths["err"]) or _tail(paths["out"]))
    return res
