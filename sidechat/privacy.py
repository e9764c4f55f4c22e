"""Visitors' addresses: kept only as a salted hash, or not at all (`store_client_address`).

The salt is 32 random bytes made once per data directory (`client-address-salt`, mode 0600):
the same visitor gets the same hash across restarts, and the hash cannot be turned back into
an address without the salt (an IPv4 address alone would fall to a table of all 2^32).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sidechat.settings import Settings

__all__ = ["SALT_FILE", "client_hasher"]

SALT_FILE = "client-address-salt"


def _salt(data_dir: Path) -> bytes:
    path = data_dir / SALT_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    salt = path.read_bytes()
    if len(salt) < 16:
        raise OSError(f"{path} is damaged (remove it: a new salt is made)")
    return salt


def client_hasher(settings: Settings) -> Callable[[str | None], str | None] | None:
    """A function from a client address to its salted hash; None when nothing is kept."""
    if settings.store_client_address == "off" or settings.memory_only:
        return None
    salt = _salt(settings.data_dir)

    # Visitors come back: remembering recent addresses' hashes saves an HMAC per turn.
    @functools.lru_cache(maxsize=4096)
    def digest(address: str | None) -> str | None:
        if not address:
            return None
        return hmac.new(salt, address.encode(), hashlib.sha256).hexdigest()[:32]

    return digest
