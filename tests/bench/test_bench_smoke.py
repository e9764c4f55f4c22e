"""A smoke run of the benchmark suite (`python -m bench.run --quick`), so it cannot rot.

It checks the shape of the results and that sidechat lost nothing; it asserts no timings (the
targets are for the full run on a quiet machine, see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip(
    "fastapi", reason="the bench extra is not installed (pip install -e '.[bench]')"
)
pytest.importorskip("httpx", reason="the bench extra is not installed (pip install -e '.[bench]')")


def _quick_run(out: Path, *args: str) -> dict[str, Any]:
    """`python -m bench.run --quick ARGS` writing into `out`; its latest.json."""
    markdown = str(out / "BENCHMARKS.md")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            *args,
            "--out",
            str(out),
            "--markdown",
            markdown,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "latest.json").read_text())
    return result


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    result = _quick_run(out)
    result["_markdown"] = (out / "BENCHMARKS.md").read_text()
    result["_out"] = str(out)
    return result


def test_structure(quick_run: dict[str, Any]) -> None:
    for key in ("machine", "config", "systems", "idle", "sweep", "capacity", "resume", "model"):
        assert key in quick_run, key
    assert quick_run["machine"]["cores"] >= 1
    levels = quick_run["config"]["levels"]
    for name, system in quick_run["systems"].items():
        if system["skipped"]:
            continue
        sweep = quick_run["sweep"][name]
        assert sorted(int(k) for k in sweep) == sorted(levels), name
        for res in sweep.values():
            assert res["turns"] >= res["concurrency"]
            assert res["tokens"] > 0
            for key in ("p50", "p99", "max"):
                assert isinstance(res["added_delay_ms"][key], float)
            assert res["ttft_ms"]["p50"] > 0


def test_sidechat_loses_nothing(quick_run: dict[str, Any]) -> None:
    for name in ("sidechat", "sidechat-es"):
        for level, res in quick_run["sweep"][name].items():
            assert res["errors"] == {}, (name, level, res["errors"])
            assert (res["lost"], res["dup"], res["ooo"], res["bad_tokens"]) == (0, 0, 0, 0)
            assert res["turns_ok"] == res["turns"]
        expected = quick_run["config"]["upstream"]["tokens"]
        assert all(r["tokens"] % expected == 0 for r in quick_run["sweep"][name].values())


def test_sidechat_resume_exactly_once(quick_run: dict[str, Any]) -> None:
    for name in ("sidechat", "sidechat-es"):
        resume = quick_run["resume"][name]
        assert resume["exactly_once"], resume
        assert resume["turns_ok"] == resume["streams"]
        assert resume["first_replayed_event_ms"]["p50"] is not None


def test_idle_and_reports(quick_run: dict[str, Any]) -> None:
    idle = quick_run["idle"]["sidechat"]
    assert idle["open"] == idle["streams"]
    assert idle["forwarded_upstream"] >= idle["streams"]
    md = quick_run["_markdown"]
    assert "### Concurrency sweep" in md and "sidechat (POST /api/chat)" in md
    if not quick_run["systems"]["express"]["skipped"]:
        assert "sidechat ÷ Express seed" in md
    plot = Path(quick_run["_out"]) / "added_delay_p99.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_anthropic_stream_goes_through_whole(tmp_path: Path) -> None:
    # The fake upstream's Anthropic Messages stream, read by sidechat's Anthropic provider.
    result = _quick_run(tmp_path, "--systems", "sidechat-anthropic", "--no-model", "--no-plot")
    expected = result["config"]["upstream"]["tokens"]
    for level, res in result["sweep"]["sidechat-anthropic"].items():
        assert res["errors"] == {}, (level, res["errors"])
        assert (res["lost"], res["dup"], res["ooo"], res["bad_tokens"]) == (0, 0, 0, 0)
        assert res["turns_ok"] == res["turns"] > 0
        assert res["tokens"] == res["turns"] * expected
