"""reseau_patch: a libev/libuv-free networking stack for Python, and a gevent drop-in.

``reseau_patch.patch_all()`` is :func:`reseau_patch.patch.patch_all`; it (and
``is_patched``/``get_original``) is loaded on first use, because gevent imports
``reseau_patch.hub.loop`` while ``gevent`` itself is still importing.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["get_original", "is_patched", "patch_all"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import patch

        return getattr(patch, name)
    raise AttributeError(f"module 'reseau_patch' has no attribute {name!r}")
