"""Run gevent's own test suite on the Reseau loop and on libuv-cffi, and compare.

Usage::

    python compat_matrix/gevent_suite.py                 # both loops, full suite
    python compat_matrix/gevent_suite.py --only ours     # skip the libuv baseline
    python compat_matrix/gevent_suite.py -- test__core_timer.py test__os.py

Each loop runs ``python -m gevent.tests -u-network`` in a subprocess with ``GEVENT_LOOP``
set. The runner reports failures per *group* (small test files are combined into one
``unittest`` process), so the comparison is per group, keyed by the set of test modules
in it. Results go to ``compat_matrix/results/gevent_suite.{json,md}`` plus one log per
loop. Exit status: 1 if the Reseau loop fails a group that libuv passes, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

LOOPS = {
    "reseau": "reseau_patch.hub.loop.ReseauLoop",
    "libuv": "libuv-cffi",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILED_GROUP = re.compile(
    r"^! (?P<cmd>.*?)(?: \[(?P<why>code [^\]]*|TIMEOUT[^\]]*)\])?(?: \[.*\])?$")
_MODULE = re.compile(r"gevent\.tests\.(test__\w+|test___\w+|test_\w+)")
_RAN = re.compile(r"^Ran (?P<n>\d+) tests(?: \(skipped=(?P<s>\d+)\))? in (?P<f>\d+) files")
_FAILED_COUNT = re.compile(r"^(?P<failed>\d+)/(?P<total>\d+) tests failed")
_TEST_FAIL = re.compile(r"^\s*(?P<kind>FAIL|ERROR): (?P<name>\S+) \((?P<where>[^)]*)\)")


@dataclass
class LoopResult:
    """What one suite run of one loop produced."""

    loop: str
    gevent_loop: str
    wall_seconds: float = 0.0
    returncode: int | None = None
    tests_run: int = 0
    tests_skipped: int = 0
    groups_total: int = 0
    groups_failed: int = 0
    failed_groups: list[dict] = field(default_factory=list)
    failed_tests: list[str] = field(default_factory=list)


def parse_output(text: str, res: LoopResult) -> None:
    """Fill ``res`` from the runner's console output."""
    lines = [_ANSI.sub("", ln).rstrip() for ln in text.splitlines()]
    seen: set[tuple[str, ...]] = set()
    for ln in lines:
        m = _FAILED_GROUP.match(ln)
        if m:
            mods = tuple(sorted(set(_MODULE.findall(m.group("cmd")))))
            if mods and mods not in seen:
                seen.add(mods)
                res.failed_groups.append({"modules": list(mods), "why": m.group("why") or "failed"})
            continue
        m = _RAN.match(ln.strip())
        if m:
            res.tests_run = int(m.group("n"))
            res.tests_skipped = int(m.group("s") or 0)
            continue
        m = _FAILED_COUNT.match(ln.strip())
        if m:
            res.groups_failed = int(m.group("failed"))
            res.groups_total = int(m.group("total"))
            continue
        m = _TEST_FAIL.match(ln)
        if m:
            res.failed_tests.append(f"{m.group('kind')}: {m.group('where')}")
    # The summary at the end also lists failing groups (" - cmd"): catch ones printed
    # without a "!" line (e.g. timeouts reported only there).
    if "unexpected failures" in text:
        tail = text[text.rindex("unexpected failures"):]
        for ln in tail.splitlines()[1:]:
            ln = _ANSI.sub("", ln).strip()
            if not ln.startswith("- "):
                if ln.startswith("Ran "):
                    break
                continue
            mods = tuple(sorted(set(_MODULE.findall(ln))))
            if mods and mods not in seen:
                seen.add(mods)
                res.failed_groups.append({"modules": list(mods), "why": "failed"})
    if not res.groups_failed:
        res.groups_failed = len(res.failed_groups)


