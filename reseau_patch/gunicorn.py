"""gunicorn worker: ``gunicorn -k reseau_patch.gunicorn.Worker app:app -w N``.

Each worker process calls ``reseau_patch.patch_all()`` before the app loads, then serves
every gunicorn listener with :class:`reseau_patch.server.WSGIServer` (on a dup of the
listener the arbiter bound before forking). gunicorn's arbiter is the process manager.

Settings honoured: ``--worker-connections`` (a pool per listener: accepting waits while it
is full), ``--keep-alive`` (idle timeout between requests; 0 closes after each response),
``--timeout`` (heartbeat at least every ``min(1, timeout/2)`` s), ``--max-requests``
(+ jitter: the worker stops accepting after that many responses and exits gracefully),
``--graceful-timeout`` (SIGTERM: stop accepting, end idle keep-alive connections, let
in-flight requests finish for that long), certfile/keyfile (TLS through our engine),
``--access-logfile``/``--access-logformat``, ``--limit-request-line``/``-fields``.

Nothing here imports gevent at module level: the arbiter imports this class before it
forks, and must stay unpatched.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gunicorn.workers.base import Worker as _BaseWorker

__all__ = ["Worker"]


class Worker(_BaseWorker):
    """A gunicorn worker running :class:`~reseau_patch.server.WSGIServer` on our stack."""

    def init_process(self) -> None:
        import reseau_patch

        reseau_patch.patch_all()
        from gevent.event import Event

        self._wakeup = Event()
        super().init_process()

    # Signal handlers run in whatever greenlet is current; blocking work (sys.exit in
    # handle_quit, file reopening) moves to its own greenlet, as gunicorn's gevent worker does.
    def handle_quit(self, sig: int, frame: Any) -> None:
        import gevent

        gevent.spawn(super().handle_quit, sig, frame)

    def handle_usr1(self, sig: int, frame: Any) -> None:
        import gevent

        gevent.spawn(super().handle_usr1, sig, frame)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self._wakeup.set()  # Event.set from a signal handler only schedules a callback

    def _request_done(self) -> None:
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self._wakeup.set()

    def _access(self, environ: dict, status: str, headers: list, length: int,
                seconds: float) -> None:
        """gunicorn's access log (``--access-logfile``, ``--access-logformat``)."""
        from datetime import timedelta
        from types import SimpleNamespace

        resp = SimpleNamespace(status=status, headers=headers, sent=length)
        req_headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items()
                       if k.startswith("HTTP_")]
        self.log.access(resp, req_headers, environ, timedelta(seconds=seconds))

    def _heartbeat(self) -> float:
        return max(0.05, min(1.0, self.cfg.timeout / 2.0)) if self.cfg.timeout else 1.0

    def notify(self) -> None:
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    def _servers(self) -> list:
        from gevent.pool import Pool
        from gunicorn.http.wsgi import base_environ

        from .server import WSGIServer

        ssl_kw: dict[str, Any] = {}
        if self.cfg.is_ssl:
            from gunicorn.sock import ssl_context

            ssl_kw["ssl_context"] = ssl_context(self.cfg)
        keepalive = self.cfg.keepalive
        servers = []
        for listener in self.sockets:
            environ = base_environ(self.cfg)
            environ["wsgi.multithread"] = True  # greenlets: requests run concurrently
            environ["SERVER_SOFTWARE"] = "reseau_patch gunicorn"
            server = WSGIServer(listener.sock, self.wsgi, backlog=self.cfg.backlog,
                                spawn=Pool(self.cfg.worker_connections), environ=environ,
                                keepalive=keepalive > 0,
                                idle_timeout=keepalive if keepalive > 0 else 1.0,
                                max_headers=self.cfg.limit_request_fields or 100,
                                max_url_size=self.cfg.limit_request_line or 16384,
                                on_request=self._request_done,
                                access_log=self._access if self.log.access_log_enabled
                                else None, **ssl_kw)
            servers.append(server)
        return servers

    def run(self) -> None:
        import gevent

        servers = self._servers()
        for server in servers:
            server.start()
        beat = self._heartbeat()
        try:
            while self.alive:
                self.notify()
                self._wakeup.wait(beat)
                self._wakeup.clear()
            # Graceful: stop accepting, end idle keep-alive connections, let the rest
            # finish within --graceful-timeout, heartbeating meanwhile.
            stoppers = [gevent.spawn(s.stop, self.cfg.graceful_timeout) for s in servers]
            while not all(g.dead for g in stoppers):
                self.notify()
                gevent.joinall(stoppers, timeout=beat)
        finally:
            for server in servers:
                server.close()
