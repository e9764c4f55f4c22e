"""Dense vectors at ingest, an older index served BM25-only until re-ingested, and bad input
(empty corpus, code-only and non-English pages, punctuation-only and very long questions)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from sidechat.content import open_index
from sidechat.content.embeddings import MODEL_ID, get_embedder
from sidechat.content.vectors import windows
from tests.content._helpers import ingest, write

SITE = {
    "otters.md": "# Otters\n\nSea otters float on their backs and crack shellfish with stones.",
    "ferns.md": "# Ferns\n\nFerns reproduce by spores rather than seeds.",
    "code.md": "```python\nimport sqlite3\nconn = sqlite3.connect('x.db')\n```\n",
    "ja.md": "# 猫について\n\n猫は一日に十二時間以上眠ることがあります。",
    "ru.md": "# Кошки\n\nКошки спят больше двенадцати часов в день.",
}


def _counts(index: Path) -> tuple[int, int, str | None]:
    with sqlite3.connect(index) as conn:
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        vectors = conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
        model = conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()
    return chunks, vectors, None if model is None else model[0]


def test_ingest_stores_one_vector_per_chunk(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    out = ingest(write(tmp_path / "site", SITE), "--index", index).stdout
    chunks, vectors, model = _counts(index)
    assert chunks == vectors == 5 and model == MODEL_ID
    assert f"{chunks} embedded" in out
    # Incremental: an unchanged page keeps its vector, a changed one gets a new one.
    (tmp_path / "site" / "ferns.md").write_text("# Ferns\n\nFerns unfurl from fiddleheads.")
    assert "1 embedded" in ingest(tmp_path / "site", "--index", index).stdout
    retriever = open_index(index)
    assert retriever.hybrid
    # Shares no word with the page: only the dense side can find it.
    top = retriever.search("animals that use tools to open clams")[0]
    assert top.url == "/otters/" and 0.2 < top.similarity <= 1.0
    with sqlite3.connect(index) as conn:
        blob = conn.execute("SELECT v FROM vectors LIMIT 1").fetchone()[0]
        titles = conn.execute("SELECT count(*) FROM page_vectors").fetchone()[0]
    assert titles == 5
    assert np.isclose(np.linalg.norm(np.frombuffer(blob, np.float32)), 1.0, atol=1e-3)


LONG_TEXT = (
    " ".join(f"Step {n} of the bread recipe is to knead the dough for a while." for n in range(15))
    + " To stop a cast iron pan from rusting, dry it on the stove and rub in a little oil."
)
LONG = {
    # One chunk of several sentence windows: the answer is its last sentence, past the 128 word
    # pieces the chunk's own vector reads.
    "kitchen.md": f"# Kitchen notes\n\n{LONG_TEXT}",
    "garden.md": "# Garden notes\n\nTomatoes need staking once they pass knee height.",
}


def test_a_chunk_is_also_read_as_sentence_windows_and_a_page_by_its_title(
    tmp_path: Path,
) -> None:
    index = tmp_path / "i.db"
    ingest(write(tmp_path / "site", LONG), "--index", index)
    with sqlite3.connect(index) as conn:
        blobs = [b for (b,) in conn.execute("SELECT v FROM vectors")]
        removed = conn.execute("SELECT count(*) FROM page_vectors").fetchone()[0]
    rows = [np.frombuffer(b, np.float32).reshape(-1, 384) for b in blobs]
    # The long chunk: its own vector, then one per window; the short one: its own only.
    assert sorted(len(r) for r in rows) == [1, 1 + len(windows(LONG_TEXT))]
    assert all(np.allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-3) for r in rows)
    assert removed == 2
    retriever = open_index(index)
    top = retriever.search("my skillet keeps getting rust spots, how do I prevent it")[0]
    assert top.url == "/kitchen/" and top.similarity > 0.4
    # A removed page takes its title's vector with it.
    (tmp_path / "site" / "garden.md").unlink()
    ingest(tmp_path / "site", "--index", index)
    with sqlite3.connect(index) as conn:
        assert conn.execute("SELECT count(*) FROM page_vectors").fetchone()[0] == 1


def test_windows_are_whole_sentences() -> None:
    text = " ".join(f"Sentence number {n} has exactly seven words." for n in range(12))
    got = windows(text)
    assert len(got) >= 2 and all(w.startswith("Sentence number") for w in got)
    assert all(len(w.split()) <= 40 for w in got)
    assert " ".join(got) == text
    # A chunk that is one window needs none: its own vector says the same.
    assert windows("Just one short sentence.") == []
    assert windows("") == []


def test_an_older_index_is_served_by_bm25_and_re_embedded_by_ingest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write(tmp_path / "site", SITE)
    index = tmp_path / "i.db"
    ingest(root, "--index", index)
    # What an index written before vectors existed looks like.
    with sqlite3.connect(index) as conn:
        conn.executescript(
            "DROP TABLE vectors; DELETE FROM migrations WHERE name = '0002_vectors';"
            "DELETE FROM meta WHERE key = 'embedding_model';"
        )
    with caplog.at_level(logging.WARNING, logger="sidechat.content"):
        retriever = open_index(index)
        assert not retriever.hybrid
        hits = retriever.search("sea otters shellfish")
        retriever.search("ferns spores")
    assert hits[0].url == "/otters/" and hits[0].similarity == 0.0 and hits[0].coverage > 0
    assert len([r for r in caplog.records if "BM25-only" in r.getMessage()]) == 1
    out = ingest(root, "--index", index).stdout
    assert "5 unchanged" in out and "5 embedded" in out
    assert _counts(index)[1] == 5
    assert open_index(index).hybrid


def test_vectors_of_another_model_are_not_used_and_are_redone(tmp_path: Path) -> None:
    root = write(tmp_path / "site", SITE)
    index = tmp_path / "i.db"
    ingest(root, "--index", index)
    with sqlite3.connect(index) as conn:
        conn.execute("UPDATE meta SET value = 'other-model/1' WHERE key = 'embedding_model'")
    assert not open_index(index).hybrid
    assert "5 embedded" in ingest(root, "--index", index).stdout
    assert open_index(index).hybrid


def test_no_vectors_flag_keeps_bm25(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    out = ingest(write(tmp_path / "site", SITE), "--index", index, "--no-vectors").stdout
    assert "0 embedded" in out and _counts(index)[1] == 0
    assert not open_index(index).hybrid


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    index = tmp_path / "i.db"
    assert "0 added" in ingest(tmp_path / "empty", "--index", index).stdout
    retriever = open_index(index)
    assert retriever.search("anything at all about otters") == []


@pytest.mark.parametrize(
    "query",
    ["?!?...", "", "   ", "otters " * 700, "¿" * 4000, "猫 " * 2000, "a" * 4000],
)
def test_odd_questions_do_not_crash(tmp_path: Path, query: str) -> None:
    index = tmp_path / "i.db"
    ingest(write(tmp_path / "site", SITE), "--index", index)
    passages = open_index(index).search(query[:4000])
    if not any(ch.isalnum() for ch in query):
        assert passages == []
    assert len(passages) <= 5


def test_non_english_and_code_only_pages_are_found(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    ingest(write(tmp_path / "site", SITE), "--index", index)
    retriever = open_index(index)
    assert retriever.search("Кошки спят")[0].url == "/ru/"
    assert retriever.search("猫は")[0].url == "/ja/"
    assert retriever.search("sqlite3 connect")[0].url == "/code/"


async def test_retrieve_embeds_off_the_event_loop_and_matches_search(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    ingest(write(tmp_path / "site", SITE), "--index", index)
    retriever = open_index(index)
    got = await retriever.retrieve("creatures cracking shells with rocks")
    retriever.clear_cache()
    assert [p.url for p in got] == [
        p.url for p in retriever.search("creatures cracking shells with rocks")
    ]
    # A follow-up borrows the earlier question's topic for both rankers.
    follow = await retriever.retrieve("why?", history=["do ferns have seeds"])
    assert follow and follow[0].url == "/ferns/"


def test_embedder_is_deterministic_and_normalised() -> None:
    embedder = get_embedder()
    assert embedder is not None
    a = embedder.embed(["hello world", "", "x" * 5000])
    b = embedder.embed(["hello world", "", "x" * 5000])
    assert a.shape == (3, 384) and np.allclose(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-3)
    # Batched and one-by-one agree (padding does not leak into the mean).
    assert np.allclose(a[0], embedder.embed_one("hello world"), atol=1e-4)
