"""The runner: a process per (workload, implementation), rounds interleaved, best + median.

Contract with workload modules (see ``README.md``): module-level ``TITLE``, ``BASELINE``,
``IMPLS``, ``METRICS`` and ``run(impl, quick, part) -> dict``; optional ``PARTS``,
``SUBJECT``, ``TARGETS``, ``HEADLINE``, ``MAX_ROUNDS``, ``TIMEOUT``, ``NOTES``. The parent
only reads that metadata; ``run`` is called in a child started by :func:`run_child` after
:func:`benchmarks.impls.prepare` patched what the implementation patches.

Order: round 1 runs every (workload, part, implementation) once, then round 2, ...; inside
a round the implementations' order rotates, so drifting load on a shared machine hits all
of them alike. "best" is the best round (load only ever makes a run slower), "median" the
median of rounds; ratios are median/median against the table's ``BASELINE``.

Noise control (``--no-pin`` turns the first off): every child of round *r* runs pinned to
one CPU (round *r* uses CPU ``r mod n``) and the peer processes it starts (``servers.py``,
the TLS server) to the others, as a client and a server on different cores of a real
machine; all of a round's children share one ``PYTHONHASHSEED``. On a 2-vCPU VM, whether
the scheduler put a client and its peer on one CPU or on two moved a process's CPU cost per
request by up to 1.7x, and the hash seed moved it by ~10 %; both are per process, so they
drowned the differences between implementations. A workload whose processes are placed
otherwise (``wrk`` and the server under test) sets ``PIN = False``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .impls import CONTROLLED_ENV, IMPLS, unavailable
from .pinning import PEER_CPUS_ENV
from .registry import WORKLOADS

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Metric:
    """One number a workload reports: what it is, its unit, and which way is better."""

    title: str
    unit: str
    higher_is_better: bool = True
    #: The workload part whose child reports it (``PARTS``); "" when there is one part.
    part: str = ""


@dataclass
class Workload:
    """A workload module's metadata, as the parent sees it."""

    name: str
    module: ModuleType

    @property
    def title(self) -> str:
        return self.module.TITLE

    @property
    def baseline(self) -> str:
        return self.module.BASELINE

    @property
    def subject(self) -> str:
        return getattr(self.module, "SUBJECT", "reseau")

    @property
    def impls(self) -> list[str]:
        return list(self.module.IMPLS)

    @property
    def metrics(self) -> dict[str, Metric]:
        return self.module.METRICS

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "PARTS", ("",)))

    def rounds(self, asked: int) -> int:
        cap = getattr(self.module, "MAX_ROUNDS", None)
        return min(asked, cap) if cap else asked

    def timeout(self, quick: bool) -> float:
        return 120.0 if quick else float(getattr(self.module, "TIMEOUT", 300.0))

    @property
    def pin(self) -> bool:
        return bool(getattr(self.module, "PIN", True))

    def impls_for(self, part: str) -> list[str]:
        """Implementations that report something in ``part`` (PART_IMPLS may narrow it)."""
        narrowed = getattr(self.module, "PART_IMPLS", {}).get(part)
        return [i for i in self.impls if narrowed is None or i in narrowed]


def label(mod: ModuleType, impl: str) -> str:
    """How a table names ``impl``: the workload's own LABELS first, then impls.IMPLS."""
    own = getattr(mod, "LABELS", {})
    return own[impl] if impl in own else IMPLS[impl].label


def missing(name: str) -> str | None:
    """Why workload ``name`` cannot run in this checkout (its REQUIRES module is not
    here, e.g. a workload folded in before the file it wraps), or None."""
    mod = importlib.import_module(WORKLOADS[name])
    need = getattr(mod, "REQUIRES", None)
    if need and importlib.util.find_spec(need) is None:
        return f"needs {need}, which is not in this checkout"
    for command in getattr(mod, "REQUIRES_COMMANDS", ()):
        if shutil.which(command) is None:
            return f"needs the {command} command (apt-get install {command})"
    return None


def impl_missing(mod: ModuleType, impl: str) -> str | None:
    """Why ``impl`` cannot run here: its package (impls.IMPLS ``requires``, or the
    workload's ``IMPL_REQUIRES``) is not installed; None when it can."""
    need = getattr(mod, "IMPL_REQUIRES", {}).get(impl)
    if need and importlib.util.find_spec(need) is None:
        return f"{need} is not installed"
    return unavailable(impl)


