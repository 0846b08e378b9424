"""Compiled hot paths: swap a module's names for those of its Cython-compiled twin.

The loop's hot modules (``io/event_loop.py``, ``io/poller.py``, ``hub/watchers.py``,
``hub/callbacks.py``) are plain Python. ``pip install -e .`` also compiles each of them with
Cython (pure-Python mode, typing in the ``.pxd`` beside it) into an extension with its own
name, e.g. ``reseau_patch.io._event_loop_c``. The ``.py`` module calls
:func:`import_c_accel` as its last statement: that copies the extension's globals over its
own, so every importer gets the compiled classes (gevent's ``_util.import_c_accel`` scheme).

Pure-Python mode: ``RESEAU_PATCH_PURE_PYTHON=1`` (or gevent's ``PURE_PYTHON=1``) in the
environment before the first import keeps the ``.py`` code. A missing or broken extension
(no compiler at install time) falls back to it silently, and so does one older than its
``.py`` or ``.pxd`` (edited since the last ``pip install -e .``): stale compiled code must
never run in place of the source you read. :func:`status` tells which is in use
(``reseau_patch.compiled()`` imports every hot module first). No gevent import here: io/.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

__all__ = ["ACCELERATED", "import_c_accel", "pure_python_requested", "status"]

#: The hot module -> its compiled twin (setup.py builds exactly these).
ACCELERATED = {
    "reseau_patch.io.poller": "reseau_patch.io._poller_c",
    "reseau_patch.io.event_loop": "reseau_patch.io._event_loop_c",
    "reseau_patch.hub.callbacks": "reseau_patch.hub._callbacks_c",
    "reseau_patch.hub.watchers": "reseau_patch.hub._watchers_c",
}

# Module identity stays the pure module's: only the code and the objects it defines swap.
_KEEP = frozenset({"__name__", "__qualname__", "__file__", "__cached__", "__loader__",
                   "__spec__", "__package__", "__path__", "__builtins__", "__doc__"})

#: module name -> how it runs: "compiled", or "pure: <why>" (filled as modules import).
_state: dict[str, str] = {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def pure_python_requested() -> bool:
    """True when the environment asks for the pure-Python modules."""
    return _truthy(os.environ.get("RESEAU_PATCH_PURE_PYTHON")) or \
        _truthy(os.environ.get("PURE_PYTHON"))


def _stale(origin: str, globs: dict[str, Any], cname: str) -> bool:
    """True when the built extension is older than the ``.py`` or ``.pxd`` it came from."""
    built = os.path.getmtime(origin)
    sources = [globs.get("__file__") or "",
               os.path.join(os.path.dirname(origin), cname.rpartition(".")[2] + ".pxd")]
    return any(os.path.exists(src) and os.path.getmtime(src) > built for src in sources)


def import_c_accel(globs: dict[str, Any], cname: str) -> None:
    """Replace ``globs`` (a module's globals) with those of the compiled module ``cname``.

    A no-op inside the compiled module itself, in pure-Python mode, or when ``cname`` is
    not built or stale: the caller then stays pure Python.
    """
    name = globs.get("__name__")
    if not name or name == cname:
        return
    if pure_python_requested():
        _state[name] = "pure: requested (RESEAU_PATCH_PURE_PYTHON / PURE_PYTHON)"
        return
    spec = importlib.util.find_spec(cname)
    if spec is None or not spec.origin:
        _state[name] = "pure: not built (no compiler or Cython at install time?)"
        return
    if _stale(spec.origin, globs, cname):
        _state[name] = "pure: build older than the source (run pip install -e . again)"
        return
    try:
        mod = importlib.import_module(cname)
    except ImportError as exc:  # built for another Python, or a broken build
        _state[name] = f"pure: compiled module failed to import ({exc})"
        return
    for key, value in mod.__dict__.items():
        if key not in _KEEP:
            globs[key] = value
    _state[name] = "compiled"


def status() -> dict[str, str]:
    """``{hot module: "compiled" | "pure: <why>" | "not imported"}``."""
    return {name: _state.get(name, "not imported") for name in ACCELERATED}
