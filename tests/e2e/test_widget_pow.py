"""`--pow` end to end in headless Chromium: the widget solves the ALTCHA challenge itself
(WebCrypto, no third party) and its first question is answered; a raw POST without a solution,
and the widget's own solution sent again, are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests._servers import SidechatProcess, start_sidechat
from tests.e2e.conftest import PageProblems
from tests.e2e.widget import ask, open_widget, tokens, wait_answer_done
from tests.fakes.openai_upstream import FakeOpenAI

POST = """async ([url, body]) => {
  const r = await fetch(url + '/api/chat', {method: 'POST', body: JSON.stringify(body),
                                            headers: {'Content-Type': 'application/json'}});
  return [r.status, await r.json()];
}"""


@pytest.fixture(scope="module")
def pow_server(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidechatProcess]:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        "--pow",
        log_dir=tmp_path_factory.mktemp("e2e-logs"),
    ) as proc:
        yield proc


def test_the_widget_solves_the_proof_of_work_and_replays_are_refused(
    page: Any, pow_server: SidechatProcess, problems: PageProblems
) -> None:
    posted: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            posted.append(json.loads(r.post_data))
            if r.method == "POST" and r.url.endswith("/api/chat")
            else None
        ),
    )
    statuses: list[int] = []
    page.on(
        "response", lambda r: statuses.append(r.status) if r.url.endswith("/api/chat") else None
    )
    page.goto(pow_server.url + "/")
    open_widget(page)
    ask(page, "first question")
    assert wait_answer_done(page) == tokens(5)
    assert statuses[:2] == [428, 202], statuses
    solved = [body["altcha"] for body in posted if body.get("altcha")]
    assert len(solved) == 1
    # The conversation's second question needs no new solution.
    ask(page, "second question")
    assert wait_answer_done(page) == tokens(5)
    assert not posted[-1].get("altcha") and statuses[-1] == 202
    # A raw POST without a solution: 428 and a challenge; the widget's solution again: 403.
    status, body = page.evaluate(POST, [pow_server.url, {"message": "raw"}])
    assert status == 428 and body["error"]["code"] == "pow_required"
    assert body["error"]["challenge"]["signature"]
    status, body = page.evaluate(POST, [pow_server.url, {"message": "raw", "altcha": solved[0]}])
    assert status == 403 and body["error"]["code"] == "pow_invalid"
    assert problems.errors == [] and problems.dialogs == []
