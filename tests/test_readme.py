"""The README points at things that exist (issue 11, trap 7: it named a DESIGN.md that was not
in the repository and a server/ package that did not exist)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_path_in_the_layout_table_exists():
    rows = [ln for ln in README.splitlines() if ln.startswith("| `")]
    paths = [re.match(r"\| `([^`]+)`", ln).group(1) for ln in rows]
    assert "reseau_patch/server/" in paths
    for p in paths:
        assert (ROOT / p).exists(), p


def test_every_relative_link_resolves():
    links = re.findall(r"\]\(([^)#:]+)\)", README)
    assert "DESIGN.md" in links
    for link in links:
        assert (ROOT / link).exists(), link


def test_the_test_command_is_the_ci_script():
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    cmd = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && " \
          ".venv/bin/python -m pytest -q"
    assert cmd in README and cmd in script
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
