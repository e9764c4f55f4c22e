"""`sidechat eval --answers`: the answer evaluation's report on the terminal or as JSON."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from sidechat.errors import SidechatError

__all__ = ["eval_answers"]


def eval_answers(questions: Path, index_path: Path, *, k: int, as_json: bool) -> None:
    from sidechat.answers.evaluate import evaluate, load
    from sidechat.answers.plan import default_similarity
    from sidechat.answers.vocabulary import Vocabulary
    from sidechat.content import open_index

    try:
        retriever = open_index(index_path)
        reports = evaluate(
            retriever,
            load(questions),
            k=k,
            vocabulary=Vocabulary(index_path),
            similarity=default_similarity(retriever),
        )
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    figures = [r.as_json() for r in reports]
    if as_json:
        click.echo(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    for fig in figures:
        if fig["split"] == "all":
            continue
        for miss in fig["misses"]:
            why = "not found" if miss["not_found"] else f"cited {miss['cited']}"
            click.echo(f"miss [{fig['split']}] {miss['id']} {miss['q'][:70]!r}: {why}", err=True)
    for fig in figures:
        click.echo(
            f"{fig['split']}: {fig['correct']}/{fig['answerable']} answerable correct "
            f"({_pct(fig['correctness'])}, right page retrieved for {fig['retrieved']}); "
            f"not found on {fig['unanswerable']} unanswerable: precision "
            f"{_pct(fig['not_found_precision'])}, recall {_pct(fig['not_found_recall'])}; "
            f"first text p50 {fig['first_text_ms_p50']} ms, p95 {fig['first_text_ms_p95']} ms"
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
