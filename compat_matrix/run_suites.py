"""Run third-party test suites (urllib3, requests) under plain / gevent / reseau_patch.

Usage::

    python compat_matrix/run_suites.py                              # all suites, all modes
    python compat_matrix/run_suites.py --suite urllib3 --modes plain gevent-nothread
    python compat_matrix/run_suites.py --suite all --modes plain reseau reseau-nothread --check
    python compat_matrix/run_suites.py --suite requests --modes reseau -k test_redirect -- -rf

Per suite: download its pinned sdist, unpack it, build a venv with its test requirements plus
this project (editable) and pytest-timeout, all cached under ``.compat_cache/``; then per mode
run mode_entry.py in that venv (patch first, then ``pytest.main``), bounded by
``--mode-timeout``. Writes ``compat_matrix/results.json`` and ``compat_matrix/RESULTS.md``
(counts per mode, every test whose outcome differs from plain). With ``-k`` or extra pytest
arguments the run is partial: its artifacts and report go under the cache instead.

``--check`` exits 1 if, in the modes run, any test fails or errors without an entry (with a
reason) in ``compat_matrix/expectations/<suite>.toml``, or a mode did not complete; CI calls it
with the reseau modes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import expectations
import report
from executor import pytest_args, run_mode
from modes import MODES
from outcomes import FAILING, ModeResult
from suites import SUITES, Suite
from workspace import PrepareError, prepare

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    """CLI options; everything after ``--`` is passed to pytest unchanged."""
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   metavar="MODE", help=f"modes to run, of {', '.join(MODES)} (default: all)")
    p.add_argument("--timeout-per-test", type=float, default=60.0,
                   help="pytest-timeout per test, seconds (default 60)")
    p.add_argument("--mode-timeout", type=float, default=900.0,
                   help="wall-clock bound of one suite run in one mode, seconds (default 900)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 on failures not excused by the expectations files")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rebuild the report (and --check) from cached outcomes")
    p.add_argument("-k", dest="keyword", help="pytest -k expression (makes the run partial)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".compat_cache")
    p.add_argument("--output", type=Path, default=None,
                   help="directory for results.json/RESULTS.md (default compat_matrix/, or "
                        "<cache>/partial-results for partial runs)")
    args = p.parse_args(argv)
    args.extra = (["-k", args.keyword] if args.keyword else []) + extra
    args.partial = bool(args.extra)
    if args.output is None:
        args.output = args.cache_dir / "partial-results" if args.partial else HERE
    args.modes = list(dict.fromkeys(args.modes))
    return args


def _log(msg: str) -> None:
    print(f"[compat {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _maps_path(runs_dir: Path, mode: str) -> Path:
    return runs_dir / f"{mode}.json"


def _load_map(runs_dir: Path, mode: str) -> ModeResult | None:
    p = _maps_path(runs_dir, mode)
    return ModeResult.from_json(json.loads(p.read_text(encoding="utf-8"))) if p.exists() else None


def run_suite(name: str, args: argparse.Namespace) -> tuple[dict, list[ModeResult]]:
    """Prepare and run one suite in every requested mode; return its results.json entry."""
    suite = SUITES[name]
    _log(f"{suite.dist}: preparing (cache {args.cache_dir})")
    try:
        prep = prepare(suite, args.cache_dir, ROOT)
    except (PrepareError, OSError) as exc:
        _log(f"{suite.dist}: preparation failed: {exc}")
        failed = [ModeResult(name, m, "not-run", error=f"preparation failed: {exc}"[:3000])
                  for m in args.modes]
        return {"version": suite.version, "notes": list(suite.notes), "packages": {},
                "pytest_args": [], "prepare_seconds": None, "modes": {},
                "prepare_error": str(exc)[-3000:]}, failed
    _log(f"{suite.dist}: ready in {prep.seconds:.0f} s ({prep.python})")
    runs_dir = _runs_dir(suite, args)
    results = []
    for mode in args.modes:
        _log(f"{suite.dist} [{mode}]: running ({MODES[mode].describe()})")
        res = run_mode(prep, MODES[mode], runs_dir, args.timeout_per_test, args.mode_timeout,
                       args.extra)
        _maps_path(runs_dir, mode).write_text(json.dumps(res.to_json()), encoding="utf-8")
        c = res.counts()
        _log(f"{suite.dist} [{mode}]: {res.status} in {res.seconds:.0f} s — {c['passed']} passed, "
             f"{c['failed']} failed, {c['error']} errors, {c['skipped']} skipped"
             + (f" — {res.error}" if res.error else ""))
        results.append(res)
    return _suite_entry(suite, runs_dir, args, round(prep.seconds, 1)), results


def _runs_dir(suite: Suite, args: argparse.Namespace) -> Path:
    return args.cache_dir / "runs" / (suite.dist + ("-partial" if args.partial else ""))


def report_from_cache(name: str, args: argparse.Namespace) -> tuple[dict, list[ModeResult]]:
    """``--report-only``: the suite's entry and requested modes' results from the cache."""
    suite = SUITES[name]
    runs_dir = _runs_dir(suite, args)
    results = [r for r in (_load_map(runs_dir, m) for m in args.modes) if r is not None]
    missing = sorted(set(args.modes) - {r.mode for r in results})
    if missing:
        _log(f"{suite.dist}: no cached results for {', '.join(missing)} in {runs_dir}")
    results += [ModeResult(name, m, "not-run", error=f"no cached result in {runs_dir}")
                for m in missing]
    return _suite_entry(suite, runs_dir, args, None), results


def _suite_entry(
    suite: Suite, runs_dir: Path, args: argparse.Namespace, prepare_seconds: float | None
) -> dict:
    """The suite's results.json record, rebuilt from every outcome map in ``runs_dir``."""
    exps = expectations.load(suite.name)
    plain = _load_map(runs_dir, "plain")
    modes = {}
    for mode in MODES:
        res = _load_map(runs_dir, mode)
        if res is not None:
            modes[mode] = report.mode_entry(res, plain, exps)
    freeze = runs_dir.parent / suite.dist / "pip-freeze.txt"
    return {
        "version": suite.version,
        "notes": list(suite.notes),
        "packages": report.key_packages(freeze.read_text() if freeze.exists() else ""),
        "pytest_args": pytest_args(suite, args.timeout_per_test, Path("<mode>.xml"), args.extra),
        "prepare_seconds": prepare_seconds,
        "modes": modes,
    }


