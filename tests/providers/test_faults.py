"""What a visitor receives for every upstream fault, through sidechat's public HTTP API."""

from __future__ import annotations

import time

import aiohttp

from tests._servers import SidechatProcess, read_events, ui_events
from tests.fakes.openai_upstream import FakeOpenAI

Chunks = list[dict[str, object]]


async def ask(server: SidechatProcess, message: str) -> tuple[Chunks, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/api/chat",
            json={"message": message},
            headers={"Accept": "text/event-stream"},
        ) as r:
            assert r.status == 200
            events = await read_events(r)
            conversation_id = r.headers["X-Conversation-Id"]
        async with http.get(f"{server.url}/api/conversations/{conversation_id}") as r:
            reply = (await r.json())["messages"][-1]
    assert events[-1].data == "[DONE]"
    return ui_events(events), reply["status"], reply["content"]


def text(chunks: Chunks) -> str:
    return "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta")


def error_of(chunks: Chunks) -> str:
    errors = [str(c["errorText"]) for c in chunks if c["type"] == "error"]
    assert len(errors) == 1, chunks
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}
    return errors[0]


async def test_500_is_retried_until_it_works(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, status, _ = await ask(resilient, "r500-a [[fault=500 fail_times=2 key=r500a]]")
    assert text(chunks) == "tok0 tok1 tok2 tok3 tok4 " and status == "done"
    assert len(upstream.find("r500-a")) == 3


async def test_500_forever_ends_in_a_clear_error_within_the_budget(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    started = time.monotonic()
    chunks, status, _ = await ask(resilient, "r500-b [[fault=500]]")
    elapsed = time.monotonic() - started
    assert "failed" in error_of(chunks) and status == "error"
    assert len(upstream.find("r500-b")) >= 2, "it retried"
    assert elapsed < 4 + 1.5, "the retry budget bounds the wait"


async def test_429_honours_retry_after(resilient: SidechatProcess, upstream: FakeOpenAI) -> None:
    chunks, _, _ = await ask(resilient, "r429 [[fault=429 retry_after=1 fail_times=1 key=r429]]")
    assert text(chunks).startswith("tok0")
    first, second = upstream.find("r429")
    assert second.started - first.started >= 0.95


async def test_429_beyond_the_budget_says_busy(resilient: SidechatProcess) -> None:
    chunks, _, _ = await ask(resilient, "r429b [[fault=429 retry_after=30]]")
    assert "busy" in error_of(chunks)


async def test_dropped_socket_before_first_token_is_retried(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, status, _ = await ask(resilient, "drop0 [[fault=drop_before fail_times=1 key=drop0]]")
    assert text(chunks) == "tok0 tok1 tok2 tok3 tok4 " and status == "done"
    assert len(upstream.find("drop0")) == 2


async def test_dropped_socket_after_first_token_keeps_partial_text(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, status, content = await ask(resilient, "drop1 [[tokens=6 fault=drop_after fault_at=3]]")
    assert text(chunks) == "tok0 tok1 tok2 "
    assert "broke" in error_of(chunks) or "reach" in error_of(chunks)
    assert [c["type"] for c in chunks][-3:] == ["text-end", "error", "finish"]
    assert status == "error" and content == "tok0 tok1 tok2 "
    assert len(upstream.find("drop1")) == 1, "never retried after tokens were sent"


async def test_malformed_chunk(resilient: SidechatProcess) -> None:
    chunks, status, content = await ask(resilient, "bad [[tokens=5 fault=malformed fault_at=2]]")
    assert "garbled" in error_of(chunks)
    assert content == "tok0 tok1 " and status == "error"


async def test_error_event_mid_stream(resilient: SidechatProcess) -> None:
    chunks, _, _ = await ask(resilient, "evt [[tokens=5 fault=error_event fault_at=1]]")
    assert "failed mid-answer" in error_of(chunks)
    assert text(chunks) == "tok0 "


async def test_stall_between_tokens_times_out(resilient: SidechatProcess) -> None:
    started = time.monotonic()
    chunks, status, content = await ask(resilient, "stall [[tokens=5 fault=stall fault_at=2]]")
    assert "stopped responding" in error_of(chunks)
    assert content == "tok0 tok1 " and status == "error"
    assert time.monotonic() - started < 3, "idle timeout is 1 s"


async def test_no_first_token_times_out(resilient: SidechatProcess) -> None:
    chunks, _, _ = await ask(resilient, "slow-start [[ttft=5]]")
    assert "stopped responding" in error_of(chunks)


async def test_bad_key_and_unknown_model_are_short_and_human(
    resilient: SidechatProcess, upstream: FakeOpenAI
) -> None:
    for fault in ("401", "404", "400"):
        chunks, _, _ = await ask(resilient, f"refused-{fault} [[fault={fault}]]")
        message = error_of(chunks)
        assert "fake" not in message and len(message) < 100
        assert len(upstream.find(f"refused-{fault}")) == 1, "refusals are not retried"
    assert "not configured correctly" in error_of((await ask(resilient, "k [[fault=401]]"))[0])
    log = resilient.log()
    assert "HTTP 401" in log and "fake 401" in log, "the server log keeps the detail"


async def test_fallback_when_primary_is_down(
    with_fallback: SidechatProcess, upstream: FakeOpenAI
) -> None:
    chunks, status, _ = await ask(with_fallback, "fallback-1 [[tokens=3]]")
    assert text(chunks) == "tok0 tok1 tok2 " and status == "done"
    assert upstream.find("fallback-1")[0].body["model"] == "backup"
    finish = chunks[-1]
    assert finish["type"] == "finish" and finish["finishReason"] == "stop"
