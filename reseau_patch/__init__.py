"""reseau_patch: a libev/libuv-free networking stack for Python, and a gevent drop-in."""

__version__ = "0.1.0"
