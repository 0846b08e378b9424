"""DNS and interface helpers of the Sockets surface (PRD §3E).

Every lookup blocks only the calling greenlet: it goes through the io resolver (cached,
single-flight, ``getaddrinfo`` on worker threads) and parks until the answer comes back on
this thread's hub loop. Name-service failures raise :class:`DNSError`, a
``socket.gaierror`` that also carries the host and the ``EAI_*`` code.
"""

from __future__ import annotations

import _socket
import ctypes
import ipaddress
import os
import sys
from collections.abc import Callable
from typing import Any

from ..io.event_loop import EventLoop
from ..io.resolver import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    BaseResolver,
    DNSError,
    default_resolver,
    find_system_resolver,
)
from .addresses import IPAddr
from .parking import Parker, current_io_loop

__all__ = [
    "DNSError",
    "getaddrinfo",
    "getalladdrinfo",
    "getipaddr",
    "getipaddrs",
    "getnameinfo",
    "islinklocaladdr",
]

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
_EAI_NONAME = getattr(_socket, "EAI_NONAME", -2)


def _wait(what: str, start: Callable[[EventLoop, Callable[[Any, BaseException | None], None]],
                                     None]) -> Any:
    """Run ``start(loop, done)`` and park this greenlet until ``done`` is called."""
    loop = current_io_loop()
    parker = Parker(what, "resolve")
    box: list[tuple[Any, BaseException | None]] = []

    def done(value: Any, err: BaseException | None) -> None:
        box.append((value, err))
        parker.wake()

    start(loop, done)
    if not box:
        parker.park(loop, None)
    value, err = box[0]
    if err is not None:
        raise err
    return value


def _host_text(host: object) -> str:
    if isinstance(host, (IPv4Address, IPv6Address)):
        return str(host)
    if not isinstance(host, str):
        raise TypeError(f"host must be a str or an ip address, got {type(host).__name__} "
                        f"{host!r}")
    return host


def _family(kind: object) -> int:
    if kind is None:
        return AF_UNSPEC
    if kind is IPv4Address or kind == AF_INET:
        return AF_INET
    if kind is IPv6Address or kind == AF_INET6:
        return AF_INET6
    raise TypeError(f"address kind must be IPv4Address, IPv6Address or None, got {kind!r}")


def getalladdrinfo(host: str | IPAddr, *, resolver: BaseResolver | None = None) -> list[IPAddr]:
    """Every address of ``host`` (both families, in the system's order)."""
    name = _host_text(host)
    res = resolver or default_resolver()
    addrs = _wait(name, lambda loop, done: res.lookup(loop, name, AF_UNSPEC, done))
    return [a.ip for a in addrs]


def getaddrinfo(host: str | IPAddr, family: type | int | None = IPv4Address, *,
                resolver: BaseResolver | None = None) -> IPAddr:
    """The first address of ``host`` of ``family`` (``IPv4Address`` by default, as the
    stdlib ``Sockets.getaddrinfo`` does; ``None`` for either family)."""
    name = _host_text(host)
    fam = _family(family)
    res = resolver or default_resolver()
    addrs = _wait(name, lambda loop, done: res.lookup(loop, name, fam, done))
    return addrs[0].ip


def getnameinfo(ip: str | IPAddr) -> str:
    """The name of ``ip`` (reverse lookup), or its numeric text when it has none."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if not isinstance(addr, (IPv4Address, IPv6Address)):
        raise TypeError(f"getnameinfo() expects an IPv4Address or IPv6Address, got {ip!r}")
    if addr.version == 6:
        scope = addr.scope_id or ""
        sid = int(scope) if scope.isdigit() else (_socket.if_nametoindex(scope) if scope else 0)
        sockaddr: tuple = (str(addr).partition("%")[0], 0, 0, sid)
    else:
        sockaddr = (str(addr), 0)

    def name() -> str:
        # Platform constants (glibc's NI_NAMEREQD is 8, not the BSD 4): a name, or
        # failing that the number — the error only when both fail.
        try:
            return _socket.getnameinfo(sockaddr, _socket.NI_NAMEREQD)[0]
        except OSError:
            pass
        try:
            return _socket.getnameinfo(sockaddr, _socket.NI_NUMERICHOST)[0]
        except _socket.gaierror as exc:
            raise DNSError(str(addr), exc.errno, exc.strerror) from None

    system = find_system_resolver(default_resolver())
    return _wait(str(addr), lambda loop, done: system.call(loop, done, name))


# ---------------------------------------------------------------------- interfaces
class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]
_BSD_SOCKADDR = sys.platform == "darwin" or "bsd" in sys.platform  # sa_len byte first
_libc: Any = None


def _interface_addresses() -> list[IPAddr]:
    """Addresses of every interface, from ``getifaddrs(3)`` (interface order)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.getifaddrs.argtypes = [ctypes.POINTER(ctypes.POINTER(_Ifaddrs))]
        _libc.freeifaddrs.argtypes = [ctypes.POINTER(_Ifaddrs)]
    head = ctypes.POINTER(_Ifaddrs)()
    if _libc.getifaddrs(ctypes.byref(head)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"getifaddrs failed: {os.strerror(code)}")
    out: list[IPAddr] = []
    try:
        node = head
        while node:
            ifa = node.contents
            if ifa.ifa_addr:
                ip = _parse_sockaddr(ifa.ifa_addr, (ifa.ifa_name or b"").decode())
                if ip is not None and ip not in out:
                    out.append(ip)
            node = ifa.ifa_next
    finally:
        _libc.freeifaddrs(head)
    return out


def _parse_sockaddr(ptr: int, ifname: str) -> IPAddr | None:
    head = ctypes.string_at(ptr, 2)
    family = head[1] if _BSD_SOCKADDR else int.from_bytes(head, sys.byteorder)
    if family == AF_INET:
        return IPv4Address(ctypes.string_at(ptr, 8)[4:8])
    if family == AF_INET6:
        raw = ctypes.string_at(ptr, 28)  # sockaddr_in6
        ip = IPv6Address(raw[8:24])
        if ip.is_link_local and ifname:
            ip = IPv6Address(f"{ip}%{ifname}")  # usable only with its interface
        return ip
    return None


def getipaddrs(kind: type | int | None = None, *, loopback: bool = False) -> list[IPAddr]:
    """Addresses of this host's interfaces, of ``kind`` (``IPv4Address``, ``IPv6Address``
    or None for both); loopback addresses only when ``loopback`` is true.

    Link-local IPv6 addresses carry their interface as scope (``fe80::1%eth0``).
    """
    fam = _family(kind)
    return [ip for ip in _interface_addresses()
            if (fam == AF_UNSPEC or (ip.version == 6) == (fam == AF_INET6))
            and (loopback or not ip.is_loopback)]


def getipaddr(kind: type | int | None = None) -> IPAddr:
    """One address of this host: the first IPv4 one when ``kind`` is None, else the first
    of ``kind``; ``OSError`` when there is none."""
    addrs = getipaddrs(kind)
    if kind is None:
        v4 = [a for a in addrs if a.version == 4]
        addrs = v4 or addrs
    if not addrs:
        raise OSError("No networking interface available")
    return addrs[0]


def islinklocaladdr(ip: str | IPAddr) -> bool:
    """True for IPv4 169.254.0.0/16 and IPv6 fe80::/10."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if not isinstance(addr, (IPv4Address, IPv6Address)):
        raise TypeError(f"islinklocaladdr() expects an IP address, got {ip!r}")
    return addr.is_link_local
