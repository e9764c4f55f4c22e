"""Ids: unguessable, and in the order they were made (the store's indexes grow at one edge)."""

from __future__ import annotations

import re
import time

from sidechat.conversations import new_id
from sidechat.request_bodies import _CLIENT_ID


def test_ids_carry_128_random_bits_after_the_time() -> None:
    ids = [new_id("t_") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for made in ids:
        assert re.fullmatch(r"t_[0-9a-f]{11}[A-Za-z0-9_-]{22}", made), made
        assert _CLIENT_ID.fullmatch(made), "a client may send it back as an id of its own"
    # The random part differs even between ids made in the same millisecond.
    assert len({made[13:] for made in ids}) == len(ids)


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(5):
        made.append(new_id("c_"))
        time.sleep(0.002)
    assert made == sorted(made)
    ms = int(made[0][2:13], 16)
    assert abs(ms / 1000 - time.time()) < 60
