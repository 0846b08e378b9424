"""The implementations a workload can be run under, one per child process.

An :class:`Impl` says which environment the child starts with (gevent reads
``GEVENT_LOOP``/``GEVENT_RESOLVER`` once per process) and what :func:`prepare` does in
the child *before* the workload module is imported (patching must come first).
Workloads list the names they support in ``IMPLS``; ``threading.Thread`` is green under
every patched implementation, so "N concurrent clients" is written once, with threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

RESEAU_LOOP = "reseau_patch.hub.loop.ReseauLoop"
RESEAU_RESOLVER = "reseau_patch.hub.resolver.Resolver"
T = TypeVar("T")


@dataclass(frozen=True)
class Impl:
    """One implementation: its child environment, its patch step, a label for tables."""

    label: str
    env: dict[str, str] = field(default_factory=dict)
    #: "reseau" = reseau_patch.patch_all(), "gevent" = gevent.monkey.patch_all(),
    #: "" = nothing patched.
    patch: str = ""
    #: Runs an asyncio loop of this kind ("asyncio" or "uvloop"), else "".
    aio: str = ""
    #: A module that must be importable (an optional package); skipped without it.
    requires: str = ""


IMPLS: dict[str, Impl] = {
    # The patched stacks, as users run them.
    "reseau": Impl("reseau_patch.patch_all()", patch="reseau"),
    "gevent": Impl("gevent.monkey (libev-cext)", {"GEVENT_LOOP": "libev-cext"}, patch="gevent"),
    "stdlib": Impl("stdlib + threads"),
    # The io/ channel pipeline driven directly (callbacks, no gevent).
    "reseau-io": Impl("reseau_patch.io channels"),
    "asyncio": Impl("asyncio", aio="asyncio"),
    "uvloop": Impl("asyncio + uvloop", aio="uvloop", requires="uvloop"),
    # gevent's hub on a given loop, nothing patched (loop micro-benchmarks).
    "reseau-loop": Impl("gevent hub on ReseauLoop", {"GEVENT_LOOP": RESEAU_LOOP,
                                                     "GEVENT_RESOLVER": RESEAU_RESOLVER}),
    "libev-cext": Impl("gevent hub on libev-cext", {"GEVENT_LOOP": "libev-cext"}),
    "libuv-cffi": Impl("gevent hub on libuv-cffi", {"GEVENT_LOOP": "libuv-cffi"}),
    "gevent-thread": Impl("gevent thread resolver (libev-cext)",
                          {"GEVENT_LOOP": "libev-cext", "GEVENT_RESOLVER": "thread"}),
    # The Sockets-shaped API (reseau_patch.sockets) on the Reseau hub, nothing patched.
    "reseau-sockets": Impl("reseau_patch.sockets API", {"GEVENT_LOOP": RESEAU_LOOP,
                                                        "GEVENT_RESOLVER": RESEAU_RESOLVER}),
}
#: Variables the harness clears in a child unless its Impl sets them.
CONTROLLED_ENV = ("GEVENT_LOOP", "GEVENT_RESOLVER")


def unavailable(name: str) -> str | None:
    """Why implementation ``name`` cannot run here (a package not installed), or None."""
    import importlib.util

    impl = IMPLS.get(name)
    if impl is not None and impl.requires and importlib.util.find_spec(impl.requires) is None:
        return f"{impl.requires} is not installed (pip install -e '.[bench]')"
    return None


def prepare(name: str) -> Impl:
    """In the child, before the workload is imported: patch as ``name`` says."""
    impl = IMPLS[name]
    if impl.patch == "reseau":
        import reseau_patch

        reseau_patch.patch_all()
    elif impl.patch == "gevent":
        from gevent import monkey

        monkey.patch_all()
    return impl


def run_async(name: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on the asyncio loop kind of implementation ``name``."""
    import asyncio

    impl = IMPLS[name]
    if impl.aio == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())  # type: ignore[arg-type]
    if impl.aio != "asyncio":
        raise ValueError(f"{name!r} is not an asyncio implementation")
    return asyncio.run(main())  # type: ignore[arg-type]


def is_green(name: str) -> bool:
    """Whether threads are greenlets under ``name`` (a patched implementation)."""
    return bool(IMPLS[name].patch)


def describe(name: str) -> dict[str, Any]:
    """Versions that matter for ``name``, from inside its child process."""
    import platform

    out: dict[str, Any] = {"python": platform.python_version()}
    import sys

    gevent = sys.modules.get("gevent")
    if gevent is not None:
        from gevent._hub_local import get_hub_if_exists

        out["gevent"] = gevent.__version__
        hub = get_hub_if_exists()
        if hub is not None:
            out["loop"] = f"{type(hub.loop).__module__}.{type(hub.loop).__qualname__}"
    if IMPLS[name].aio == "uvloop":
        import uvloop

        out["uvloop"] = uvloop.__version__
    return out
