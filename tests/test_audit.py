"""scripts/audit.sh, the dependency audit `make test` runs: real npm against a fake advisory
database on loopback (a vulnerability fails with the report; an unreachable database is a
notice, never a failure), and the verdict on pip-audit's JSON report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests._servers import ROOT, free_port
from tests.fakes._threaded import ThreadedApp


def verdict(args: list[str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "scripts/_audit_verdict.py", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


ADVISORY = {
    "id": 1,
    "url": "https://github.com/advisories/GHSA-test-0000-0001",
    "title": "Cross-site scripting",
    "severity": "high",
    "vulnerable_versions": "<99.0.0",
    "cwe": [],
    "cvss": {"score": 7.0, "vectorString": None},
}


class FakeAdvisories(ThreadedApp):
    """npm's bulk advisory endpoint, answering what `advisories` holds."""

    name = "fake-npm-advisories"
    advisories: dict[str, list[dict[str, Any]]] = {}

    def routes(self, app: web.Application) -> None:
        async def bulk(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response(self.advisories)

        app.router.add_post("/-/npm/v1/security/advisories/bulk", bulk)


@pytest.fixture(scope="module")
def advisories() -> Iterator[FakeAdvisories]:
    if shutil.which("npm") is None or not (ROOT / "widget/package-lock.json").is_file():
        pytest.skip("npm or the widget's lock file is missing")
    fake = FakeAdvisories().start()
    yield fake
    fake.stop()


def audit(registry: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIDECHAT_AUDIT": "npm", "npm_config_registry": registry}
    env["AUDIT_PYTHON"] = sys.executable
    return subprocess.run(
        ["bash", "scripts/audit.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_a_known_vulnerability_in_the_widget_fails_with_the_report(
    advisories: FakeAdvisories,
) -> None:
    advisories.advisories = {"dompurify": [ADVISORY]}
    done = audit(f"http://127.0.0.1:{advisories.port}/")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VULNERABLE: dompurify" in done.stdout
    assert "GHSA-test-0000-0001" in done.stdout and "high" in done.stdout


def test_no_known_vulnerability_passes(advisories: FakeAdvisories) -> None:
    advisories.advisories = {}
    done = audit(f"http://127.0.0.1:{advisories.port}/")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "widget packages checked" in done.stdout
    assert "VULNERABLE" not in done.stdout


def test_an_unreachable_database_is_a_notice_not_a_failure(advisories: FakeAdvisories) -> None:
    done = audit(f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    assert done.returncode == 0, done.stdout + done.stderr
    assert "notice: npm audit got no report" in done.stdout


def _pip_report(tmp_path: Path, dependencies: list[dict[str, Any]]) -> str:
    path = tmp_path / "pip.json"
    path.write_text(json.dumps({"dependencies": dependencies, "fixes": []}))
    return str(path)


VULNERABLE = {
    "name": "starlette",
    "version": "0.27.0",
    "vulns": [
        {
            "id": "PYSEC-2023-0001",
            "aliases": ["GHSA-abcd-0000-0002"],
            "fix_versions": ["0.27.1"],
            "description": "A path traversal.\nMore text.",
        }
    ],
}


def test_the_pip_verdict(tmp_path: Path) -> None:
    """The JSON `pip-audit -f json` writes: a vulnerability fails unless its id (or an alias) is
    ignored; a report where every lookup was skipped (as when PyPI's per-version JSON is not
    served) is "unreachable", not a pass."""
    clean = {"name": "orjson", "version": "3.13.0", "vulns": []}
    skipped = {"name": "x", "skip_reason": "Dependency not found on PyPI"}
    report = _pip_report(tmp_path, [clean, VULNERABLE, skipped])
    status, out = verdict(["pip", report])
    assert status == 1, out
    assert "VULNERABLE: starlette 0.27.0: PYSEC-2023-0001 (fixed in: 0.27.1)" in out
    assert "could not look up 1: x" in out
    assert verdict(["pip", report, "GHSA-abcd-0000-0002"])[0] == 0
    status, out = verdict(["pip", _pip_report(tmp_path, [skipped])])
    assert status == 2 and "none of the dependencies" in out
    (tmp_path / "empty.json").write_text("")
    assert verdict(["pip", str(tmp_path / "empty.json")])[0] == 2
