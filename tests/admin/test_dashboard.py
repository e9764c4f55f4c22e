"""Every dashboard view against a store filled by real turns; login, cookies, Bearer, CSP."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests._servers import start_sidechat
from tests.admin._filled import HOSTILE_COMMENT, TOKEN, Filled, bearer, parse_jsonl

Reply = tuple[int, dict[str, str], str]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def login(url: str, token: str = TOKEN, client_headers: dict[str, str] | None = None) -> Reply:
    form = urllib.parse.urlencode({"token": token}).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", **(client_headers or {})}
    return fetch(url + "/admin/login", headers=headers, data=form)


def cookie_of(reply: Reply) -> dict[str, str]:
    value = reply[1]["set-cookie"].split(";")[0]
    return {"cookie": value}


def test_admin_is_off_without_a_token() -> None:
    with start_sidechat("--memory-only") as server:
        for path in ("/admin", "/admin/login", "/admin/export/questions.csv"):
            assert fetch(server.url + path)[0] == 404


def test_login_sets_a_strict_http_only_cookie(filled: Filled) -> None:
    url = filled.server.url
    status, headers, _ = fetch(url + "/admin")
    assert status == 303 and headers["location"] == "/admin/login"
    status, headers, body = fetch(url + "/admin/login")
    assert status == 200 and 'type="password"' in body
    reply = login(url)
    assert reply[0] == 303 and reply[1]["location"] == "/admin"
    flags = [f.strip().lower() for f in reply[1]["set-cookie"].split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/admin" in flags
    assert "secure" not in flags  # plain http here; behind TLS it is set (next test)
    assert any(f.startswith("max-age=") for f in flags)
    status, _, body = fetch(url + "/admin", headers=cookie_of(reply))
    assert status == 200 and "Questions per day" in body
    # A forged or tampered cookie is refused.
    forged = {"cookie": "sidechat_admin=9999999999.deadbeef"}
    assert fetch(url + "/admin", headers=forged)[0] == 303


def test_the_cookie_is_secure_behind_https(filled: Filled) -> None:
    reply = login(filled.server.url, client_headers={"x-forwarded-proto": "https"})
    assert "secure" in [f.strip().lower() for f in reply[1]["set-cookie"].split(";")]


def test_wrong_tokens_are_refused_then_rate_limited(filled: Filled) -> None:
    # Each test's client address is 127.0.0.1: this test runs its own server to keep its count.
    env = {"SIDECHAT_ADMIN_TOKEN": TOKEN}
    with start_sidechat("--memory-only", env=env) as server:
        for _ in range(5):
            status, headers, body = login(server.url, "wrong-token-wrong-token")
            assert status == 401 and "Wrong token" in body and "set-cookie" not in headers
        status, headers, body = login(server.url, TOKEN)  # even the right one, now
        assert status == 429 and int(headers["retry-after"]) > 0 and "set-cookie" not in headers


def test_bearer_reaches_any_admin_url(filled: Filled) -> None:
    url = filled.server.url
    assert fetch(url + "/admin/export/questions.csv")[0] == 401
    wrong = {"authorization": "Bearer " + "y" * 30}
    assert fetch(url + "/admin/export/questions.csv", headers=wrong)[0] == 401
    assert fetch(url + "/admin/unanswered", headers=wrong)[0] == 401
    for path in ("/admin", "/admin/unanswered", "/admin/feedback", "/admin/pages"):
        assert fetch(url + path, headers=bearer())[0] == 200, path


def test_csp_on_every_admin_page(filled: Filled) -> None:
    url = filled.server.url
    conversation = filled.conversations["found"]
    paths = ["/admin", "/admin/login", "/admin/unanswered", "/admin/feedback", "/admin/pages",
             "/admin/export", f"/admin/conversations/{conversation}"]  # fmt: skip
    for path in paths:
        status, headers, body = fetch(url + path, headers=bearer())
        assert status == 200, path
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert "<script" not in body and " style=" not in body and "<style" not in body, path
    assert fetch(url + "/static/admin.css")[0] == 200


def test_overview_plots_and_latency(filled: Filled) -> None:
    _, _, body = fetch(filled.server.url + "/admin", headers=bearer())
    assert body.count('<svg class="chart"') == 2
    assert re.search(r"<strong>7</strong> questions", body)
    assert "1 up, 1 down" in body and "50%" in body
    assert "First token p50" in body and re.search(r"\d+\.\d\d s</td>", body)
    assert "client_error: 1" in body  # errors by kind
    assert re.search(r'<rect class="bar"[^>]*height="[1-9]', body)


def test_unanswered_groups_similar_questions_with_pages(filled: Filled) -> None:
    _, _, body = fetch(filled.server.url + "/admin/unanswered", headers=bearer())
    # The two zebra questions (not found) are one group of two; the failed turn, the "don't
    # know" answer and the thumbs-down are listed too; the answered, liked one is not.
    zebra = body.split('<article class="group">')
    group = next(part for part in zebra if "zebras migrate" in part)
    assert "<strong>2</strong> time(s)" in group and "not found ×2" in group
    assert "What is tidepool?" in body and "failed" in body
    assert "Does inkwell do footnotes?" in body
    assert "What is inkwell, the static site generator?" in body and "thumbs down" in body
    assert "Tell me everything about inkwell" not in body
    assert "Pages retrieved" in body and "<a href=" in body


def test_feedback_newest_first_escaped_and_linked(filled: Filled) -> None:
    _, _, body = fetch(filled.server.url + "/admin/feedback", headers=bearer())
    assert "<script>" not in body and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert body.index("thanks!") < body.index("the page on inkwell is wrong")  # newest first
    assert f"/admin/conversations/{filled.conversations['found']}" in body


def test_pages_top_cited_and_never_cited(filled: Filled) -> None:
    _, _, body = fetch(filled.server.url + "/admin/pages", headers=bearer())
    with sqlite3.connect(filled.index) as conn:
        total = conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
    assert "Top cited pages" in body and "inkwell" in body
    never = re.search(r"<p>(\d+) of (\d+) indexed pages\.</p>", body)
    assert never is not None and int(never.group(2)) == total and 0 < int(never.group(1)) < total


def test_transcript_with_sources(filled: Filled) -> None:
    url = filled.server.url
    conversation = filled.conversations["found"]
    _, _, body = fetch(f"{url}/admin/conversations/{conversation}", headers=bearer())
    assert "What is inkwell, the static site generator?" in body and "tok0" in body
    assert "Sources" in body and "inkwell" in body and "rated down" in body
    assert fetch(f"{url}/admin/conversations/c_nonesuch", headers=bearer())[0] == 404


def test_exports(filled: Filled) -> None:
    url = filled.server.url
    status, headers, text = fetch(url + "/admin/export/questions.jsonl", headers=bearer())
    assert status == 200 and "attachment" in headers["content-disposition"]
    rows = parse_jsonl(text)
    assert len(rows) == 7
    by_turn = {r["turn_id"]: r for r in rows}
    assert by_turn[filled.turns["failed"]]["outcome"] == "error"
    assert by_turn[filled.turns["failed"]]["error_kind"] == "client_error"
    assert by_turn[filled.turns["length"]]["outcome"] == "length"
    assert by_turn[filled.turns["aborted"]]["outcome"] == "aborted"
    assert by_turn[filled.turns["not_found"]]["found"] is False
    assert by_turn[filled.turns["found"]]["found"] is True
    assert by_turn[filled.turns["found"]]["rating"] == "down"
    status, _, text = fetch(url + "/admin/export/questions.csv", headers=bearer())
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 7 and {r["turn_id"] for r in table} == set(by_turn)
    _, _, text = fetch(url + "/admin/export/feedback.jsonl", headers=bearer())
    feedback = parse_jsonl(text)
    assert [f["rating"] for f in feedback] == ["up", "down"]
    assert feedback[1]["comment"] == HOSTILE_COMMENT
    _, _, text = fetch(url + "/admin/export/feedback.csv", headers=bearer())
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2
    assert fetch(url + "/admin/export/secrets.csv", headers=bearer())[0] == 404


def test_client_addresses_are_kept_only_hashed(filled: Filled, tmp_path: Path) -> None:
    args = [str(a) for a in filled.server.proc.args]  # type: ignore[union-attr]
    data_dir = Path(args[args.index("--data-dir") + 1])
    with sqlite3.connect(data_dir / "sidechat.db") as conn:
        hashes = {h for (h,) in conn.execute("SELECT client_hash FROM turns")}
        dump = "\n".join(conn.iterdump())
    assert len(hashes) == 1 and re.fullmatch(r"[0-9a-f]{32}", next(iter(hashes)) or "")
    assert "127.0.0.1" not in dump


def test_client_addresses_off(upstream: object, tmp_path: Path) -> None:
    from tests.fakes.openai_upstream import FakeOpenAI

    assert isinstance(upstream, FakeOpenAI)
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--data-dir", str(tmp_path), "--store-client-address", "off")  # fmt: skip
    with start_sidechat(*args) as server:
        status, _, _ = fetch(
            server.url + "/api/chat", headers={"content-type": "application/json",
            "accept": "text/event-stream"}, data=b'{"message": "hi"}',
        )  # fmt: skip
        assert status == 200
    with sqlite3.connect(tmp_path / "sidechat.db") as conn:
        assert conn.execute("SELECT client_hash FROM turns").fetchall() == [(None,)]
    assert not (tmp_path / "client-address-salt").exists()


def test_the_dashboard_honours_retention(upstream: object, tmp_path: Path) -> None:
    """A turn older than the retention is not shown (nor exported) even while the purge keeps
    its conversation (touched since): the dashboard filters by the turn's own time."""
    from tests.fakes.openai_upstream import FakeOpenAI

    assert isinstance(upstream, FakeOpenAI)
    args = ("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model",
            "--data-dir", str(tmp_path), "--retention", "1")  # fmt: skip
    env = {"SIDECHAT_ADMIN_TOKEN": TOKEN}
    ask = {"content-type": "application/json", "accept": "text/event-stream"}
    with start_sidechat(*args, env=env) as server:
        for message in (b'{"message": "old question"}', b'{"message": "new question"}'):
            assert fetch(server.url + "/api/chat", headers=ask, data=message)[0] == 200
    with sqlite3.connect(tmp_path / "sidechat.db") as conn:
        conn.execute(
            "UPDATE turns SET started_at = started_at - 2 * 86400 WHERE question = 'old question'"
        )
    with start_sidechat(*args, env=env) as server:
        _, _, text = fetch(server.url + "/admin/export/questions.jsonl", headers=bearer())
        assert [r["question"] for r in parse_jsonl(text)] == ["new question"]
        _, _, body = fetch(server.url + "/admin", headers=bearer())
        assert "<strong>1</strong> questions" in body and "old question" not in body
    with sqlite3.connect(tmp_path / "sidechat.db") as conn:  # still stored: not yet purged
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone() == (2,)
