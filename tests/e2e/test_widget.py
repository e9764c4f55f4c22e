"""The chat widget end to end: the real widget.js in headless Chromium, against a real sidechat
process and a fake OpenAI upstream, sometimes through a misbehaving proxy (tests/e2e/proxy.py)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import expect

from tests._servers import SidechatProcess
from tests.e2e.conftest import PageProblems
from tests.e2e.proxy import Proxy
from tests.e2e.widget import (
    BOT,
    answer,
    ask,
    busy,
    directive,
    open_widget,
    status_text,
    tokens,
    transport_memory,
    wait_answer_done,
    wait_tokens,
)
from tests.fakes.openai_upstream import FakeOpenAI

STANDARD_GLOBALS = """() => {
  const frame = document.createElement('iframe');
  document.body.append(frame);
  const clean = new Set(Object.getOwnPropertyNames(frame.contentWindow));
  frame.remove();
  return Object.getOwnPropertyNames(window).filter((k) => !clean.has(k));
}"""


def test_demo_page_streams_tokens_before_the_turn_ends(
    page: Any, e2e_server: SidechatProcess, problems: PageProblems
) -> None:
    response = page.goto(e2e_server.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    open_widget(page)
    # The demo's greeting is rendered Markdown.
    expect(page.locator(f"{BOT} strong").first).to_be_visible()
    ask(page, f"{directive(tokens=30, interval=0.1)} streaming please")
    expect(page.locator("sidechat-widget .msg.user").last).to_contain_text("streaming please")
    partial = wait_tokens(page, 3)
    assert busy(page), "the answer should still be streaming"
    assert len(partial.split()) < 30
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert wait_answer_done(page) == tokens(30)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    # The widget adds exactly one global, and nothing broke the strict CSP (the console
    # reports any refused script, style or connection as an error).
    assert page.evaluate(STANDARD_GLOBALS) == ["sidechat"]
    assert page.evaluate("typeof sidechat.init") == "function"
    assert problems.errors == []


def cut(proxy: Proxy) -> None:
    """Cuts the connection(s) carrying the answer (a long-poll may be between requests)."""
    deadline = time.monotonic() + 5
    while proxy.kill() == 0:
        assert time.monotonic() < deadline, "no connection to cut"
        time.sleep(0.005)


@pytest.mark.parametrize("transport", ["es", "fetch", "poll"])
def test_killed_connection_mid_answer_completes_exactly(
    page: Any, proxy: Proxy, problems: PageProblems, transport: str
) -> None:
    page.goto(proxy.page(title="Kill test", transport=transport))
    open_widget(page)
    ask(page, f"{directive(tokens=60, interval=0.1)} kill {transport}")
    wait_tokens(page, 5)
    cut(proxy)
    wait_tokens(page, 25)
    cut(proxy)
    text = wait_answer_done(page)
    assert text == tokens(60), "words were lost or repeated"
    kind = {"es": "/stream?", "fetch": "/stream?", "poll": "/events?"}[transport]
    reads = [r for r in proxy.requests if kind in r]
    assert len(reads) >= 2, proxy.requests
    assert problems.errors == []


def test_reload_mid_answer_continues_and_a_new_tab_shows_it(
    page: Any, context: Any, e2e_server: SidechatProcess
) -> None:
    page.goto(e2e_server.url + "/")
    open_widget(page)
    ask(page, f"{directive(tokens=50, interval=0.06)} reload me")
    wait_tokens(page, 8)
    resumed: list[str] = []
    page.on("request", lambda r: resumed.append(r.url) if "/stream" in r.url else None)
    page.reload()
    # The panel stays open, the question and the partial answer are back, and it goes on.
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.locator("sidechat-widget .msg.user")).to_contain_text("reload me")
    assert wait_answer_done(page) == tokens(50)
    ids = [int(m.group(1)) for u in resumed if (m := re.search(r"last_event_id=(\d+)", u))]
    assert ids and ids[0] > 1, f"the stream did not resume from its last event id: {resumed}"
    # Another tab of the same site shows the conversation.
    other = context.new_page()
    other.goto(e2e_server.url + "/")
    open_widget(other)
    expect(other.locator("sidechat-widget .msg.user")).to_contain_text("reload me")
    assert answer(other) == tokens(50)
    # A follow-up continues the same server-side conversation.
    ask(other, f"{directive(tokens=3)} follow-up")
    assert wait_answer_done(other) == tokens(3)
    assert other.locator("sidechat-widget .msg.user").count() == 2


def test_stop_cancels_generation(
    page: Any, e2e_server: SidechatProcess, upstream: FakeOpenAI
) -> None:
    page.goto(e2e_server.url + "/")
    open_widget(page)
    ask(page, f"{directive(tokens=400, interval=0.05)} stopmarker")
    wait_tokens(page, 5)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(f"{BOT} .note").last).to_contain_text("Stopped.")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    shown = len(answer(page).split())
    assert 5 <= shown < 400
    deadline = time.monotonic() + 10
    while not upstream.find("stopmarker")[0].closed_by_client and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.find("stopmarker")[0].closed_by_client, "the model kept generating"
    # Stopped answers stay stopped after a reload.
    page.reload()
    expect(page.locator(f"{BOT} .note").last).to_contain_text("Stopped.")


def test_offline_then_online(page: Any, context: Any, e2e_server: SidechatProcess) -> None:
    page.goto(e2e_server.url + "/")
    open_widget(page)
    ask(page, f"{directive(tokens=40, interval=0.08)} offline mid-answer")
    wait_tokens(page, 5)
    context.set_offline(True)
    expect(page.locator("sidechat-widget .state")).to_contain_text("offline")
    time.sleep(1.0)
    context.set_offline(False)
    assert wait_answer_done(page) == tokens(40)
    assert status_text(page) == ""
    # A question asked while offline waits, says so, and goes out when the network is back.
    context.set_offline(True)
    ask(page, f"{directive(tokens=4)} asked offline")
    expect(page.locator("sidechat-widget .state")).to_contain_text("offline")
    time.sleep(0.5)
    context.set_offline(False)
    assert wait_answer_done(page) == tokens(4)


def test_unreachable_server_reconnects_with_an_honest_state(
    page: Any, proxy: Proxy, problems: PageProblems
) -> None:
    page.goto(proxy.page(title="Down test"))
    open_widget(page)
    ask(page, f"{directive(tokens=40, interval=0.05)} server down")
    wait_tokens(page, 5)
    proxy.down = True
    cut(proxy)
    expect(page.locator("sidechat-widget .state")).to_contain_text("reconnecting", timeout=10_000)
    assert busy(page)
    time.sleep(1.5)
    proxy.down = False
    assert wait_answer_done(page) == tokens(40)
    expect(page.locator("sidechat-widget .state")).to_have_text("")


def test_sse_buffering_proxy_forces_the_fallback(page: Any, proxy: Proxy) -> None:
    proxy.buffer_sse = True
    page.goto(proxy.page(title="Buffered", **{"buffer-timeout": "1000"}))
    open_widget(page)
    ask(page, f"{directive(tokens=30, interval=0.2)} behind a buffering proxy")
    # EventSource hears nothing, fetch streaming hears nothing, long-polling works: words still
    # arrive while the turn is generating.
    wait_tokens(page, 3, timeout=10)
    assert busy(page)
    assert wait_answer_done(page) == tokens(30)
    assert transport_memory(page) == "poll"
    assert any("/events?" in r for r in proxy.requests)
    # The choice is remembered: the next turn long-polls at once.
    before = len(proxy.requests)
    ask(page, f"{directive(tokens=5, interval=0.05)} second")
    assert wait_answer_done(page) == tokens(5)
    later = proxy.requests[before:]
    assert not any("/stream" in r for r in later), later


HOSTILE = [
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=2;alert(2)</script>",
    '<svg onload="window.__xss=3"><circle/></svg>',
    '<iframe src="javascript:parent.__xss=4"></iframe>',
    '<a href="javascript:window.__xss=5">html link</a>',
    "[md link](javascript:window.__xss=6)",
    "[spaced](  JaVaScRiPt:window.__xss=7)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pixel](https://tracker.example/p.gif)",
    "[ok link](https://example.com/safe)",
    '<form action="https://evil.example"><input name=q></form>',
    '<div style="position:fixed;inset:0" onclick="window.__xss=8">overlay</div>',
    "`<b>not bold</b>` and <details open ontoggle=window.__xss=9>",
]


def test_hostile_model_output_does_nothing(
    page: Any, e2e_server: SidechatProcess, problems: PageProblems
) -> None:
    page.goto(e2e_server.url + "/")
    open_widget(page)
    payload = "\n\n".join(HOSTILE).replace("'", '"')
    ask(page, f"[[text='{payload}' interval=0.005]] xss")
    wait_answer_done(page)
    md = page.locator(f"{BOT} .md").last
    for tag in ("img", "script", "svg", "iframe", "form", "input", "details", "div[style]", "b"):
        assert md.locator(tag).count() == 0, f"<{tag}> reached the DOM"
    hrefs = md.locator("a").evaluate_all(
        "els => els.map(a => [a.getAttribute('href'), a.rel, a.target])"
    )
    for href, rel, target in hrefs:
        if href is not None:
            assert re.match(r"^(https?:|mailto:|/|#)", href), href
            assert "noopener" in rel and "noreferrer" in rel and target == "_blank"
    assert ["https://example.com/safe", "noopener noreferrer nofollow", "_blank"] in hrefs
    # The hostile text is shown as text, and clicking what looks like links does nothing.
    expect(md).to_contain_text("onerror")
    for name in ("md link", "spaced", "html link", "overlay"):
        md.get_by_text(name).first.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert problems.dialogs == []
    assert page.url == e2e_server.url + "/"


def test_keyboard_only(page: Any, e2e_server: SidechatProcess) -> None:
    page.goto(e2e_server.url + "/")
    active = (
        "() => { const r = document.querySelector('sidechat-widget').shadowRoot; "
        "const a = r.activeElement; return a ? (a.getAttribute('aria-label') || a.tagName) : "
        "(document.activeElement && document.activeElement.tagName) }"
    )
    # Tab reaches the launcher (it is the last focusable thing on the page).
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(active) == "Open chat":
            break
    else:
        pytest.fail("Tab never reached the chat button")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Ask this blog")
    expect(dialog).to_be_visible()
    assert dialog.get_attribute("aria-modal") == "true"
    assert page.evaluate(active) == "Your question"
    # Count what the polite live region says: once per answer, not per token.
    page.evaluate("""() => {
      const root = document.querySelector('sidechat-widget').shadowRoot;
      const live = root.querySelector('[aria-live=polite]');
      window.__said = [];
      new MutationObserver(() => window.__said.push(live.textContent))
        .observe(live, {childList: true, characterData: true, subtree: true});
    }""")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type(f"{directive(tokens=20, interval=0.03)} second line")
    box = page.get_by_role("textbox", name="Your question")
    assert box.input_value() == f"first line\n{directive(tokens=20, interval=0.03)} second line"
    page.keyboard.press("Enter")
    assert box.input_value() == ""
    assert wait_answer_done(page) == tokens(20)
    said = page.evaluate("window.__said")
    assert said == ["Answer: " + tokens(20)], said
    expect(page.locator("sidechat-widget .msg.user")).to_contain_text("first line\n")
    # Focus is trapped in the dialog: Tab and Shift+Tab cycle through its controls.
    seen = set()
    for _ in range(12):
        page.keyboard.press("Tab")
        label = page.evaluate(active)
        assert label not in ("BODY", "A", "Open chat"), f"focus left the dialog: {label}"
        seen.add(label)
    assert {"Close chat", "Your question", "Helpful", "Not helpful"} <= seen, seen
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(active) not in ("BODY", "A", "Open chat")
    # Feedback by keyboard.
    for _ in range(12):
        if page.evaluate(active) == "Helpful":
            break
        page.keyboard.press("Tab")
    with page.expect_response(lambda r: "/feedback" in r.url) as response:
        page.keyboard.press("Enter")
    assert response.value.status == 200
    expect(page.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    # Esc closes and gives focus back to the launcher.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate(active) == "Open chat"
    launcher = page.locator("sidechat-widget .launch")
    assert launcher.get_attribute("aria-expanded") == "false"


def test_error_shows_retry_which_works(page: Any, e2e_server: SidechatProcess) -> None:
    page.goto(e2e_server.url + "/")
    open_widget(page)
    # The upstream drops the first request after 3 tokens (an error after text), not the retry.
    ask(
        page,
        f"{directive(tokens=8, fault='drop_after', fault_at=3, fail_times=1, key='retry-e2e')} x",
    )
    wait_answer_done(page)
    note = page.locator(f"{BOT} .note").last
    expect(note).to_have_class(re.compile(r"\berr\b"))
    note.get_by_role("button", name="Retry").click()
    assert wait_answer_done(page) == tokens(8)
    assert page.locator(BOT).count() == 2  # greeting + the retried answer, not a second copy


def test_host_page_css_cannot_reach_the_widget_and_back(browser: Any, proxy: Proxy) -> None:
    ctx = browser.new_context(bypass_csp=True)
    try:
        page = ctx.new_page()
        page.goto(proxy.page(title="CSS isolation", accent="#d9480f"))
        style = (
            "el => { const s = getComputedStyle(el);"
            " return [s.backgroundColor, s.fontFamily, s.cursor] }"
        )
        page_button = page.locator("#page-button")
        assert page_button.evaluate(style)[2] == "default", "widget CSS leaked into the page"
        launcher = page.locator("sidechat-widget .launch")
        before = launcher.evaluate(style)
        assert before[0] == "rgb(217, 72, 15)"  # data-accent
        page.add_style_tag(
            content="""
          * { all: unset !important; font-family: "Comic Sans MS" !important; }
          button { background: hotpink !important; display: none !important; }
          sidechat-widget { display: none; }
        """
        )
        assert launcher.evaluate(style) == before
        expect(launcher).to_be_visible()
    finally:
        ctx.close()


SEED_CONVERSATION = """(server) => new Promise((resolve, reject) => {
  const answer = "sidechat needs **Python 3.11** or newer. Install it, index your posts and " +
    "start the server:\\n\\n```sh\\npip install sidechat\\nsidechat ingest ./posts\\n" +
    "sidechat serve\\n```\\n\\nThen add one script tag to your pages. Your visitors get:\\n\\n" +
    "- answers stream in **token by token**\\n- a reload mid-answer picks up where it left off\\n" +
    "- history stays in your browser";
  const record = {
    key: server, conversationId: null, updated: Date.now(), messages: [
      {role: "user", content: "How do I install sidechat?"},
      {role: "assistant", content: answer, turnId: "t_screenshot", status: "done", lastEventId: 40,
       rating: "up", sources: [
        {id: "s1", url: server + "/#posts", title: "Installing sidechat in two minutes"},
        {id: "s2", url: server + "/#projects", title: "Why I built sidechat"}]},
    ]};
  const open = indexedDB.open("sidechat", 1);
  open.onerror = reject;
  open.onsuccess = () => {
    const tx = open.result.transaction("conversations", "readwrite");
    tx.objectStore("conversations").put(record);
    tx.oncomplete = () => { open.result.close(); resolve(); };
    tx.onerror = reject;
  };
})"""


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("light", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "light"}),
        ("dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
        (
            "mobile",
            {
                "viewport": {"width": 390, "height": 844},
                "device_scale_factor": 2,
                "is_mobile": True,
                "has_touch": True,
                "color_scheme": "light",
                "reduced_motion": "reduce",
            },
        ),
    ],
)
def test_screenshots_and_layout(
    browser: Any, e2e_server: SidechatProcess, name: str, options: dict[str, Any]
) -> None:
    from tests.e2e.conftest import SCREENSHOTS

    ctx = browser.new_context(**options)
    try:
        page = ctx.new_page()
        page.goto(e2e_server.url + "/")
        open_widget(page)
        # A finished conversation, as a visitor would have it in IndexedDB after a chat; the
        # widget restores it on load (the panel stays open across the reload).
        page.evaluate(SEED_CONVERSATION, e2e_server.url)
        page.reload()
        expect(page.locator(f"{BOT} pre")).to_be_visible()
        dialog = page.get_by_role("dialog")
        box = dialog.bounding_box()
        assert box is not None
        if name == "mobile":
            # Full screen on a phone, the input inside the viewport, no motion.
            assert box["width"] == 390 and box["height"] >= 800, box
            field = page.get_by_role("textbox", name="Your question").bounding_box()
            assert field is not None and field["y"] + field["height"] <= 844
            assert dialog.evaluate("el => getComputedStyle(el).animationName") == "none"
        else:
            assert box["width"] <= 420
        if name == "dark":
            bg = dialog.evaluate("el => getComputedStyle(el).backgroundColor")
            assert bg == "rgb(27, 31, 36)", bg
        page.mouse.move(0, 0)
        page.wait_for_timeout(200)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"widget-{name}.png"))
    finally:
        ctx.close()


def test_widget_js_is_served_cacheable(e2e_server: SidechatProcess) -> None:
    with urllib.request.urlopen(e2e_server.url + "/") as r:
        html = r.read().decode()
    match = re.search(r'src="(/widget\.js\?v=[0-9a-f]+)"', html)
    assert match, "the demo page should load the versioned widget"
    with urllib.request.urlopen(e2e_server.url + match.group(1)) as r:
        assert "immutable" in r.headers["cache-control"]
        assert r.headers["content-type"].startswith("text/javascript")
    assert 'src="/widget.js' in html and "<script>" not in html


def test_configuration_by_attributes_and_init(page: Any, proxy: Proxy) -> None:
    page.goto(
        proxy.page(
            title="Demandez-moi",
            placeholder="Votre question…",
            position="left",
            theme="dark",
            greeting="Bonjour !",
            **{
                "text-send": "Envoyer",
                "text-open": "Ouvrir le chat",
                "text-input-label": "Question",
            },
        )
    )
    host = page.locator("sidechat-widget")
    assert host.get_attribute("data-theme") == "dark"
    assert host.get_attribute("data-position") == "left"
    page.get_by_role("button", name="Ouvrir le chat").click()
    expect(page.get_by_role("dialog", name="Demandez-moi")).to_be_visible()
    expect(page.get_by_role("button", name="Envoyer")).to_be_visible()
    box = page.get_by_role("textbox", name="Question")
    assert box.get_attribute("placeholder") == "Votre question…"
    expect(page.locator(BOT).first).to_have_text(re.compile("Bonjour !"))
    assert page.locator("sidechat-widget").bounding_box()["x"] < 100
    # The JS API re-creates the widget with new options on top of the attributes.
    page.evaluate("sidechat.init({title: 'Autre titre', theme: 'light', strings: {send: 'Go'}})")
    expect(page.locator("sidechat-widget")).to_have_count(1)
    assert page.locator("sidechat-widget").get_attribute("data-theme") == "light"
    page.evaluate("sidechat.open()")
    expect(page.get_by_role("dialog", name="Autre titre")).to_be_visible()
    expect(page.get_by_role("button", name="Go")).to_be_visible()


def test_sources_show_as_safe_links_under_the_answer(page: Any, proxy: Proxy) -> None:
    # The sources come from the server's content index; here the stream is scripted in the
    # browser (Playwright answers the requests) to include a hostile source as well.
    chunks = [
        {"type": "start", "messageId": "m1"},
        {
            "type": "source-url",
            "sourceId": "s1",
            "url": "https://blog.example/install",
            "title": "Installing",
        },
        {
            "type": "source-url",
            "sourceId": "s2",
            "url": "javascript:window.__xss=1",
            "title": "bad",
        },
        {
            "type": "source-url",
            "sourceId": "s3",
            "url": "https://blog.example/why",
            "title": "<img src=x onerror=window.__xss=2>",
        },
        {
            "type": "source-url",
            "sourceId": "s1",
            "url": "https://blog.example/install",
            "title": "Installing",
        },
        {"type": "text-start", "id": "t"},
        {"type": "text-delta", "id": "t", "delta": "See the posts."},
        {"type": "text-end", "id": "t"},
        {"type": "finish", "finishReason": "stop"},
    ]
    body = "".join(f"id: {i}\ndata: {json.dumps(c)}\n\n" for i, c in enumerate(chunks, 1))
    body += f"id: {len(chunks) + 1}\ndata: [DONE]\n\n"
    page.route(
        "**/api/chat",
        lambda route: route.fulfill(
            status=202,
            json={
                "conversation_id": "c_route",
                "turn_id": "t_route",
                "stream_url": "/api/turns/t_route/stream",
            },
        ),
    )
    page.route(
        "**/api/turns/t_route/stream*",
        lambda route: route.fulfill(status=200, body=body, content_type="text/event-stream"),
    )
    page.goto(proxy.page(title="Sources"))
    open_widget(page)
    ask(page, "where are the posts?")
    assert wait_answer_done(page) == "See the posts."
    links = page.locator(f"{BOT} .src a")
    expect(links).to_have_count(2)
    assert links.evaluate_all("els => els.map(a => [a.href, a.rel, a.target])") == [
        ["https://blog.example/install", "noopener noreferrer", "_blank"],
        ["https://blog.example/why", "noopener noreferrer", "_blank"],
    ]
    expect(links.nth(1)).to_contain_text("<img src=x onerror=window.__xss=2>")
    assert page.locator(f"{BOT} .src img").count() == 0
    assert page.evaluate("window.__xss") is None
