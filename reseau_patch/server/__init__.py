"""Green servers over Reseau channels: :class:`StreamServer` (gevent's API), a PEP 3333
:class:`WSGIServer`, and (in :mod:`reseau_patch.gunicorn`) a gunicorn worker.

Importing this package selects the Reseau loop for this thread's hub (through
:mod:`reseau_patch.sockets`).
"""

from .stream import StreamServer
from .wsgi import RequestTooLarge, WSGIServer

__all__ = ["RequestTooLarge", "StreamServer", "WSGIServer"]
