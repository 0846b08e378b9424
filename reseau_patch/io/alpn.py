"""ALPN: install a protocol-specific application handler once TLS has negotiated.

:class:`AlpnHandler` is a placeholder that sits right of the TLS handler while the
handshake runs (design brief §7.3). When TLS reports success, :meth:`AlpnHandler.install`
asks the selector for the handler of the negotiated protocol and **replaces its own slot**
with one holding that handler. The placeholder grants no read window, so the TLS handler
never sends it data; TLS reports negotiation before it decrypts application data, so the
protocol handler sees every byte.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any

from .channel import Channel, ChannelHandler, ChannelSlot

__all__ = ["AlpnHandler", "AlpnSelector", "UnhandledAlpnProtocolError", "select_handler"]

#: ``{protocol: factory(channel)}`` (key ``None``: no protocol negotiated) or
#: ``selector(protocol, channel) -> handler | None``.
AlpnSelector = Mapping[str | None, Callable[[Channel], ChannelHandler]] | Callable[
    [str | None, Channel], ChannelHandler | None]


class UnhandledAlpnProtocolError(ssl.SSLError):
    """The negotiated ALPN protocol has no handler (aws-c-io's
    ``UNHANDLED_ALPN_PROTOCOL_MESSAGE``)."""


def select_handler(selector: AlpnSelector, protocol: str | None,
                   channel: Channel) -> ChannelHandler:
    """The handler ``selector`` gives for ``protocol``; raises
    :class:`UnhandledAlpnProtocolError` naming the protocol when there is none."""
    if isinstance(selector, Mapping):
        factory = selector.get(protocol)
        handler = factory(channel) if factory is not None else None
    else:
        handler = selector(protocol, channel)
    if handler is None:
        raise UnhandledAlpnProtocolError(f"no handler for ALPN protocol {protocol!r}")
    return handler


class AlpnHandler(ChannelHandler):
    """Placeholder application handler; see the module docstring."""

    def __init__(self, selector: AlpnSelector) -> None:
        self.selector = selector
        self.slot: ChannelSlot | None = None
        self.protocol: str | None = None

    def initial_window_size(self) -> int:
        return 0  # nothing may reach the placeholder

    def process_read(self, slot: ChannelSlot, msg: Any) -> None:
        msg.release()
        raise RuntimeError("AlpnHandler got data before the protocol handler was installed")

    def process_write(self, slot: ChannelSlot, msg: Any) -> None:
        raise RuntimeError("AlpnHandler cannot write: it is replaced after negotiation")

    def install(self, protocol: str | None) -> ChannelHandler:
        """Replace this placeholder with the handler for ``protocol`` (loop-only)."""
        slot = self.slot
        if slot is None:
            raise RuntimeError("AlpnHandler.install before the handler was installed")
        handler = select_handler(self.selector, protocol, slot.channel)
        self.protocol = protocol
        new = ChannelSlot(slot.channel)
        slot.replace(new)
        new.set_handler(handler)  # grants the new handler's initial window to TLS
        return handler
