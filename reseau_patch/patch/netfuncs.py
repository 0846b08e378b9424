"""Module-level ``socket`` functions for the patched module.

``create_connection`` keeps the stdlib's signature and errors (``source_address``,
``all_errors`` → ``ExceptionGroup``); it runs on the patched ``socket``/``getaddrinfo``.
"""

from __future__ import annotations

import socket as _stdsocket
from typing import Any

__all__ = ["create_connection"]

_stdlib_create_connection = _stdsocket.create_connection
_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT


def create_connection(address: tuple[str, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: Any = None, *, all_errors: bool = False) -> Any:
    """Connect to ``address`` (host, port) and return the connected socket."""
    return _stdlib_create_connection(address, timeout, source_address, all_errors=all_errors)
