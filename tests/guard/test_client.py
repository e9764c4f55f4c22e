"""Who the client is: the socket peer, headers believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidechat.guard import TrustedProxies, client_address

PROXY = "10.0.0.5"
TRUSTED = TrustedProxies.parse(["10.0.0.0/24", "fd00::/8"])


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "client": (peer, 40000) if peer else None,
        "headers": [(k.encode(), v.encode("latin-1")) for k, v in headers],
    }


ipv4 = st.ip_addresses(v=4).map(str)
public_ipv4 = ipv4.filter(
    lambda a: ipaddress.ip_address(a) not in ipaddress.ip_network("10.0.0.0/24")
)
# What a visitor may send in the header: any text a header can hold.
junk = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)


def test_the_peer_by_default() -> None:
    assert client_address(scope("192.0.2.1", ("x-forwarded-for", "1.1.1.1")), TrustedProxies()) == (
        "192.0.2.1"
    )
    assert client_address(scope(None), TrustedProxies()) == "local"


def test_a_trusted_proxy_names_the_client() -> None:
    s = scope(PROXY, ("x-forwarded-for", "203.0.113.9"))
    assert client_address(s, TRUSTED) == "203.0.113.9"
    # Two proxies: the inner one's entry is skipped as trusted.
    s = scope(PROXY, ("X-Forwarded-For", "203.0.113.9, 10.0.0.7"))
    assert client_address(s, TRUSTED) == "203.0.113.9"
    # Several header lines read as one list, in order.
    s = scope(PROXY, ("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9"))
    assert client_address(s, TRUSTED) == "203.0.113.9"


def test_forwarded_header() -> None:
    trusted = TrustedProxies.parse(["10.0.0.0/24"], header="forwarded")
    s = scope(PROXY, ("forwarded", 'for=1.1.1.1, for="[2001:db8::17]:4711";proto=https'))
    assert client_address(s, trusted) == "2001:db8::17"
    # X-Forwarded-For is not the header this proxy writes: ignored.
    s = scope(PROXY, ("x-forwarded-for", "1.1.1.1"))
    assert client_address(s, trusted) == PROXY
    # An obfuscated or unknown hop: the proxy's own peer is as far as we can tell.
    s = scope(PROXY, ("forwarded", "for=unknown"))
    assert client_address(s, trusted) == PROXY


def test_a_count_of_hops() -> None:
    trusted = TrustedProxies.parse(["2"])
    assert trusted.hops == 2
    s = scope("192.0.2.1", ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1"))
    assert client_address(s, trusted) == "203.0.113.9"
    s = scope("192.0.2.1", ("x-forwarded-for", "10.0.0.1"))
    assert client_address(s, trusted) == "192.0.2.1"  # fewer entries than hops


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError):
        TrustedProxies.parse(["not-a-network"])


@given(peer=public_ipv4, header=junk)
def test_no_header_is_believed_from_an_untrusted_peer(peer: str, header: str) -> None:
    assert client_address(scope(peer, ("x-forwarded-for", header)), TRUSTED) == peer
    assert client_address(scope(peer, ("forwarded", header)), TRUSTED) == peer


@given(visitor=public_ipv4, spoof=junk, inner=st.booleans())
def test_a_visitor_cannot_choose_their_address(visitor: str, spoof: str, inner: bool) -> None:
    # The visitor sends any X-Forwarded-For; the proxy appends the address it saw.
    header = f"{spoof}, {visitor}" if spoof else visitor
    if inner:  # and a second trusted proxy in front appends the first one's address
        header += ", 10.0.0.9"
    assert client_address(scope(PROXY, ("x-forwarded-for", header)), TRUSTED) == visitor


@given(peer=st.one_of(ipv4, st.ip_addresses(v=6).map(str)), header=st.binary(max_size=200))
def test_never_raises(peer: str, header: bytes) -> None:
    s = {"client": (peer, 1), "headers": [(b"x-forwarded-for", header), (b"forwarded", header)]}
    for trusted in (TRUSTED, TrustedProxies.parse(["3"]), TrustedProxies.parse(["0.0.0.0/0"])):
        assert isinstance(client_address(s, trusted), str)
