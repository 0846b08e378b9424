"""``patch_all()``: gevent's drop-in, with the network modules on the Reseau stack.

Order and meaning of the keywords are exactly ``gevent.monkey.patch_all``'s. The
non-network modules (os, thread, time, sys, subprocess, builtins, signal, contextvars) are
handed to ``gevent.monkey``'s own functions; socket, DNS, select/selectors, ssl and queue
are ours. gevent's plug-in events (``gevent.plugins.monkey.*``) fire as they would for
gevent's ``patch_all``, and originals are recorded where ``gevent.monkey.get_original``
finds them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_original", "is_patched", "patch_all"]

_state: dict[str, Any] = {"settings": None}


def _patch_items(module_name: str, items: dict[str, Any]) -> None:
    from gevent.monkey.api import patch_item

    module = __import__(module_name)
    for name, value in items.items():
        patch_item(module, name, value)


def patch_socket(dns: bool = True, threads_are_green: bool = True) -> None:
    """Install :class:`GreenSocket` as ``socket.socket`` and the cooperative helpers.

    ``threads_are_green`` (``patch_all(thread=True)``): every fd stays ``O_NONBLOCK``, as
    under gevent, because C code that works the fd itself (pyOpenSSL's handshake, C
    drivers) must get EAGAIN, not block the one OS thread every green thread runs in."""
    import socket as stdsocket

    import gevent.socket as gsocket

    from . import netfuncs
    from .green_socket import GreenSocket

    # SocketType stays the C type (_socket.socket), as in the stdlib: GreenSocket is a
    # subclass of it, so isinstance(s, socket.SocketType) still holds.
    items: dict[str, Any] = {"socket": GreenSocket,
                             "create_connection": netfuncs.create_connection}
    if dns:
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                     "getfqdn"):
            if hasattr(gsocket, name):
                items[name] = getattr(gsocket, name)
        items["getnameinfo"] = netfuncs.getnameinfo
        # gevent's wrapper re-converts every tuple to enums (µs per call): ours memoizes.
        from ..hub.resolver import getaddrinfo

        items["getaddrinfo"] = getaddrinfo
    GreenSocket.set_fd_follows_timeout(not threads_are_green)
    _patch_items("socket", items)
    # Functions that build sockets look ``socket`` up in the module at call time
    # (socketpair, fromfd, create_server), so they now make GreenSockets unchanged.
    if stdsocket.socket is not GreenSocket:
        raise RuntimeError("socket.socket could not be replaced")


def patch_select() -> None:
    """Cooperative ``select.select``/``poll`` and ``selectors.DefaultSelector``.

    Unlike gevent's ``aggressive`` mode, nothing is removed: ``select.epoll`` and the
    other selector classes stay for code that runs real event loops in real threads.
    """
    from . import green_select

    _patch_items("select", green_select.select_items())
    _patch_items("selectors", {"DefaultSelector": green_select.DefaultSelector})
    from gevent.monkey.api import patch_item

    green_select.install_selectors(patch_item)


def patch_queue() -> None:
    from . import green_queue

    _patch_items("queue", {name: getattr(green_queue, name) for name in green_queue.__all__})


def patch_ssl() -> None:
    """TLS through our channel handler for every ``SSLContext``, old or new (no class swap)."""
    from .green_ssl import install

    install()


#: Modules whose gevent.monkey patches ours replace; gevent having patched one first is
#: refused (see ``_refuse_gevent_network_patches``).
_NETWORK_MODULES = ("socket", "ssl", "select", "selectors")


def _refuse_gevent_network_patches() -> None:
    """``gevent.monkey.patch_all()`` (or its patch_socket/ssl/select) already ran.

    Taking over is not clean: modules imported in between hold gevent's classes, gevent's
    ``SSLContext`` builds gevent's SSL sockets whatever socket it wraps, and our io layer
    would capture gevent's thread functions as "originals". So refuse, before changing
    anything, and say what to do instead.
    """
    from gevent.monkey import _state as gstate

    patched = [m for m in _NETWORK_MODULES if gstate.saved.get(m)]
    if patched:
        raise RuntimeError(
            f"gevent.monkey already patched {', '.join(patched)}: reseau_patch.patch_all() "
            "replaces gevent.monkey.patch_all() and cannot take over modules gevent patched. "
            "Call reseau_patch.patch_all() instead of gevent.monkey.patch_all() (it takes "
            "the same keywords and delegates the non-network modules to gevent.monkey), or "
            "run the program with `python -m reseau_patch run`.")


def patch_all(socket: bool = True, dns: bool = True, time: bool = True, select: bool = True,
              thread: bool = True, os: bool = True, ssl: bool = True, subprocess: bool = True,
              sys: bool = False, aggressive: bool = True, Event: bool = True,  # noqa: N803
              builtins: bool = True, signal: bool = True, queue: bool = True,
              contextvars: bool = True, **kwargs: Any) -> bool | None:
    """Patch the standard library for greenlets on the Reseau stack.

    Selects the Reseau loop and resolver before any hub exists (``RuntimeError`` naming
    the loop in use otherwise). Returns True when patching ran, None when these settings
    were already applied, False when a plug-in vetoed it (gevent's ``DoNotPatch``).
    ``aggressive`` is accepted for compatibility; it never removes ``select.epoll``.

    ``RuntimeError`` if gevent.monkey patched socket/ssl/select first (nothing is changed).
    A call that raised does not count: ``is_patched()`` stays as it was and calling again
    retries. With ``thread=False``, ``queue`` is left alone: its classes would be
    gevent's, which real threads cannot share (a worker thread's ``get`` raises
    ``LoopExit``), and real threads are what ``thread=False`` keeps.
    """
    settings = dict(socket=socket, dns=dns, time=time, select=select, thread=thread, os=os,
                    ssl=ssl, subprocess=subprocess, sys=sys, aggressive=aggressive,
                    Event=Event, builtins=builtins, signal=signal, queue=queue,
                    contextvars=contextvars)
    if not thread:
        settings["queue"] = False
    previous = _state["settings"]
    if previous is not None:
        todo = {k: v for k, v in settings.items() if v and not previous.get(k)}
        if not todo:
            return None
        settings = {k: bool(v and (k in todo)) for k, v in settings.items()}
        merged = {k: previous.get(k) or settings[k] for k in settings}
    else:
        _refuse_gevent_network_patches()
        merged = dict(settings)
    result = _patch(settings, Event, kwargs)
    if result:
        _state["settings"] = merged
    return result


def _patch(settings: dict[str, bool], Event: bool, kwargs: dict[str, Any]) -> bool:  # noqa: N803
    import gevent.monkey as monkey
    from gevent import events

    from ..hub import use_reseau_loop

    use_reseau_loop(resolver=settings["dns"])
    modules = {k: v for k, v in settings.items() if k != "aggressive"}
    try:
        events.notify_and_call_entry_points(events.GeventWillPatchAllEvent(modules, kwargs))
    except events.DoNotPatch:
        return False

    # Same order as gevent: os, thread, time, sys, then the network modules.
    if settings["os"]:
        monkey.patch_os()
        from . import green_os

        green_os.install()
    if settings["thread"]:
        monkey.patch_thread(Event=Event)
    if settings["time"]:
        monkey.patch_time()
    if settings["sys"]:
        monkey.patch_sys()
    if settings["socket"]:
        patch_socket(dns=settings["dns"], threads_are_green=settings["thread"])
    if settings["select"]:
        patch_select()
    if settings["ssl"]:
        patch_ssl()
    if settings["socket"]:
        # gevent.server / pywsgi captured gevent's socket class at import: point them at ours.
        from .gevent_servers import install as patch_gevent_servers
        patch_gevent_servers()
    if settings["subprocess"]:
        monkey.patch_subprocess()
    if settings["builtins"]:
        monkey.patch_builtins()
    if settings["signal"]:
        monkey.patch_signal()
        from . import green_signal

        green_signal.install()
        if settings["thread"]:
            green_signal.install_pthread_kill()
    if settings["queue"]:
        patch_queue()
    if settings["contextvars"]:
        monkey.patch_contextvars()
    # Foreign event loops and address-by-address clients (green_trio.py, clients.py).
    if settings["thread"]:
        from gevent.monkey.api import patch_item

        from .green_asyncio import install as adapt_asyncio
        from .green_trio import install as adapt_trio
        from .thread_signals import install as guard_thread_signals
        adapt_asyncio()
        adapt_trio()
        guard_thread_signals(patch_item)
    if settings["socket"]:
        from .clients import install as adapt_clients
        adapt_clients()

    events.notify_and_call_entry_points(events.GeventDidPatchBuiltinModulesEvent(modules,
                                                                               kwargs))
    events.notify_and_call_entry_points(events.GeventDidPatchAllEvent(modules, kwargs))
    return True


def is_patched(module: str | None = None, item: str | None = None) -> bool:
    """Whether ``patch_all`` ran (no arguments), a module, or one item was patched.

    ``ssl`` counts as patched when ``SSLContext.wrap_socket`` builds our socket class (the
    TLS patch hooks ``SSLContext.sslsocket_class`` rather than replacing ``ssl`` names).
    """
    import sys as _sys

    from gevent.monkey import _state as gstate

    if module is None:
        return _state["settings"] is not None
    if item is None:
        if module == "ssl" and "ssl" in _sys.modules:
            green = _sys.modules.get("reseau_patch.patch.green_socket")
            cls = getattr(_sys.modules["ssl"].SSLContext, "sslsocket_class", None)
            if green is not None and isinstance(cls, type) \
                    and issubclass(cls, green.GreenSocket):
                return True
        return module in gstate.saved
    return item in gstate.saved.get(module, {})


def get_original(module: str, item: str) -> Any:
    """The object ``module.item`` was before patching (the current one if never patched)."""
    from gevent.monkey import get_original as gget

    return gget(module, item)


def _current_settings() -> dict[str, Any] | None:
    return _state["settings"]

