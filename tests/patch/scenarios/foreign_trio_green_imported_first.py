"""foreign_trio_green.py with trio (and anyio) imported *before* patch_all(): trio's run
context is then a real thread-local and from_thread's reply queue the unpatched SimpleQueue.
Run with plain ``python``."""

import runpy
from pathlib import Path

import anyio  # noqa: F401
import trio  # noqa: F401

import reseau_patch

reseau_patch.patch_all()
print("trio imported before patch_all()")
runpy.run_path(str(Path(__file__).with_name("foreign_trio_green.py")), run_name="__main__")
