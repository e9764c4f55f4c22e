"""The real PostgreSQL server for tests: a fresh database per use, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

__all__ = ["ADMIN_URL", "fresh_database", "require_postgres"]

# Trust authentication on loopback, as Debian's package sets it up (scripts/test.sh starts it).
ADMIN_URL = os.environ.get("SIDECHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> None:
    """Skip (or, in CI, fail) when the server is not reachable."""
    import psycopg

    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {ADMIN_URL} (scripts/test.sh starts it): {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database on the test server; dropped when the block ends."""
    import psycopg

    require_postgres()
    name = f"sidechat_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
