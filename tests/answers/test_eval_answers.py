"""`sidechat eval --answers` and the calibration script, as real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.answers._index import ROOT
from tests.content._helpers import ingest

QUESTIONS = [
    {
        "id": "b1",
        "q": "How do I install sidechat?",
        "kind": "answerable",
        "expect": ["/#installing-sidechat"],
        "facts": ["pip install sidechat"],
        "split": "dev",
    },
    {
        "id": "b2",
        "q": "What is Tidepool?",
        "kind": "answerable",
        "expect": ["content/posts/tidepool.md"],
        "facts": ["home lab"],
        "split": "test",
    },
    {"id": "b3", "q": "How do I bake sourdough bread?", "kind": "unanswerable", "split": "dev"},
]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_eval_answers_reports_each_split(tmp_path: Path) -> None:
    index = tmp_path / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", index, "--quiet")
    questions = tmp_path / "q.json"
    questions.write_bytes(orjson.dumps(QUESTIONS))
    result = _run("sidechat", "eval", questions, "--index", index, "--answers", "--json")
    assert result.returncode == 0, result.stderr
    dev, test, total = orjson.loads(result.stdout)
    assert (dev["split"], test["split"], total["split"]) == ("dev", "test", "all")
    assert dev["correct"] == 1 and dev["answerable"] == 1
    assert dev["not_found_recall"] == 1.0 and dev["not_found_precision"] == 1.0
    assert test["correct"] == 1 and test["unanswerable"] == 0
    assert total["first_text_ms_p50"] > 0
    text = _run("sidechat", "eval", questions, "--index", index, "--answers")
    assert "dev: 1/1 answerable correct" in text.stdout
    calibrated = _run("sidechat.answers.calibrate", questions, "--index", index)
    assert calibrated.returncode == 0, calibrated.stderr
    assert calibrated.stdout.startswith("thresholds: Thresholds(coverage=")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"q": "x", "kind": "maybe"}]')
    refused = _run("sidechat", "eval", bad, "--index", index, "--answers")
    assert refused.returncode == 1 and "kind 'maybe'" in refused.stderr
