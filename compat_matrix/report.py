"""results.json and RESULTS.md: counts per mode and every test whose outcome differs from plain.

``results.json`` is merged across invocations (a run of one suite or a few modes updates only
those entries), and RESULTS.md is always regenerated from the merged JSON. The diff against
plain is computed from the full outcome maps kept in the cache (``runs/<suite>/<mode>.json``).
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import cpython_suite
import expectations
from modes import MODES
from outcomes import FAILING, ModeResult

MESSAGE_CHARS = 240
MD_MESSAGE_CHARS = 160
_KEY_PACKAGES = (
    "pytest", "pytest-timeout", "gevent", "greenlet", "urllib3", "requests", "hypercorn", "trio",
    "anyio", "h2", "quart", "httpbin", "pytest-httpbin", "werkzeug", "flask", "cryptography",
    "pyopenssl", "trustme",
)


def key_packages(freeze: str) -> dict[str, str]:
    """Versions of the packages that matter to the comparison, from ``pip freeze`` output."""
    found = {}
    for line in freeze.splitlines():
        name, sep, version = line.partition("==")
        if sep and name.lower() in _KEY_PACKAGES:
            found[name.lower()] = version
    return dict(sorted(found.items()))


def host_packages() -> dict[str, str]:
    """Versions of the patchers in the runner's own interpreter (the CPython modules run there)."""
    found = {}
    for name in ("gevent", "greenlet", "cryptography", "reseau_patch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def diff_vs_plain(plain: ModeResult, other: ModeResult) -> list[dict[str, str]]:
    """Tests whose outcome in ``other`` differs from plain ("absent" = not recorded)."""
    rows = []
    for nodeid in sorted(set(plain.outcomes) | set(other.outcomes)):
        a, b = plain.outcomes.get(nodeid), other.outcomes.get(nodeid)
        pa, pb = (a.outcome if a else "absent"), (b.outcome if b else "absent")
        if pa != pb:
            msg = (b.message if b else "") or (f"plain: {a.message}" if a and a.message else "")
            rows.append({"test": nodeid, "plain": pa, "outcome": pb,
                         "message": msg[:MESSAGE_CHARS]})
    return rows


def mode_entry(res: ModeResult, plain: ModeResult | None, exps: list) -> dict:
    """The results.json record of one mode (a failure's message is kept once: in the diff
    if the test differs from plain, else in ``failures``)."""
    diff = (
        None
        if plain is None or res.mode == "plain" or not res.outcomes
        else diff_vs_plain(plain, res)
    )
    in_diff = {r["test"] for r in diff or []}
    failures = []
    for nodeid, o in sorted(res.outcomes.items()):
        if o.outcome in FAILING:
            exp = expectations.excuse(exps, nodeid, res.mode)
            failures.append({"test": nodeid, "outcome": o.outcome,
                             "expected": exp.reason if exp else None})
            if nodeid not in in_diff:  # the diff already carries the message
                failures[-1]["message"] = o.message[:MESSAGE_CHARS]
    return {
        "status": res.status, "exit_code": res.exit_code, "seconds": res.seconds,
        "counts": res.counts(), "pytest_summary": res.pytest_summary, "source": res.source,
        "patch": MODES[res.mode].describe(), "patch_info": res.patch_info,
        "error": res.error, "stderr_tail": res.stderr_tail[-2000:] if res.status != "ok" else "",
        "failures": failures,
        "diff_vs_plain": diff,
    }


def load_results(path: Path) -> dict:
    """The previous results.json, or an empty skeleton."""
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"suites": {}}


