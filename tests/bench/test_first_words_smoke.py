"""A smoke run of `python -m bench.first_words` against the fake upstream: two grounded questions
whose first token the upstream holds back for 0.4 s, so the figures must tell the "Reading: …"
note from the first words."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip(
    "playwright", reason="the test extra is not installed (pip install -e '.[test]')"
)


def test_first_words_quick_run(upstream: FakeOpenAI, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium)", pytrace=False)
    questions = tmp_path / "questions.txt"
    questions.write_text("[[ttft=0.4]] How do I install sidechat?\n[[ttft=0.4]] What is inkwell?\n")
    out = tmp_path / "first-words.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.first_words",
            "--questions",
            "2",
            "--file",
            str(questions),
            "--out",
            str(out),
            "--",
            "--provider",
            "openai",
            "--base-url",
            upstream.base_url,
            "--model",
            "fake-model",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    assert result["model"] == "openai: fake-model"
    assert (result["questions"], result["answered"], result["errors"]) == (2, 2, 0)
    words, reading = result["first_words_ms"], result["reading_note_ms"]
    assert words["n"] == reading["n"] == 2
    assert words["p50"] <= words["p95"]
    for turn in result["turns"]:
        # The note shows from the sources, before the upstream's first token; the first words
        # come after it, never from the note.
        assert 400 <= turn["first_words_ms"] < 30_000, turn
        assert turn["reading_ms"] < turn["first_words_ms"], turn
        assert turn["answer"].startswith("tok0"), turn
        assert turn["sources"] and all(s.startswith("http://127.0.0.1:") for s in turn["sources"])
    assert result["turns"][1]["sources"][0].endswith("/#inkwell")
