"""The server's listening sockets: several on one port where the OS balances between them.

uvloop (libuv) takes one new connection from a listening socket per event-loop iteration. Under
load an iteration is busy with thousands of token reads and writes, so a burst of visitors
opening streams at once waits in the kernel's accept queue, one iteration each: measured at 750
streams, connections waited up to 150 ms to be accepted (and that was nearly all of the time to
first token sidechat added), while the loop itself never stalled for more than 23 ms. With
`SO_REUSEPORT` (Linux) the kernel spreads connections over several sockets of one port, and each
of them yields a connection per iteration.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["LISTENERS", "listening_sockets"]

LISTENERS = 16 if sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT") else 1


def listening_sockets(
    host: str, port: int, *, count: int = LISTENERS, backlog: int = 4096
) -> list[socket.socket]:
    """Bound, listening sockets for `host:port` (port 0: one free port for all of them).

    Raises OSError when the address cannot be used, also when another process already listens
    on the port: sockets that share a port with `SO_REUSEPORT` would otherwise quietly share its
    connections with an older server still running there."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # A plain bind fails if anyone listens here; it also picks the port when asked for 0.
    with _socket(family, kind, proto) as probe:
        probe.bind(address)
        address = probe.getsockname()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = _socket(family, kind, proto)
            sockets.append(sock)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _socket(family: socket.AddressFamily, kind: socket.SocketKind, proto: int) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too, as "::" means
    return sock
