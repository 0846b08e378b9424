"""``when_imported(name, fn)``: run ``fn(module)`` once the module exists, now or at its import.

Contract: ``fn`` runs exactly once per module object, in the importing thread, right after
the module's body ran (before ``import`` returns to the importer). Used to adapt third-party
modules (trio, urllib3) whatever the order of ``patch_all()`` and their import.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

_hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
_lock = threading.Lock()


def _run(name: str, module: ModuleType) -> None:
    done = module.__dict__.setdefault("__reseau_adapted__", set())
    for fn in _hooks.get(name, ()):
        if fn not in done:
            done.add(fn)
            fn(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, name: str, inner: Any) -> None:
        self._name = name
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _run(self._name, module)

    def __getattr__(self, attr: str) -> Any:  # get_source, is_package, ... for tools
        return getattr(self._inner, attr)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:  # whoever would have found it (editable installs too)
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _Loader(fullname, spec.loader)
        return spec


_finder = _Finder()


def when_imported(name: str, fn: Callable[[ModuleType], None]) -> None:
    """Call ``fn(module)`` for ``name`` now if it is imported, else right after its import."""
    with _lock:
        _hooks.setdefault(name, [])
        if fn not in _hooks[name]:
            _hooks[name].append(fn)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    module = sys.modules.get(name)
    if module is not None:
        _run(name, module)
