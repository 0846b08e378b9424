"""Cache-backed preparation of a suite: sdist download, unpack, venv, test requirements.

Layout under the cache dir (default ``.compat_cache/`` at the repo root, git-ignored)::

    sdists/<name>-<version>.tar.gz      as pip downloaded it
    work/<name>-<version>/              the unpacked sdist; pytest runs here
    venvs/<name>-<version>-py<X.Y>/     the suite's venv; ``.installed`` holds the plan hash
    runs/<name>-<version>[-partial]/    prepare log, pip freeze, per-mode logs, JUnit, outcomes

Everything is reused across modes and runs; a changed install plan (new pins, new repo path)
re-installs into the same venv.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import time
import venv
from dataclasses import dataclass
from pathlib import Path

from suites import InstallContext, Suite


class PrepareError(RuntimeError):
    """Downloading, unpacking or installing a suite failed; the message has the log tail."""


@dataclass(frozen=True)
class Prepared:
    """A suite ready to run: its venv interpreter, checkout and run-artifact directory."""

    suite: Suite
    python: Path
    work_dir: Path
    runs_dir: Path
    seconds: float
    freeze: str


def _run_logged(cmd: list[str], log: Path, what: str, timeout: float = 1800) -> None:
    """Run ``cmd`` appending its output to ``log``; raise PrepareError with the tail on failure."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise PrepareError(f"{what} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _sdist(suite: Suite, cache: Path, log: Path) -> Path:
    sdists = cache / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    found = sorted(sdists.glob(f"{suite.dist}.tar.gz"))
    if not found:
        _run_logged(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"{suite.name}=={suite.version}", "-d", str(sdists)],
            log, f"downloading {suite.dist}",
        )
        found = sorted(sdists.glob(f"{suite.dist}.tar.gz"))
    if not found:
        raise PrepareError(f"pip download left no {suite.dist}.tar.gz in {sdists}")
    return found[0]


def _unpack(archive: Path, cache: Path, suite: Suite) -> Path:
    work = cache / "work" / suite.dist
    if (work / "PKG-INFO").exists():
        return work
    tmp = cache / "work" / f".{suite.dist}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(work, ignore_errors=True)
    (tmp / suite.dist).rename(work)
    shutil.rmtree(tmp)
    return work


def prepare(suite: Suite, cache: Path, repo: Path) -> Prepared:
    """Make ``suite`` runnable, reusing whatever the cache already holds."""
    start = time.monotonic()
    runs = cache / "runs" / suite.dist
    runs.mkdir(parents=True, exist_ok=True)
    log = runs / "prepare.log"
    log.write_text("", encoding="utf-8")
    work = _unpack(_sdist(suite, cache, log), cache, suite)

    py_tag = f"py{sys.version_info.major}.{sys.version_info.minor}"
    venv_dir = cache / "venvs" / f"{suite.dist}-{py_tag}"
    python = venv_dir / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    ctx = InstallContext(work, repo, venv_dir / "constraints.txt")
    steps = suite.plan(ctx)
    plan_hash = hashlib.sha256(
        json.dumps([steps, ctx.constraints.read_text(encoding="utf-8")]).encode()
    ).hexdigest()
    stamp = venv_dir / ".installed"
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != plan_hash:
        stamp.unlink(missing_ok=True)
        for i, step in enumerate(steps, 1):
            cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *step]
            _run_logged(cmd, log, f"{suite.dist} install step {i}/{len(steps)}")
        stamp.write_text(plan_hash, encoding="utf-8")
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=False,
    ).stdout
    (runs / "pip-freeze.txt").write_text(freeze, encoding="utf-8")
    return Prepared(suite, python, work, runs, time.monotonic() - start, freeze)
