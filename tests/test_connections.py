"""The connection layer against real sockets: slowloris, silent connections, slow bodies, giant
headers and one address holding many connections (issue 19)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests._servers import SidechatProcess, start_sidechat


@pytest.fixture(scope="module")
def edge() -> Iterator[SidechatProcess]:
    with start_sidechat(
        *("--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"),
        *("--client-limits", "on", "--header-timeout", "1", "--max-connections-per-client", "20"),
        *("--body-timeout", "1.5"),
    ) as proc:
        yield proc


def connect(server: SidechatProcess, source: str) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    return sock


def closed(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing, or None if it is still open after `within`."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def rss_kb(server: SidechatProcess) -> int:
    for line in open(f"/proc/{server.proc.pid}/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slowloris_and_silent_connections_are_closed(edge: SidechatProcess) -> None:
    socks = [connect(edge, f"127.0.1.{i}") for i in range(1, 31)]
    for i, sock in enumerate(socks):
        if i % 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    t0 = time.monotonic()
    for i, sock in enumerate(socks):
        if i % 2:
            sock.sendall(b"X-Slow: 1\r\n")  # a header now and then does not extend the deadline
        got = closed(sock, 4.0)
        assert got is not None, f"connection {i} still open after {time.monotonic() - t0:.1f} s"
        assert got == (b"HTTP/1.1 408" if i % 2 else b"")[: len(got)] or got.startswith(
            b"HTTP/1.1 408"
        )
        sock.close()
    assert time.monotonic() - t0 < 4.0


def test_a_giant_header_gets_431_and_costs_no_memory(edge: SidechatProcess) -> None:
    before = rss_kb(edge)
    for i in range(5):
        with connect(edge, f"127.0.2.{i + 1}") as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(40):  # up to 40 MB, unless the server gives up first
                    sock.sendall(b"a" * (1 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass
            got = closed(sock, 3.0)
            assert got is not None and (got == b"" or got.startswith(b"HTTP/1.1 431")), got
    assert rss_kb(edge) - before < 20_000, "the headers were buffered"


def test_one_address_cannot_hold_every_connection(edge: SidechatProcess) -> None:
    mine = [connect(edge, "127.0.3.1") for _ in range(25)]
    time.sleep(0.3)
    dropped = [s for s in mine if closed(s, 0.05) is not None]
    assert len(dropped) == 5
    with connect(edge, "127.0.3.2") as other:
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        other.settimeout(3)
        assert other.recv(100).startswith(b"HTTP/1.1 200")
    for sock in mine:
        sock.close()


def test_a_kept_alive_connection_serves_many_requests(edge: SidechatProcess) -> None:
    with connect(edge, "127.0.3.3") as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"}"):
                got += sock.recv(4096)
            assert got.startswith(b"HTTP/1.1 200")
            time.sleep(0.7)  # within keep-alive, past the header deadline of the first request


HEAD = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_trickled_or_unfinished_body_is_cut_with_408_and_no_traceback(
    edge: SidechatProcess,
) -> None:
    trickled = connect(edge, "127.0.5.1")
    trickled.sendall(HEAD + b"Content-Length: 200\r\n\r\n" + b'{"message": "')
    unfinished = connect(edge, "127.0.5.2")
    unfinished.sendall(HEAD + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"mes\r\n')
    silent = connect(edge, "127.0.5.3")
    silent.sendall(HEAD + b"Content-Length: 30\r\n\r\n")
    t0 = time.monotonic()
    cut = None
    while time.monotonic() - t0 < 6.0 and cut is None:
        try:
            trickled.sendall(b"a")  # a byte every 0.2 s: each arrives well within any idle limit
        except (BrokenPipeError, ConnectionResetError):
            cut = time.monotonic() - t0
            break
        cut = None if closed(trickled, 0.2) is None else time.monotonic() - t0
    assert cut is not None, "the trickled body was never cut"
    assert 1.0 < cut < 4.0, cut  # the deadline (1.5 s) counts from the headers, not per byte
    for sock in (unfinished, silent):
        got = closed(sock, 3.0)
        assert got is not None, "a body that never finished held its connection"
        assert got.startswith(b"HTTP/1.1 408"), got
    for sock in (trickled, unfinished, silent):
        sock.close()
    time.sleep(0.3)
    log = edge.log()
    assert "Traceback" not in log and "ClientDisconnect" not in log, log[-2000:]


def test_a_body_sent_in_time_is_read_whole(edge: SidechatProcess) -> None:
    body = b'{"message": "slow but in time", "conversation_id": "c_nope"}'
    with connect(edge, "127.0.5.4") as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 20):
            sock.sendall(body[i : i + 20])
            time.sleep(0.3)  # 1.2 s over the whole body: inside the 1.5 s deadline
        sock.settimeout(3)
        got = sock.recv(4096)
    # The body was read and parsed: the answer is about its content (no such conversation).
    assert got.startswith(b"HTTP/1.1 404"), got
    assert b"not_found" in got


def _response(sock: socket.socket) -> bytes:
    got = b""
    while not got.endswith(b"}"):
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return got


def test_a_body_still_due_after_the_answer_is_held_to_the_deadline(edge: SidechatProcess) -> None:
    """`/healthz` answers without reading a body: the connection then waits for the rest of it
    under the same deadline, and serves its next request once it has come."""
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    with connect(edge, "127.0.5.5") as finished, connect(edge, "127.0.5.6") as never:
        finished.sendall(get)
        never.sendall(get)
        finished.settimeout(3)
        never.settimeout(3)
        assert _response(finished).startswith(b"HTTP/1.1 200")
        assert _response(never).startswith(b"HTTP/1.1 200")
        finished.sendall(b"0123456789" + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(finished).startswith(b"HTTP/1.1 200")
        # The other never sends its body: closed after the deadline, with nothing more to say
        # (it has had its answer).
        assert closed(never, 4.0) == b""
