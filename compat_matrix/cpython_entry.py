"""Child entry point: patch, then run one CPython test module in-process with unittest.

Usage (cpython_runner.py builds this command)::

    python cpython_entry.py STATUS_JSON EVENTS_JSONL PATCHER KWARGS_JSON MODE MODULE SKIP_FILE \
        [--select PATTERN...]

Same order as mode_entry.py: the loopback guard (an audit hook refusing non-loopback connects
and datagrams), then the patch, then ``test.support`` and the module are imported. Each test
writes ``{"id", "when": "start"}`` before it runs and ``{"id", "when": "end", "outcome",
"message"}`` after, one JSON line each, flushed: the parent's watchdog reads the last start
without an end as the test that hangs. Before the first test, a ``{"id": "<plan>", "when":
"plan", "ids": [...]}`` line lists the tests this attempt will run. SKIP_FILE lists test ids
(fnmatch patterns allowed) to leave out: the exclusions, and on a restart every test an earlier
attempt already reached.
With $COMPAT_MATRIX_HANG_DUMP and $COMPAT_MATRIX_DUMP_AFTER set, faulthandler writes every
thread's stack to that file when a test runs that long, and SIGUSR2 (sent by the watchdog before
the kill) adds every suspended greenlet's stack; the parent attaches both to the hang.
Ends with ``os._exit``: a leaked non-daemon thread must not hang interpreter shutdown.
"""

import faulthandler
import fnmatch
import importlib
import json
import os
import signal as _signal
import sys
import time
import traceback
import unittest
from typing import IO

import mode_entry

MESSAGE_CHARS = 4000
PLAN_ID = "<plan>"
_ENTRY_ERROR_EXIT = mode_entry.ENTRY_ERROR_EXIT


class EventResult(unittest.TestResult):
    """Streams one start and one end event per test; one outcome per test id.

    Subtest failures make the test fail (as regrtest counts them); an error outside any test
    (setUpClass, setUpModule) is recorded under unittest's own id for it, e.g.
    ``setUpClass (test.test_x.Y)``.
    """

    def __init__(self, events: IO[str], dump: IO[str] | None = None,
                 dump_after: float = 0.0) -> None:
        super().__init__()
        self._events = events
        self._dump, self._dump_after = dump, dump_after
        self._bad: dict[str, tuple[str, str]] = {}
        self._started: dict[str, float] = {}

    def _write(self, record: dict) -> None:
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()

    def _end(self, test_id: str, outcome: str, message: str = "") -> None:
        seconds = time.monotonic() - self._started.pop(test_id, time.monotonic())
        self._write({"id": test_id, "when": "end", "outcome": outcome,
                     "message": message[-MESSAGE_CHARS:], "seconds": round(seconds, 3)})

    def startTest(self, test) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().startTest(test)
        self._started[test.id()] = time.monotonic()
        self._write({"id": test.id(), "when": "start"})
        if self._dump is not None:  # every thread's stack, just before the watchdog kills us
            self._dump.write(f"\n== {test.id()}\n")
            self._dump.flush()
            faulthandler.dump_traceback_later(self._dump_after, file=self._dump)

    def stopTest(self, test) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().stopTest(test)
        if self._dump is not None:
            faulthandler.cancel_dump_traceback_later()
        bad = self._bad.pop(test.id(), None)
        if bad is not None:
            self._end(test.id(), *bad)
        elif test.id() in self._started:
            self._end(test.id(), "passed")

    def _fail(self, test, err, outcome: str) -> None:  # type: ignore[no-untyped-def]
        text = self._exc_info_to_string(err, test)
        if test.id() not in self._started:  # class/module fixture: no start/stop around it
            self._write({"id": test.id(), "when": "start"})
            self._write({"id": test.id(), "when": "end", "outcome": outcome,
                         "message": text[-MESSAGE_CHARS:], "seconds": 0})
            return
        old = self._bad.get(test.id())
        if old is None or (old[0] == "failed" and outcome == "error"):
            self._bad[test.id()] = (outcome, text)

    def addError(self, test, err) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().addError(test, err)
        self._fail(test, err, "error")

    def addFailure(self, test, err) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().addFailure(test, err)
        self._fail(test, err, "failed")

    def addSubTest(self, test, subtest, err) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = "failed" if issubclass(err[0], test.failureException) else "error"
            self._fail(test, err, outcome)

    def addSkip(self, test, reason: str) -> None:  # noqa: N802
        super().addSkip(test, reason)
        if test.id() in self._started:
            self._bad[test.id()] = ("skipped", reason)
        else:  # setUpClass/setUpModule raised SkipTest: no start/stop around it
            self._write({"id": test.id(), "when": "start"})
            self._end(test.id(), "skipped", reason)

    def addExpectedFailure(self, test, err) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().addExpectedFailure(test, err)
        self._bad[test.id()] = ("skipped", "xfail: expected failure")

    def addUnexpectedSuccess(self, test) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        super().addUnexpectedSuccess(test)
        self._bad[test.id()] = ("failed", "unexpected success of an expectedFailure test")


