"""Prints, as one JSON line, how the hot modules run in this process (run by test_accel.py).

The io/ modules are imported first and alone, so ``gevent_after_io`` says whether io/ pulled
in gevent or greenlet (it must not, compiled or not).
"""

import json
import sys

from reseau_patch.io import accel, event_loop

report = {
    "gevent_after_io": sorted(m for m in ("gevent", "greenlet") if m in sys.modules),
    "event_loop_class_module": event_loop.EventLoop.__module__,
    "io_status": {k: v for k, v in accel.status().items() if ".io." in k},
}

import reseau_patch  # noqa: E402 - after the io-only look above
from reseau_patch.hub import io_watcher  # noqa: E402

report["io_watcher_class_module"] = io_watcher.IoWatcher.__module__
report["status"] = reseau_patch.compiled_status()
report["compiled"] = reseau_patch.compiled()
print(json.dumps(report))
