"""thread=False: an asyncio loop made in the main thread runs in a real thread; a
select.poll() object is shared by two real threads. Neither is owned by a loop."""

import asyncio
import os
import select
import threading

from reseau_patch.patch import is_patched

assert is_patched("select") and not is_patched("threading"), "run with thread=False"

loop = asyncio.new_event_loop()  # made here, in the main thread
thread = threading.Thread(target=loop.run_forever)
thread.start()


async def where():
    await asyncio.sleep(0)
    return threading.get_ident()


ident = asyncio.run_coroutine_threadsafe(where(), loop).result(30)
assert ident == thread.ident and ident != threading.get_ident(), (ident, thread.ident)
print("coroutine ran in the loop's thread")
loop.call_soon_threadsafe(loop.stop)
thread.join(30)
assert not thread.is_alive()
loop.close()

r, w = os.pipe()
poller = select.poll()  # made in the main thread
poller.register(r, select.POLLIN)
result = {}
started = threading.Event()


def waiter():
    started.set()
    result["events"] = poller.poll(30_000)  # parks on this thread's own loop


t = threading.Thread(target=waiter)
t.start()
assert started.wait(30)
os.write(w, b"x")
t.join(30)
assert not t.is_alive()
print("poll from another thread", result["events"] == [(r, select.POLLIN)])
os.close(r)
os.close(w)
print("done")