def _dump_greenlets(out) -> None:  # type: ignore[no-untyped-def]
    """SIGUSR2 (the watchdog, just before a kill): every thread's and every suspended greenlet's
    stack, which faulthandler cannot see. Runs in the main thread between bytecodes."""
    import gc

    out.write("\n-- Python stacks of every thread and suspended greenlet (outermost first):\n")
    for ident, frame in sys._current_frames().items():
        out.write(f"thread {ident}:\n" + "".join(traceback.format_stack(frame)))
    greenlet = sys.modules.get("greenlet")
    for obj in gc.get_objects() if greenlet is not None else ():
        if isinstance(obj, greenlet.greenlet) and getattr(obj, "gr_frame", None) is not None:
            out.write(f"greenlet {obj!r}:\n" + "".join(traceback.format_stack(obj.gr_frame)))
    out.flush()


def _matches(test_id: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(test_id, p) for p in patterns)


def _filtered(suite: unittest.TestSuite, skip: set[str], patterns: list[str]) -> list:
    """The suite's tests, flattened, minus those to skip (a class's tests stay adjacent, so
    unittest still runs each setUpClass once)."""
    out = []
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            out += _filtered(t, skip, patterns)
        elif t.id() not in skip and not _matches(t.id(), patterns):
            out.append(t)
    return out


def _read_skip(path: str | None) -> tuple[set[str], list[str]]:
    if not path:
        return set(), []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return ({x for x in lines if "*" not in x}, [x for x in lines if "*" in x])


def _setup_support(module: str) -> None:
    """What regrtest sets before a module runs: resources (-u all minus outside network)."""
    from test import support

    try:
        from test.libregrtest.utils import ALL_RESOURCES
    except ImportError:  # layout of another CPython minor version
        from test.libregrtest.cmdline import ALL_RESOURCES  # type: ignore[no-redef]
    from cpython_suite import resources_denied

    denied = resources_denied(module)
    support.use_resources = [r for r in ALL_RESOURCES if r not in denied]
    support.verbose = 0
    support.failfast = False


def main(argv: list[str]) -> int:
    """Guard, patch, record, run the module; 0 if every test ran (whatever their outcome)."""
    status_path, events_path, patcher, kwargs_json, mode, module = argv[:6]
    skip_file = argv[6] if len(argv) > 6 else None
    keep = argv[argv.index("--select") + 1:] if "--select" in argv else []
    kwargs = json.loads(kwargs_json)
    status: dict = {"mode": mode, "patcher": patcher, "kwargs": kwargs, "python": sys.version,
                    "module": module, "loopback_guard": True}
    mode_entry.install_loopback_guard()
    try:
        mode_entry.apply_patch(patcher, kwargs)
    except BaseException as exc:  # noqa: BLE001 - any failure to patch is a mode-level error
        status["patch_error"] = f"{type(exc).__name__}: {exc}"
        status["traceback"] = traceback.format_exc()[-4000:]
        mode_entry._write_json(status_path, status)
        return mode_entry.PATCH_ERROR_EXIT
    status["patch_info"] = mode_entry.patch_info(patcher)
    mode_entry._write_json(status_path, status)

    _setup_support(module)
    skip, patterns = _read_skip(skip_file)
    dump_path = os.environ.get("COMPAT_MATRIX_HANG_DUMP")
    dump_after = float(os.environ.get("COMPAT_MATRIX_DUMP_AFTER", "0") or 0)
    dump = open(dump_path, "a", encoding="utf-8") if dump_path and dump_after > 0 else None  # noqa: SIM115
    if dump is not None:
        _signal.signal(_signal.SIGUSR2, lambda signum, frame: _dump_greenlets(dump))
    with open(events_path, "a", encoding="utf-8") as events:
        result = EventResult(events, dump, dump_after)
        try:
            mod = importlib.import_module(f"test.{module}")
            tests = unittest.defaultTestLoader.loadTestsFromModule(mod)
        except unittest.SkipTest as exc:  # ResourceDenied at import: regrtest counts a skip
            result.addSkip(_ModuleImport(module), str(exc))
            return 0
        except BaseException:  # noqa: BLE001 - an import failure is the module's one result
            result._fail(_ModuleImport(module), sys.exc_info(), "error")
            return 0
        selected = [t for t in _filtered(tests, skip, patterns)
                    if not keep or _matches(t.id(), keep)]
        # The plan lets the parent name the tests a class breaker leaves out (cpython_runner).
        events.write(json.dumps({"id": PLAN_ID, "when": "plan",
                                 "ids": [t.id() for t in selected]}) + "\n")
        events.flush()
        unittest.TestSuite(selected).run(result)
    return 0


class _ModuleImport(unittest.TestCase):
    """Stands for a module that failed to import (so the failure has an id)."""

    def __init__(self, module: str) -> None:
        super().__init__("run")
        self._module = module

    def id(self) -> str:
        return f"test.{self._module} (import)"

    def run(self, result=None):  # type: ignore[no-untyped-def]  # pragma: no cover - never run
        return None


if __name__ == "__main__":
    # compat_matrix/ is only needed for our own imports: take it off the path for the tests.
    here = sys.path.pop(0)
    sys.path.append(here)
    try:
        rc = main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - report and hard-exit, never hang in shutdown
        traceback.print_exc()
        rc = _ENTRY_ERROR_EXIT
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