def run_loop(name: str, gevent_loop: str, tests: list[str], timeout: float) -> LoopResult:
    """Run the suite for one loop in a fresh interpreter; keeps the log."""
    res = LoopResult(loop=name, gevent_loop=gevent_loop)
    env = dict(os.environ)
    env["GEVENT_LOOP"] = gevent_loop
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "gevent.tests", "-u-network", *tests]
    log = RESULTS / f"gevent_suite_{name}.log"
    start = time.monotonic()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=timeout, cwd="/tmp")
            res.returncode = proc.returncode
        except subprocess.TimeoutExpired:
            res.returncode = None
    res.wall_seconds = round(time.monotonic() - start, 1)
    parse_output(log.read_text(errors="replace"), res)
    return res


def compare(ours: LoopResult, base: LoopResult | None) -> dict:
    """Groups ours fails that the baseline passes (a group matches on its module set;
    a baseline failure of any module in the group counts as covering it)."""
    base_mods = {m for g in (base.failed_groups if base else []) for m in g["modules"]}
    regressions = [g for g in ours.failed_groups if not base_mods & set(g["modules"])]
    ours_mods = {m for g in ours.failed_groups for m in g["modules"]}
    only_base = [g for g in (base.failed_groups if base else [])
                 if not ours_mods & set(g["modules"])]
    return {"regressions": regressions, "baseline_only": only_base,
            "ok": base is not None and not regressions}


def write_reports(results: list[LoopResult], cmp: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"results": [asdict(r) for r in results], "comparison": cmp,
            "python": sys.version.split()[0]}
    try:
        import gevent

        data["gevent"] = gevent.__version__
    except ImportError:
        pass
    (RESULTS / "gevent_suite.json").write_text(json.dumps(data, indent=2) + "\n")
    md = ["# gevent test suite: Reseau loop vs libuv-cffi", "",
          f"gevent {data.get('gevent', '?')}, Python {data['python']}, "
          "`python -m gevent.tests -u-network`", "",
          "| loop | GEVENT_LOOP | groups failed | tests run | skipped | wall s |",
          "|---|---|---|---|---|---|"]
    for r in results:
        md.append(f"| {r.loop} | `{r.gevent_loop}` | {r.groups_failed}/{r.groups_total} | "
                  f"{r.tests_run} | {r.tests_skipped} | {r.wall_seconds} |")
    for r in results:
        md += ["", f"## Failing groups: {r.loop}", ""]
        md += [f"- {', '.join(g['modules'])} ({g['why']})" for g in r.failed_groups] or ["- none"]
        if r.failed_tests:
            md += ["", "Failing test methods:", ""] + [f"- {t}" for t in r.failed_tests]
    md += ["", "## Comparison", "",
           "Groups the Reseau loop fails but libuv passes: "
           + (", ".join("/".join(g["modules"]) for g in cmp["regressions"]) or "none"),
           "", "Groups libuv fails but the Reseau loop passes: "
           + (", ".join("/".join(g["modules"]) for g in cmp["baseline_only"]) or "none"), ""]
    (RESULTS / "gevent_suite.md").write_text("\n".join(md))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(LOOPS), help="run just one loop")
    ap.add_argument("--timeout", type=float, default=1500.0, help="per loop, seconds")
    ap.add_argument("tests", nargs="*", help="test files to pass to gevent.tests")
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    for name, path in LOOPS.items():
        if args.only and name != args.only:
            continue
        print(f"running gevent suite with GEVENT_LOOP={path} ...", flush=True)
        r = run_loop(name, path, args.tests, args.timeout)
        print(f"  {name}: {r.groups_failed}/{r.groups_total} groups failed, "
              f"{r.tests_run} tests ({r.tests_skipped} skipped), {r.wall_seconds} s", flush=True)
        for g in r.failed_groups:
            print(f"    FAILED {' '.join(g['modules'])} ({g['why']})")
        results.append(r)
    ours = next((r for r in results if r.loop == "reseau"), None)
    base = next((r for r in results if r.loop == "libuv"), None)
    cmp = compare(ours, base) if ours else {"regressions": [], "baseline_only": [], "ok": True}
    write_reports(results, cmp)
    if ours and base:
        if cmp["regressions"]:
            print("Reseau fails groups libuv passes:")
            for g in cmp["regressions"]:
                print("   ", " ".join(g["modules"]))
            return 1
        print("Reseau's failing groups are a subset of libuv's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