def now() -> str:
    """Local time stamp used in the report."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def header() -> dict:
    """Machine facts recorded at the top of results.json (runs are stamped per mode)."""
    return {
        "generated": now(),
        "python": platform.python_version(),
        "host_gevent": metadata.version("gevent"),
        "machine": f"{platform.system()} {platform.machine()}, {_cpus()} CPUs",
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _one_line(text: str, limit: int = MD_MESSAGE_CHARS) -> str:
    text = " ".join((text or "").split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'")


def _counts_table(suite: dict) -> list[str]:
    lines = [
        "| mode | status | passed | failed | errors | hangs | skipped | wall (s) "
        "| differs from plain |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in MODES:
        m = suite["modes"].get(name)
        if m is None:
            continue
        c = m["counts"]
        diff = "—" if m["diff_vs_plain"] is None else str(len(m["diff_vs_plain"]))
        status = m["status"] if m["status"] == "ok" else f"**{m['status']}**"
        lines.append(f"| {name} | {status} | {c['passed']} | {c['failed']} | {c['error']} "
                     f"| {c.get('hang', 0)} | {c['skipped']} | {m['seconds']:.0f} | {diff} |")
    return lines


def _mode_errors(suite: dict) -> list[str]:
    lines = []
    for name, m in suite["modes"].items():
        if m["status"] != "ok" or m["error"]:
            lines += [f"- **{name}: {m['status']}** — {_one_line(m['error'], 400)}"]
            if m["stderr_tail"]:
                tail = "\n".join(m["stderr_tail"].strip().splitlines()[-8:])
                lines += ["  ```", *("  " + t for t in tail.splitlines()), "  ```"]
    return ["### Mode-level errors", "", *lines, ""] if lines else []


def _plain_failures(suite: dict) -> list[str]:
    plain = suite["modes"].get("plain")
    if not plain or not plain["failures"]:
        return []
    lines = ["### Failing in plain (no patching)", "",
             "| test | outcome | expectation | message |", "|---|---|---|---|"]
    for f in plain["failures"]:
        lines.append(f"| `{f['test']}` | {f['outcome']} | {_one_line(f['expected'] or '—', 90)} "
                     f"| {_one_line(f.get('message', ''))} |")
    return [*lines, ""]


def _diffs(suite: dict) -> list[str]:
    """Per mode, differing tests grouped by (plain → outcome, message); every test is listed."""
    lines = []
    for name, m in suite["modes"].items():
        rows = m.get("diff_vs_plain") or []
        if name == "plain" or not rows:
            continue
        lines += [f"#### {name} — {len(rows)} tests differ from plain", ""]
        groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for r in rows:
            groups[(r["plain"], r["outcome"], _one_line(r["message"]))].append(r["test"])
        for (pa, pb, msg), tests in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"- {pa} → **{pb}** ×{len(tests)}: {msg or '(no message)'}")
            if len(tests) > 5:
                lines.append(f"  <details><summary>{len(tests)} tests</summary>\n")
            lines += [f"  - `{t}`" for t in tests]
            if len(tests) > 5:
                lines.append("\n  </details>")
        lines.append("")
    return ["### Differences from plain", "", *lines] if lines else []


def _cpython_overview(results: dict) -> list[str]:
    """One row per CPython module, one column per mode: passed/failed+errors/hangs/skipped."""
    rows = {k: v for k, v in results["suites"].items() if k.startswith("cpython/")}
    if not rows:
        return []
    lines = ["## CPython test modules at a glance", "", *(f"- {n}" for n in cpython_suite.NOTES),
             "", "Each cell: passed / failed (incl. errors) / hangs / skipped, wall seconds. "
             "A hang is a test the watchdog killed; the module went on without it.", "",
             "| module | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    totals = {m: [0, 0, 0, 0, 0.0] for m in MODES}
    for name, suite in rows.items():
        cells = []
        for mode in MODES:
            m = suite["modes"].get(mode)
            if m is None:
                cells.append("—")
                continue
            c = m["counts"]
            vals = [c["passed"], c["failed"] + c["error"], c.get("hang", 0), c["skipped"]]
            for i, v in enumerate([*vals, m["seconds"]]):
                totals[mode][i] += v
            flag = "" if m["status"] == "ok" else f" **{m['status']}**"
            cells.append("/".join(map(str, vals)) + f", {m['seconds']:.0f} s{flag}")
        lines.append(f"| {name.split('/', 1)[1]} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(
        "/".join(str(int(v)) for v in t[:4]) + f", {t[4]:.0f} s" for t in totals.values()) + " |")
    return [*lines, ""]


def render_markdown(results: dict) -> str:
    """RESULTS.md from the merged results.json."""
    h = results.get("header", {})
    out = [
        "# Compat matrix: third-party suites and CPython's own networking tests",
        "",
        f"Report written {h.get('generated', '?')} — Python {h.get('python', '?')}, gevent "
        f"{h.get('host_gevent', '?')}, {h.get('machine', '?')}. Each suite lists when and by "
        "which command each mode last ran. Rerun everything with "
        "`python compat_matrix/run_suites.py --suite all` (see its --help).",
        "",
        "| mode | patch applied before pytest (or the CPython test module) is imported |",
        "|---|---|",
        *(f"| {m.name} | `{m.describe()}` |" for m in MODES.values()),
        "",
        "Counts are per test (one outcome per node id: a teardown error after a pass counts as "
        "an error; xfail counts as skipped), so they can differ by a few from pytest's summary "
        "line, which results.json also records. Known failures, with reasons, are in "
        "`compat_matrix/expectations/`.",
        "",
        "Every mode runs under the same loopback guard (`mode_entry.py`): a connect or datagram "
        "to an address outside 127.0.0.0/8 and ::1 fails at once with ENETUNREACH, as on a "
        "machine with no route. So `requires_network` tests skip themselves, and tests that "
        "need a tarpit address to hang fail in plain mode too (listed as environment).",
        "",
    ]
    out += _cpython_overview(results)
    for name, suite in results["suites"].items():
        out += [f"## {name} {suite['version']}", ""]
        out += [f"- {n}" for n in suite.get("notes", [])]
        pkgs = ", ".join(f"{k} {v}" for k, v in suite.get("packages", {}).items())
        out += [f"- installed: {pkgs}"]
        if "pytest_args" in suite:
            out += [f"- pytest args: `{' '.join(suite['pytest_args'])}`"]
        else:
            out += [f"- run: {'; '.join(suite.get('run_args', []))}"]
        by_cmd: dict[str, list[str]] = defaultdict(list)
        for mode, r in suite.get("run", {}).items():
            by_cmd[r["command"]].append(f"{mode} {r['at']}")
        out += [f"- last run by `{cmd}`: {', '.join(ms)}" for cmd, ms in by_cmd.items()]
        out += [""]
        if suite.get("prepare_error"):
            out += ["**Preparation failed in the last run** (counts below, if any, are older):",
                    "", "```", *suite["prepare_error"].strip().splitlines()[-15:], "```", ""]
        out += _counts_table(suite) + [""]
        summaries = [(k, m["pytest_summary"]) for k, m in suite["modes"].items()]
        out += ["pytest's own summary lines:" if "pytest_args" in suite else "Summary lines:", ""]
        out += [f"- {k}: {s or '(none)'}" for k, s in summaries] + [""]
        out += _mode_errors(suite) + _plain_failures(suite) + _diffs(suite)
    return "\n".join(out).rstrip() + "\n"


def _dumps(obj: object, indent: str = "") -> str:
    """JSON with one line per list row: readable diffs, a fraction of ``indent=1``'s size."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(obj, list) and obj:
        rows = (f"{inner}{json.dumps(v, ensure_ascii=False)}" for v in obj)
        return "[\n" + ",\n".join(rows) + f"\n{indent}]"
    return json.dumps(obj, ensure_ascii=False)


def write(results: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write results.json and RESULTS.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "results.json", out_dir / "RESULTS.md"
    js.write_text(_dumps(results) + "\n", encoding="utf-8")
    md.write_text(render_markdown(results), encoding="utf-8")
    return js, md
