"""Run third-party test suites (urllib3, requests) and CPython's own networking tests under
plain / gevent / reseau_patch.

Usage::

    python compat_matrix/run_suites.py                              # all suites, all modes
    python compat_matrix/run_suites.py --suite urllib3 --modes plain gevent-nothread
    python compat_matrix/run_suites.py --suite all --modes plain reseau reseau-nothread --check
    python compat_matrix/run_suites.py --suite requests --modes reseau -k test_redirect -- -rf
    python compat_matrix/run_suites.py --suite cpython --modes reseau --check    # 14 modules
    python compat_matrix/run_suites.py --suite cpython/test_ssl --modes reseau -k 'ThreadedTests'
    python compat_matrix/run_suites.py --suite cpython --modes reseau --report-only --explain
    python compat_matrix/run_suites.py --suite cpython --report-only --stale

CPython modules (suites ``cpython/<module>``, see cpython_suite.py) run from this interpreter's
``test`` package with cpython_runner.py: a watchdog per test (``--timeout-per-test``) records a
hang for that one test and restarts the module past it; ``--cpython-mode-timeout`` bounds all
modules of one mode together, ``--jobs`` runs that many modules at once. For them ``-k`` is a
substring of the unittest test id.

Per suite: download its pinned sdist, unpack it, build a venv with its test requirements plus
this project (editable) and pytest-timeout, all cached under ``.compat_cache/``; then per mode
run mode_entry.py in that venv (patch first, then ``pytest.main``), bounded by
``--mode-timeout``. Writes ``compat_matrix/results.json`` and ``compat_matrix/RESULTS.md``
(counts per mode, every test whose outcome differs from plain). With ``-k`` or extra pytest
arguments the run is partial: its artifacts and report go under the cache instead.

``--check`` exits 1 if, in the modes run, any test fails or errors without an entry (with a
reason) in ``compat_matrix/expectations/<suite>.toml``, or a mode did not complete; CI calls it
with the reseau modes (and ``--output`` under the cache: CI never rewrites the committed
report). An entry whose test now passes is reported as stale (a warning). ``--explain`` prints
every unexpected failure with its traceback's last lines; ``--stale`` lists stale entries.
Both work on cached results with ``--report-only``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import cpython_runner
import cpython_suite
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
    suite_names = [*SUITES, cpython_suite.GROUP, *cpython_suite.suite_names(), "all"]
    p.add_argument("--suite", nargs="+", choices=suite_names, default=["all"], metavar="SUITE",
                   help=f"suites to run: {', '.join(SUITES)}, cpython (its 14 modules), "
                        "cpython/<module>, or all (default)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                   metavar="MODE", help=f"modes to run, of {', '.join(MODES)} (default: all)")
    p.add_argument("--timeout-per-test", type=float, default=60.0,
                   help="pytest-timeout per test, seconds (default 60)")
    p.add_argument("--mode-timeout", type=float, default=900.0,
                   help="wall-clock bound of one suite run in one mode, seconds (default 900)")
    p.add_argument("--cpython-mode-timeout", type=float, default=1800.0,
                   help="wall-clock bound of all CPython modules in one mode, seconds "
                        "(default 1800)")
    p.add_argument("--jobs", type=int, default=1,
                   help="CPython modules run at once within a mode (default 1)")
    p.add_argument("--explain", action="store_true",
                   help="print every unexpected failure with its traceback's last lines")
    p.add_argument("--stale", action="store_true",
                   help="list expectations whose test passed in the modes run")
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
    args.suites = _expand(args.suite)
    return args


def _expand(chosen: list[str]) -> list[str]:
    """Suite names in run order: ``all`` is every suite, ``cpython`` every CPython module."""
    out: list[str] = []
    for name in chosen:
        if name == "all":
            out += [*SUITES, *cpython_suite.suite_names()]
        elif name == cpython_suite.GROUP:
            out += cpython_suite.suite_names()
        else:
            out.append(name)
    return list(dict.fromkeys(out))


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


def _runs_dir(suite: Suite | str, args: argparse.Namespace) -> Path:
    base = suite.dist if isinstance(suite, Suite) else suite  # cpython/<module>
    return args.cache_dir / "runs" / (base + ("-partial" if args.partial else ""))


def report_from_cache(name: str, args: argparse.Namespace) -> tuple[dict, list[ModeResult]]:
    """``--report-only``: the suite's entry and requested modes' results from the cache."""
    suite = SUITES[name]
    runs_dir = _runs_dir(suite, args)
    results = [r for r in (_load_map(runs_dir, m) for m in args.modes) if r is not None]
    return _suite_entry(suite, runs_dir, args, None), results + _missing(name, results, args,
                                                                          runs_dir)


def _missing(name: str, results: list[ModeResult], args: argparse.Namespace,
             runs_dir: Path) -> list[ModeResult]:
    missing = sorted(set(args.modes) - {r.mode for r in results})
    if missing:
        _log(f"{name}: no cached results for {', '.join(missing)} in {runs_dir}")
    return [ModeResult(name, m, "not-run", error=f"no cached result in {runs_dir}")
            for m in missing]


def _mode_entries(name: str, runs_dir: Path) -> dict:
    """results.json records of every mode with a cached outcome map in ``runs_dir``."""
    exps = expectations.load(name)
    plain = _load_map(runs_dir, "plain")
    modes = {}
    for mode in MODES:
        res = _load_map(runs_dir, mode)
        if res is not None:
            modes[mode] = report.mode_entry(res, plain, exps)
    return modes


def cpython_entry(name: str, args: argparse.Namespace) -> dict:
    """A CPython module's results.json record, from the cache."""
    return {
        "version": platform.python_version(),
        "notes": cpython_suite.notes_for(cpython_suite.module_of(name)),
        "packages": report.host_packages(),
        "run_args": [f"python compat_matrix/cpython_entry.py ... {cpython_suite.module_of(name)}",
                     # --report-only cannot know the options of the runs it reads back
                     *([] if args.report_only else [
                         f"per-test budget {args.timeout_per_test:g} s",
                         f"mode bound {args.cpython_mode_timeout:g} s", f"jobs {args.jobs}"])],
        "prepare_seconds": None,
        "modes": _mode_entries(name, _runs_dir(name, args)),
    }


