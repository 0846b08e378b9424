"""The Sockets surface: blocking ``connect``/``listen``/``accept`` over io/ channels.

Importing this package selects the Reseau loop for gevent's hub in this thread (and
raises ``RuntimeError`` naming the other loop if a hub with another loop already runs).
Blocking calls park the current greenlet; the hub runs the io loop meanwhile.
"""

from ..hub import use_reseau_loop
from .addresses import InetAddr, IPAddr, ip
from .dns import (
    DNSError,
    getaddrinfo,
    getalladdrinfo,
    getipaddr,
    getipaddrs,
    getnameinfo,
    islinklocaladdr,
)
from .endpoints import TCPServer, accept, bind, connect, listen, listenany
from .tcp import TCPSocket
from .tls import tlsupgrade

use_reseau_loop()

__all__ = [
    "DNSError",
    "IPAddr",
    "InetAddr",
    "TCPServer",
    "TCPSocket",
    "accept",
    "bind",
    "connect",
    "getaddrinfo",
    "getalladdrinfo",
    "getipaddr",
    "getipaddrs",
    "getnameinfo",
    "ip",
    "islinklocaladdr",
    "listen",
    "listenany",
    "tlsupgrade",
]
