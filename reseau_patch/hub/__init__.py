"""The greenlet-aware hub: gevent's loop implemented on :mod:`reseau_patch.io`.

Select it with ``GEVENT_LOOP=reseau_patch.hub.loop.ReseauLoop`` (:data:`LOOP_PATH`) or by
calling :func:`use_reseau_loop` before gevent creates a hub. This package is imported
while ``gevent`` itself is being imported, so nothing here imports ``gevent.hub`` eagerly.
"""

from .selection import LOOP_PATH, RESOLVER_PATH, use_reseau_loop

__all__ = ["LOOP_PATH", "RESOLVER_PATH", "use_reseau_loop"]
