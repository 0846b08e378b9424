"""Drop expectations that excuse nothing any more, after a run of the modes they name.

Usage::

    python compat_matrix/run_suites.py --suite all --modes reseau reseau-nothread \
        --report-only --stale | python compat_matrix/prune_stale.py

For each entry naming a test (not a pattern) whose test *passed* in a mode that the entry
lists by name, that mode leaves the entry; an entry left with no mode goes, and so does a
group comment left with no entry under it. Entries for ``"*"`` (failing in plain mode too)
are never touched: they say something about the environment, not about our code.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import expectations  # noqa: E402

_BLOCK = re.compile(r"^\[\[expect\]\]\n", re.M)
_STALE = re.compile(r"^(?P<suite>\S+) \[(?P<mode>[\w-]+)\] (?P<test>.+): passed$")


def passed_by_suite(lines: list[str]) -> dict[str, dict[str, set[str]]]:
    """{suite: {mode: tests that passed}} from ``run_suites.py --stale`` lines."""
    out: dict[str, dict[str, set[str]]] = {}
    for line in lines:
        m = _STALE.match(line.strip())
        if m:
            out.setdefault(m["suite"], {}).setdefault(m["mode"], set()).add(m["test"])
    return out


def prune_text(text: str, passed: dict[str, set[str]]) -> tuple[str, int]:
    """``text`` without the stale (entry, mode) pairs; and how many pairs went."""
    starts = [m.start() for m in _BLOCK.finditer(text)]
    if not starts:
        return text, 0
    pieces = [text[: starts[0]]]
    removed = 0
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        block = text[start:end]
        body, tail = _split_trailing_comments(block)
        entry = tomllib.loads(body)["expect"][0]
        test, modes = entry.get("test"), list(entry.get("modes", ["*"]))
        if test is None or "*" in modes:
            pieces.append(block)
            continue
        keep = [m for m in modes if test not in passed.get(m, set())]
        removed += len(modes) - len(keep)
        if keep == modes:
            pieces.append(block)
        elif keep:
            new_modes = "modes = [" + ", ".join(f'"{m}"' for m in keep) + "]"
            pieces.append(re.sub(r"^modes = \[.*\]$", new_modes, body, count=1, flags=re.M)
                          + tail)
        else:
            pieces.append(tail)
    return _drop_empty_groups("".join(pieces)), removed


def _split_trailing_comments(block: str) -> tuple[str, str]:
    """An entry's own lines, and the comment/blank lines after it (the next group's header)."""
    lines = block.splitlines(keepends=True)
    i = len(lines)
    while i > 0 and (not lines[i - 1].strip() or lines[i - 1].lstrip().startswith("#")):
        i -= 1
    return "".join(lines[:i]), "".join(lines[i:])


def _drop_empty_groups(text: str) -> str:
    """Remove comment paragraphs (after the file's header) that no entry follows."""
    paras = re.split(r"\n{2,}", text)
    out = [paras[0]]
    for j, para in enumerate(paras[1:], start=1):
        is_comment = all(ln.startswith("#") for ln in para.strip().splitlines() if ln)
        nxt = paras[j + 1] if j + 1 < len(paras) else ""
        if is_comment and not nxt.lstrip().startswith("[[expect]]"):
            continue
        out.append(para)
    return "\n\n".join(p for p in out if p.strip()).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    passed = passed_by_suite(sys.stdin.readlines())
    total = 0
    for suite, modes in sorted(passed.items()):
        path = expectations.path_for(suite)
        if path is None or path.suffix != ".toml":
            continue
        text = path.read_text(encoding="utf-8")
        new, removed = prune_text(text, modes)
        if removed:
            path.write_text(new, encoding="utf-8")
            expectations.load(suite)  # still valid
            print(f"{path.relative_to(HERE.parent)}: {removed} stale (entry, mode) pair(s) removed")
            total += removed
    print(f"{total} stale pair(s) removed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
