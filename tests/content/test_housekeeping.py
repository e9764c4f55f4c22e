"""`ingest` removes the temporary copies that killed runs left, never a running ingest's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.content._helpers import ingest, pages, write


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_copies_of_killed_runs_are_removed(tmp_path: Path) -> None:
    site = write(tmp_path / "site", {"otters.md": "# Otters\n\nOtters hold hands when asleep."})
    index = tmp_path / "i.db"
    dead = _dead_pid()
    stale = [tmp_path / f".i.db.{dead}.tmp", tmp_path / f".i.db.{dead}.tmp-journal"]
    for path in stale:
        path.write_bytes(b"x" * 4096)
    # A concurrent ingest's copy: its process (here, this test's) is alive.
    live = tmp_path / f".i.db.{os.getpid()}.tmp"
    live.write_bytes(b"in progress")
    # Not ours to judge: another index's copy, and names that are not a pid.
    others = [tmp_path / f".other.db.{dead}.tmp", tmp_path / ".i.db.notapid.tmp"]
    for path in others:
        path.write_bytes(b"keep")
    result = ingest(site, "--index", index, "--no-vectors")
    assert not any(path.exists() for path in stale)
    assert live.read_bytes() == b"in progress"
    assert all(path.read_bytes() == b"keep" for path in others)
    assert f"removed {stale[0]}" in result.stderr
    assert len(pages(index)) == 1


def test_a_killed_ingest_leaves_a_copy_that_the_next_run_removes(tmp_path: Path) -> None:
    """The issue's case: an ingest killed mid-run (SIGKILL: no clean-up) leaves its copy."""
    site = write(
        tmp_path / "site",
        {f"p{i}.md": f"# Page {i}\n\n" + f"Words about topic {i}. " * 200 for i in range(400)},
    )
    index = tmp_path / "i.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidechat", "ingest", str(site), "--index", str(index), "-q",
         "--no-vectors"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    copy = tmp_path / f".i.db.{proc.pid}.tmp"
    deadline = time.monotonic() + 120
    while not copy.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not copy.exists():
        pytest.skip("the ingest finished before it could be killed mid-run")
    ingest(site, "--index", index, "--no-vectors")
    assert not copy.exists()
    assert not any(tmp_path.glob(".i.db.*.tmp*"))
    assert len(pages(index)) == 400
