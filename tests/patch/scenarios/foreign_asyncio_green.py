"""Default patch: an asyncio server loop in a green thread while the main green thread runs
asyncio.run(); to_thread and run_coroutine_threadsafe work across them."""

import asyncio
import socket
import threading

ready = threading.Event()
box: dict = {}


def serve() -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # this thread's current loop, whatever main does meanwhile
    box["loop"] = loop

    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(b"echo:" + line)
        await writer.drain()
        writer.close()

    async def start():
        box["server"] = await asyncio.start_server(handle, "127.0.0.1", 0)
        box["port"] = box["server"].sockets[0].getsockname()[1]
        ready.set()

    loop.run_until_complete(start())
    loop.run_forever()
    box["policy"] = asyncio.get_event_loop() is loop
    box["server"].close()
    loop.run_until_complete(box["server"].wait_closed())
    loop.close()


thread = threading.Thread(target=serve)
thread.start()
assert ready.wait(30), "server loop never started"
assert asyncio.get_event_loop_policy() is not None


async def main():
    assert asyncio.get_running_loop() is not box["loop"]
    reader, writer = await asyncio.open_connection("127.0.0.1", box["port"])
    writer.write(b"from-main\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    in_thread = await asyncio.to_thread(
        lambda: threading.current_thread() is not threading.main_thread())
    return reply, in_thread


print("asyncio.run", asyncio.run(main()))
# A patched blocking client against the loop in the green thread.
with socket.create_connection(("127.0.0.1", box["port"]), timeout=30) as sock:
    sock.sendall(b"sync\n")
    print("sync", sock.recv(100))
future = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "threadsafe"), box["loop"])
print("run_coroutine_threadsafe", future.result(30))
box["loop"].call_soon_threadsafe(box["loop"].stop)
thread.join(30)
assert not thread.is_alive()
print("thread's current loop kept", box["policy"])
print("done")
