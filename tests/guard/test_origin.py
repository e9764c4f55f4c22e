"""The origin allow-list as a pure policy: Origin, else Referer; the server's own origin."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidechat.guard import OriginPolicy

POLICY = OriginPolicy.parse(["https://blog.example", "http://localhost:3000"])
HOST = {"host": "chat.example:8000"}


def test_no_list_allows_any() -> None:
    assert OriginPolicy.parse([]).allows({"origin": "https://evil.example"})
    assert OriginPolicy.parse(["*", "https://a.example"]).allows({"origin": "https://evil.example"})


def test_allowed_and_refused() -> None:
    assert POLICY.allows({**HOST, "origin": "https://blog.example"})
    assert POLICY.allows({**HOST, "origin": "HTTPS://Blog.Example:443"})
    assert POLICY.allows({**HOST, "origin": "http://localhost:3000"})
    assert not POLICY.allows({**HOST, "origin": "https://evil.example"})
    assert not POLICY.allows({**HOST, "origin": "http://blog.example"})  # another scheme
    assert not POLICY.allows({**HOST, "origin": "https://blog.example:8443"})
    assert not POLICY.allows({**HOST, "origin": "null"})  # a sandboxed frame, a file: page
    assert not POLICY.allows({**HOST, "origin": "https://blog.example.evil.example"})


def test_referer_when_origin_is_absent() -> None:
    assert POLICY.allows({**HOST, "referer": "https://blog.example/posts/1?q=2"})
    assert not POLICY.allows({**HOST, "referer": "https://evil.example/blog.example"})
    assert not POLICY.allows({**HOST, "referer": "http://[::1"})  # malformed


def test_the_servers_own_origin_and_non_browsers() -> None:
    assert POLICY.allows({**HOST, "origin": "http://chat.example:8000"})  # the demo page
    assert POLICY.allows({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"})
    assert not POLICY.allows({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:9000"})
    assert POLICY.allows(HOST)  # curl: names no page at all


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        OriginPolicy.parse(["blog.example"])


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True)


@given(scheme=st.sampled_from(["http", "https"]), host=hosts, port=st.integers(1, 65535))
def test_only_listed_origins_pass(scheme: str, host: str, port: int) -> None:
    origin = f"{scheme}://{host}:{port}"
    listed = origin in {
        "https://blog.example:443",
        "http://localhost:3000",
        "http://chat.example:8000",
    }
    assert POLICY.allows({**HOST, "origin": origin}) == listed


@given(origin=st.text(max_size=60), referer=st.text(max_size=60))
def test_never_raises(origin: str, referer: str) -> None:
    assert isinstance(POLICY.allows({**HOST, "origin": origin}), bool)
    assert isinstance(POLICY.allows({**HOST, "referer": referer}), bool)
