"""A public endpoint under attack (issue 19), each finding reproduced against a real sidechat
process: distinct client addresses are real sockets bound to 127.0.0.2, 127.0.0.3, ..."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests._servers import SidechatProcess, read_events, start_sidechat, ui_events
from tests.fakes.openai_upstream import FakeOpenAI

ALLOWED = "https://blog.example"


@pytest.fixture(scope="module")
def guarded(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    """sidechat with the default per-client limits on, an origin allow-list and one trusted
    proxy (127.0.0.7), logging at info (the access log)."""
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake"),
        *("--client-limits", "on", "--allowed-origin", ALLOWED, "--trusted-proxy", "127.0.0.7"),
        *("--log-level", "info"),
    ) as proc:
        yield proc


@contextlib.asynccontextmanager
async def client(address: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from `address`."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], Any]:
    async with http.post(url, data=orjson.dumps(body), headers=headers) as r:
        data = await r.read()
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = data
        return r.status, dict(r.headers), parsed


async def finish(http: aiohttp.ClientSession, base: str, turn_id: str) -> None:
    """Wait until the turn has ended (so the concurrency cap is not what refuses the next)."""
    after = 0
    for _ in range(50):
        # From the last event seen: a long poll that waits for the end (from 0 it answers at
        # once, and 50 immediate polls can all come before the turn's ending is written).
        async with http.get(f"{base}/api/turns/{turn_id}/events?after={after}&wait=5") as r:
            body = await r.json()
            if body["done"]:
                return
            after = body["last_id"]
    raise AssertionError("the turn never finished")


async def test_a_flood_from_one_address_gets_429_while_another_still_starts_turns(
    guarded: SidechatProcess,
) -> None:
    url = guarded.url + "/api/chat"
    async with client("127.0.0.2") as flooder:
        statuses = []
        for i in range(8):
            status, headers, body = await post(flooder, url, {"message": f"flood {i} [[tokens=1]]"})
            statuses.append(status)
            if status == 202:
                await finish(flooder, guarded.url, body["turn_id"])  # not the concurrency cap
        assert statuses[:5] == [202] * 5  # the burst
        assert statuses[5:] == [429] * 3
        assert body["error"]["code"] == "rate_limited"
        assert 1 <= int(headers["Retry-After"]) <= 6
        assert int(headers["Retry-After"]) == body["error"]["retry_after"]
    async with client("127.0.0.3") as honest:
        status, _, _ = await post(honest, url, {"message": "a visitor [[tokens=1]]"})
        assert status == 202


async def test_concurrent_turns_per_address_are_capped(guarded: SidechatProcess) -> None:
    url = guarded.url + "/api/chat"
    slow = {"message": "slow [[tokens=40 interval=0.05]]"}
    async with client("127.0.0.4") as greedy:
        assert (await post(greedy, url, slow))[0] == 202
        assert (await post(greedy, url, slow))[0] == 202
        status, headers, body = await post(greedy, url, slow)
        assert status == 429 and body["error"]["code"] == "too_many_active"
        assert "Retry-After" in headers
    async with client("127.0.0.5") as other:
        assert (await post(other, url, slow))[0] == 202


async def test_a_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy(
    guarded: SidechatProcess,
) -> None:
    url = guarded.url + "/api/chat"
    async with client("127.0.0.6") as spoofer:
        for i in range(5):
            status, _, body = await post(spoofer, url, {"message": f"s{i} [[tokens=1]]"})
            assert status == 202
            await finish(spoofer, guarded.url, body["turn_id"])
        for fake in ("1.2.3.4", "5.6.7.8"):
            status, _, _ = await post(
                spoofer, url, {"message": "again [[tokens=1]]"}, **{"X-Forwarded-For": fake}
            )
            assert status == 429
    # The trusted proxy's X-Forwarded-For does name distinct clients.
    async with client("127.0.0.7") as proxy:
        for i in range(8):
            status, _, _ = await post(
                proxy,
                url,
                {"message": f"p{i} [[tokens=1]]"},
                **{"X-Forwarded-For": f"6.6.6.6, 198.51.100.{i + 1}"},
            )
            assert status == 202


async def test_a_page_on_another_origin_gets_403_and_reaches_no_upstream(
    guarded: SidechatProcess, upstream: FakeOpenAI
) -> None:
    url = guarded.url
    async with client("127.0.0.8") as http:
        evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        status, _, body = await post(
            http, url + "/api/chat", {"message": "evil-1 [[tokens=1]]"}, **evil
        )
        assert status == 403 and body["error"]["code"] == "forbidden"
        ai_sdk = {
            "id": "evil-chat-0123456789",
            "messages": [{"role": "user", "parts": [{"type": "text", "text": "evil-2"}]}],
        }
        assert (await post(http, url + "/api/chat", ai_sdk, **evil))[0] == 403
        assert (await post(http, url + "/chat-stream", {"message": "evil-3"}, **evil))[0] == 403
        referer = {"Referer": "https://evil.example/post"}
        assert (await post(http, url + "/api/chat", {"message": "evil-4"}, **referer))[0] == 403
        await asyncio.sleep(0.2)
        assert not any(upstream.find(f"evil-{i}") for i in range(1, 5))
        # The listed origin, and the server's own (the demo page), are let in.
        ok = {"Origin": ALLOWED}
        assert (await post(http, url + "/api/chat", {"message": "ok [[tokens=1]]"}, **ok))[0] == 202
        own = {"Origin": guarded.url}
        assert (await post(http, url + "/api/chat", {"message": "own [[tokens=1]]"}, **own))[
            0
        ] == 202


async def test_bad_event_ids_are_400_not_500(guarded: SidechatProcess) -> None:
    async with client("127.0.0.9") as http:
        _, _, body = await post(http, guarded.url + "/api/chat", {"message": "x [[tokens=1]]"})
        turn = body["turn_id"]
        for path, headers in (
            (f"/api/turns/{turn}/stream", {"Last-Event-ID": "²"}),
            (f"/api/turns/{turn}/stream?last_event_id=%C2%B2", {}),
            (f"/api/turns/{turn}/events?after=%C2%B2", {}),
            (f"/api/turns/{turn}/events?after=-1", {}),
            (f"/api/turns/{turn}/events?wait=nan", {}),
        ):
            async with http.get(guarded.url + path, headers=headers) as r:
                assert r.status == 400, (path, await r.text())
                assert (await r.json())["error"]["code"] == "bad_request"


async def test_a_missing_static_file_is_404(guarded: SidechatProcess) -> None:
    async with client("127.0.0.10") as http:
        for path in ("/static/missing.js", "/static/../sidechat/app.py", "/static/"):
            async with http.get(guarded.url + path) as r:
                assert r.status == 404, path
                assert (await r.json())["error"]["code"] == "not_found"


def test_a_client_gone_mid_body_is_let_go_quietly(guarded: SidechatProcess) -> None:
    host, port = guarded.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), source_address=("127.0.0.11", 0)) as s:
            s.sendall(
                b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"message": "hal'
            )
            time.sleep(0.1)
    time.sleep(0.3)
    log = guarded.log()
    assert "Traceback" not in log and "ClientDisconnect" not in log


async def test_the_ai_sdk_history_is_held_to_the_native_limits(
    guarded: SidechatProcess, upstream: FakeOpenAI
) -> None:
    # 21 messages, 20 of 15,900 characters: a 320 KB body; the native path sends at most
    # max_history_chars (12,000) of history.
    messages = [
        {"role": role, "parts": [{"type": "text", "text": role[0] * 15_900}]}
        for role in ["user", "assistant"] * 10
    ]
    messages.append({"role": "user", "parts": [{"type": "text", "text": "trim-me [[tokens=1]]"}]})
    body = {"id": "history-chat-0123456789", "messages": messages}
    assert len(orjson.dumps(body)) > 300_000
    async with (
        client("127.0.0.12") as http,
        http.post(guarded.url + "/api/chat", data=orjson.dumps(body)) as r,
    ):
        assert r.status == 200
        await r.read()
    (record,) = upstream.find("trim-me")
    history = sum(len(m["content"]) for m in record.body["messages"][:-1] if m["role"] != "system")
    assert history <= 12_000
    assert len(orjson.dumps(record.body)) < 20_000


async def test_client_chosen_ids_are_long_and_apart_from_the_servers(
    guarded: SidechatProcess,
) -> None:
    def ai_sdk(chat_id: str, text: str) -> dict[str, Any]:
        return {
            "id": chat_id,
            "messages": [{"role": "user", "parts": [{"type": "text", "text": text}]}],
        }

    url = guarded.url + "/api/chat"
    async with client("127.0.0.13") as http:
        status, _, body = await post(http, url, ai_sdk("a" * 15, "short [[tokens=1]]"))
        assert status == 400 and "16-128" in body["error"]["message"]
        async with http.post(url, data=orjson.dumps(ai_sdk("a" * 16, "long [[tokens=1]]"))) as r:
            assert r.status == 200
            await r.read()
        # A client-chosen id equal to a server conversation's id does not reach into it.
        status, _, native = await post(http, url, {"message": "mine [[tokens=1]]"})
        await finish(http, guarded.url, native["turn_id"])
        conversation = native["conversation_id"]
        async with http.post(
            url, data=orjson.dumps(ai_sdk(conversation, "intruder [[tokens=1]]"))
        ) as r:
            assert r.status == 200
            await r.read()
        async with http.get(f"{guarded.url}/api/conversations/{conversation}") as r:
            messages = (await r.json())["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == ["mine [[tokens=1]]"]


async def test_the_access_log_names_route_status_and_client_never_the_text(
    guarded: SidechatProcess,
) -> None:
    async with client("127.0.0.14") as http:
        status, _, body = await post(
            http, guarded.url + "/api/chat", {"message": "zebra-secret [[tokens=1]]"}
        )
        assert status == 202
        await finish(http, guarded.url, body["turn_id"])
    await asyncio.sleep(0.2)
    lines = [line for line in guarded.log().splitlines() if "client=127.0.0.14" in line]
    assert any(
        "method=POST route=/api/chat status=202" in line and f"turn={body['turn_id']}" in line
        for line in lines
    ), lines
    assert any("route=/api/turns/{turn_id}/events status=200" in line for line in lines)
    assert "zebra-secret" not in guarded.log()


async def test_the_daily_token_budget_for_the_site(upstream: FakeOpenAI) -> None:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake"),
        *("--client-limits", "on", "--daily-token-budget", "10"),
    ) as server:
        async with client("127.0.0.15") as http:
            status, _, body = await post(
                http, server.url + "/api/chat", {"message": "[[tokens=20]]"}
            )
            assert status == 202
            await finish(http, server.url, body["turn_id"])
        async with client("127.0.0.16") as http:  # another visitor: the site's budget is spent
            status, headers, body = await post(http, server.url + "/api/chat", {"message": "hi"})
            assert status == 429 and body["error"]["code"] == "daily_budget"
            assert int(headers["Retry-After"]) > 0


async def test_the_access_log_can_be_turned_off(upstream: FakeOpenAI) -> None:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake"),
        *("--access-log", "off", "--log-level", "info"),
    ) as server:
        async with client("127.0.0.30") as http:
            status, _, body = await post(
                http, server.url + "/api/chat", {"message": "quiet log [[tokens=1]]"}
            )
            assert status == 202
            await finish(http, server.url, body["turn_id"])
        await asyncio.sleep(0.2)
        log = server.log()
    assert f"turn={body['turn_id']}" in log  # logging is on at info: the turn's own line
    assert "route=/api/chat" not in log and "client=127.0.0.30" not in log, log


async def test_a_flood_of_bad_requests_costs_one_short_log_line_each(
    guarded: SidechatProcess,
) -> None:
    # The finding: ~1.1 MB of log a second from one client (a traceback per bad request).
    async with client("127.0.0.31") as http:
        _, _, body = await post(http, guarded.url + "/api/chat", {"message": "x [[tokens=1]]"})
        turn = body["turn_id"]
    bad = [
        ("GET", f"/api/turns/{turn}/stream", {"Last-Event-ID": "²"}),
        ("GET", f"/api/turns/{turn}/events?after=%C2%B2", {}),
        ("GET", "/static/missing.js", {}),
        ("POST", "/api/chat", {"Content-Type": "application/json"}),
        ("GET", "/api/conversations/%00", {}),
    ]
    before = len(guarded.log().encode())
    requests = 0
    async with client("127.0.0.31") as http:
        for _ in range(60):
            for method, path, headers in bad:
                async with http.request(
                    method, guarded.url + path, headers=headers, data=b"{not json"
                ) as r:
                    assert r.status < 500, (path, r.status)
                    requests += 1
    await asyncio.sleep(0.3)
    grown = guarded.log().encode()[before:]
    assert b"Traceback" not in grown
    assert len(grown) / requests < 400, grown[-2000:]  # one access line each, nothing more


async def test_a_flood_cannot_hold_the_model_for_everyone_else(
    guarded: SidechatProcess, upstream: FakeOpenAI
) -> None:
    # The finding: 40 POSTs in 0.05 s on the embedded model left a visitor with no token for
    # 60 s. Now at most the concurrency cap of them reaches the model at all.
    url = guarded.url + "/api/chat"
    slow = {"message": "starve-flood [[tokens=20 interval=0.05]]"}
    async with client("127.0.0.32") as flooder:
        results = await asyncio.gather(*(post(flooder, url, slow) for _ in range(40)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses.count(202) == 2 and statuses.count(429) == 38, statuses
        async with client("127.0.0.33") as honest:
            status, _, body = await post(honest, url, {"message": "starve-honest [[tokens=3]]"})
            assert status == 202
            async with honest.get(f"{guarded.url}/api/turns/{body['turn_id']}/stream") as r:
                events = ui_events(await read_events(r))
    text = "".join(str(e["delta"]) for e in events if e["type"] == "text-delta")
    assert text == "tok0 tok1 tok2 " and not [e for e in events if e["type"] == "error"]
    assert len(upstream.find("starve-flood")) == 2  # not 40
