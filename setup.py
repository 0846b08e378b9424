"""Optional compiled hot paths (metadata lives in pyproject.toml).

Each hot module is compiled by Cython in pure-Python mode into an extension with its own
name (``reseau_patch/io/event_loop.py`` -> ``reseau_patch.io._event_loop_c``, typed by
``reseau_patch/io/_event_loop_c.pxd``); the ``.py`` swaps in the compiled names at import
(``reseau_patch/io/accel.py``). No compiler, no Cython, or a failed compile: the install
still succeeds and the package runs as pure Python.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Kept in step with reseau_patch/io/accel.py's ACCELERATED (a test checks it).
HOT_MODULES = {
    "reseau_patch.io._poller_c": "reseau_patch/io/poller.py",
    "reseau_patch.io._event_loop_c": "reseau_patch/io/event_loop.py",
    "reseau_patch.hub._io_watcher_c": "reseau_patch/hub/io_watcher.py",
    "reseau_patch.hub._callbacks_c": "reseau_patch/hub/callbacks.py",
}

DIRECTIVES = {
    "language_level": 3,
    # Annotations document; only the .pxd files type (an annotated float must stay a
    # Python object that may be None, as in the pure module).
    "annotation_typing": False,
    "binding": True,
    "embedsignature": False,
}


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile and goes on: pure Python is the fallback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means: no extensions
            print(f"reseau_patch: compiled hot paths not built ({exc}); using pure Python",
                  file=sys.stderr)

    def build_extension(self, ext) -> None:  # noqa: ANN001 - setuptools' signature
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"reseau_patch: {ext.name} not built ({exc}); using pure Python",
                  file=sys.stderr)


def _extensions() -> list:
    if os.environ.get("RESEAU_PATCH_NO_COMPILE"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("reseau_patch: Cython not available; using pure Python", file=sys.stderr)
        return []
    exts = []
    for name, src in HOT_MODULES.items():
        pxd = name.replace(".", "/") + ".pxd"  # the typing, named after the extension
        exts.append(Extension(name, [src], depends=[pxd] if os.path.exists(pxd) else [],
                              optional=True))
    try:
        # force: Cython's own staleness check does not see a .pxd named after the
        # extension rather than the .py; a build is rare and takes about a minute.
        return cythonize(exts, compiler_directives=DIRECTIVES, quiet=True, force=True)
    except Exception as exc:  # noqa: BLE001 - a Cython error must not fail the install
        print(f"reseau_patch: cythonize failed ({exc}); using pure Python", file=sys.stderr)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
