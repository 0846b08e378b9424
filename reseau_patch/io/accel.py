"""Compiled hot paths: swap a module's names for those of its Cython-compiled twin.

The loop's hot modules (``io/event_loop.py``, ``io/poller.py``, ``hub/watchers.py``,
``hub/callbacks.py``) are plain Python. ``pip install -e .`` also compiles each of them with
Cython (pure-Python mode, typing in the ``.pxd`` beside it) into an extension with its own
name, e.g. ``reseau_patch.io._event_loop_c``. The ``.py`` module calls
:func:`import_c_accel` as its last statement: that copies the extension's globals over its
own, so every importer gets the compiled classes (gevent's ``_util.import_c_accel`` scheme).

Pure-Python mode: ``RESEAU_PATCH_PURE_PYTHON=1`` (or gevent's ``PURE_PYTHON=1``) in the
environment before the first import keeps the ``.py`` code. A missing or broken extension
(no compiler at install time) falls back to it silently. :func:`compiled_modules` tells
which is in use. No gevent import here: this module belongs to io/.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["compiled_modules", "import_c_accel", "pure_python_requested"]

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

#: module name -> True when its compiled twin is in use (filled as modules import).
_state: dict[str, bool] = {}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def pure_python_requested() -> bool:
    """True when the environment asks for the pure-Python modules."""
    return _truthy(os.environ.get("RESEAU_PATCH_PURE_PYTHON")) or \
        _truthy(os.environ.get("PURE_PYTHON"))


def import_c_accel(globs: dict[str, Any], cname: str) -> None:
    """Replace ``globs`` (a module's globals) with those of the compiled module ``cname``.

    A no-op inside the compiled module itself, in pure-Python mode, or when ``cname``
    cannot be imported (not built): the caller then stays pure Python.
    """
    name = globs.get("__name__")
    if not name or name == cname:
        return
    if pure_python_requested():
        _state[name] = False
        return
    try:
        mod = importlib.import_module(cname)
    except ImportError:
        # Not built (no compiler, or a failed build) or built for another Python.
        _state[name] = False
        return
    for key, value in mod.__dict__.items():
        if key not in _KEEP:
            globs[key] = value
    _state[name] = True


def compiled_modules() -> dict[str, bool]:
    """``{hot module: compiled twin in use}`` for every hot module (imports them)."""
    for name in ACCELERATED:
        if name not in _state:
            try:
                importlib.import_module(name)
            except ImportError:  # hub/ without gevent installed: cannot be in use
                _state.setdefault(name, False)
    return {name: _state.get(name, False) for name in ACCELERATED}
