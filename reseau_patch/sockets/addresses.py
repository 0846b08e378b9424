"""Address values of the Sockets surface: the stdlib ``ipaddress`` types plus ``InetAddr``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..io.socket import check_port

__all__ = ["IPAddr", "InetAddr", "ip", "sockaddr_to_inetaddr"]

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip(text: str | IPAddr) -> IPAddr:
    """Parse an IPv4 or IPv6 literal; ``ValueError`` naming ``text`` otherwise."""
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return text
    if not isinstance(text, str):
        raise TypeError(f"ip() expects a str, got {type(text).__name__} {text!r}")
    return ipaddress.ip_address(text)


@dataclass(frozen=True)
class InetAddr:
    """An IP address and a TCP port."""

    host: IPAddr
    port: int

    def __init__(self, host: str | IPAddr, port: int) -> None:
        object.__setattr__(self, "host", ip(host))
        object.__setattr__(self, "port", check_port(port))

    def sockaddr(self) -> tuple:
        """The tuple ``_socket`` wants for this address."""
        if self.host.version == 6:
            return (str(self.host), self.port, 0, 0)
        return (str(self.host), self.port)

    def __str__(self) -> str:
        if self.host.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def sockaddr_to_inetaddr(addr: object) -> tuple[IPAddr, int] | str:
    """``(ip_address, port)`` for an IP sockaddr, the path for a unix one."""
    if isinstance(addr, tuple):
        return ip(addr[0].split("%", 1)[0]), addr[1]
    if isinstance(addr, bytes):
        return addr.decode("utf-8", "surrogateescape")
    return addr  # type: ignore[return-value]
