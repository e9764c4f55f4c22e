"""ALTCHA proof of work (`--pow`) against a real sidechat: a new conversation without a solution
gets `428` and a challenge, a solved one starts, a replayed or forged one gets `403`; the
conversation's later turns need none; a malformed solution is a 403, never a 500."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from altcha import v1

from sidechat.guard.pow import PowRefused, PowRequired, ProofOfWork
from tests._servers import SidechatProcess, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="module")
def pow_server(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--pow", "--client-limits", "off"),
    ) as proc:
        yield proc


def solve(challenge: dict[str, Any]) -> str:
    """A solution as the ALTCHA widget sends it: base64 of the JSON payload."""
    found = v1.solve_challenge(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"]
    )
    assert found is not None
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": found.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(orjson.dumps(payload)).decode()


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(f"{url}/api/chat", json=body) as r:
        return r.status, await r.json()


async def test_a_new_conversation_needs_a_solution_used_once(
    pow_server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    url = pow_server.url
    status, body = await _post(http, url, {"message": "hello"})
    assert status == 428
    assert body["error"]["code"] == "pow_required"
    challenge = body["error"]["challenge"]
    assert challenge["maxnumber"] == 50_000 and challenge["signature"]
    solution = solve(challenge)
    status, started = await _post(http, url, {"message": "hello", "altcha": solution})
    assert status == 202, started
    # The conversation's next turn needs no solution.
    again = {"message": "more", "conversation_id": started["conversation_id"]}
    status, _ = await _post(http, url, again)
    assert status in (202, 429)  # 429: the first turn may still be generating
    # The same solution again (a replay) is refused.
    status, body = await _post(http, url, {"message": "hello", "altcha": solution})
    assert status == 403
    assert body["error"]["code"] == "pow_invalid"
    assert "already used" in body["error"]["message"]


async def test_the_challenge_endpoint_and_forged_solutions(
    pow_server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    url = pow_server.url
    async with http.get(f"{url}/api/pow/challenge") as r:
        assert r.status == 200
        assert r.headers["cache-control"] == "no-store"
        challenge = await r.json()
    payload = orjson.loads(base64.b64decode(solve(challenge)))
    forged = dict(payload, number=payload["number"] + 1)  # a wrong number
    for bad in (
        base64.b64encode(orjson.dumps(forged)).decode(),
        "not base64 at all ²",
        base64.b64encode(b"[1, 2]").decode(),
        {"number": 1},
        "x" * 5000,
    ):
        status, body = await _post(http, url, {"message": "hi", "altcha": bad})
        assert status == 403, (bad, body)
        assert body["error"]["code"] == "pow_invalid"


async def test_an_expired_challenge_is_refused() -> None:
    pow_ = ProofOfWork(1000, expires=-5.0)  # expired when made
    with pytest.raises(PowRequired) as required:
        await pow_.check(None)
    with pytest.raises(PowRefused):
        await pow_.check(solve(required.value.extra["challenge"]))


async def test_without_pow_the_challenge_endpoint_is_404(
    server: SidechatProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/api/pow/challenge") as r:
        assert r.status == 404
