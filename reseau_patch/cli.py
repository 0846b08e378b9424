"""``python -m reseau_patch run`` and ``doctor``.

``run`` patches first and only then imports the target, so the target's imports (requests,
urllib3, pytest and the suites it collects) all see the patched modules::

    python -m reseau_patch run [--no-thread ...] script.py [args...]
    python -m reseau_patch run [--no-thread ...] -m module [args...]
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

__all__ = ["PATCH_KEYWORDS", "doctor", "run"]

#: patch_all's keywords and their defaults (gevent.monkey.patch_all's).
PATCH_KEYWORDS: dict[str, bool] = {
    "socket": True, "dns": True, "time": True, "select": True, "thread": True, "os": True,
    "ssl": True, "subprocess": True, "sys": False, "aggressive": True, "Event": True,
    "builtins": True, "signal": True, "queue": True, "contextvars": True,
}

RUN_USAGE = ("usage: python -m reseau_patch run [--no-NAME | --NAME ...] "
             "(script.py | -m module) [args...]\n"
             f"NAME is one of: {', '.join(PATCH_KEYWORDS)}")


def _parse_run(argv: list[str]) -> tuple[dict[str, bool], str | None, str | None, list[str]]:
    settings = dict(PATCH_KEYWORDS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            if i + 1 >= len(argv):
                raise SystemExit(RUN_USAGE)
            return settings, None, argv[i + 1], argv[i + 2:]
        if arg.startswith("--no-") and arg[5:] in settings:
            settings[arg[5:]] = False
        elif arg.startswith("--") and arg[2:] in settings:
            settings[arg[2:]] = True
        elif arg in ("-h", "--help"):
            print(RUN_USAGE)
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise SystemExit(f"unknown option {arg!r}\n{RUN_USAGE}")
        else:
            return settings, arg, None, argv[i + 1:]
        i += 1
    raise SystemExit(RUN_USAGE)


def run(argv: list[str]) -> Any:
    """Patch with the given settings, then run the script or module as ``__main__``."""
    settings, script, module, rest = _parse_run(argv)
    from .patch import patch_all

    if script is not None and not os.path.exists(script):
        # What python prints for a missing script (one line, status 2), not runpy's trace.
        path = os.path.abspath(script)
        print(f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno 2] No such file or "
              "directory", file=sys.stderr)
        raise SystemExit(2)
    patch_all(**settings)
    if module is not None:
        sys.argv = [module, *rest]
        return runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.argv = [script, *rest]
    # As python does for a script: its folder, not the current directory, is sys.path[0].
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    return runpy.run_path(script, run_name="__main__")


def doctor() -> int:
    """Print which loop, resolver and patches are active, and the versions that matter."""
    import platform
    import ssl

    import gevent
    import greenlet

    from . import __version__
    from .hub import use_reseau_loop
    from .patch import is_patched

    use_reseau_loop(resolver=True)  # what reseau_patch runs on, patched or not

    print(f"reseau_patch {__version__}")
    print(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    print(f"gevent {gevent.__version__}, greenlet {greenlet.__version__}")
    try:
        import cryptography

        print(f"cryptography {cryptography.__version__}")
    except ImportError:
        print("cryptography: not installed")
    print(f"ssl: {ssl.OPENSSL_VERSION}")
    print(f"gevent.config.loop: {gevent.config.loop}")
    print(f"gevent.config.resolver: {gevent.config.resolver}")
    hub = gevent.get_hub()
    ev = getattr(hub.loop, "io_loop", None)
    print(f"hub loop: {type(hub.loop).__module__}.{type(hub.loop).__qualname__}"
          + (f" (io backend {ev.backend})" if ev is not None else ""))
    print(f"hub resolver: {type(hub.resolver).__module__}.{type(hub.resolver).__qualname__}")
    from . import compiled_status

    states = compiled_status()
    n = sum(v == "compiled" for v in states.values())
    print(f"compiled hot paths: {n}/{len(states)}")
    for mod, state in states.items():
        print(f"  {mod:<28} {state}")
    print(f"patch_all ran: {is_patched()}")
    # is_patched() answers from what is installed (for ssl: whether SSLContext.wrap_socket
    # returns our socket), not from what was asked for.
    for mod in ("socket", "ssl", "select", "selectors", "threading", "time", "queue", "os",
                "subprocess", "signal"):
        print(f"  {mod:<10} {'patched' if is_patched(mod) else 'original'}")
    return 0
