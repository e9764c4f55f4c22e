"""/metrics after a known sequence of turns through a real server: exact counts, histograms
with observations and the right labels."""

from __future__ import annotations

import re
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._servers import start_sidechat
from tests.admin._filled import TOKEN, Filled, bearer
from tests.fakes.openai_upstream import FakeOpenAI


def _scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, str], float]:
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[(s.name, labels)] = s.value
    return samples


def test_counts_after_known_turns(filled: Filled) -> None:
    m = _scrape(filled.server.url)
    turns = {o: m[("sidechat_turns_total", f"outcome={o}")] for o in
             ("done", "length", "error", "aborted", "interrupted")}  # fmt: skip
    assert turns == {"done": 4, "length": 1, "error": 1, "aborted": 1, "interrupted": 0}
    assert m[("sidechat_tokens_streamed_total", "")] == filled.deltas
    assert m[("sidechat_resumes_total", "kind=last_event_id")] == 1
    assert m[("sidechat_resumes_total", "kind=long_poll")] == 1
    assert m[("sidechat_resumes_total", "kind=ai_sdk")] == 1
    assert m[("sidechat_upstream_errors_total", "kind=client_error")] == 1
    assert ("sidechat_upstream_retries_total", "kind=client_error") not in m  # never retried
    assert m[("sidechat_generating_turns", "")] == 0
    assert m[("sidechat_active_streams", "")] == 0
    # Histograms: every turn but the failed one had a first token; every turn retrieved.
    assert m[("sidechat_time_to_first_token_seconds_count", "")] == 6
    assert m[("sidechat_time_to_first_token_seconds_bucket", "le=+Inf")] == 6
    assert m[("sidechat_retrieval_seconds_count", "")] == 7
    assert m[("sidechat_turn_seconds_count", "")] == 7
    # 1 token in 64 is timed: the 600-token turn and the aborted one give several.
    assert m[("sidechat_token_added_delay_seconds_count", "")] >= 4
    assert 0 < m[("sidechat_token_added_delay_seconds_sum", "")] < 1
    assert m[("sidechat_store_write_seconds_count", "")] >= 1


def test_fallback_and_retries_are_counted(upstream: FakeOpenAI) -> None:
    args = ("--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
            "--fallback", f"openai:fake-model@{upstream.base_url}", "--retry-budget", "0",
            "--memory-only")  # fmt: skip
    with start_sidechat(*args) as server:
        body = b'{"message": "hello"}'
        request = urllib.request.Request(
            server.url + "/api/chat", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        for _ in range(100):
            m = _scrape(server.url)
            if m[("sidechat_turns_total", "outcome=done")] == 1:
                break
            import time

            time.sleep(0.05)
        assert m[("sidechat_fallbacks_total", "provider=openai")] == 1
        assert m[("sidechat_upstream_errors_total", "kind=connection")] == 1
        assert m[("sidechat_turns_total", "outcome=done")] == 1


@pytest.mark.parametrize("mode", ["off", "token"])
def test_metrics_off_or_behind_the_token(mode: str) -> None:
    env = {"SIDECHAT_ADMIN_TOKEN": TOKEN}
    with start_sidechat("--memory-only", "--metrics", mode, env=env) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            _scrape(server.url)
        assert refused.value.code == (404 if mode == "off" else 401)
        if mode == "token":
            wrong = {"authorization": "Bearer " + "x" * len(TOKEN)}
            with pytest.raises(urllib.error.HTTPError):
                _scrape(server.url, wrong)
            assert re.search("sidechat", str(_scrape(server.url, bearer())))


def test_refusals_are_counted(upstream: FakeOpenAI) -> None:
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--memory-only")  # fmt: skip
    with start_sidechat(*args, env={"SIDECHAT_MAX_ACTIVE_TURNS": "1"}) as server:

        def post(message: str) -> int:
            body = orjson.dumps({"message": message})
            request = urllib.request.Request(
                server.url + "/api/chat", body, {"content-type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert post("slow [[tokens=50 interval=0.1]]") == 202
        assert post("refused") == 429
        assert post("refused again") == 429
        m = _scrape(server.url)
        assert m[("sidechat_rate_limit_refusals_total", "reason=busy")] == 2
        assert m[("sidechat_generating_turns", "")] == 1


def test_metrics_token_needs_an_admin_token() -> None:
    refused = pytest.raises(RuntimeError, match="needs an admin token")
    with refused, start_sidechat("--memory-only", "--metrics", "token", timeout=30):
        pass
