from __future__ import annotations

import socket

import pytest

from sidechat._listen import LISTENERS, listening_sockets


def _accept_all(sockets: list[socket.socket]) -> list[int]:
    accepted = []
    for sock in sockets:
        n = 0
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                break
            conn.close()
            n += 1
        accepted.append(n)
    return accepted


def test_several_sockets_share_one_port_and_its_connections() -> None:
    sockets = listening_sockets("127.0.0.1", 0, count=4)
    clients: list[socket.socket] = []
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == 4 and len(ports) == 1
        port = ports.pop()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        accepted = _accept_all(sockets)
        assert sum(accepted) == 40, "every connection is accepted once"
        assert sum(1 for n in accepted if n) > 1, "the kernel spreads them over the sockets"
    finally:
        for sock in [*sockets, *clients]:
            sock.close()


@pytest.mark.parametrize("reuseport", [False, True])
def test_a_port_someone_listens_on_is_refused(reuseport: bool) -> None:
    # Another server on the port, whether or not it allows sharing: sharing it would quietly
    # split its visitors between the two.
    with socket.socket() as other:
        if reuseport:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", other.getsockname()[1], count=2)


def test_one_socket_where_the_os_cannot_balance() -> None:
    assert LISTENERS >= 1
    sockets = listening_sockets("127.0.0.1", 0, count=1)
    try:
        assert not sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sockets[0].close()
