"""`sidechat eval` on the real TIL corpus with the committed question set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.content._helpers import TIL, ingest, til_db

ROOT = Path(__file__).resolve().parents[2]


def run_eval(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidechat", "eval", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


VISITORS = ROOT / "examples" / "questions" / "til-visitors.json"
HELDOUT = ROOT / "examples" / "questions" / "til-heldout.json"
needs_til = pytest.mark.skipif(
    not TIL.is_dir(), reason="the TIL corpus (../shared/corpora) is absent"
)


@pytest.fixture(scope="module")
def til_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index, out = til_db(tmp_path_factory)
    assert "578 added" in out
    return index


@needs_til
def test_recall_on_the_til_corpus(til_index: Path) -> None:
    questions = ROOT / "examples" / "questions" / "til.json"
    assert len(orjson.loads(questions.read_bytes())) >= 40
    result = run_eval(questions, "--index", til_index, "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["retrieval"] == "hybrid"
    # BM25 alone measured 0.76 / 0.94 when this was written, hybrid FLOOR_TIL; these floors
    # catch a broken ranker.
    assert report["recall@1"] >= 0.72
    assert report["recall@5"] >= 0.90
    assert report["mrr"] >= report["recall@1"]
    text = run_eval(questions, "--index", til_index)
    assert "recall@1" in text.stdout and "recall@5" in text.stdout and "MRR" in text.stdout


@needs_til
@pytest.mark.skipif(not VISITORS.is_file(), reason="examples/questions/til-visitors.json is absent")
def test_hybrid_beats_bm25_on_the_dev_split(til_index: Path) -> None:
    def scores(*flags: str) -> dict[str, Any]:
        result = run_eval(VISITORS, "--index", til_index, "--split", "dev", "--json", *flags)
        assert result.returncode == 0, result.stderr
        report: dict[str, Any] = orjson.loads(result.stdout)
        return report

    bm25, hybrid = scores("--bm25"), scores()
    assert bm25["retrieval"] == "bm25" and hybrid["retrieval"] == "hybrid"
    assert hybrid["recall@1"] >= bm25["recall@1"] and hybrid["recall@5"] >= bm25["recall@5"]
    # Measured 0.92 / 1.00 on the dev split with sentence windows and title vectors (0.88 /
    # 0.96 before them); the floors leave room for a question or two.
    assert hybrid["recall@1"] >= 0.86
    assert hybrid["recall@5"] >= 0.96
    assert hybrid["unanswerable_excluded"] > 0


@needs_til
@pytest.mark.skipif(not HELDOUT.is_file(), reason="examples/questions/til-heldout.json is absent")
def test_held_out_questions_keep_their_recall(til_index: Path) -> None:
    # Written before the retrieval they measure was tuned (on dev only): 0.72 / 0.89 measured.
    result = run_eval(HELDOUT, "--index", til_index, "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["retrieval"] == "hybrid" and report["unanswerable_excluded"] == 8
    assert report["per_split"]["heldout"]["recall@1"] >= 0.66
    assert report["per_split"]["heldout"]["recall@5"] >= 0.83


def test_split_filter_and_new_format(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    ingest(ROOT / "examples" / "blog", "--index", index)
    path = tmp_path / "q.json"
    path.write_bytes(
        orjson.dumps(
            [
                {
                    "id": "a",
                    "q": "install sidechat",
                    "kind": "answerable",
                    "split": "dev",
                    "expect": ["/#installing-sidechat"],
                    "facts": ["pip"],
                    "history": [],
                },
                {
                    "id": "b",
                    "q": "what is the capital of peru",
                    "kind": "unanswerable",
                    "split": "dev",
                    "expect": [],
                    "facts": [],
                },
                {
                    "id": "c",
                    "q": "who is the author",
                    "kind": "paraphrase",
                    "split": "test",
                    "expect": ["/#about"],
                    "facts": [],
                },
            ]
        )
    )
    dev = orjson.loads(run_eval(path, "--index", index, "--split", "dev", "--json").stdout)
    assert dev["questions"] == 1 and dev["unanswerable_excluded"] == 1
    assert dev["per_split"].keys() == {"dev"} and dev["recall@1"] == 1.0
    every = orjson.loads(run_eval(path, "--index", index, "--json").stdout)
    assert every["questions"] == 2 and set(every["per_kind"]) == {"answerable", "paraphrase"}
    assert set(every["per_split"]) == {"dev", "test"}
    path.write_bytes(b'[{"q": "x", "expect": ["/a/"]}]')
    none = run_eval(path, "--index", index, "--split", "test")
    assert none.returncode == 1 and "no questions in split 'test'" in none.stderr


def test_bad_question_files_and_missing_index(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    ingest(ROOT / "examples" / "blog", "--index", index)
    for content, message in [
        (b"{not json", "cannot read questions"),
        (b"[]", "non-empty JSON list"),
        (b'[{"q": "x"}]', 'needs "q"'),
    ]:
        path = tmp_path / "q.json"
        path.write_bytes(content)
        result = run_eval(path, "--index", index)
        assert result.returncode == 1 and message in result.stderr
    path.write_bytes(b'[{"q": "install sidechat", "expect": ["/#installing-sidechat"]}]')
    missing = run_eval(path, "--index", tmp_path / "none.db")
    assert missing.returncode == 1 and "no index at" in missing.stderr
    ok = run_eval(path, "--index", index, "--json")
    assert orjson.loads(ok.stdout)["recall@1"] == 1.0
