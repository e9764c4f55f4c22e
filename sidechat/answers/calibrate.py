"""Calibrate the not-found thresholds on a question set's dev split and print them, with the dev
and test figures they give: `python -m sidechat.answers.calibrate QUESTIONS.json --index PATH`.

Retrieval and the extractive answer run once per question; each candidate threshold only
decides which of them become "not found", so the grid costs nothing more."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click
import orjson

from sidechat.answers.evaluate import AnswerQuestion, Outcome, answer, load, report
from sidechat.answers.notfound import Thresholds, found, not_found_reply, suggestions
from sidechat.answers.plan import default_similarity
from sidechat.answers.vocabulary import Vocabulary
from sidechat.content import open_index
from sidechat.content.search import Passage

__all__ = ["calibrate", "main"]

_COVERAGE = [round(0.05 * i, 2) for i in range(17)]
_SIMILARITY = [round(0.05 * i, 2) for i in range(19)]
_QUOTE = [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55]
# "Not found" must be right at least this often on dev: turning away an answer costs a visitor
# more than quoting a page that does not help.
MIN_PRECISION = 0.9
_SCORE = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0]


def _decided(outcome: Outcome, passages: Sequence[Passage], thresholds: Thresholds) -> Outcome:
    quote = outcome.quote_similarity
    if outcome.not_found or (
        found(
            passages, thresholds, unknown_names=outcome.unknown, weighted_coverage=outcome.weighted
        )
        and (quote is None or quote >= thresholds.quote)
    ):
        return outcome
    reply = not_found_reply(suggestions(passages))
    return replace(outcome, text=reply, cited=(), not_found=True)


def calibrate(
    runs: Sequence[tuple[Outcome, Sequence[Passage]]], *, use_score: bool = False
) -> Thresholds:
    """The thresholds that get the most dev questions right (answered correctly, or unanswerable
    and not found) while "not found" keeps a precision of MIN_PRECISION; ties go to the lowest
    thresholds, which turn away fewest answers."""
    with_similarity = any(p.similarity > 0 for _, passages in runs for p in passages)
    with_quote = any(o.quote_similarity is not None for o, _ in runs)
    grid = itertools.product(
        _COVERAGE,
        _SIMILARITY if with_similarity else [0.0],
        _SCORE if use_score else [0.0],
        _COVERAGE,
        _QUOTE if with_quote else [0.0],
    )
    best: tuple[int, Thresholds] | None = None
    for coverage, similarity, score, weighted, quote in grid:
        thresholds = Thresholds(coverage, similarity, score, True, weighted, quote)
        decided = [_decided(o, p, thresholds) for o, p in runs]
        said = [d for d in decided if d.not_found]
        wrong = sum(d.question.answerable for d in said)
        if said and len(said) - wrong < MIN_PRECISION * len(said) - 1e-9:
            continue
        right = sum(d.correct for d in decided)
        if best is None or right > best[0]:
            best = (right, thresholds)
    if best is None:
        return Thresholds()
    assert best is not None
    return best[1]


def _runs(
    questions: Sequence[AnswerQuestion], index: Path, k: int
) -> list[tuple[Outcome, Sequence[Passage]]]:
    retriever = open_index(index)
    vocabulary = Vocabulary(index)
    similarity = default_similarity(retriever)
    everything = Thresholds(0.0, 0.0, float("-inf"), names=False, weighted=0.0)
    return [
        (
            answer(
                retriever,
                q,
                k=k,
                thresholds=everything,
                vocabulary=vocabulary,
                similarity=similarity,
            ),
            retriever.search(q.q, history=q.history, k=k),
        )
        for q in questions
    ]


@click.command()
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_path", type=click.Path(path_type=Path), required=True)
@click.option("-k", "--k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--score", "use_score", is_flag=True, help="Also calibrate a BM25 score floor.")
def main(questions: Path, index_path: Path, k: int, use_score: bool) -> None:
    """Choose not-found thresholds on the dev split of QUESTIONS.json; report dev and test."""
    items = load(questions)
    runs = _runs(items, index_path, k)
    dev = [run for run in runs if run[0].question.split == "dev"]
    if not dev:
        raise click.ClickException(f"{questions} has no dev split to calibrate on")
    chosen = calibrate(dev, use_score=use_score)
    click.echo(f"thresholds: {chosen}")
    for split in ("dev", "test"):
        outcomes = [_decided(o, p, chosen) for o, p in runs if o.question.split == split]
        if outcomes:
            figures = report(split, outcomes).as_json()
            figures.pop("misses")
            click.echo(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
