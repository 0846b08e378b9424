"""Per-test outcomes of one mode run, read from pytest's JUnit XML (or the event stream).

The JUnit file is the primary source; each testcase carries a ``nodeid`` property added by
mode_entry's plugin, so outcomes are keyed by the pytest node id that ``-k``/``--deselect`` and
the expectations files use. If the run died before pytest wrote the XML, the per-phase JSONL
event stream the same plugin wrote is folded into outcomes instead.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOMES = ("passed", "failed", "error", "hang", "skipped")
FAILING = ("failed", "error", "hang")


@dataclass
class TestOutcome:
    """One test's outcome and, unless it passed, the first line(s) of why.

    ``hang``: the CPython runner's watchdog killed the test (the pytest suites record a stall
    as ``error``)."""

    outcome: str
    message: str = ""


@dataclass
class ModeResult:
    """Everything one (suite, mode) run produced.

    ``status`` is ``ok`` when pytest ran to its end (exit 0 or 1), else one of ``patch-error``,
    ``timeout``, ``crashed``, ``no-tests``, ``not-run``; ``error`` says why.
    """

    suite: str
    mode: str
    status: str
    exit_code: int | None = None
    seconds: float = 0.0
    started: str = ""
    error: str = ""
    stderr_tail: str = ""
    pytest_summary: str = ""
    source: str = ""
    patch_info: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Tests per outcome (one outcome per test; see ``_merge`` for the precedence)."""
        out = dict.fromkeys(OUTCOMES, 0)
        for o in self.outcomes.values():
            out[o.outcome] += 1
        return out

    def to_json(self) -> dict:
        """All fields, outcomes included (the cache's full outcome map)."""
        data = asdict(self)
        data["counts"] = self.counts()
        return data

    @classmethod
    def from_json(cls, data: dict) -> ModeResult:
        """Inverse of ``to_json``."""
        data = {k: v for k, v in data.items() if k != "counts"}
        data["outcomes"] = {k: TestOutcome(**v) for k, v in data.get("outcomes", {}).items()}
        return cls(**data)


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3, "hang": 4}


def _merge(old: TestOutcome | None, new: TestOutcome, when: str) -> TestOutcome:
    """Fold a phase into a test's outcome: setup/call decide; a teardown error only turns a
    pass into an error (pytest counts it separately; we keep one outcome per test)."""
    if old is None:
        return new
    if when == "teardown":
        return new if old.outcome in ("passed", "skipped") and new.outcome == "error" else old
    return new if _RANK[new.outcome] >= _RANK[old.outcome] else old


def _first_line(text: str | None, limit: int = 1000) -> str:
    text = (text or "").strip()
    return text[:limit]


def parse_junit(path: Path) -> dict[str, TestOutcome]:
    """Outcomes from a pytest JUnit XML file."""
    out: dict[str, TestOutcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        nodeid = props.get("nodeid") or "::".join(
            x for x in (case.get("file") or case.get("classname"), case.get("name")) if x
        )
        failure, error, skipped = case.find("failure"), case.find("error"), case.find("skipped")
        if failure is not None:
            new = TestOutcome("failed", _first_line(failure.get("message") or failure.text))
        elif error is not None:
            new = TestOutcome("error", _first_line(error.get("message") or error.text))
        elif skipped is not None:
            kind = "xfail: " if skipped.get("type") == "pytest.xfail" else ""
            new = TestOutcome("skipped", kind + _first_line(skipped.get("message")))
        else:
            new = TestOutcome("passed")
        old = out.get(nodeid)
        out[nodeid] = new if old is None or _RANK[new.outcome] > _RANK[old.outcome] else old
    return out


def read_events(path: Path) -> list[dict]:
    """The event stream's records (a cut-short last line of a killed run is dropped)."""
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def last_started(path: Path) -> str | None:
    """The test that started last: after a stall, the one the run is stuck in."""
    starts = [ev["nodeid"] for ev in read_events(path) if ev["when"] == "start"]
    return starts[-1] if starts else None


def parse_events(path: Path) -> dict[str, TestOutcome]:
    """Outcomes from mode_entry's JSONL event stream (used when the JUnit file is missing)."""
    out: dict[str, TestOutcome] = {}
    for ev in read_events(path):
        when = ev["when"]
        if when == "start":
            continue
        outcome = ev["outcome"]
        if outcome == "failed":
            outcome = "failed" if when == "call" and not ev.get("xfail") else "error"
        message = ("xfail: " if ev.get("xfail") else "") + ev.get("message", "")
        out[ev["nodeid"]] = _merge(out.get(ev["nodeid"]), TestOutcome(outcome, message), when)
    return out
