"""A smoke run of `python -m bench.scale_out --quick`, so it cannot rot: every system carries
its turns with nothing lost; no timings are asserted (see BENCHMARKS.md for the full run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_scale_out_quick(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "scale_out.json"
    systems = "sidechat,sidechat-redis,sidechat-w2"  # Express needs npm: bench.run covers it
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale_out", "--quick", "--systems", systems,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["results"]) == set(systems.split(","))
    for name, levels in result["results"].items():
        for level, res in levels.items():
            assert res["clean"], (name, level, res["errors"])
            assert res["turns_ok"] == res["turns"] > 0, (name, level)
            assert res["tokens"] == res["turns"] * result["spec"]["tokens"], (name, level)
    assert result["results"]["sidechat-w2"]["10"]["redis_cpu_util"] >= 0
