"""The widget's build and its Node tests: the committed widget.js matches widget/src, fits the
size budget, and the AI SDK's own client (`ai` on npm) works against a running sidechat."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._servers import SidechatProcess
from tests.e2e.conftest import ROOT, SETUP_HINT

WIDGET = ROOT / "widget"
BUILT = ROOT / "sidechat" / "static" / "widget.js"
BUDGET = 25_000  # bytes gzipped, dependencies included


def npm(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    exe = shutil.which("npm")
    if exe is None or not (WIDGET / "node_modules").is_dir():
        pytest.fail(f"Node and widget/node_modules are needed: {SETUP_HINT}", pytrace=False)
    proc = subprocess.run(
        [exe, "--silent", *args],
        cwd=WIDGET,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"npm {' '.join(args)} failed:\n{output}"
    return output


def test_committed_widget_is_built_from_the_source() -> None:
    npm("run", "check-build")


def test_widget_fits_the_size_budget() -> None:
    size = len(gzip.compress(BUILT.read_bytes(), 9))
    assert size < BUDGET, f"widget.js is {size} bytes gzipped"


def test_widget_typechecks_and_its_unit_tests_pass() -> None:
    npm("run", "typecheck")
    out = npm("test")
    assert "# fail 0" in out, out


def test_ai_sdk_client_talks_to_sidechat(e2e_server: SidechatProcess) -> None:
    out = npm("run", "test:ai-sdk", env={"SIDECHAT_URL": e2e_server.url}, timeout=120)
    assert "# pass 4" in out and "# fail 0" in out, out


def test_demo_page_embeds_only_an_external_script() -> None:
    html = Path(ROOT / "sidechat" / "static" / "index.html").read_text("utf-8")
    assert html.count("<script") == 1 and 'src="/widget.js"' in html
    assert (
        " style=" not in html
        and "<style" not in html
        and " on" not in html.split("<body")[1].split(">")[0]
    )
