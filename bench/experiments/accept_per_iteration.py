"""How many event-loop iterations uvloop needs to accept a burst of queued connections, with one
listening socket or several sharing the port (SO_REUSEPORT, Linux).

    python -m bench.experiments.accept_per_iteration [N_SOCKETS ...]   # default: 1 4 8 16

docs/design/listening-sockets.md: uvloop takes one connection per listening socket per pass, which
is why sidechat listens on several (`sidechat/_listen.py`).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
import threading

import uvloop

from sidechat._listen import listening_sockets

BURST = 200


async def iterations_to_accept(count: int) -> tuple[int, int]:
    """(iterations needed, most accepted in one) for BURST connections queued at once."""
    loop = asyncio.get_running_loop()
    iteration = 0
    accepted: list[int] = []
    all_in = asyncio.Event()

    def spin() -> None:  # one call per loop iteration
        nonlocal iteration
        iteration += 1
        if not all_in.is_set():
            loop.call_soon(spin)

    class Counting(asyncio.Protocol):
        def __init__(self) -> None:
            accepted.append(iteration)  # made by the loop when it accepts
            if len(accepted) == BURST:
                all_in.set()

    sockets = listening_sockets("127.0.0.1", 0, count=count)
    servers = [await loop.create_server(Counting, sock=sock, backlog=4096) for sock in sockets]
    port = sockets[0].getsockname()[1]
    clients: list[socket.socket] = []

    def connect() -> None:  # all queued before the loop runs again
        clients.extend(socket.create_connection(("127.0.0.1", port)) for _ in range(BURST))

    thread = threading.Thread(target=connect)
    thread.start()
    thread.join()
    loop.call_soon(spin)
    await all_in.wait()
    for client in clients:
        client.close()
    for server in servers:
        server.close()
    per_iteration = collections.Counter(accepted)
    return max(accepted) - min(accepted) + 1, max(per_iteration.values())


async def main(counts: list[int]) -> None:
    for count in counts:
        needed, most = await iterations_to_accept(count)
        print(f"{count:3d} listening socket(s): {BURST} connections accepted in {needed} "
              f"iterations, at most {most} per iteration")  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main([int(arg) for arg in sys.argv[1:]] or [1, 4, 8, 16]))
