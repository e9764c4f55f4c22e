"""Smoke runs of the store's benchmarks (docs/design/store.md, BENCHMARKS.md), so they cannot
rot: the suite with sidechat in memory, on SQLite and on PostgreSQL; memory per idle finished
turn; replaying a finished turn from the store after a restart; the write path's CPU per token.
They check what each tool reports, never how fast anything was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._postgres import fresh_database

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _last_json(out: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def test_the_suite_runs_sidechat_in_memory_on_sqlite_and_on_postgresql(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the bench extra is not installed")
    systems = ["sidechat-memory", "sidechat", "sidechat-postgres"]
    with fresh_database() as url:
        _run(
            "bench.run", "--quick", "--systems", ",".join(systems), "--no-plot",
            "--out", str(tmp_path), "--markdown", str(tmp_path / "BENCHMARKS.md"),
            env={"SIDECHAT_BENCH_DATABASE_URL": url},
        )  # fmt: skip
    result = json.loads((tmp_path / "latest.json").read_text())
    expected = result["config"]["upstream"]["tokens"]
    for name in systems:
        assert result["systems"][name]["skipped"] is None, name
        for level, res in result["sweep"][name].items():
            assert res["errors"] == {}, (name, level, res["errors"])
            assert (res["lost"], res["dup"], res["ooo"]) == (0, 0, 0), (name, level)
            assert res["tokens"] > 0 and res["tokens"] % expected == 0, (name, level)
    assert "sidechat, PostgreSQL store" in (tmp_path / "BENCHMARKS.md").read_text()


def test_the_suite_says_why_postgresql_is_skipped(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the bench extra is not installed")
    env = {k: v for k, v in os.environ.items() if k != "SIDECHAT_BENCH_DATABASE_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--systems", "sidechat-postgres",
         "--no-plot", "--out", str(tmp_path), "--markdown", str(tmp_path / "B.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert "SIDECHAT_BENCH_DATABASE_URL" in result["systems"]["sidechat-postgres"]["skipped"]


def test_turn_memory_reports_kib_per_turn() -> None:
    out = _run(
        "bench.experiments.turn_memory", "--turns", "20", "--tokens", "5", "--warmup", "5",
        "-c", "5", "--idle", "0.5", "--", "--max-memory-mb", "4",
    )  # fmt: skip
    report = _last_json(out)
    assert report["turns"] == 20 and report["flags"] == ["--max-memory-mb", "4"]
    assert isinstance(report["kib_per_turn"], float)
    assert isinstance(report["rss_after_mib"], float) and report["rss_after_mib"] > 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_store_replay_reads_every_event_of_every_turn(kind: str) -> None:
    args = ["bench.experiments.store_replay", "--turns", "5", "--events", "120"]
    if kind == "sqlite":
        report = _last_json(_run(*args))
    else:
        with fresh_database() as url:
            report = _last_json(_run(*args, "--database-url", url))
    # The tool asserts that each replay read all 120 events and ended.
    assert report["turns"] == 5 and report["events"] == 120
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_store_writes_compares_the_store_with_memory(kind: str) -> None:
    args = ["bench.experiments.store_writes", "-c", "5", "-d", "1.5", "--warmup", "0.5"]
    args += ["--tokens", "5", "--ttft", "10", "--interval", "10"]
    if kind == "sqlite":
        report = _last_json(_run(*args))
    else:
        with fresh_database() as url:
            report = _last_json(_run(*args, "--database-url", url))
    memory, stored = report["memory"], report[kind]
    assert isinstance(memory, dict) and isinstance(stored, dict)
    assert memory["tokens"] > 0 and stored["tokens"] > 0
    assert "store_adds_us_per_token" in report
    starts = stored["start_written_ms"]
    assert 0 <= starts["p50"] <= starts["p99"] <= starts["max"]


def test_the_recorder_tick_experiment_reports_both_phase_counts() -> None:
    out = _run("bench.experiments.recorder_ticks", "-c", "20", "--duration", "0.5", "--rounds", "1")
    results = _last_json(out)["results"]
    assert [r["phases"] for r in results] == [1, 4]
    # With 4 phases there are about 4 times as many ticks, each taking a quarter of the turns.
    assert results[1]["ticks"] > 2 * results[0]["ticks"] > 0
    assert all(0 < r["tick_ms_p50"] <= r["tick_ms_max"] for r in results)


def test_store_pages_reports_both_kinds_of_id() -> None:
    out = _run("bench.experiments.store_pages", "-c", "20", "--commits", "40", "--warmup", "10")
    reports = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["ids"] for r in reports] == ["random", "time first"]
    for r in reports:
        assert r["commits"] == 40
        assert r["pages_per_commit"] > 0 and r["cpu_ms_per_commit"] > 0
