"""reseau_patch: a libev/libuv-free networking stack for Python, and a gevent drop-in.

``reseau_patch.patch_all()`` is :func:`reseau_patch.patch.patch_all`; it (and
``is_patched``/``get_original``) is loaded on first use, because gevent imports
``reseau_patch.hub.loop`` while ``gevent`` itself is still importing.
"""

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["compiled", "compiled_status", "get_original", "is_patched", "patch_all"]


def compiled_status() -> dict[str, str]:
    """How each hot module of the loop runs: ``"compiled"`` (its Cython twin, built by
    ``pip install -e .``) or ``"pure: <why>"``. Imports them (and so gevent)."""
    from .io import accel

    for name in accel.ACCELERATED:
        importlib.import_module(name)
    return accel.status()


def compiled() -> bool:
    """True when every hot module of the loop runs its compiled twin (see compiled_status)."""
    return all(v == "compiled" for v in compiled_status().values())


def __getattr__(name: str) -> Any:
    if name in ("get_original", "is_patched", "patch_all"):
        from . import patch

        return getattr(patch, name)
    raise AttributeError(f"module 'reseau_patch' has no attribute {name!r}")
