"""Smoke runs of the measuring tools in `bench/experiments/`, so that they cannot rot. They assert
what each tool reports, never how fast anything was."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_ab_cpu_compares_two_checkouts(provider: str) -> None:
    # The same checkout on both sides: the tool's plumbing, not a comparison.
    out = _run(
        "bench.experiments.ab_cpu",
        ".",
        ".",
        "--provider",
        provider,
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
        "--think-ms",
        "5",
    )
    match = re.search(r"all rounds: user µs/token A ([\d.]+), B ([\d.]+) \(B/A ([\d.]+)\)", out)
    assert match, out
    assert float(match[1]) > 0 and float(match[2]) > 0, out
    children = re.search(r"in child processes \(the store's writer\): A ([\d.]+) µs/token", out)
    assert children and float(children[1]) >= 0, out
    p99 = re.search(r"p99 added delay B/A per round: ([\d.]+); median ([\d.]+)", out)
    assert p99 and float(p99[2]) > 0 and abs(float(p99[1]) - float(p99[2])) < 0.01, out


def test_ab_cpu_runs_b_on_the_interpreter_given() -> None:
    out = _run(
        "bench.experiments.ab_cpu", ".", ".", "--python-b", sys.executable,
        "-c", "2", "-d", "1", "--rounds", "1", "--tokens", "3", "--ttft", "5", "--interval", "5",
    )  # fmt: skip
    assert f"B: {ROOT} on Python {platform.python_version()} ({sys.executable})" in out, out
    assert re.search(r"all rounds: user µs/token A [\d.]+, B [\d.]+", out), out


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


def test_token_path_reports_every_stage_and_the_writes_happen() -> None:
    out = _run("bench.experiments.token_path", "-n", "3000", "--opcodes")
    costs = [float(x) for x in re.findall(r"([\d.]+) µs per token", out)]
    assert len(costs) == 6, out
    assert all(cost > 0 for cost in costs), out
    opcodes = re.search(r"bytecodes per token \(whole path\): (\d+)", out)
    assert opcodes and int(opcodes[1]) > 50, out


def test_token_path_pipeline_writes_one_chunk_per_token() -> None:
    # The measured pipeline is the real path: every token reaches the reader as one HTTP chunk
    # holding its SSE frame, in order.
    import asyncio

    from bench.experiments import token_path

    written: list[bytes] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        connection = token_path.pipeline(len(token_path.STAGES) - 1, loop)
        original = token_path._Discard.write
        setattr(token_path._Discard, "write", lambda self, data: written.append(data))  # noqa: B010
        try:
            for i in range(5):
                connection.data_received(token_path.chunk(i))
        finally:
            setattr(token_path._Discard, "write", original)  # noqa: B010

    asyncio.run(go())
    assert len(written) == 5, written
    for i, data in enumerate(written):
        assert f"tok{i}@".encode() in data and b'"type":"text-delta"' in data
        assert data.endswith(b"\n\n\r\n")


@pytest.mark.parametrize("kind", ["ui-es", "ui"])
def test_ttft_parts_splits_every_turn(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "parts.json"
    args = ["-c", "4", "-d", "1", "--rounds", "1", "--tokens", "4", "--ttft", "20"]
    _run("bench.experiments.ttft_parts", *args, "--kind", kind, "--json", str(out))
    [res] = json.loads(out.read_text())
    parts = res["parts"]
    # Every turn was matched with the server's own timestamps (by client port and message tag).
    assert res["lost"] == 0 and parts["turns"] == res["turns_started"] > 0, res
    # The parts are measured in two processes; each is a forward step in time, so none may be
    # more than clock noise below zero, and the first token cannot come before the upstream's TTFT.
    names = ("connect", "accept", "read", "dispatch", "upstream", "first token")
    for part in names:
        assert parts[part]["p50"] >= -0.5, (part, parts[part])
    assert parts["overhead"]["p50"] >= 0, parts
    # They add up to the overhead, turn by turn, so their shares of the worst turns make 100%.
    assert abs(sum(parts[p]["share_of_worst_1pct"] for p in names) - 1) < 0.01, parts
    assert res["server"]["young_gc_runs"] >= 0 and res["server"]["wall_s"] > 0.5, res["server"]


def test_profile_runs_the_turns_asked_for(tmp_path: Path) -> None:
    # 2-token turns: what `bench.profile` samples to see the cost of a turn (py-spy left out).
    out = _run(
        "bench.profile", "--system", "sidechat-es", "-c", "2", "-d", "1", "--tokens", "2",
        "--ttft", "5", "--interval", "5", "--no-spy", "--out", str(tmp_path),
    )  # fmt: skip
    match = re.search(r"c=2 +ttft p50 ([\d.]+) ms .* tok/s (\d+) +lost 0 dup 0 ooo 0 err 0", out)
    assert match, out
    assert 5 <= float(match[1]) < 200, out  # the upstream's 5 ms, not the default 200 ms
