"""Known failures per suite: ``compat_matrix/expectations/<suite>.toml`` (or ``.json``); a
CPython module's suite is ``cpython/<module>``: its file is
``expectations/cpython/<module>.toml``.

Format (TOML; the JSON form is the same structure)::

    [[expect]]
    test = "test/test_x.py::TestY::test_z[param]"   # exact pytest node id (CPython modules:
                                                      # unittest id test.test_x.Y.test_z), or
    # pattern = "test/test_x.py::TestY::test_*"     # fnmatch pattern ('[' is literal here)
    modes = ["*"]                                     # modes it applies to; "*" = all
    reason = "environment: ..."                       # required, non-empty

``--check`` fails on any failing/erroring/hung test in the checked modes that no entry covers.
An entry only excuses a test; it never makes a passing test fail (stale entries are reported).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTATIONS_DIR = HERE / "expectations"


class ExpectationsError(ValueError):
    """An expectations file is malformed (missing reason, neither test nor pattern, ...)."""


@dataclass(frozen=True)
class Expectation:
    """One excused test (or pattern of tests) in some modes, and why."""

    reason: str
    modes: tuple[str, ...] = ("*",)
    test: str | None = None
    pattern: str | None = None

    def applies(self, nodeid: str, mode: str) -> bool:
        """Whether this entry excuses ``nodeid`` failing in ``mode``."""
        if "*" not in self.modes and mode not in self.modes:
            return False
        if self.test is not None:
            return nodeid == self.test
        return _glob(self.pattern or "").fullmatch(nodeid) is not None


def _glob(pattern: str) -> re.Pattern[str]:
    """fnmatch-style ``*``/``?`` only: node ids are full of literal brackets."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts))


def path_for(suite: str) -> Path | None:
    """The suite's expectations file, preferring TOML; None if there is none."""
    for ext in ("toml", "json"):
        p = EXPECTATIONS_DIR / f"{suite}.{ext}"
        if p.exists():
            return p
    return None


def load(suite: str) -> list[Expectation]:
    """Parse and validate the suite's expectations (empty if the file does not exist)."""
    path = path_for(suite)
    if path is None:
        return []
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    out = []
    for i, raw in enumerate(data.get("expect", [])):
        where = f"{path.name}: entry {i + 1}"
        reason = str(raw.get("reason", "")).strip()
        if not reason:
            raise ExpectationsError(f"{where} ({raw.get('test') or raw.get('pattern')}): no reason")
        if ("test" in raw) == ("pattern" in raw):
            raise ExpectationsError(f"{where}: give exactly one of 'test' or 'pattern'")
        modes = raw.get("modes", ["*"])
        if isinstance(modes, str) or not modes:
            raise ExpectationsError(f"{where}: 'modes' must be a non-empty list")
        out.append(Expectation(reason, tuple(modes), raw.get("test"), raw.get("pattern")))
    return out


def excuse(entries: list[Expectation], nodeid: str, mode: str) -> Expectation | None:
    """The first entry that excuses ``nodeid`` in ``mode``, if any."""
    return next((e for e in entries if e.applies(nodeid, mode)), None)


def toml_stub(nodeid: str, mode: str, message: str) -> str:
    """A ready-to-edit TOML entry for an unexcused failure (printed by ``--check``)."""
    msg = message.splitlines()[0][:120] if message else ""
    return (
        f"[[expect]]\ntest = {json.dumps(nodeid)}\nmodes = [{json.dumps(mode)}]\n"
        f"reason = \"TODO: why\"  # {msg}\n"
    )
