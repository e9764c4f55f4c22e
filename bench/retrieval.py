"""Retrieval latency on a site of about 1,000 pages: the TIL corpus twice (as two folders, so
1,156 pages), queried with the committed question set.

    python -m bench.retrieval [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from sidechat.content import open_index

ROOT = Path(__file__).resolve().parent.parent
TIL = ROOT.parent / "shared" / "corpora" / "simonw-til"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    questions = orjson.loads((ROOT / "examples" / "questions" / "til.json").read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        shutil.copytree(TIL, site / "a")
        shutil.copytree(TIL, site / "b")
        index = Path(tmp) / "index.db"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sidechat",
                "ingest",
                str(site),
                "--index",
                str(index),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        ingest_s = time.perf_counter() - started
        retriever = open_index(index)
        pages = retriever.page_count()
        timings: list[float] = []
        for _ in range(args.rounds):
            for item in questions:
                retriever.clear_cache()  # measure the search, not the small result cache
                t0 = time.perf_counter()
                retriever.search(item["q"], history=item.get("history", []), k=5)
                timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    result = {
        "pages": pages,
        "queries": len(timings),
        "ingest_s": round(ingest_s, 2),
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 2),
        "max_ms": round(timings[-1], 2),
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
