"""Retrieval latency on a site of about 1,000 pages: the TIL corpus twice (as two folders, so
1,156 pages), queried with the committed question set: BM25 alone, the query embedding alone,
and hybrid retrieval (embedding + BM25 + fusion), each with the result cache cleared.

    python -m bench.retrieval [--rounds 20] [--index PATH]   # --index: reuse an ingested copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from sidechat.content.search import SqliteRetriever

ROOT = Path(__file__).resolve().parent.parent
TIL = ROOT.parent / "shared" / "corpora" / "simonw-til"


def _stats(timings: list[float]) -> dict[str, float]:
    timings = sorted(timings)
    return {
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 2),
        "max_ms": round(timings[-1], 2),
    }


def _time(
    retriever: SqliteRetriever, questions: list[dict[str, object]], rounds: int, what: str
) -> list[float]:
    timings: list[float] = []
    for _ in range(rounds):
        for item in questions:
            q, history = str(item["q"]), [str(h) for h in item.get("history", [])]  # type: ignore[attr-defined]
            retriever.clear_cache()  # measure the search, not the small result cache
            t0 = time.perf_counter()
            if what == "embed":
                retriever.embed_query(q, history=history)
            else:
                retriever.search(q, history=history, k=5)
            timings.append((time.perf_counter() - t0) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--index", type=Path, help="an index of the doubled corpus to reuse")
    args = parser.parse_args()
    questions = orjson.loads((ROOT / "examples" / "questions" / "til.json").read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index or Path(tmp) / "index.db"
        ingest_s = cpu_s = 0.0
        if args.index is None or not args.index.exists():
            site = Path(tmp) / "site"
            shutil.copytree(TIL, site / "a")
            shutil.copytree(TIL, site / "b")
            started = time.perf_counter()
            cpu0 = os.times()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sidechat",
                    "ingest",
                    str(site),
                    "--index",
                    str(index),
                    "-q",
                ],
                check=True,
                capture_output=True,
            )
            ingest_s = time.perf_counter() - started
            cpu1 = os.times()
            cpu_s = (cpu1.children_user - cpu0.children_user) + (
                cpu1.children_system - cpu0.children_system
            )
        bm25 = SqliteRetriever(index, dense=False)
        hybrid = SqliteRetriever(index)
        pages = hybrid.page_count()
        result = {
            "pages": pages,
            "hybrid": hybrid.hybrid,
            "queries": len(questions) * args.rounds,
            "ingest_s": round(ingest_s, 2),
            "ingest_cpu_s": round(cpu_s, 2),
            "bm25": _stats(_time(bm25, questions, args.rounds, "search")),
            "query_embedding": _stats(_time(hybrid, questions, args.rounds, "embed")),
            "hybrid_retrieval": _stats(_time(hybrid, questions, args.rounds, "search")),
        }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
