"""Smoke runs of the measuring tools in `bench/experiments/`, so that they cannot rot. They assert
what each tool reports, never how fast anything was."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_accept_per_iteration_reports_every_socket_count() -> None:
    out = _run("bench.experiments.accept_per_iteration", "1", "4")
    found = re.findall(r"(\d+) listening socket\(s\): 200 connections accepted in (\d+) it", out)
    assert [count for count, _ in found] == ["1", "4"], out
    assert all(0 < int(iterations) <= 200 for _, iterations in found), out


def test_ab_cpu_compares_two_checkouts() -> None:
    # The same checkout on both sides: the tool's plumbing, not a comparison.
    out = _run(
        "bench.experiments.ab_cpu",
        ".",
        ".",
        "-c",
        "3",
        "-d",
        "1",
        "--rounds",
        "1",
        "--tokens",
        "5",
        "--ttft",
        "5",
        "--interval",
        "5",
    )
    match = re.search(r"all rounds: user µs/token A ([\d.]+), B ([\d.]+) \(B/A ([\d.]+)\)", out)
    assert match, out
    assert float(match[1]) > 0 and float(match[2]) > 0, out


def test_floor_proxy_streams_every_token(tmp_path: Path) -> None:
    _run(
        "bench.run",
        "--quick",
        "--systems",
        "floor",
        "--no-plot",
        "--out",
        str(tmp_path),
        "--markdown",
        str(tmp_path / "report.md"),
    )
    levels = json.loads((tmp_path / "latest.json").read_text())["sweep"]["floor"]
    assert levels, "no level ran"
    for level in levels.values():
        assert level["turns_ok"] == level["turns"] > 0
        assert level["lost"] == level["dup"] == 0
