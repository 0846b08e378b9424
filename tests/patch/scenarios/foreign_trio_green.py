"""Default patch: a trio server in a green thread answers a patched blocking client."""

import functools
import signal
import socket
import threading

import trio

ready = threading.Event()
box: dict = {}


def serve() -> None:
    # A green thread is a thread: signal handlers are the main thread's (trio probes this).
    try:
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))
    except ValueError as exc:
        print("signal in thread:", exc)
    async def handler(stream):
        data = await stream.receive_some(100)
        await stream.send_all(b"trio:" + data)
        await stream.aclose()

    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            box["port"] = listeners[0].socket.getsockname()[1]
            box["scope"] = nursery.cancel_scope
            box["token"] = trio.lowlevel.current_trio_token()
            ready.set()

    trio.run(main)


thread = threading.Thread(target=serve)
thread.start()
assert ready.wait(30), "trio never started"
for n in range(3):
    with socket.create_connection(("127.0.0.1", box["port"]), timeout=30) as sock:
        sock.sendall(b"ping%d" % n)
        print(sock.recv(100))
trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
thread.join(30)
assert not thread.is_alive()
print("done")
