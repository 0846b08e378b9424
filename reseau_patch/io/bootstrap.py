"""Client and server bootstraps: from an address to a channel with handlers installed.

Contract (both bootstraps):

* Every callback runs on the bootstrap's loop thread.
* ``on_setup(channel, None)`` or ``on_setup(None, error)`` runs **exactly once** per
  connection; ``on_shutdown(channel, error)`` follows only after a successful setup.
* A client connect can be abandoned with :meth:`ConnectRequest.cancel`: every socket and
  timer it made is closed (resolution, each Happy Eyeballs attempt, a TLS handshake in
  progress) and ``on_setup`` is not called; a channel set up before the cancel is the
  caller's and stays open.
* The pipeline is ``SocketHandler`` → ``handler_factory(channel)`` (the application
  handler, rightmost). The application handler is installed before the first byte is read,
  so nothing is lost between connect and setup.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from .channel import Channel, ChannelHandler
from .event_loop import EventLoop, TimerHandle
from .happy_eyeballs import HappyEyeballs, HappyEyeballsConfig, Target
from .resolver import Resolver, default_resolver
from .socket import Socket, SocketDomain, SocketOptions, check_port
from .socket_handler import SocketHandler
from .tls import TlsClientSetup, TlsServerSetup
from .tls_options import TlsConnectionOptions

__all__ = ["ClientBootstrap", "ConnectRequest", "ServerBootstrap", "ServerListener",
           "ACCEPT_RESOURCE_ERRORS"]

log = logging.getLogger(__name__)

#: accept(2) errors that mean "out of a resource for now", not "the listener is broken"
#: (accept(2) ERRORS): the listener pauses and retries, as socketserver and gevent do.
ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Backoff between accept retries after a resource error: doubles from MIN to MAX (the
#: values of gevent's StreamServer), back to MIN after an accept succeeds.
ACCEPT_RETRY_MIN_S = 0.01
ACCEPT_RETRY_MAX_S = 1.0

SetupCallback = Callable[[Channel | None, BaseException | None], Any]
ShutdownCallback = Callable[[Channel, BaseException | None], Any]
HandlerFactory = Callable[[Channel], ChannelHandler]


def _build_channel(loop: EventLoop, sock: Socket, factory: HandlerFactory, back_pressure: bool,
                   on_shutdown: ShutdownCallback | None) -> Channel:
    channel = Channel(loop, back_pressure=back_pressure, on_shutdown=on_shutdown)
    channel.activate()
    handler = SocketHandler(sock)
    channel.add_handler(handler)
    channel.add_handler(factory(channel))
    channel.trigger_read()
    return channel


class ConnectRequest:
    """One client connect in progress, as returned by :meth:`ClientBootstrap.connect`.

    Owned by the loop: ``cancel()`` may be called from any thread (it posts itself).
    States: connecting (``racer`` running) → channel built, setup not reported yet (TLS
    handshake) → set up. A cancel in the first two closes what exists; in the last it
    does nothing.
    """

    __slots__ = ("loop", "cancelled", "set_up", "racer", "channel", "_user_on_setup",
                 "_user_on_shutdown")

    def __init__(self, loop: EventLoop, on_setup: SetupCallback) -> None:
        self.loop = loop
        self.cancelled = False
        self.set_up = False
        #: The Happy Eyeballs race while it runs (None before it starts and after).
        self.racer: HappyEyeballs | None = None
        #: The channel once built, until its setup is reported.
        self.channel: Channel | None = None
        self._user_on_setup = on_setup
        self._user_on_shutdown: ShutdownCallback | None = None

    def on_setup(self, channel: Channel | None, err: BaseException | None) -> None:
        """The bootstrap's (possibly TLS-wrapped) setup result: deliver once, unless
        cancelled, in which case a late channel is shut down instead."""
        self.channel = None
        if self.cancelled:
            if channel is not None:
                channel.shutdown(_cancelled_error(), abort=True)
            return
        self.set_up = True
        # Delivered once: the channel's shutdown callback keeps this request, and must not
        # keep the caller's setup closure (and what it holds) for the connection's life.
        on_setup, self._user_on_setup = self._user_on_setup, None
        if channel is not None and channel.on_shutdown == self._on_shutdown:
            # Set up: no cancel can come any more, so the channel may call the caller's
            # shutdown callback directly and this request need not live as long as it.
            channel.on_shutdown = self._user_on_shutdown
        if on_setup is not None:
            on_setup(channel, err)

    def wrap_on_shutdown(self, on_shutdown: ShutdownCallback | None) -> ShutdownCallback:
        """``on_shutdown``, then destroy a channel this request shut down because it was
        cancelled: no caller ever saw it, so nobody else will (destroy is idempotent)."""
        self._user_on_shutdown = on_shutdown
        return self._on_shutdown  # a bound method: smaller than a closure, kept per channel

    def _on_shutdown(self, channel: Channel, err: BaseException | None) -> None:
        if self._user_on_shutdown is not None:
            self._user_on_shutdown(channel, err)
        if self.cancelled:
            channel.destroy()

    def cancel(self) -> None:
        """Abandon the connect: close attempts, timers and a half-set-up channel (any
        thread; idempotent). ``on_setup`` will not run after this."""
        if not self.loop.is_loop_thread():
            self.loop.post(self.cancel)
            return
        if self.cancelled or self.set_up:
            return
        self.cancelled = True
        racer, self.racer = self.racer, None
        if racer is not None and not racer.done:
            racer.cancel()
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.shutdown(_cancelled_error(), abort=True)


def _cancelled_error() -> OSError:
    return OSError(errno.ECANCELED, "connect cancelled")


class ClientBootstrap:
    """Resolve, then race the addresses with Happy Eyeballs v2 (RFC 8305, see
    :mod:`.happy_eyeballs`); ``on_setup`` gets the winner's channel, or the error
    ``socket.create_connection`` would raise (an ``ExceptionGroup`` with ``all_errors``)."""

    def __init__(self, loop: EventLoop, *, resolver: Resolver | None = None,
                 socket_options: SocketOptions | None = None,
                 back_pressure: bool = False,
                 happy_eyeballs: HappyEyeballsConfig | None = None) -> None:
        self.loop = loop
        self.resolver = resolver or default_resolver()
        self.socket_options = socket_options or SocketOptions()
        self.back_pressure = back_pressure
        self.happy_eyeballs = happy_eyeballs or HappyEyeballsConfig()

    def connect(self, host: str, port: int, handler_factory: HandlerFactory,
                on_setup: SetupCallback, on_shutdown: ShutdownCallback | None = None, *,
                tls: TlsConnectionOptions | None = None) -> ConnectRequest:
        """Start connecting (any thread). For a unix path, pass it as ``host`` with port 0
        and ``SocketOptions(domain=LOCAL)``.

        With ``tls``, a TLS handler goes between the socket handler and the application
        handler, and ``on_setup`` runs once the handshake is done (or with its error); the
        server name defaults to ``host``. The returned request can cancel the connect.
        """
        if self.socket_options.domain is not SocketDomain.LOCAL:
            check_port(port)
        request = ConnectRequest(self.loop, on_setup)
        on_setup = request.on_setup
        on_shutdown = request.wrap_on_shutdown(on_shutdown)
        if tls is not None:
            local = self.socket_options.domain is SocketDomain.LOCAL
            setup = TlsClientSetup(tls, handler_factory, on_setup, on_shutdown,
                                   default_server_name=None if local else host)
            handler_factory, on_setup, on_shutdown = (setup.factory, setup.on_setup,
                                                      setup.on_shutdown)
        if self.loop.is_loop_thread():
            self._start(request, host, port, handler_factory, on_setup, on_shutdown)
        else:
            self.loop.post(self._start, request, host, port, handler_factory, on_setup,
                           on_shutdown)
        return request

    def connect_addresses(self, addresses: list[tuple[int, object]],
                          handler_factory: HandlerFactory, on_setup: SetupCallback,
                          on_shutdown: ShutdownCallback | None = None) -> HappyEyeballs:
        """Race an already resolved, ordered list of ``(family, sockaddr)`` (loop-only)."""
        self.loop.check_thread("ClientBootstrap.connect_addresses")
        he = self._racer(None, handler_factory, on_setup, on_shutdown)
        he.start_targets([Target(family, addr) for family, addr in addresses])
        return he

    def _racer(self, request: ConnectRequest | None, factory: HandlerFactory,
               on_setup: SetupCallback, on_shutdown: ShutdownCallback | None) -> HappyEyeballs:
        loop = self.loop

        def done(sock: Socket | None, err: BaseException | None) -> None:
            if request is not None:
                request.racer = None
                if request.cancelled:  # the race had already finished when cancel came
                    if sock is not None:
                        sock.close()
                    return
            if sock is None:
                on_setup(None, err if err is not None else OSError("no addresses to connect to"))
                return
            try:
                channel = _build_channel(loop, sock, factory, self.back_pressure, on_shutdown)
            except Exception as exc:  # noqa: BLE001 - reported through on_setup
                sock.close()
                on_setup(None, exc)
                return
            if request is not None:
                request.channel = channel  # until setup is reported (TLS: the handshake)
            on_setup(channel, None)

        he = HappyEyeballs(loop, self.socket_options, done, config=self.happy_eyeballs,
                           resolver=self.resolver)
        if request is not None:
            request.racer = he
        return he

    def _start(self, request: ConnectRequest, host: str, port: int, factory: HandlerFactory,
               on_setup: SetupCallback, on_shutdown: ShutdownCallback | None) -> None:
        if request.cancelled:
            return  # cancelled before a cross-thread start ran
        he = self._racer(request, factory, on_setup, on_shutdown)
        try:
            if self.socket_options.domain is SocketDomain.LOCAL:
                he.start_targets([Target(int(SocketDomain.LOCAL), host)])
            else:
                he.start(host, port)
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            request.racer = None
            he.cancel()
            on_setup(None, exc)


class ServerListener:
    """A listening socket and the channels it accepted.

    ``destroy(on_destroyed)`` stops accepting and closes the listener at once; it calls
    ``on_destroyed()`` only after every channel it accepted has shut down.

    Out of fds or buffers (:data:`ACCEPT_RESOURCE_ERRORS`), accepting pauses with a
    doubling backoff instead of spinning on a level-triggered readiness that accept(2)
    cannot clear; each such error is logged and passed to ``on_incoming(None, err)``, and
    accepting resumes by itself. The pending connections wait in the kernel's backlog.

    ``pause_accepting()``/``resume_accepting()`` (any thread; a call from another thread
    is posted) let the owner stop taking connections off the kernel's backlog while it has
    no room for them (a full handler pool), so that another process sharing the listening
    socket gets them. States of read interest on the listening socket:
    ``accepting`` ⇄ ``paused`` (owner), either ⇄ ``backing off`` (resource error timer);
    accepting resumes only when neither the owner's pause nor a back-off holds it.
    """

    def __init__(self, boot: ServerBootstrap, sock: Socket, factory: HandlerFactory,
                 on_incoming: SetupCallback, on_shutdown: ShutdownCallback | None) -> None:
        self.boot = boot
        self.socket = sock
        self.address = sock.local_address()
        self.factory = factory
        self.on_incoming = on_incoming
        self.on_shutdown = on_shutdown
        self.channels: set[Channel] = set()
        self._on_destroyed: Callable[[], Any] | None = None
        self.destroyed = False
        #: Set by ``listen(tls=...)``: handshakes in progress and their failures.
        self.tls_setup: TlsServerSetup | None = None
        self._retry_delay = ACCEPT_RETRY_MIN_S
        self._retry_timer: TimerHandle | None = None
        self._paused = False

    @property
    def accepting(self) -> bool:
        """True while connections are taken off the kernel's backlog (not paused by the
        owner, not backing off after a resource error, not destroyed)."""
        return not (self.destroyed or self._paused or self._retry_timer is not None)

    @property
    def paused(self) -> bool:
        """True between ``pause_accepting()`` and ``resume_accepting()``."""
        return self._paused

    def pause_accepting(self) -> None:
        """Stop accepting: new connections wait in the kernel's backlog (idempotent)."""
        loop = self.boot.loop
        if not loop.is_loop_thread():
            loop.post(self.pause_accepting)
            return
        if self._paused or self.destroyed:
            return
        self._paused = True
        self.socket.stop_accept()

    def resume_accepting(self) -> None:
        """Undo ``pause_accepting`` (idempotent); a back-off in progress still runs out."""
        loop = self.boot.loop
        if not loop.is_loop_thread():
            loop.post(self.resume_accepting)
            return
        if not self._paused:
            return
        self._paused = False
        if not self.destroyed and self._retry_timer is None:
            self.socket.start_accept(self._on_accept)

    def _on_accept(self, sock: Socket | None, err: OSError | None) -> None:
        if sock is None:
            if err is not None and err.errno in ACCEPT_RESOURCE_ERRORS:
                self._pause_accepting(err)
            self.on_incoming(None, err)
            return
        self._retry_delay = ACCEPT_RETRY_MIN_S
        try:
            channel = _build_channel(self.boot.loop, sock, self.factory,
                                     self.boot.back_pressure, self._channel_shutdown)
        except Exception as exc:  # noqa: BLE001 - reported through on_incoming
            sock.close()
            self.on_incoming(None, exc)
            return
        self.channels.add(channel)
        self.on_incoming(channel, None)

    def _pause_accepting(self, err: OSError) -> None:
        delay = self._retry_delay
        self._retry_delay = min(ACCEPT_RETRY_MAX_S, delay * 2)
        log.warning("accept on %s failed (%s); retrying in %.2f s", self.address, err, delay)
        self.socket.stop_accept()
        if self._retry_timer is None:
            self._retry_timer = self.boot.loop.call_later(delay, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._retry_timer = None
        if not self.destroyed and not self._paused:
            self.socket.start_accept(self._on_accept)

    def _channel_shutdown(self, channel: Channel, err: BaseException | None) -> None:
        self.channels.discard(channel)
        if self.on_shutdown is not None:
            self.on_shutdown(channel, err)
        channel.destroy()
        self._maybe_destroyed()

    def _maybe_destroyed(self) -> None:
        if self.destroyed and not self.channels and self._on_destroyed is not None:
            cb, self._on_destroyed = self._on_destroyed, None
            cb()

    def destroy(self, on_destroyed: Callable[[], Any] | None = None) -> None:
        """Stop accepting and close the listener (any thread); see the class docstring."""
        loop = self.boot.loop
        if not loop.is_loop_thread():
            loop.post(self.destroy, on_destroyed)
            return
        if self.destroyed:
            return
        self.destroyed = True
        self._on_destroyed = on_destroyed or (lambda: None)
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self.tls_setup is not None:
            self.tls_setup.abort_pending()  # not handed out yet: nobody else closes them
        self.socket.stop_accept()
        self.socket.close()
        loop.call_soon(self._maybe_destroyed)


class ServerBootstrap:
    """Bind, listen with ``backlog``, accept, and build a channel per connection."""

    def __init__(self, loop: EventLoop, *, socket_options: SocketOptions | None = None,
                 backlog: int = 511, back_pressure: bool = False) -> None:
        self.loop = loop
        self.socket_options = socket_options or SocketOptions()
        self.backlog = backlog
        self.back_pressure = back_pressure

    def listen(self, address: object, handler_factory: HandlerFactory,
               on_incoming: SetupCallback, on_shutdown: ShutdownCallback | None = None, *,
               tls: TlsConnectionOptions | None = None) -> ServerListener:
        """Bind and listen now (loop-only); raises the bind/listen ``OSError`` directly.

        ``address`` may also be a :class:`Socket` already bound by the caller. With
        ``tls``, ``on_incoming`` runs only for connections whose handshake succeeded;
        failed handshakes are kept in ``listener.tls_setup.handshake_errors``.
        """
        self.loop.check_thread("ServerBootstrap.listen")
        tls_setup = None
        if tls is not None:
            tls_setup = TlsServerSetup(tls, handler_factory, on_incoming, on_shutdown)
            handler_factory, on_incoming, on_shutdown = (tls_setup.factory,
                                                         tls_setup.on_setup,
                                                         tls_setup.on_shutdown)
        if isinstance(address, Socket):
            sock = address
        else:
            sock = Socket(self.loop, self.socket_options)
        try:
            if not isinstance(address, Socket):
                sock.bind(address)
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        listener = ServerListener(self, sock, handler_factory, on_incoming, on_shutdown)
        listener.tls_setup = tls_setup
        sock.start_accept(listener._on_accept)
        return listener
