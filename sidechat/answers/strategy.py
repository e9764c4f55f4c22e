"""Which answer strategy a grounded turn uses: extractive quotes for the embedded base model,
generative answers with numbered citations for capable models."""

from __future__ import annotations

from typing import Literal

from sidechat.settings import Settings

__all__ = ["AnswerMode", "Strategy", "choose"]

AnswerMode = Literal["auto", "extractive", "generative"]
Strategy = Literal["extractive", "generative"]


def choose(settings: Settings) -> Strategy:
    """`answer_mode`, with `auto` resolved: the embedded default (provider `local` with no
    `--model-path`, a 270M base model) invents when it writes, so it quotes instead; OpenAI,
    Anthropic and a GGUF of one's own choosing write answers that cite their passages."""
    mode = settings.answer_mode
    if mode != "auto":
        return mode
    if settings.provider == "local" and settings.model_path is None:
        return "extractive"
    return "generative"
