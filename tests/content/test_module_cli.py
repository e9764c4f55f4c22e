"""The content commands run on their own, as `python -m sidechat.content.cli`, and through
click's runner, before and independently of the top-level `sidechat` group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from click.testing import CliRunner

from sidechat.content.cli import eval_cmd, ingest
from tests.content._helpers import pages

BLOG = Path(__file__).resolve().parents[2] / "examples" / "blog"


def module(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidechat.content.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_module_ingest_and_eval(tmp_path: Path) -> None:
    index = tmp_path / "blog.db"
    first = module("ingest", BLOG, "--index", index, "--base-url", "https://blog.example/")
    assert first.returncode == 0, first.stderr
    assert "0 updated, 0 removed, 0 unchanged, 0 skipped" in first.stdout
    urls = set(pages(index))
    assert "https://blog.example/#about" in urls and len(urls) >= 6
    questions = tmp_path / "q.json"
    questions.write_bytes(
        orjson.dumps([{"q": "What is tidepool?", "expect": ["content/posts/tidepool.md"]}])
    )
    result = module("eval", questions, "--index", index, "--json", "--k", "3")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["recall@1"] == 1.0
    assert "ingest" in module("--help").stdout


def test_click_runner(tmp_path: Path) -> None:
    index = tmp_path / "blog.db"
    runner = CliRunner()
    done = runner.invoke(ingest, [str(BLOG), "--index", str(index), "--quiet"])
    assert done.exit_code == 0, done.output
    assert "added" in done.output
    missing = runner.invoke(eval_cmd, [str(BLOG / "hugo.toml"), "--index", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "no index at" in missing.output
