"""The visitor question set (examples/questions/til-visitors.json) is well formed and honest."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidechat.content.search import query_terms
from tests.content._helpers import TIL

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ROOT / "examples" / "questions" / "til-visitors.json"
KINDS = {"answerable", "paraphrase", "unanswerable"}
MINIMUM = {"answerable": 50, "paraphrase": 35, "unanswerable": 25}
FIELDS = {"id", "q", "kind", "expect", "facts", "split"}
no_corpus = pytest.mark.skipif(
    not TIL.is_dir(), reason="the TIL corpus (../shared/corpora/simonw-til) is absent"
)


def load() -> list[dict[str, Any]]:
    items = orjson.loads(QUESTIONS.read_bytes())
    assert isinstance(items, list)
    return items


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def note_words(path: str) -> set[str]:
    # The whole file, so the front-matter title and the `# ` heading count as the page's words.
    return set(re.findall(r"\w+", (TIL / path).read_text("utf-8").lower()))


def overlap(item: dict[str, Any]) -> float:
    """The largest share, over the expected notes, of the question's terms found in a note."""
    terms = query_terms(item["q"])
    assert terms, item["id"]
    shares = []
    for path in item["expect"]:
        words = note_words(path)
        shares.append(sum(term in words for term in terms) / len(terms))
    return max(shares)


def test_shape_ids_kinds_and_counts() -> None:
    items = load()
    assert len(items) >= 110
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids), [i for i, n in Counter(ids).items() if n > 1]
    for item in items:
        assert FIELDS <= item.keys() <= FIELDS | {"history"}, item
        assert isinstance(item["q"], str) and item["q"].strip(), item["id"]
        assert item["kind"] in KINDS, item["id"]
        assert item["split"] in {"dev", "test"}, item["id"]
        assert all(isinstance(s, str) and s for s in item["expect"] + item["facts"]), item["id"]
        if item["kind"] == "unanswerable":
            assert item["expect"] == [] and item["facts"] == [], item["id"]
        else:
            assert item["expect"] and 1 <= len(item["facts"]) <= 3, item["id"]
        history = item.get("history")
        if history is not None:
            assert isinstance(history, list) and all(isinstance(h, str) and h for h in history)
    kinds = Counter(item["kind"] for item in items)
    for kind, least in MINIMUM.items():
        assert kinds[kind] >= least, (kind, kinds[kind])
    assert 4 <= sum("history" in item for item in items) <= 6
    for kind in KINDS:
        splits = Counter(item["split"] for item in items if item["kind"] == kind)
        assert abs(splits["dev"] - splits["test"]) <= 1, (kind, splits)


@no_corpus
def test_expected_notes_exist_and_hold_every_fact() -> None:
    for item in load():
        for path in item["expect"]:
            assert (TIL / path).is_file(), (item["id"], path)
        texts = [normalised((TIL / path).read_text("utf-8")) for path in item["expect"]]
        for fact in item["facts"]:
            assert any(normalised(fact) in text for text in texts), (item["id"], fact)


@no_corpus
def test_paraphrases_share_few_words_with_their_page() -> None:
    items = load()
    paraphrase = {i["id"]: overlap(i) for i in items if i["kind"] == "paraphrase"}
    answerable = {i["id"]: overlap(i) for i in items if i["kind"] == "answerable"}
    mean = sum(paraphrase.values()) / len(paraphrase)
    print(
        f"question words found in the expected page: paraphrase mean {mean:.3f} "
        f"(max {max(paraphrase.values()):.3f}), "
        f"answerable mean {sum(answerable.values()) / len(answerable):.3f}"
    )
    assert {i: s for i, s in paraphrase.items() if s > 0.5} == {}
    assert mean <= 0.35
    assert len(answerable) >= MINIMUM["answerable"]
