"""The log a real `sidechat serve` writes: one line per request and per turn, JSON with
`--log-format json`, human-readable by default; ids in it, never message text or keys."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from sidechat._logfmt import JSONFormatter, TextFormatter
from tests._servers import SidechatProcess, read_events, start_sidechat
from tests.answers._index import ROOT
from tests.content._helpers import ingest
from tests.fakes.openai_upstream import FakeOpenAI

SSE = {"Accept": "text/event-stream"}
KEY = "sk-log-test-7f3a9c0e1d2b"
SECRET = "zebra-quartz-4471"  # a marker in the question: it must never reach the log


def _serve(upstream: FakeOpenAI, *args: str) -> Any:
    return start_sidechat(
        "--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
        "--memory-only", *args,
        env={"SIDECHAT_API_KEY": KEY},
    )  # fmt: skip


async def _turn(server: SidechatProcess, http: aiohttp.ClientSession) -> str:
    """One turn streamed to its end; returns its id."""
    message = f"what about {SECRET}? [[tokens=6]]"
    async with http.post(f"{server.url}/api/chat", headers=SSE, json={"message": message}) as r:
        assert r.status == 200
        events = await read_events(r)
        assert events[-1].data == "[DONE]"
        return r.headers["X-Turn-Id"]


async def _lines_until(server: SidechatProcess, *needles: str) -> list[str]:
    """The log's lines, once every needle is in it (the lines are written as the request and
    the turn end, a moment after the client read the last event)."""
    for _ in range(100):
        text = server.log()
        if all(needle in text for needle in needles):
            return [line for line in text.splitlines() if line.strip()]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{needles} not in the log:\n{server.log()}")


async def test_json_log_one_object_a_line_with_ids_and_no_secrets(
    upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    with _serve(upstream, "--log-format", "json") as server:
        turn_id = await _turn(server, http)
        await _lines_until(server, '"logger":"sidechat.turns"', '"route":"/api/chat"')
    log = server.log()  # stopped: its shutdown's lines are in it too
    entries = [orjson.loads(line) for line in log.splitlines()]  # every line, start-up's too
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
    assert any(e["msg"] == "Shutting down" for e in entries), "uvicorn's lines are JSON"
    (access,) = [e for e in entries if e["logger"] == "sidechat.access" and e["turn"] == turn_id]
    assert access["method"] == "POST" and access["status"] == 200
    assert re.fullmatch(r"[0-9a-f]{12}", access["request"])
    assert access["ms"] >= 0 and access["client"] == "127.0.0.1"
    (turn,) = [e for e in entries if e["logger"] == "sidechat.turns" and e.get("turn") == turn_id]
    assert turn["msg"] == "turn ended"
    assert turn["outcome"] == "done" and turn["finish"] == "stop" and turn["error"] == "-"
    assert turn["conversation"].startswith("c_")
    assert turn["deltas"] == 6 and turn["chars"] > 0 and turn["sources"] == 0
    assert 0 <= turn["ttft_ms"] <= turn["ms"]
    assert SECRET not in log and KEY not in log
    health = [e for e in entries if e.get("route") == "/healthz"]
    assert health and all(e["request"] != access["request"] for e in health)


async def test_text_log_is_human_readable_with_the_turn_line(
    upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    with _serve(upstream) as server:
        turn_id = await _turn(server, http)
        lines = await _lines_until(
            server, f"sidechat.turns: turn ended turn={turn_id} ", "route=/api/chat status=200"
        )
        log = server.log()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    (turn,) = [line for line in lines if "sidechat.turns: turn ended" in line]
    assert re.fullmatch(
        stamp + rf" INFO sidechat\.turns: turn ended turn={turn_id} conversation=c_\S+ "
        r"outcome=done finish=stop error=- ms=[\d.]+ ttft_ms=[\d.]+ deltas=6 chars=\d+ "
        r"sources=0 answer=-",
        turn,
    ), turn
    (access,) = [line for line in lines if "sidechat.access" in line and turn_id in line]
    assert re.fullmatch(
        stamp + r" INFO sidechat\.access: request request=[0-9a-f]{12} method=POST "
        rf"route=/api/chat status=200 ms=[\d.]+ client=127\.0\.0\.1 turn={turn_id}",
        access,
    ), access
    assert not lines[0].startswith("{")
    assert SECRET not in log and KEY not in log


def _record(fields: dict[str, Any] | None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("sidechat.x", logging.WARNING, __file__, 1, "hi %s", ("you",),
                               exc_info)  # fmt: skip
    if fields is not None:
        record.fields = fields
    return record


def test_formatters_fields_quoting_and_tracebacks() -> None:
    text = TextFormatter().format(_record({"a": "two words", "b": None, "c": 1.25, "d": 3}))
    assert text.endswith(' sidechat.x: hi you a="two words" b=- c=1.2 d=3')
    with_trace = TextFormatter().format(_record({"k": "v"}, exc=True))
    first, _, rest = with_trace.partition("\n")
    assert first.endswith("hi you k=v") and "ValueError: boom" in rest
    entry = orjson.loads(JSONFormatter().format(_record({"msg": "x", "n": 2}, exc=True)))
    assert entry["msg"] == "hi you" and entry["_msg"] == "x" and entry["n"] == 2
    assert entry["level"] == "warning" and entry["logger"] == "sidechat.x"
    assert "ValueError: boom" in entry["exc"] and entry["ts"].endswith("+00:00")
    assert "\n" not in JSONFormatter().format(_record(None, exc=True))


async def test_a_grounded_turn_line_names_its_answer_strategy_and_sources(
    upstream: FakeOpenAI, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    index = tmp_path / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", index, "--quiet")
    args = ("--log-format", "json", "--index", str(index), "--answer-mode", "extractive")
    with _serve(upstream, *args) as server:
        message = f"How do I install sidechat? {SECRET}"
        async with http.post(f"{server.url}/api/chat", headers=SSE, json={"message": message}) as r:
            await read_events(r)
            turn_id = r.headers["X-Turn-Id"]
        await _lines_until(server, '"logger":"sidechat.turns"')
    log = server.log()
    entries = [orjson.loads(line) for line in log.splitlines()]
    (turn,) = [e for e in entries if e["logger"] == "sidechat.turns" and e.get("turn") == turn_id]
    assert turn["answer"] == "extractive" and turn["sources"] > 0 and turn["outcome"] == "done"
    assert SECRET not in log and "install sidechat" not in log
