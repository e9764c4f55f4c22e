"""A smoke run of `python -m bench.fairness` at a tiny size (a 2 s flood at 50 turns/s, 3 honest
visitors), so it cannot rot: the visitors' turns all complete with every token, the flood is
refused with 429s, and the report carries the flood/quiet ratios; no timings are asserted (the
full run's figures are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fairness_quick(tmp_path: Path) -> None:
    out = tmp_path / "fairness.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fairness", "--rate", "50", "--duration", "2",
         "--visitors", "3", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["config"]["limits"] == "on"
    tokens = result["config"]["spec"]["tokens"]
    for name in ("quiet", "flood"):
        res = result[name]
        assert res["errors"] == {}, (name, res["errors"])
        assert res["turns_ok"] == res["turns"] >= 3, name
        assert (res["lost"], res["dup"], res["ooo"], res["bad_tokens"]) == (0, 0, 0, 0), name
        assert res["tokens"] == res["turns"] * tokens, name
    flooder = result["flood"]["flooder"]
    assert flooder["statuses"]["429"] > 0, flooder
    assert set(flooder["statuses"]) <= {"202", "429"}, flooder
    assert sum(flooder["statuses"].values()) == flooder["sent"]
    # Only the flood's accepted turns reach the upstream, beside the visitors' own.
    accepted = flooder["statuses"].get("202", 0)
    assert result["flood"]["upstream_turns"] == result["flood"]["turns"] + accepted
    assert result["quiet"]["upstream_turns"] == result["quiet"]["turns"]
    ratio = result["ratio"]
    assert set(ratio) == {"ttft_p50", "ttft_p99", "added_delay_p50", "added_delay_p99"}
    assert all(isinstance(value, float) and value > 0 for value in ratio.values()), ratio
    assert isinstance(result["within_2x"], bool)
    assert "flood/quiet: TTFT p50 " in proc.stdout, proc.stdout
