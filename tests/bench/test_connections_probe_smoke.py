"""A smoke run of `python -m bench.connections_probe` at a tiny size (500 idle connections,
100 slowloris, one giant header, a 1 s header timeout), so it cannot rot: it reports memory per
idle connection and what became of every connection it opened; no timings are asserted (the
full run's figures are in docs/security.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_connections_probe_quick() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.connections_probe", "--idle", "500", "--slowloris", "100",
         "--giant", "1", "--header-timeout", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    idle = re.search(r"idle: (\d+) connections opened in .* \((-?\d+) bytes each\)", out)
    assert idle, out
    assert int(idle[1]) == 500 and int(idle[2]) > 0, out
    # The server closes every connection that never finishes its header (the probe's own
    # deadline is the header timeout plus 10 s).
    closed = re.search(r"idle: (\d+)/(\d+) closed by the server", out)
    assert closed and closed[1] == closed[2] == "500", out
    slow = re.search(r"slowloris: (\d+)/(\d+) closed by the server", out)
    assert slow and slow[1] == slow[2] == "100", out
    assert re.search(r"giant headers: 1 connections .* server RSS \d+ -> \d+ MB", out), out
