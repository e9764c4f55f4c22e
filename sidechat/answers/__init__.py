"""Answer strategies for grounded turns: extractive quotes, not found, numbered citations."""

from __future__ import annotations

from sidechat.answers.extractive import Extract, Similarity, extract
from sidechat.answers.notfound import Thresholds, found, not_found_reply

__all__ = ["Extract", "Similarity", "Thresholds", "extract", "found", "not_found_reply"]
