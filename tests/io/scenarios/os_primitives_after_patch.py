"""io/ imported after gevent.monkey patched ``_thread`` still locks and names OS threads.

Run by test_event_loop.py in its own interpreter; prints one JSON line.
"""

import json

from gevent import monkey

monkey.patch_all()

import _thread  # noqa: E402 - patched now

from reseau_patch.io import event_loop  # noqa: E402
from reseau_patch.io.resolver import system  # noqa: E402

loop = event_loop.EventLoop()
owner = loop.owner_thread
loop.close()
print(json.dumps({
    "patched_lock_is_green": type(_thread.allocate_lock()).__module__.startswith("gevent"),
    "os_lock_type": type(event_loop.os_lock()).__name__,
    "os_lock_module": type(event_loop.os_lock()).__module__,
    "ident_is_builtin": type(event_loop.os_thread.get_ident).__name__,
    "pool_thread_start_is_builtin": type(system._start_new_thread).__name__,
    "owner_is_os_thread": owner == monkey.get_original("_thread", "get_ident")(),
}))