def run_cpython(names: list[str], args: argparse.Namespace) -> list[tuple[str, dict,
                                                                         list[ModeResult]]]:
    """Run (or with --report-only, load) the CPython modules in every requested mode."""
    per_suite: dict[str, list[ModeResult]] = {n: [] for n in names}
    if args.report_only:
        for n in names:
            found = [r for r in (_load_map(_runs_dir(n, args), m) for m in args.modes) if r]
            per_suite[n] = found + _missing(n, found, args, _runs_dir(n, args))
    else:
        modules = [cpython_suite.module_of(n) for n in names]
        select = [f"*{args.keyword}*"] if args.keyword else None
        for mode in args.modes:
            _log(f"cpython [{mode}]: {len(modules)} module(s), jobs {args.jobs}, bound "
                 f"{args.cpython_mode_timeout:g} s ({MODES[mode].describe()})")
            t0 = time.monotonic()

            def done(res: ModeResult) -> None:
                runs_dir = _runs_dir(res.suite, args)
                runs_dir.mkdir(parents=True, exist_ok=True)
                _maps_path(runs_dir, res.mode).write_text(json.dumps(res.to_json()),
                                                          encoding="utf-8")
                _log(f"{res.suite} [{res.mode}]: {res.status}: {res.pytest_summary}"
                     + (f" — {res.error[:300]}" if res.error else ""))

            results = cpython_runner.run_mode(
                modules, MODES[mode], lambda m: _runs_dir(cpython_suite.PREFIX + m, args),
                args.timeout_per_test, args.cpython_mode_timeout, args.jobs, select, done)
            _log(f"cpython [{mode}]: done in {time.monotonic() - t0:.0f} s")
            for res in results:
                per_suite[res.suite].append(res)
    return [(n, cpython_entry(n, args), per_suite[n]) for n in names]


def _suite_entry(
    suite: Suite, runs_dir: Path, args: argparse.Namespace, prepare_seconds: float | None
) -> dict:
    """The suite's results.json record, rebuilt from every outcome map in ``runs_dir``."""
    modes = _mode_entries(suite.name, runs_dir)
    freeze = runs_dir.parent / suite.dist / "pip-freeze.txt"
    return {
        "version": suite.version,
        "notes": list(suite.notes),
        "packages": report.key_packages(freeze.read_text() if freeze.exists() else ""),
        "pytest_args": pytest_args(suite, args.timeout_per_test, Path("<mode>.xml"), args.extra),
        "prepare_seconds": prepare_seconds,
        "modes": modes,
    }


def stale(results: list[ModeResult]) -> list[str]:
    """Expectations that excuse nothing in the modes run: an exact entry whose test passed, or
    a pattern that matched no failing test although the suite ran its tests in that mode."""
    out: list[str] = []
    loaded: dict[str, list[expectations.Expectation]] = {}
    for res in results:
        if res.status == "not-run" or not res.outcomes:
            continue
        exps = loaded.setdefault(res.suite, expectations.load(res.suite))
        failing = [t for t, o in res.outcomes.items() if o.outcome in FAILING]
        for e in exps:
            if e.test is not None:
                o = res.outcomes.get(e.test)
                if e.applies(e.test, res.mode) and o is not None and o.outcome == "passed":
                    out.append(f"{res.suite} [{res.mode}] {e.test}: passed")
            elif ("*" in e.modes or res.mode in e.modes) and not any(
                    e.applies(t, res.mode) for t in failing):
                out.append(f"{res.suite} [{res.mode}] pattern {e.pattern}: matched no failure")
    return out


