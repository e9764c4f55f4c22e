"""The owner's dashboard in Chromium: log in, screenshots (light and phone) into
docs/screenshots/admin-*.png, and axe-core on the admin pages and the demo page in light and
dark schemes with no serious or critical violation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin._filled import TOKEN, Filled, serve_filled
from tests.e2e.conftest import ROOT, SCREENSHOTS
from tests.fakes.openai_upstream import FakeOpenAI

AXE = ROOT / "widget" / "node_modules" / "axe-core" / "axe.min.js"
PAGES = ["/admin", "/admin/unanswered", "/admin/feedback", "/admin/pages", "/admin/export"]
SIZES: dict[str, dict[str, Any]] = {
    "light": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
        "color_scheme": "light",
    },
}


@pytest.fixture(scope="module")
def admin(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    with serve_filled(upstream, tmp_path_factory.mktemp("admin-e2e")) as filled:
        # Spread the turns over four days, so the plots in the screenshots have a shape.
        args = [str(a) for a in filled.server.proc.args]  # type: ignore[union-attr]
        database = Path(args[args.index("--data-dir") + 1]) / "sidechat.db"
        with sqlite3.connect(database) as conn:
            conn.execute(
                "UPDATE turns SET started_at = started_at - 86400 * (rowid % 4), "
                "finished_at = finished_at - 86400 * (rowid % 4)"
            )
        yield filled


def _login(page: Any, url: str) -> None:
    page.goto(url + "/admin")
    assert page.url.endswith("/admin/login")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(url + "/admin")


@pytest.mark.parametrize("size", list(SIZES))
def test_login_and_screenshots(browser: Any, admin: Filled, size: str) -> None:
    url = admin.server.url
    context = browser.new_context(**SIZES[size])
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        bad: list[str] = []
        page.on("response", lambda r: bad.append(r.url) if r.status >= 400 else None)
        _login(page, url)
        cookie = next(c for c in context.cookies() if c["name"] == "sidechat_admin")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.locator("svg.chart").count() == 2
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES[size]["viewport"]["width"]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"admin-{size}.png"), full_page=True)
        page.goto(url + "/admin/unanswered")
        assert page.get_by_role("heading", name="How do zebras migrate across the Mara river?")
        page.screenshot(path=str(SCREENSHOTS / f"admin-unanswered-{size}.png"), full_page=True)
        page.goto(url + "/admin/feedback")
        assert page.locator("blockquote").first.inner_text().startswith("thanks!")
        page.locator("a", has_text="conversation").nth(1).click()
        page.wait_for_url("**/admin/conversations/**")
        assert page.get_by_text("What is inkwell, the static site generator?").count() == 1
        # No CSP violation or other error; the only thing missing is the browser's own favicon.
        assert [e for e in errors if "Failed to load resource" not in e] == []
        assert [u for u in bad if not u.endswith("/favicon.ico")] == []
    finally:
        context.close()


def _serious(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_admin_and_demo_pages(browser: Any, admin: Filled, scheme: str) -> None:
    if not AXE.is_file():
        pytest.fail("axe-core is not installed: run `npm ci` in widget/", pytrace=False)
    url = admin.server.url
    # The pages allow no script at all; axe is injected past the CSP, for this check only.
    context = browser.new_context(color_scheme=scheme, bypass_csp=True)
    try:
        page = context.new_page()
        found: dict[str, list[str]] = {}
        page.goto(url + "/admin/login")
        found["/admin/login"] = _serious(page)
        _login(page, url)
        conversation = f"/admin/conversations/{admin.conversations['found']}"
        for path in [*PAGES, conversation, "/"]:
            page.goto(url + path)
            if path == "/":
                page.wait_for_selector("sidechat-widget", state="attached")
            found[path] = _serious(page)
        assert {p: v for p, v in found.items() if v} == {}
    finally:
        context.close()
