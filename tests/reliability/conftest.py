"""Reliability probes: sockets-API cases run in greenlets of the main thread's hub;
patched-socket cases run scenario files (``scenarios/``) in fresh interpreters."""

from __future__ import annotations

import os
import socket as stdsocket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import reseau_patch.sockets  # noqa: F401 - selects the Reseau loop for this thread's hub

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="session", autouse=True)
def _hub(green_hub):
    """The hub, made before the first leak-check snapshot (tests/conftest.py)."""
    return green_hub


def open_fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return out


def settle(before: dict[int, str], bound: float = 5.0) -> dict[int, str]:
    """Let the hub run (bounded) until no fd opened since ``before`` is left; the rest."""
    import gevent

    deadline = time.monotonic() + bound
    while True:
        gevent.sleep(0.01)
        extra = {fd: t for fd, t in open_fds().items() if before.get(fd) != t}
        if not extra or time.monotonic() > deadline:
            return extra


@contextmanager
def full_backlog(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, int]]:
    """A listener whose queue is full: further SYNs are dropped, connects hang (loopback)."""
    lst = stdsocket.socket()
    lst.bind((host, port))
    lst.listen(0)
    fillers = []
    try:
        for _ in range(3):
            f = stdsocket.socket()
            f.setblocking(False)
            f.connect_ex(lst.getsockname())
            fillers.append(f)
        time.sleep(0.05)
        yield lst.getsockname()
    finally:
        for f in fillers:
            f.close()
        lst.close()


@contextmanager
def silent_server() -> Iterator[tuple[str, int]]:
    """A listener that completes TCP handshakes (kernel backlog) and never says a word:
    a TLS client hangs in its handshake against it."""
    lst = stdsocket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(128)
    try:
        yield lst.getsockname()
    finally:
        lst.close()


def run_scenario(name: str, *args: str, patched: bool = True, timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``scenarios/<name>`` (under ``python -m reseau_patch run`` when ``patched``);
    fail with its output unless it exits 0."""
    script = str(SCENARIOS / name)
    cmd = ([sys.executable, "-m", "reseau_patch", "run", script, *args] if patched
           else [sys.executable, script, *args])
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


class Tools:
    """The helpers above, handed to tests as the ``tools`` fixture (importlib mode: test
    files cannot import this conftest)."""

    ROOT = ROOT
    SCENARIOS = SCENARIOS
    open_fds = staticmethod(open_fds)
    settle = staticmethod(settle)
    full_backlog = staticmethod(full_backlog)
    silent_server = staticmethod(silent_server)
    run_scenario = staticmethod(run_scenario)


@pytest.fixture
def tools() -> type[Tools]:
    return Tools
