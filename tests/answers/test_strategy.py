"""The answer strategy follows the model class unless `answer_mode` says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sidechat.answers.strategy import choose
from sidechat.settings import Settings


def test_auto() -> None:
    assert choose(Settings()) == "extractive"
    assert choose(Settings(model_path=Path("m.gguf"))) == "generative"
    assert choose(Settings(provider="openai")) == "generative"
    assert choose(Settings(provider="anthropic")) == "generative"


def test_explicit_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose(Settings(answer_mode="generative")) == "generative"
    assert choose(Settings(provider="openai", answer_mode="extractive")) == "extractive"
    monkeypatch.setenv("SIDECHAT_ANSWER_MODE", "generative")
    assert choose(Settings()) == "generative"
    with pytest.raises(ValidationError):
        Settings(answer_mode="poetry")  # type: ignore[arg-type]
