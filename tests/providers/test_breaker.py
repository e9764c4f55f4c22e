"""The circuit breaker (issue 19): once an upstream has failed turns in a row, the next turns
fail at once without reaching it; after the cool-down one probe goes through, and its outcome
opens the breaker again or closes it. Counted in upstream requests, not in seconds."""

from __future__ import annotations

import asyncio

import aiohttp

from tests._servers import SidechatProcess, free_port, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI
from tests.providers.test_faults import ask, error_of, text


async def _breaker(server: SidechatProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as r:
        return str((await r.json())["upstreams"]["openai"])


async def _until(server: SidechatProcess, state: str) -> None:
    for _ in range(200):
        if await _breaker(server) == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the breaker never became {state}")


async def test_an_open_breaker_fails_turns_at_once_then_a_probe_closes_it(
    upstream: FakeOpenAI,
) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "m")
    flags = ("--retry-budget", "1", "--breaker-failures", "2", "--breaker-cooldown", "3")
    with start_sidechat(*args, *flags) as server:
        assert await _breaker(server) == "closed"
        # The upstream is down (500 to every request): two turns spend their retries and fail.
        for _ in range(2):
            chunks, status, _ = await ask(server, "brk-down [[fault=500]]")
            assert status == "error" and "failed" in error_of(chunks)
        reached = len(upstream.find("brk-down"))
        assert reached > 2, "each turn retried"
        assert await _breaker(server) == "open"

        # While open: each turn fails with one quick, clear error, and the upstream sees none.
        results = await asyncio.gather(*(ask(server, "brk-down [[fault=500]]") for _ in range(6)))
        for chunks, status, _ in results:
            assert status == "error" and "unavailable right now" in error_of(chunks)
        assert len(upstream.find("brk-down")) == reached
        assert server.log().count("circuit breaker open") >= 6

        # After the cool-down one probe goes through; it fails, once, and the breaker opens.
        await _until(server, "half-open")
        chunks, status, _ = await ask(server, "brk-down [[fault=500]]")
        assert status == "error"
        assert len(upstream.find("brk-down")) == reached + 1, "the probe was not retried"
        assert await _breaker(server) == "open"

        # The upstream is back: the next probe streams, and closes the breaker.
        await _until(server, "half-open")
        chunks, status, _ = await ask(server, "brk-up [[tokens=3]]")
        assert status == "done" and text(chunks) == "tok0 tok1 tok2 "
        assert await _breaker(server) == "closed"
        chunks, status, _ = await ask(server, "brk-up-again [[tokens=2]]")
        assert status == "done"


async def test_errors_that_are_not_outages_never_open_it(upstream: FakeOpenAI) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "m")
    with start_sidechat(*args, "--breaker-failures", "2") as server:
        for _ in range(4):  # a wrong request, not a dead upstream
            chunks, status, _ = await ask(server, "brk-400 [[fault=400]]")
            assert status == "error" and "refused this request" in error_of(chunks)
        assert len(upstream.find("brk-400")) == 4
        assert await _breaker(server) == "closed"


async def test_an_open_breaker_sends_turns_straight_to_the_fallback(upstream: FakeOpenAI) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connections are refused
    args = ("--provider", "openai", "--base-url", dead, "--model", "primary")
    flags = ("--retry-budget", "0.5", "--breaker-failures", "1", "--breaker-cooldown", "60")
    with start_sidechat(
        *args, *flags, "--fallback", f"openai:backup@{upstream.base_url}"
    ) as server:
        chunks, status, _ = await ask(server, "brk-fb-1 [[tokens=2]]")
        assert status == "done" and text(chunks) == "tok0 tok1 "
        tried = server.log().count(f"{dead}/chat/completions: cannot connect")
        assert tried >= 1
        for i in range(3):
            chunks, status, _ = await ask(server, f"brk-fb-{i + 2} [[tokens=2]]")
            assert status == "done" and text(chunks) == "tok0 tok1 "
        log = server.log()
    assert log.count(f"{dead}/chat/completions: cannot connect") == tried, "no new attempt"
    assert log.count("provider openai skipped: openai: circuit breaker open") == 3
    assert len(upstream.find("brk-fb-")) == 4


async def test_a_probe_whose_visitor_leaves_lets_the_next_turn_probe(upstream: FakeOpenAI) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "m")
    flags = ("--retry-budget", "0.3", "--breaker-failures", "1", "--breaker-cooldown", "1")
    with start_sidechat(*args, *flags) as server:
        await ask(server, "brk-leave-down [[fault=500]]")
        await _until(server, "half-open")
        async with aiohttp.ClientSession() as http:
            # The probe: slow to its first token, and cancelled before it.
            async with http.post(
                server.url + "/api/chat", json={"message": "brk-leave-probe [[ttft=30]]"}
            ) as r:
                assert r.status == 202
                cancel_url = (await r.json())["cancel_url"]
            for _ in range(200):
                if upstream.find("brk-leave-probe"):
                    break
                await asyncio.sleep(0.05)
            async with http.post(server.url + cancel_url) as r:
                assert r.status < 300
        # Without the cancelled probe's release, this turn would be refused for good.
        chunks, status, _ = await ask(server, "brk-leave-next [[tokens=2]]")
        assert status == "done" and text(chunks) == "tok0 tok1 "
        assert await _breaker(server) == "closed"
