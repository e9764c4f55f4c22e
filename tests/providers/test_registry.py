"""The provider registry: the built-in set declared once, and a third-party provider added
through the `sidechat.providers` entry point group of an installed distribution (a real
dist-info directory on the import path, found by importlib.metadata), then used by the
settings, `--fallback` specs, `build_provider` and a real `sidechat serve` process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from sidechat.errors import ConfigError
from sidechat.providers import ResilientProvider, build_provider, parse_fallback, provider_names
from sidechat.providers.registry import providers
from sidechat.settings import Settings
from tests._servers import read_events, start_sidechat, ui_events

SSE = {"Accept": "text/event-stream"}

_PLUGIN = '''
"""A third-party provider: echoes the question back, word by word."""

from sidechat.providers import BuildContext, ChatRequest, Finish, Provider, ProviderSpec, TextDelta
from sidechat.providers.base import Sink


class Echo(Provider):
    id = "echo"

    def __init__(self, model: str) -> None:
        self.model = model

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        for word in request.messages[-1].content.split():
            sink(TextDelta(word + " "))
        sink(Finish("stop", model=self.model))


def _echo(context: BuildContext) -> Echo:
    return Echo(context.model or "")


spec = ProviderSpec(_echo, description="echoes the question")
not_a_spec = object()
'''

_ENTRY_POINTS = """
[sidechat.providers]
echo = sidechat_echo:spec
openai = sidechat_echo:spec
broken = sidechat_echo:not_a_spec
missing = sidechat_echo:nowhere
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """An installed distribution as pip lays one out: its module and its dist-info."""
    (tmp_path / "sidechat_echo.py").write_text(textwrap.dedent(_PLUGIN))
    info = tmp_path / "sidechat_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sidechat-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(_ENTRY_POINTS)
    return tmp_path


@pytest.fixture
def installed(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(plugin_dir))
    providers.cache_clear()
    yield plugin_dir
    monkeypatch.undo()
    sys.modules.pop("sidechat_echo", None)
    providers.cache_clear()


def test_the_built_in_set() -> None:
    assert provider_names()[:3] == ("local", "openai", "anthropic")
    with pytest.raises(ValidationError, match="unknown provider 'echo'"):
        Settings(provider="echo")
    with pytest.raises(ConfigError, match="expected local, openai:MODEL@BASE_URL or anthropic:"):
        parse_fallback("echo:m")


def test_a_plugin_provider_is_found_and_used_everywhere(
    installed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "sidechat.providers"):
        names = provider_names()
    assert names == ("local", "openai", "anthropic", "echo")
    warnings = caplog.text
    assert "'openai'): a provider of that name exists" in warnings, "built-ins win"
    assert "'broken'): it is not a sidechat ProviderSpec" in warnings
    assert "'missing'): it failed to load" in warnings
    assert parse_fallback("echo:loud") == ("echo", "loud", None)
    with pytest.raises(ConfigError, match="or echo:MODEL"):
        parse_fallback("nope")
    with pytest.raises(ConfigError, match="--provider echo needs --model"):
        build_provider(Settings(provider="echo"))
    chain = build_provider(Settings(provider="echo", model="m1", fallback=("echo:m2",)))
    assert isinstance(chain, ResilientProvider)
    assert [type(p).__name__ for p in chain.chain] == ["Echo", "Echo"]


def test_sidechat_serve_streams_from_a_plugin_provider(plugin_dir: Path) -> None:
    path = os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])
    with start_sidechat("--provider", "echo", "--model", "e1", env={"PYTHONPATH": path}) as server:
        chunks = asyncio.run(_turn(server.url))
    assert "".join(str(c["delta"]) for c in chunks if c["type"] == "text-delta") == "say it back "
    assert chunks[-1]["messageMetadata"] == {"model": "e1"}


async def _turn(url: str) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/chat",
            headers={"Accept": "text/event-stream"},
            json={"message": "say it back"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return ui_events(await read_events(response))
