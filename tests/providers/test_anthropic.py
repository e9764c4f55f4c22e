"""The Anthropic Messages streaming format, through sidechat's public HTTP API."""

from __future__ import annotations

import subprocess
import sys
import time

from tests._servers import SidechatProcess
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.providers.test_faults import ask, error_of, text


async def test_streams_text_with_usage_and_model(
    anthropic_server: SidechatProcess, anthropic_upstream: FakeAnthropic
) -> None:
    chunks, status, content = await ask(anthropic_server, "anth-1 [[tokens=4]]")
    assert text(chunks) == "tok0 tok1 tok2 tok3 " == content and status == "done"
    assert chunks[-1] == {
        "type": "finish",
        "finishReason": "stop",
        "messageMetadata": {
            "usage": {"inputTokens": 21, "outputTokens": 4},
            "model": "claude-test",
        },
    }
    sent = anthropic_upstream.find("anth-1")[0]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["stream"] is True and sent.body["system"]
    assert sent.body["messages"][-1]["role"] == "user"


async def test_overloaded_error_event_mid_stream(anthropic_server: SidechatProcess) -> None:
    chunks, status, content = await ask(
        anthropic_server, "anth-2 [[tokens=5 fault=overloaded_event fault_at=2]]"
    )
    assert "overloaded" in error_of(chunks)
    assert content == "tok0 tok1 " and status == "error"


async def test_529_is_retried(
    anthropic_server: SidechatProcess, anthropic_upstream: FakeAnthropic
) -> None:
    chunks, _, _ = await ask(anthropic_server, "anth-3 [[fault=529 fail_times=1 key=a3]]")
    assert text(chunks).startswith("tok0")
    assert len(anthropic_upstream.find("anth-3")) == 2


async def test_malformed_and_dropped(anthropic_server: SidechatProcess) -> None:
    chunks, _, _ = await ask(anthropic_server, "anth-4 [[fault=malformed fault_at=1]]")
    assert "garbled" in error_of(chunks)
    chunks, _, content = await ask(anthropic_server, "anth-5 [[fault=drop_after fault_at=3]]")
    assert content == "tok0 tok1 tok2 "
    error_of(chunks)


def test_missing_key_is_refused_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--provider", "anthropic", "--model", "m"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert result.returncode != 0 and "ANTHROPIC_API_KEY" in result.stderr


async def test_drop_before_first_token_is_retried(
    anthropic_server: SidechatProcess, anthropic_upstream: FakeAnthropic
) -> None:
    chunks, status, _ = await ask(
        anthropic_server, "anth-6 [[fault=drop_before fail_times=1 key=a6]]"
    )
    assert text(chunks) == "tok0 tok1 tok2 tok3 tok4 " and status == "done"
    assert len(anthropic_upstream.find("anth-6")) == 2


async def test_429_honours_retry_after(
    anthropic_server: SidechatProcess, anthropic_upstream: FakeAnthropic
) -> None:
    chunks, _, _ = await ask(
        anthropic_server, "anth-7 [[fault=429 retry_after=1 fail_times=1 key=a7]]"
    )
    assert text(chunks).startswith("tok0")
    first, second = anthropic_upstream.find("anth-7")
    assert second.started - first.started >= 0.95


async def test_stalls_time_out(anthropic_server: SidechatProcess) -> None:
    started = time.monotonic()
    chunks, status, content = await ask(anthropic_server, "anth-8 [[fault=stall fault_at=2]]")
    assert "stopped responding" in error_of(chunks)
    assert content == "tok0 tok1 " and status == "error"
    assert time.monotonic() - started < 3, "idle timeout is 1 s"
    chunks, _, _ = await ask(anthropic_server, "anth-9 [[ttft=5]]")
    assert "stopped responding" in error_of(chunks)


async def test_refusals_are_short_and_human_and_logged(
    anthropic_server: SidechatProcess, anthropic_upstream: FakeAnthropic
) -> None:
    for fault in ("400", "404"):
        chunks, _, _ = await ask(anthropic_server, f"anth-r{fault} [[fault={fault}]]")
        message = error_of(chunks)
        assert "fake" not in message and len(message) < 100
        assert len(anthropic_upstream.find(f"anth-r{fault}")) == 1, "refusals are not retried"
    assert "fake 404: model: claude-nope" in anthropic_server.log()


async def test_bad_key(anthropic_bad_key: SidechatProcess) -> None:
    chunks, status, _ = await ask(anthropic_bad_key, "anth-key")
    assert "not configured correctly" in error_of(chunks) and status == "error"
    log = anthropic_bad_key.log()
    assert "HTTP 401" in log and "authentication_error" in log
    assert "sk-ant-wrong" not in log, "keys never reach the log"


async def test_prompt_too_long_says_so(anthropic_server: SidechatProcess) -> None:
    chunks, _, _ = await ask(anthropic_server, "anth-long [[fault=too_long]]")
    assert "too long" in error_of(chunks)
