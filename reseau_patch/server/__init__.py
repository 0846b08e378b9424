"""Green servers over Reseau channels: :class:`StreamServer` (gevent's API), a PEP 3333
:class:`WSGIServer`, and (in :mod:`reseau_patch.gunicorn`) a gunicorn worker.

Names load on first use, so importing the package needs neither the server's optional
dependency (httptools) nor a loop. (gevent's own servers are moved onto the patched socket by
``patch_all`` itself: :mod:`reseau_patch.patch.gevent_servers`.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadRequestBody", "RequestTooLarge", "SocketAdapter", "StreamServer", "WSGIServer"]

_WHERE = {"StreamServer": ".stream", "WSGIServer": ".wsgi", "RequestTooLarge": ".body",
          "BadRequestBody": ".body",
          "SocketAdapter": ".socket_adapter"}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