def check(results: list[ModeResult]) -> list[str]:
    """Problems that make ``--check`` fail, printing TOML stubs for unexcused tests."""
    problems: list[str] = []
    stubs: list[str] = []
    loaded: dict[str, list[expectations.Expectation]] = {}
    for res in results:
        exps = loaded.setdefault(res.suite, expectations.load(res.suite))
        if res.status != "ok":
            problems.append(f"{res.suite} [{res.mode}]: {res.status}: {res.error}")
        for nodeid, o in sorted(res.outcomes.items()):
            if o.outcome in FAILING and expectations.excuse(exps, nodeid, res.mode) is None:
                problems.append(f"{res.suite} [{res.mode}]: unexpected {o.outcome}: {nodeid}"
                                f" — {o.message.splitlines()[0][:160] if o.message else ''}")
                stubs.append(f"# {res.suite}\n" + expectations.toml_stub(nodeid, res.mode,
                                                                          o.message))
        for e in exps:
            hit = e.test is not None and e.applies(e.test, res.mode)
            if hit and res.outcomes.get(e.test) and res.outcomes[e.test].outcome == "passed":
                print(f"note: {res.suite} [{res.mode}] {e.test} passed; its expectation "
                      "may be stale", flush=True)
    if stubs:
        print("\nTOML stubs for the unexcused tests:\n\n" + "\n".join(stubs), flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the requested suites and modes; write the report; optionally check."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for name in SUITES:
            expectations.load(name)  # fail fast on a malformed expectations file
    except expectations.ExpectationsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    out_json = args.output / "results.json"
    merged = report.load_results(out_json)
    command = "python compat_matrix/run_suites.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    merged["header"] = report.header()
    all_results: list[ModeResult] = []
    for name in SUITES if args.suite == "all" else [args.suite]:
        entry, results = (report_from_cache if args.report_only else run_suite)(name, args)
        old = merged["suites"].get(name, {})
        if args.report_only:
            entry["run"] = old.get("run", {})
            entry["prepare_seconds"] = old.get("prepare_seconds")
        else:
            entry["run"] = dict(old.get("run", {}))
            entry["run"].update(
                {r.mode: {"at": r.started or report.now(), "command": command} for r in results}
            )
        if "prepare_error" in entry and name in merged["suites"]:
            merged["suites"][name]["prepare_error"] = entry["prepare_error"]  # keep old counts
        else:
            merged["suites"][name] = entry
        all_results += results
    merged["suites"] = {k: merged["suites"][k] for k in SUITES if k in merged["suites"]}
    js, md = report.write(merged, args.output)
    _log(f"wrote {md} and {js} ({time.monotonic() - start:.0f} s total)")
    if not args.check:
        return 2 if any(r.status == "not-run" for r in all_results) else 0
    problems = check(all_results)
    for p in problems:
        print(f"CHECK: {p}", flush=True)
    _log(f"check: {len(problems)} problem(s) in modes {', '.join(args.modes)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
