"""The widget meets a per-client rate limit (429 with a wait): a friendly notice with the wait,
the question kept in the box, and sending back once the wait is over (headless Chromium,
a real sidechat with a tiny burst)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests._servers import SidechatProcess, start_sidechat
from tests.e2e.conftest import PageProblems
from tests.e2e.widget import ask, open_widget, status_text, tokens, wait_answer_done
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture(scope="module")
def limited(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    """Two questions at once, then one every 3 s."""
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--client-limits", "on", "--rate-burst", "2", "--rate-limit", "20/minute"),
        log_dir=tmp_path_factory.mktemp("e2e-logs"),
    ) as proc:
        yield proc


def test_a_rate_limited_question_is_kept_and_the_wait_shown(
    page: Any, limited: SidechatProcess, problems: PageProblems
) -> None:
    refusals: list[Any] = []
    page.on("response", lambda r: refusals.append(r) if r.status == 429 else None)
    page.goto(limited.url + "/")
    open_widget(page)
    for i in range(2):
        ask(page, f"question {i}")
        assert wait_answer_done(page) == tokens(5)
    box = page.get_by_role("textbox", name="Your question")
    ask(page, "one question too many")
    notice = page.locator("sidechat-widget .state")
    expect(notice).to_have_text(re.compile(r"too fast — try again in [1-3] s\."))
    assert refusals and refusals[0].headers["retry-after"]
    expect(box).to_have_value("one question too many")  # nothing lost
    send = page.get_by_role("button", name="Send")
    expect(send).to_be_disabled()
    # Neither the refused question nor an empty answer was added to the conversation.
    expect(page.locator("sidechat-widget .msg.user")).to_have_count(2)
    # After the wait: the notice goes, sending comes back, and the kept question is answered.
    expect(send).to_be_enabled(timeout=6_000)
    assert status_text(page) == ""
    box.press("Enter")
    expect(page.locator("sidechat-widget .msg.user")).to_have_count(3)
    assert wait_answer_done(page) == tokens(5)
    assert problems.errors == [] and problems.dialogs == []
