"""The third-party suites of the matrix: pinned versions and how to install their test deps.

Each suite is tested from its own sdist (both ship their tests), in a venv of its own that also
holds this project (editable), gevent/greenlet at the versions of the interpreter running the
runner, and pytest-timeout. Deviations from upstream's own dev setup are listed in ``notes`` and
copied into RESULTS.md.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class InstallContext:
    """Paths and pins an install plan is built from."""

    work_dir: Path
    repo: Path
    constraints: Path


@dataclass(frozen=True)
class Suite:
    """A pinned suite: its sdist, the pytest arguments that select its tests, its install plan."""

    name: str
    version: str
    test_args: tuple[str, ...]
    plan: Callable[[InstallContext], list[list[str]]]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dist(self) -> str:
        """The sdist's base name (``name-version``)."""
        return f"{self.name}-{self.version}"


def host_pins() -> list[str]:
    """gevent and greenlet pinned to the runner interpreter's versions (the tested ones)."""
    return [f"{name}=={metadata.version(name)}" for name in ("gevent", "greenlet")]


def _project_reqs(ctx: InstallContext) -> list[str]:
    return ["-e", str(ctx.repo), "pytest-timeout", *host_pins()]


def _dependency_group(pyproject: Path, group: str, drop: set[str]) -> list[str]:
    """Resolve a PEP 735 dependency group (with include-group) to requirement strings."""
    groups = tomllib.loads(pyproject.read_text(encoding="utf-8"))["dependency-groups"]
    out: list[str] = []
    for entry in groups[group]:
        if isinstance(entry, dict):
            out.extend(_dependency_group(pyproject, entry["include-group"], drop))
        elif _req_name(entry) not in drop:
            out.append(entry)
    return list(dict.fromkeys(out))


def _req_name(req: str) -> str:
    """The normalized project name of a requirement string."""
    name = re.match(r"\s*([A-Za-z0-9._-]+)", req)
    return re.sub(r"[-_.]+", "-", name.group(1)).lower() if name else req


def _uv_lock_constraints(lock: Path) -> list[str]:
    """``name==version`` for every index package of a uv.lock (highest if listed twice).

    Git-sourced entries (urllib3's hypercorn fork) are skipped: pip cannot reach them here.
    """
    best: dict[str, tuple[tuple[int, ...], str]] = {}
    for pkg in tomllib.loads(lock.read_text(encoding="utf-8")).get("package", []):
        if "registry" not in pkg.get("source", {}):
            continue
        version = pkg["version"]
        key = tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", version))
        if pkg["name"] not in best or key > best[pkg["name"]][0]:
            best[pkg["name"]] = (key, version)
    return [f"{name}=={v}" for name, (_, v) in sorted(best.items())]


# Maintainer tooling in urllib3's dev group that the tests do not need.
_URLLIB3_DROP = {"build", "coverage", "pytest-memray", "towncrier"}


def _urllib3_plan(ctx: InstallContext) -> list[list[str]]:
    pins = _uv_lock_constraints(ctx.work_dir / "uv.lock")
    pinned = {_req_name(p) for p in host_pins()}
    lines = [p for p in pins if _req_name(p) not in pinned] + host_pins()
    ctx.constraints.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reqs = _dependency_group(ctx.work_dir / "pyproject.toml", "dev", _URLLIB3_DROP)
    return [
        [
            "-c", str(ctx.constraints),
            f"{ctx.work_dir}[brotli,h2,socks,zstd]",
            *reqs,
            *_project_reqs(ctx),
        ]
    ]


def _requests_plan(ctx: InstallContext) -> list[list[str]]:
    ctx.constraints.write_text("\n".join(host_pins()) + "\n", encoding="utf-8")
    reqs: list[str] = []
    for raw in (ctx.work_dir / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e ."):
            reqs += ["-e", f"{ctx.work_dir}{line[len('-e .'):]}"]
        elif _req_name(line) == "httpbin":
            reqs.append("httpbin==0.10.4")  # 0.10.0 breaks on werkzeug 3
        elif _req_name(line) != "pytest-cov":
            reqs.append(line)
    # httpbin 0.10.x declares greenlet<3 on Python < 3.12; the second step puts gevent's
    # greenlet back (pip reports the conflict; httpbin does not use greenlet).
    return [reqs, ["-c", str(ctx.constraints), *_project_reqs(ctx)]]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "urllib3",
            "2.8.0",
            ("test",),
            _urllib3_plan,
            (
                "test deps: the sdist's `dev` dependency group minus build/coverage/"
                "pytest-memray/towncrier, pinned to the sdist's uv.lock; "
                "extras brotli,h2,socks,zstd",
                "hypercorn comes from the package index (uv.lock pins urllib3's git fork, which"
                " is not reachable here); every mode, plain included, runs with the same one",
            ),
        ),
        Suite(
            "requests",
            "2.34.2",
            ("tests",),
            _requests_plan,
            (
                "test deps: the sdist's requirements-dev.txt without pytest-cov, with "
                "httpbin 0.10.4 instead of ~=0.10.0 (0.10.0 breaks on werkzeug 3)",
                "httpbin pins greenlet<3 on Python < 3.12; greenlet is reinstalled at gevent's "
                "version afterwards (pip reports the conflict; httpbin does not use greenlet)",
            ),
        ),
    )
}
