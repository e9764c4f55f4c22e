"""`bench.report.write_markdown` replaces only the generated block of BENCHMARKS.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.report import BEGIN, END, write_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_md_has_one_generated_block() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)


def test_a_new_run_keeps_the_text_outside_the_markers(tmp_path: Path) -> None:
    target = tmp_path / "BENCHMARKS.md"
    shutil.copyfile(ROOT / "BENCHMARKS.md", target)
    original = target.read_text()
    before, rest = original.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    result = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    result["machine"]["date"] = "2000-01-02 03:04 UTC"  # shows the block was rewritten
    write_markdown(result, target, None, None)
    text = target.read_text()
    assert text.startswith(before + BEGIN) and text.endswith(END + after)
    assert "2000-01-02 03:04 UTC" in text and "### Concurrency sweep" in text