def load(name: str) -> Workload:
    if name not in WORKLOADS:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    mod = importlib.import_module(WORKLOADS[name])
    for attr in ("TITLE", "BASELINE", "IMPLS", "METRICS", "run"):
        if not hasattr(mod, attr):
            raise SystemExit(f"workload {name} ({mod.__file__}) has no {attr}")
    for impl in mod.IMPLS:
        if impl not in IMPLS and impl not in getattr(mod, "LABELS", {}):
            raise SystemExit(f"workload {name}: unknown implementation {impl!r} (not in "
                             "impls.IMPLS and not in the workload's LABELS)")
    if mod.BASELINE not in mod.IMPLS:
        raise SystemExit(f"workload {name}: baseline {mod.BASELINE!r} is not in IMPLS")
    return Workload(name, mod)


# ---------------------------------------------------------------------------- children
def _child_env(impl: str, seed: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED_ENV + (PEER_CPUS_ENV,)}
    if impl in IMPLS:
        env.update(IMPLS[impl].env)
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def child_settings(impl: str, cpu: int | None, seed: str | None) -> dict[str, Any]:
    """``subprocess`` keywords for a child of ``impl``: its environment (``seed`` as
    ``PYTHONHASHSEED``) and, given ``cpu``, an affinity to that CPU alone, with the other
    CPUs named in :data:`PEER_CPUS_ENV` for the peers it starts (:func:`pin_peer`). The
    harness is single-threaded: a preexec_fn is safe."""
    env = _child_env(impl, seed)
    pin = None
    if cpu is not None:
        pin = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
        others = [c for c in cpus() if c != cpu]
        if others:
            env[PEER_CPUS_ENV] = ",".join(map(str, others))
    return {"env": env, "preexec_fn": pin}


def spawn_child(workload: Workload, impl: str, quick: bool, part: str,
                cpu: int | None = None, seed: str | None = None) -> dict[str, Any]:
    """One child run, pinned to ``cpu`` (see :func:`child_settings`) with
    ``PYTHONHASHSEED`` ``seed`` when given; returns its JSON, or ``{"error": ...}`` (never
    raises)."""
    cmd = [sys.executable, "-m", "benchmarks.child", workload.name, impl, part or "-"]
    if quick:
        cmd.append("--quick")
    limit = workload.timeout(quick)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=REPO,
                              stdin=subprocess.DEVNULL, **child_settings(impl, cpu, seed))
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {limit:.0f} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        return {"error": f"exit {proc.returncode}: {lines[-1]}", "stderr": proc.stderr[-4000:]}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"no JSON line in output: {proc.stdout[-300:]!r}"}


# ---------------------------------------------------------------------------- parent side
class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        line = f"[{self.done}/{self.total} {elapsed:5.0f}s] {text}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def keep(self) -> None:
        """Leave the current line on screen (a failure)."""
        if self.tty:
            sys.stderr.write("\n")

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for mod in ("gevent", "greenlet", "uvloop", "requests", "urllib3", "reseau_patch"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001 - not installed: leave it out
            pass
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "reseau_patch", "benchmarks"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        if commit and dirty:
            commit += "+dirty"  # numbers from uncommitted code: say so
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu, "cpus": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "versions": versions, "commit": commit}


