"""The widget across a server restart (SIGTERM and kill -9) in real Chromium: the answer being
written ends with the restart note, and a follow-up in the same conversation carries the first
exchange to the model."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests._servers import start_sidechat
from tests.e2e.proxy import Proxy
from tests.e2e.widget import ask, directive, open_widget, tokens, wait_answer_done, wait_tokens
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_a_restart_mid_answer_shows_the_note_and_the_follow_up_keeps_the_context(
    page: Any, upstream: FakeOpenAI, tmp_path: Path, how: signal.Signals
) -> None:
    args = ["--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"]
    args += ["--heartbeat", "1", "--data-dir", str(tmp_path / "data"), "--shutdown-grace", "0.2"]
    marker = f"s18-follow-up-{how.name}"
    with start_sidechat(*args) as first, Proxy(first.url) as proxy:
        page.goto(proxy.page(title="Restart test"))
        open_widget(page)
        ask(page, f"{directive(tokens=80, interval=0.05)} remember the word kumquat")
        wait_tokens(page, 5)
        first.proc.send_signal(how)
        first.proc.wait(30)
        with start_sidechat(*args) as second:
            proxy.target = second.url
            note = page.locator("sidechat-widget .note.err")
            expect(note).to_contain_text("restarted while answering", timeout=20_000)
            ask(page, f"{directive(tokens=3)} and the word was? {marker}")
            assert wait_answer_done(page) == tokens(3)
    [request] = upstream.find(marker)
    sent = [m["content"] for m in request.body["messages"] if m["role"] != "system"]
    assert "kumquat" in sent[0], sent
    assert sent[1].startswith("tok0"), "the interrupted answer so far is part of the history"