def explain(results: list[ModeResult], lines: int = 8) -> int:
    """Print every failure no expectation excuses, with its message's last ``lines`` lines
    (the traceback's end for CPython modules); return how many."""
    n = 0
    loaded: dict[str, list[expectations.Expectation]] = {}
    for res in results:
        exps = loaded.setdefault(res.suite, expectations.load(res.suite))
        for test_id, o in sorted(res.outcomes.items()):
            if o.outcome in FAILING and expectations.excuse(exps, test_id, res.mode) is None:
                n += 1
                msg = o.message.strip().splitlines()
                # A hang's message ends with the greenlet stacks (the test's last): longer tail.
                tail = msg[-5 * lines:] if o.outcome == "hang" else [*_test_frame(msg, lines),
                                                                     *msg[-lines:]]
                print(f"{res.suite} [{res.mode}] {o.outcome}: {test_id}\n"
                      + "\n".join("    " + x for x in tail) + "\n", flush=True)
    return n


_TEST_FRAME = re.compile(r'\s*File ".*/test/(test_\w+\.py)", line (\d+), in (\w+)')


def _test_frame(msg: list[str], lines: int) -> list[str]:
    """The innermost frame in the test module itself, if the traceback's tail does not show
    it (then the tail is all inside the library: this line says which test call got there)."""
    for i in range(len(msg) - 1, -1, -1):
        m = _TEST_FRAME.match(msg[i])
        if m:
            if i >= len(msg) - lines:
                return []
            code = msg[i + 1].strip() if i + 1 < len(msg) else ""
            return [f"(test frame: {m.group(1)}:{m.group(2)} in {m.group(3)}: {code})", "..."]
    return []


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
    for line in stale(results):
        print(f"note: stale expectation? {line}", flush=True)
    if stubs:
        print("\nTOML stubs for the unexcused tests:\n\n" + "\n".join(stubs), flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the requested suites and modes; write the report; optionally check."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for name in [*SUITES, *cpython_suite.suite_names()]:
            expectations.load(name)  # fail fast on a malformed expectations file
    except expectations.ExpectationsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    out_json = args.output / "results.json"
    # A report written elsewhere (CI, partial runs) starts from the committed one, so it shows
    # every mode and suite side by side; the committed files are only written on purpose.
    merged = report.load_results(out_json if out_json.exists() else HERE / "results.json")
    command = "python compat_matrix/run_suites.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    merged["header"] = report.header()
    all_results: list[ModeResult] = []
    runs = [(n, *(report_from_cache if args.report_only else run_suite)(n, args))
            for n in args.suites if n in SUITES]
    cpython = [n for n in args.suites if cpython_suite.is_cpython(n)]
    runs += run_cpython(cpython, args) if cpython else []
    for name, entry, results in runs:
        old = merged["suites"].get(name, {})
        entry["packages"] = entry.get("packages") or old.get("packages", {})
        # Modes run before (another invocation, another cache) keep their rows.
        entry["modes"] = {m: entry["modes"].get(m) or old.get("modes", {}).get(m)
                          for m in MODES if m in entry["modes"] or m in old.get("modes", {})}
        if args.report_only:
            entry["run"] = dict(old.get("run", {}))
            entry["prepare_seconds"] = old.get("prepare_seconds")
            for r in results:  # a cached run the report has not seen yet: say where it came from
                seen = entry["run"].get(r.mode, {}).get("at") or ""
                if r.status != "not-run" and (r.started or "") > seen:
                    entry["run"][r.mode] = {
                        "at": r.started, "command": "an earlier run of python compat_matrix/"
                        f"run_suites.py --suite {name} --modes ..., read back by: {command}"}
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
    order = [*SUITES, *cpython_suite.suite_names()]
    merged["suites"] = dict(sorted(merged["suites"].items(),
                                   key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    js, md = report.write(merged, args.output)
    _log(f"wrote {md} and {js} ({time.monotonic() - start:.0f} s total)")
    if args.stale:
        found = stale(all_results)
        print("\n".join(found) or "no stale expectations", flush=True)
    if args.explain:
        _log(f"explain: {explain(all_results)} unexpected failure(s)")
    if not args.check:
        return 2 if any(r.status == "not-run" for r in all_results) else 0
    problems = check(all_results)
    for p in problems:
        print(f"CHECK: {p}", flush=True)
    _log(f"check: {len(problems)} problem(s) in modes {', '.join(args.modes)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
