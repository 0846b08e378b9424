"""Hub tests: raw ReseauLoop objects, and gevent's hub of the main thread on the Reseau loop."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reseau_patch.hub import LOOP_PATH, use_reseau_loop

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10.0  # upper bound for any single wait in these tests


@pytest.fixture(scope="session", autouse=True)
def _hub():
    """The main thread's hub on the Reseau loop, created once before leak snapshots."""
    use_reseau_loop()
    import gevent

    hub = gevent.get_hub()
    yield hub


@pytest.fixture
def loop() -> Iterator[object]:
    """A fresh non-default ReseauLoop, destroyed afterwards (no hub involved)."""
    from reseau_patch.hub.loop import ReseauLoop

    lp = ReseauLoop(default=False)
    try:
        yield lp
    finally:
        lp.destroy()


@pytest.fixture
def no_greenlet_leaks() -> Iterator[None]:
    """Fail if the test leaves a live (started, unfinished) gevent Greenlet behind."""
    import gevent

    def live() -> set[int]:
        gc.collect()
        return {id(g) for g in gc.get_objects()
                if isinstance(g, gevent.Greenlet) and g and not g.dead}

    before = live()
    yield
    gevent.sleep(0)
    leaked = live() - before
    assert not leaked, f"{len(leaked)} greenlet(s) still alive after the test"


def run_python(code: str, *, loop: str | None = LOOP_PATH, timeout: float = 60.0,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (``GEVENT_LOOP`` preset), bounded by ``timeout``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p)
    full_env.pop("GEVENT_LOOP", None)
    if loop:
        full_env["GEVENT_LOOP"] = loop
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)
