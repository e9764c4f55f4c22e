"""A visitor's address is kept only as a salted hash (who the visitor is: sidechat.guard)."""

from __future__ import annotations

from pathlib import Path

from sidechat.privacy import SALT_FILE, client_hasher
from sidechat.settings import Settings


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
