"""Default patch: anyio's blocking portal runs its event loop in a (green) thread."""

import anyio
import anyio.from_thread


async def add(a, b):
    await anyio.sleep(0)
    return a + b


for backend in ("asyncio", "trio"):
    with anyio.from_thread.start_blocking_portal(backend) as portal:
        print(backend, portal.call(add, 1, 2), portal.call(add, 40, 2))
print("done")