def aggregate(workload: Workload, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per implementation and metric: every round's value, best, median, ratio to baseline."""
    rows: dict[str, dict[str, Any]] = {}
    for impl in workload.impls:
        runs = samples.get(impl, [])
        ok = [r for r in runs if "error" not in r]
        entry: dict[str, Any] = {"errors": [r["error"] for r in runs if "error" in r],
                                 "skipped": impl_missing(workload.module, impl) or "",
                                 "notes": sorted({r["note"] for r in ok if r.get("note")}),
                                 "info": ok[-1]["info"] if ok else {}, "metrics": {}}
        for key, metric in workload.metrics.items():
            vals = [r["values"][key] for r in ok if key in r["values"]]
            if not vals:
                continue
            best = max(vals) if metric.higher_is_better else min(vals)
            entry["metrics"][key] = {"values": vals, "best": best,
                                     "median": statistics.median(vals)}
        rows[impl] = entry
    base = rows.get(workload.baseline, {}).get("metrics", {})
    for entry in rows.values():
        for key, m in entry["metrics"].items():
            b = base.get(key)
            if b and b["median"]:
                m["ratio"] = m["median"] / b["median"]
                m["ratio_best"] = m["best"] / b["best"]
    targets = []
    for key, (op, limit, what) in getattr(workload.module, "TARGETS", {}).items():
        m = rows.get(workload.subject, {}).get("metrics", {}).get(key)
        ratio = m.get("ratio") if m else None
        met = None if ratio is None else (ratio <= limit if op == "<=" else ratio >= limit)
        targets.append({"metric": key, "op": op, "limit": limit, "what": what,
                        "ratio": ratio, "met": met})
    return {"name": workload.name, "title": workload.title, "baseline": workload.baseline,
            "subject": workload.subject, "pinned": workload.pin,
            "impls": {i: label(workload.module, i) for i in workload.impls},
            "metrics": {k: vars(m) for k, m in workload.metrics.items()},
            "headline": list(getattr(workload.module, "HEADLINE", ())),
            "notes": getattr(workload.module, "NOTES", ""),
            "rows": rows, "targets": targets}


def cpus() -> list[int]:
    """The CPUs this process may run on, in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def run_all(names: list[str], rounds: int, quick: bool, command: str,
            pin: bool = True) -> dict[str, Any]:
    """Run ``names`` for ``rounds`` interleaved rounds; returns one result document.
    ``pin``: children pinned to one CPU per round (see the module doc)."""
    workloads = [load(n) for n in names]
    plan: list[tuple[int, Workload, str, str]] = []
    for r in range(rounds):
        for w in workloads:
            if r >= w.rounds(rounds):
                continue
            for part in w.parts:
                impls = [i for i in w.impls_for(part) if not impl_missing(w.module, i)]
                shift = r % len(impls) if impls else 0
                for impl in impls[shift:] + impls[:shift]:
                    plan.append((r, w, part, impl))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info = machine()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {w.name: {} for w in workloads}
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    progress = Progress(len(plan))
    t0 = time.monotonic()
    allowed = cpus() if pin else []
    # A seed set by the caller wins (to repeat a run); else round r's children get r + 1.
    fixed_seed = os.environ.get("PYTHONHASHSEED")
    for r, w, part, impl in plan:
        cpu = allowed[r % len(allowed)] if allowed and w.pin else None
        progress.show(f"round {r + 1}/{w.rounds(rounds)} {w.name}"
                      f"{'/' + part if part else ''} · {impl}"
                      + (f" (cpu {cpu})" if cpu is not None else ""))
        res = spawn_child(w, impl, quick, part, cpu, fixed_seed or str(r + 1))
        progress.done += 1
        if "error" in res:
            progress.show(f"{w.name}{'/' + part if part else ''} · {impl} FAILED: "
                          f"{res['error']}")
            progress.keep()
        # The parts of one round of one implementation form one sample.
        key = (w.name, impl, r)
        cur = merged.get(key)
        if cur is None:
            merged[key] = cur = {"values": {}, "note": "", "info": {}}
            samples[w.name].setdefault(impl, []).append(cur)
        if "error" in res:
            cur["error"] = res["error"]
            cur.setdefault("stderr", res.get("stderr", ""))
        else:
            cur["values"].update(res["values"])
            cur["note"] = "; ".join(n for n in (cur["note"], res["note"]) if n)
            cur["info"] = res["info"]
    progress.close()
    return {"command": command, "started": started, "seconds": time.monotonic() - t0,
            "rounds": rounds, "quick": quick, "machine": info,
            "pinned": bool(allowed), "hash_seed": fixed_seed or "round number",
            "loadavg_end": list(os.getloadavg()),
            "workloads": {w.name: aggregate(w, samples[w.name]) for w in workloads}}


def save(doc: dict[str, Any], out: Path) -> list[Path]:
    """One file per workload (so a later run of other names keeps these) + the whole run
    (replacing the previous whole-run file)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for old in out.glob("run-*.json"):
        old.unlink()  # the latest whole run only; git keeps the history
    stamp = doc["started"].replace(":", "").replace("-", "")
    whole = out / f"run-{stamp}.json"
    whole.write_text(json.dumps(doc, indent=1) + "\n")
    written.append(whole)
    for name, wl in doc["workloads"].items():
        path = out / f"{name}.json"
        part = {k: v for k, v in doc.items() if k != "workloads"}
        part["workload"] = wl
        path.write_text(json.dumps(part, indent=1) + "\n")
        written.append(path)
    return written


def load_saved(out: Path) -> list[dict[str, Any]]:
    """Every per-workload result in ``out``, in registry order."""
    docs = []
    for name in WORKLOADS:
        path = out / f"{name}.json"
        if path.exists():
            docs.append(json.loads(path.read_text()))
    return docs
