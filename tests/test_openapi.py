"""The OpenAPI description at `/openapi.json`: it names every route the app serves (and no
other), and schemathesis, generating requests from it against a real server, gets no 5xx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.routing import Mount, Route

from sidechat.app import create_app
from sidechat.openapi import openapi
from sidechat.settings import Settings
from tests._servers import SidechatProcess, start_sidechat
from tests.fakes.openai_upstream import FakeOpenAI

ADMIN_TOKEN = "an-admin-token-for-the-fuzz-run"


def _served() -> set[tuple[str, str]]:
    """(path, method) for every route of an app with everything on (admin, metrics)."""
    settings = Settings(
        provider="openai",
        base_url="http://127.0.0.1:9/v1",
        model="m",
        memory_only=True,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
    )
    app = create_app(settings)
    served: set[tuple[str, str]] = set()
    for route in app._router.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            served.add((route.path + "/{path}", "get"))
        else:
            assert isinstance(route, Route), route
            served |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return served


def test_every_route_the_app_serves_is_described_and_nothing_else() -> None:
    described = {(path, method) for path, item in openapi()["paths"].items() for method in item}
    served = _served()
    assert len(served) >= 25
    assert served - described == set(), "served but not in sidechat/openapi.py"
    assert described - served == set(), "in sidechat/openapi.py but not served"


def test_every_operation_documents_its_responses_and_refs_resolve() -> None:
    doc = openapi()
    schemas = doc["components"]["schemas"]
    text = orjson.dumps(doc).decode()
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"] and op["summary"], (path, method)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == set(part.split("}")[0] for part in path.split("{")[1:]), path


@pytest.fixture(scope="module")
def fuzzed(upstream: FakeOpenAI) -> Iterator[SidechatProcess]:
    with start_sidechat(
        *("--provider", "openai", "--base-url", upstream.base_url, "--model", "fake-model"),
        *("--admin-token", ADMIN_TOKEN, "--retry-budget", "0.5"),
    ) as proc:
        yield proc


def test_the_server_serves_the_description(fuzzed: SidechatProcess) -> None:
    with urllib.request.urlopen(fuzzed.url + "/openapi.json", timeout=5) as response:
        assert response.headers["content-type"] == "application/json"
        assert orjson.loads(response.read()) == openapi()


def test_schemathesis_finds_no_server_error(fuzzed: SidechatProcess, tmp_path: Path) -> None:
    """Every operation, `--max-examples` requests each (plus schemathesis's coverage phase of
    boundary values), checked with `not_a_server_error` only: the description is a guide for
    generating requests here, and answers are not held to it (a test of its own would be)."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(schemathesis),
        "run",
        fuzzed.url + "/openapi.json",
        *("--checks", "not_a_server_error"),
        *("-H", f"Authorization: Bearer {ADMIN_TOKEN}"),  # the dashboard's pages too
        *("--max-examples", os.environ.get("SIDECHAT_FUZZ_EXAMPLES", "15")),
        *("--phases", "examples,coverage,fuzzing"),
        *("--request-timeout", "35"),  # a long poll may wait 30 s
        *("--seed", "19"),
        *("--report", "ndjson", "--report-dir", str(tmp_path)),
        "--generation-database=none",
        "--continue-on-failure",
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    # cwd: schemathesis keeps a cache of crashes in .schemathesis/ under it.
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env, check=False, cwd=tmp_path
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    operations = sum(len(item) for item in openapi()["paths"].values())
    # Every operation but `GET /openapi.json`, which schemathesis leaves out (it loaded it).
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested[1]) >= operations - 1, out[-3000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert counts and counts[1] == counts[2] and int(counts[1]) >= 10 * operations, out[-3000:]
    assert "Traceback" not in fuzzed.log(), fuzzed.log()[-3000:]
