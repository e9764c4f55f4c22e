"""Re-running ingest re-processes only what changed, and the index is never half-written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidechat.content import open_index
from tests.content._helpers import TIL, ingest, pages, write


def test_added_updated_removed_unchanged(tmp_path: Path) -> None:
    root = write(
        tmp_path / "site", {"a.md": "# A\n\nalpha", "b.md": "# B\n\nbeta", "c.md": "# C\n\ngamma"}
    )
    index = tmp_path / "i.db"
    assert "3 added, 0 updated, 0 removed, 0 unchanged" in ingest(root, "--index", index).stdout
    (root / "b.md").write_text("# B\n\nbeta, revised")
    (root / "c.md").unlink()
    (root / "d.md").write_text("# D\n\ndelta")
    out = ingest(root, "--index", index).stdout
    assert "1 added, 1 updated, 1 removed, 1 unchanged" in out
    assert set(pages(index)) == {"/a/", "/b/", "/d/"}
    retriever = open_index(index)
    assert retriever.search("revised")[0].url == "/b/"
    # The removed page's words match nothing; the dense side still proposes its nearest pages.
    assert all(p.url != "/c/" and p.coverage == 0 for p in retriever.search("gamma"))
    assert "0 added, 0 updated, 0 removed, 3 unchanged" in ingest(root, "--index", index).stdout


def test_two_sources_in_one_index_do_not_remove_each_other(tmp_path: Path) -> None:
    one = write(tmp_path / "one", {"x.md": "# X\n\nx"})
    two = write(tmp_path / "two", {"y.md": "# Y\n\ny"})
    index = tmp_path / "i.db"
    ingest(one, "--index", index)
    ingest(two, "--index", index)
    assert set(pages(index)) == {"/x/", "/y/"}


def test_not_an_index_is_refused_and_left_alone(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"precious data")
    result = ingest(write(tmp_path / "s", {"a.md": "# A\n\na"}), "--index", bogus, ok=False)
    assert result.returncode != 0 and "not a sidechat index" in result.stderr
    assert bogus.read_bytes() == b"precious data"
    assert not list(tmp_path.glob(".notes.db.*.tmp"))


def test_bad_source_is_a_clear_error(tmp_path: Path) -> None:
    result = ingest(tmp_path / "nope", "--index", tmp_path / "i.db", ok=False)
    assert result.returncode == 2 and "neither a folder nor an http(s) URL" in result.stderr


@pytest.mark.skipif(not TIL.is_dir(), reason="the TIL corpus (../shared/corpora) is absent")
def test_a_killed_ingest_leaves_the_old_index_whole(tmp_path: Path) -> None:
    blog = Path(__file__).resolve().parents[2] / "examples" / "blog"
    index = tmp_path / "i.db"
    ingest(blog, "--index", index)
    before = pages(index)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidechat", "ingest", str(TIL), "--index", str(index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tmp = index.with_name(f".{index.name}.{proc.pid}.tmp")
    deadline = time.monotonic() + 30
    while not tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tmp.exists(), "the ingest writes to a temporary copy"
    time.sleep(0.2)  # some pages into the transaction
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pages(index) == before
    assert open_index(index).search("install sidechat")
