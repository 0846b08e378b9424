"""foreign_asyncio_green.py with asyncio's pure-Python implementation (no ``_asyncio``),
imported *before* patch_all(): its running loop then lives in a real ``threading.local``
(one per OS thread, shared by green threads) and its Future/Task are Python classes.
Run with plain ``python``."""

import runpy
import sys
from pathlib import Path

sys.modules["_asyncio"] = None  # type: ignore[assignment]  # import fails: Python fallback

import asyncio.events  # noqa: E402
import asyncio.futures  # noqa: E402

import reseau_patch  # noqa: E402

assert asyncio.events._get_running_loop is asyncio.events._py__get_running_loop
assert asyncio.futures.Future is asyncio.futures._PyFuture
reseau_patch.patch_all()
print("pure-Python asyncio, imported before patch_all()")
runpy.run_path(str(Path(__file__).with_name("foreign_asyncio_green.py")), run_name="__main__")
