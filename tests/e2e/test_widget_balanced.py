"""The widget in Chromium against three replicas behind nginx (round robin) on one Redis and one
PostgreSQL database: asked, reloaded mid-answer (the resume and the conversation's reload land
on other replicas), the answer completes exactly once, and a follow-up keeps the conversation."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests._postgres import fresh_database
from tests._servers import start_sidechat
from tests.bus.conftest import REDIS_URL, fresh_prefix
from tests.deploy._nginx import run_balancer
from tests.e2e.conftest import PageProblems
from tests.e2e.widget import ask, open_widget, tokens, wait_answer_done, wait_tokens
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
def balanced(upstream: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    with fresh_database() as database, contextlib.ExitStack() as stack:
        prefix = stack.enter_context(fresh_prefix("sce2e"))
        args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
                "--redis-url", REDIS_URL, "--database-url", database)  # fmt: skip
        env = {"SIDECHAT_REDIS_PREFIX": prefix}
        replicas = [stack.enter_context(start_sidechat(*args, env=env)) for _ in range(3)]
        nginx, _ = stack.enter_context(
            run_balancer([r.url.removeprefix("http://") for r in replicas], tmp_path)
        )
        yield nginx.https_url


def test_reload_mid_answer_behind_the_balancer(
    browser: Any, balanced: str, problems: PageProblems, upstream: FakeOpenAI
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=True)
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        problems.watch(page)
        page.goto(balanced + "/")
        open_widget(page)
        ask(page, "[[tokens=50 interval=0.06]] balanced reload")
        wait_tokens(page, 8)
        resumed: list[str] = []
        page.on("request", lambda r: resumed.append(r.url) if "/stream" in r.url else None)
        page.reload()
        expect(page.locator("sidechat-widget .msg.user")).to_contain_text("balanced reload")
        assert wait_answer_done(page) == tokens(50), "words were lost or repeated"
        ids = [int(m.group(1)) for u in resumed if (m := re.search(r"last_event_id=(\d+)", u))]
        assert ids and ids[0] > 1, f"the stream did not resume from its last event id: {resumed}"
        ask(page, "[[tokens=3]] balanced follow-up")
        assert wait_answer_done(page) == tokens(3)
        assert page.locator("sidechat-widget .msg.user").count() == 2
        # Wherever the follow-up landed, the model got the first exchange, whole and once.
        [request] = upstream.find("balanced follow-up")
        sent = [m["content"] for m in request.body["messages"] if m["role"] != "system"]
        assert "balanced reload" in sent[0], sent
        assert sent[1].split() == tokens(50).split(), sent
        assert problems.errors == []
    finally:
        context.close()
