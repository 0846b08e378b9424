"""Compiled hot paths: swap a module's names for those of its Cython-compiled twin.

The loop's hot modules (``io/poller.py``, ``io/event_loop.py``, ``hub/io_watcher.py``,
``hub/callbacks.py``) are plain Python (the compiled poller alone adds C of its own: its
``epoll_wait``, in ``_poller_c.pxd``).
``pip install -e .`` also compiles each with Cython (pure-Python mode, typing in the ``.pxd``
beside it, named after the extension) into an extension with its own name, e.g.
``reseau_patch.io._event_loop_c``. The ``.py`` module calls
:func:`import_c_accel` as its last statement: that copies the extension's globals over its
own, so every importer gets the compiled classes (gevent's ``_util.import_c_accel`` scheme).

Pure-Python mode: ``RESEAU_PATCH_PURE_PYTHON=1`` (or gevent's ``PURE_PYTHON=1``) in the
environment before the first import keeps the ``.py`` code. A missing or broken extension
(no compiler at install time) falls back to it silently, and so does one older than its
``.py`` or ``.pxd`` (edited since the last ``pip install -e .``): stale compiled code must
never run in place of the source you read. All modules swap or none do. :func:`status`
tells which is in use (``reseau_patch.compiled()`` imports every hot module first). No
gevent import here: io/.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from typing import Any

__all__ = ["ACCELERATED", "build_problem", "import_c_accel", "pure_python_requested", "status"]

#: The hot module -> its compiled twin (setup.py builds exactly these). All or none are
#: used: a compiled module makes C calls into the compiled types of the ones before it.
ACCELERATED = {
    "reseau_patch.io.poller": "reseau_patch.io._poller_c",
    "reseau_patch.io.event_loop": "reseau_patch.io._event_loop_c",
    "reseau_patch.hub.io_watcher": "reseau_patch.hub._io_watcher_c",
    "reseau_patch.hub.callbacks": "reseau_patch.hub._callbacks_c",
}

# Module identity stays the pure module's: only the code and the objects it defines swap.
_KEEP = frozenset({"__name__", "__qualname__", "__file__", "__cached__", "__loader__",
                   "__spec__", "__package__", "__path__", "__builtins__", "__doc__"})
#: The folder holding the top-level package (reseau_patch/..).
_BASE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: module name -> how it runs: "compiled", or "pure: <why>" (filled as modules import).
_state: dict[str, str] = {}
#: Why every hot module stays pure ("" = none so far); decided at the first hot import.
_why_pure: str | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def pure_python_requested() -> bool:
    """True when the environment asks for the pure-Python modules."""
    return _truthy(os.environ.get("RESEAU_PATCH_PURE_PYTHON")) or \
        _truthy(os.environ.get("PURE_PYTHON"))


def _extension_file(cname: str, base: str) -> str | None:
    stem = os.path.join(base, *cname.split("."))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(stem + suffix):
            return stem + suffix
    return None


def build_problem(accelerated: dict[str, str] = ACCELERATED, base: str = _BASE) -> str | None:
    """Why the compiled twins cannot be used (one missing, or older than its ``.py`` or
    ``.pxd``: edited since the last ``pip install -e .``), or None when all are usable."""
    for name, cname in accelerated.items():
        ext = _extension_file(cname, base)
        if ext is None:
            return f"{cname} not built (no compiler or Cython at install time?)"
        built = os.path.getmtime(ext)
        for src in (os.path.join(base, *name.split(".")) + ".py",
                    os.path.join(base, *cname.split(".")) + ".pxd"):
            if os.path.exists(src) and os.path.getmtime(src) > built:
                return (f"{cname} is older than {os.path.basename(src)} "
                        "(run pip install -e . again)")
    return None


def import_c_accel(globs: dict[str, Any], cname: str) -> None:
    """Replace ``globs`` (a module's globals) with those of the compiled module ``cname``.

    A no-op inside the compiled module itself, in pure-Python mode, or when any compiled
    twin is missing, stale or fails to import: the caller then stays pure Python.
    """
    global _why_pure
    name = globs.get("__name__")
    if not name or name == cname:
        return
    if pure_python_requested():
        _state[name] = "pure: requested (RESEAU_PATCH_PURE_PYTHON / PURE_PYTHON)"
        return
    if _why_pure is None:
        _why_pure = build_problem() or ""
    if not _why_pure:
        try:
            mod = importlib.import_module(cname)
        except ImportError as exc:  # built for another Python, or a broken build
            _why_pure = f"{cname} failed to import ({exc})"
    if _why_pure:
        _state[name] = f"pure: {_why_pure}"
        return
    for key, value in mod.__dict__.items():
        if key not in _KEEP:
            globs[key] = value
    _state[name] = "compiled"


def status() -> dict[str, str]:
    """``{hot module: "compiled" | "pure: <why>" | "not imported"}``."""
    return {name: _state.get(name, "not imported") for name in ACCELERATED}
