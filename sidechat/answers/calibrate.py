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
import numpy as np
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
_RARE = [0, 1, 2, 3, 4, 5, 10, 20]


def _decided(outcome: Outcome, passages: Sequence[Passage], thresholds: Thresholds) -> Outcome:
    quote = outcome.quote_similarity
    unknown = [name for name, count in outcome.absent if count <= thresholds.rare_names]
    if outcome.not_found or (
        found(passages, thresholds, unknown_names=unknown, weighted_coverage=outcome.weighted)
        and (quote is None or quote >= thresholds.quote)
    ):
        return outcome
    reply = not_found_reply(suggestions(passages))
    return replace(outcome, text=reply, cited=(), not_found=True)


def _features(outcome: Outcome, passages: Sequence[Passage]) -> list[float]:
    """What `_decided` compares with each threshold, as numbers (NaN: that rule does not
    apply; +inf: no absent name)."""
    nan = float("nan")
    always = outcome.not_found or not passages or all(p.coverage <= 0 for p in passages)
    top_similarity = max((p.similarity for p in passages), default=0.0)
    return [
        1.0 if always else 0.0,
        passages[0].coverage if passages else nan,
        top_similarity if top_similarity > 0 else nan,
        passages[0].score if passages else nan,
        outcome.weighted if outcome.weighted is not None else nan,
        outcome.quote_similarity if outcome.quote_similarity is not None else nan,
        float(min((count for _, count in outcome.absent), default=float("inf"))),
    ]


def calibrate(
    runs: Sequence[tuple[Outcome, Sequence[Passage]]], *, use_score: bool = False
) -> Thresholds:
    """The thresholds that get the most dev questions right (answered correctly, or unanswerable
    and not found) while "not found" keeps a precision of MIN_PRECISION; ties go to the lowest
    thresholds, which turn away fewest answers. Every combination is decided at once with
    numpy (the same rules as `_decided`, which the reports use)."""
    with_similarity = any(p.similarity > 0 for _, passages in runs for p in passages)
    with_quote = any(o.quote_similarity is not None for o, _ in runs)
    grid = np.array(
        list(
            itertools.product(
                _COVERAGE,
                _SIMILARITY if with_similarity else [0.0],
                _SCORE if use_score else [0.0],
                _COVERAGE,
                _QUOTE if with_quote else [0.0],
                _RARE,
            )
        )
    )
    if not runs:
        return Thresholds()
    f = np.array([_features(o, p) for o, p in runs]).T[:, None, :]  # feature, 1, question
    t = grid.T[:, :, None]  # threshold, combination, 1
    with np.errstate(invalid="ignore"):  # NaN compares False: the rule does not apply
        said = (
            (f[0] > 0)
            | (f[6] <= t[5])
            | (f[4] < t[3])
            | (f[1] < t[0])
            | (f[3] < t[2])
            | (f[2] < t[1])
            | (f[5] < t[4])
        )
    answerable = np.array([o.question.answerable for o, _ in runs])
    correct = np.array([o.correct for o, _ in runs])
    right = np.where(answerable, ~said & correct, said).sum(1)
    n_said = said.sum(1)
    wrong = (said & answerable).sum(1)
    ok = (n_said == 0) | (n_said - wrong >= MIN_PRECISION * n_said - 1e-9)
    if not ok.any():
        return Thresholds()
    best = int(np.argmax(np.where(ok, right, -1)))  # the first of the best: the lowest
    coverage, similarity, score, weighted, quote, rare = (float(x) for x in grid[best])
    return Thresholds(coverage, similarity, score, True, weighted, quote, int(rare))


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
