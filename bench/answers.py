"""The answer strategies' own costs: an extractive answer per question (retrieval excluded),
the vocabulary check, and the citation check per text delta.

    python -m bench.answers --index til.db --questions QUESTIONS.json [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import orjson

from sidechat.answers.citations import CitationFilter
from sidechat.answers.evaluate import load
from sidechat.answers.extractive import extract
from sidechat.answers.vocabulary import Vocabulary
from sidechat.content import open_index


def _ms(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 3),
        "max_ms": round(times[-1] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    retriever = open_index(args.index)
    questions = load(args.questions)
    work = [(q, retriever.search(q.q, history=q.history)) for q in questions]
    extract_times: list[float] = []
    for _ in range(args.rounds):
        for q, passages in work:
            started = time.perf_counter()
            extract(q.q, passages, history=q.history)
            extract_times.append(time.perf_counter() - started)
    vocab_times: list[float] = []
    for q, _ in work:  # cold: one FTS5 count per name, before the cache has it
        vocabulary = Vocabulary(args.index)
        started = time.perf_counter()
        vocabulary.unknown_names(q.q)
        vocab_times.append(time.perf_counter() - started)
        vocabulary.close()
    # A model's answer as it streams: short deltas, a marker every few words, some split.
    deltas = ["The", " fix", " is", " to", " set", " it", " [1]", ".", " See", " [", "2", "]"]
    deltas = deltas * 10_000
    check = CitationFilter(5)
    started = time.perf_counter_ns()
    for delta in deltas:
        check.feed(delta)
    per_delta = (time.perf_counter_ns() - started) / len(deltas)
    plain = CitationFilter(5)
    words = ["The", " fix", " is", " to", " set", " it", "."] * 10_000
    started = time.perf_counter_ns()
    for delta in words:
        plain.feed(delta)
    per_plain = (time.perf_counter_ns() - started) / len(words)
    print(
        orjson.dumps(
            {
                "questions": len(work),
                "extract": {"n": len(extract_times), **_ms(extract_times)},
                "unknown_names_cold": {"n": len(vocab_times), **_ms(vocab_times)},
                "citation_check_ns_per_delta": round(per_delta),
                "citation_check_ns_per_delta_without_markers": round(per_plain),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
