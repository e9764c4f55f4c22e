"""Which address a visitor has (a proxy on this host is believed, no one else), and its hash."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request

from sidechat.privacy import SALT_FILE, client_address, client_hasher
from sidechat.settings import Settings


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


def test_forwarded_for_only_from_a_loopback_proxy() -> None:
    assert client_address(_request("127.0.0.1", "203.0.113.7")) == "203.0.113.7"
    assert client_address(_request("::1", "198.51.100.1, 203.0.113.7")) == "203.0.113.7"
    assert client_address(_request("127.0.0.1")) == "127.0.0.1"
    # Anyone else could name any address: their header is ignored.
    assert client_address(_request("192.0.2.5", "203.0.113.7")) == "192.0.2.5"


def test_hashes_are_salted_stable_and_never_the_address(tmp_path: Path) -> None:
    hasher = client_hasher(Settings(data_dir=tmp_path))
    assert hasher is not None
    first = hasher("203.0.113.7")
    assert first is not None and "203" not in first and len(first) == 32
    assert hasher("203.0.113.7") == first and hasher("203.0.113.8") != first
    assert (tmp_path / SALT_FILE).stat().st_mode & 0o777 == 0o600
    again = client_hasher(Settings(data_dir=tmp_path))  # a restart: the same salt
    assert again is not None and again("203.0.113.7") == first
    other = client_hasher(Settings(data_dir=tmp_path / "elsewhere"))
    assert other is not None and other("203.0.113.7") != first
    assert client_hasher(Settings(data_dir=tmp_path, store_client_address="off")) is None
