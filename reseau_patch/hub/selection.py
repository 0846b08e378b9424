"""Choosing the Reseau loop for gevent: ``use_reseau_loop()`` and the dotted paths.

gevent reads its loop class once, when the hub of a thread is created
(``gevent.config.loop``; env ``GEVENT_LOOP``). Selecting afterwards silently does nothing
for the hub that already exists, so :func:`use_reseau_loop` refuses loudly instead.
"""

from __future__ import annotations

__all__ = ["LOOP_PATH", "RESOLVER_PATH", "use_reseau_loop"]

#: Value for ``GEVENT_LOOP`` / ``gevent.config.loop``.
LOOP_PATH = "reseau_patch.hub.loop.ReseauLoop"
#: Value for ``GEVENT_RESOLVER`` / ``gevent.config.resolver``.
RESOLVER_PATH: str | None = "reseau_patch.hub.resolver.Resolver"


def use_reseau_loop(resolver: bool = False) -> None:
    """Make gevent build this thread's (and later threads') hubs on the Reseau loop.

    Must run before the hub of the calling thread exists. Raises ``RuntimeError`` naming
    the loop in use when a hub with another loop already runs in this thread. Idempotent.
    ``resolver=True`` also selects the Reseau resolver (:data:`RESOLVER_PATH`); gevent
    builds a hub's resolver on first use, so this works until the hub first resolves.
    """
    import gevent
    from gevent._hub_local import get_hub_if_exists

    from .loop import ReseauLoop

    hub = get_hub_if_exists()
    if hub is not None and hub.loop is not None and not isinstance(hub.loop, ReseauLoop):
        cls = type(hub.loop)
        raise RuntimeError(
            f"a gevent hub already runs in this thread with loop "
            f"{cls.__module__}.{cls.__qualname__}; call use_reseau_loop() before anything "
            f"creates the hub (gevent.spawn, gevent.sleep, get_hub, monkey-patched I/O), or "
            f"set GEVENT_LOOP={LOOP_PATH}")
    gevent.config.loop = ReseauLoop
    if resolver and RESOLVER_PATH is not None:
        gevent.config.resolver = RESOLVER_PATH
