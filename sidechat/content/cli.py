"""`sidechat ingest` and `sidechat eval`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from sidechat.content.documents import Page
from sidechat.errors import SidechatError

if TYPE_CHECKING:
    from sidechat.content.evaluate import Scores

__all__ = ["eval_cmd", "ingest"]


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The SQLite index file to create or update.",
)
@click.option(
    "--base-url",
    default="",
    help="The site's address, e.g. https://blog.example: file paths and site-relative "
    "front-matter URLs become absolute page URLs (default: a Hugo config's baseURL unless it "
    "is a placeholder or local address, else site-relative URLs like /posts/hello/).",
)
@click.option(
    "--vectors/--no-vectors",
    default=True,
    show_default=True,
    help="Compute dense embeddings for hybrid retrieval (--no-vectors: BM25 only, faster).",
)
@click.option(
    "--delay",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds between requests to a live site.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Requests in flight at once to a live site.",
)
@click.option(
    "--user-agent",
    default=None,
    help="User-Agent for a live site (default: sidechat-ingest/VERSION); robots.txt rules "
    "are matched against it.",
)
@click.option("--max-pages", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--max-bytes",
    type=click.IntRange(1024),
    default=2_000_000,
    show_default=True,
    help="Pages larger than this are skipped.",
)
@click.option(
    "--allow-private",
    is_flag=True,
    envvar="SIDECHAT_ALLOW_PRIVATE",
    help="Let a live site be on private, loopback or link-local addresses (an intranet site). "
    "Without it only a site given as such an address (http://127.0.0.1:8000, localhost) may "
    "use one. Redirects to another host are refused either way. Env: SIDECHAT_ALLOW_PRIVATE.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only the summary line.")
def ingest(
    sources: tuple[str, ...],
    index_path: Path,
    base_url: str,
    delay: float,
    concurrency: int,
    user_agent: str | None,
    max_pages: int,
    max_bytes: int,
    vectors: bool,
    allow_private: bool,
    quiet: bool,
) -> None:
    """Index SOURCES (folders of Markdown/HTML, sitemap.xml or RSS/Atom URLs) into --index.

    Re-running only re-processes pages whose content changed and removes pages that are gone.
    """
    from tqdm import tqdm

    from sidechat.content.folders import read_folder
    from sidechat.content.index import write_index
    from sidechat.content.report import Report
    from sidechat.content.urls import base_url_from_config, check_base_url
    from sidechat.content.web import USER_AGENT, Crawl, read_site

    report = Report(echo=not quiet)
    if base_url:
        try:
            base_url = check_base_url(base_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--base-url") from None
    crawl = Crawl(
        delay=delay,
        concurrency=concurrency,
        max_pages=max_pages,
        max_bytes=max_bytes,
        user_agent=user_agent or USER_AGENT,
        allow_private=allow_private,
    )
    origins: set[str] = set()
    for source in sources:
        if not _is_url(source) and not Path(source).is_dir():
            raise click.BadParameter(
                f"{source} is neither a folder nor an http(s) URL", param_hint="SOURCES"
            )
        origins.add(source if _is_url(source) else str(Path(source).resolve()))

    def pages() -> Iterator[Page]:
        for source in sources:
            if _is_url(source):
                yield from read_site(source, crawl=crawl, report=report)
            else:
                base = base_url
                if not base:
                    base, note = base_url_from_config(Path(source))
                    if note:
                        report.note(note)
                yield from read_folder(
                    Path(source), base_url=base, report=report, max_bytes=max_bytes
                )

    progress = tqdm(
        pages(), desc="ingest", unit=" pages", disable=quiet or None, file=sys.stderr, leave=False
    )
    try:
        write_index(
            index_path,
            progress,
            origins,
            report,
            vectors=vectors,
            progress=lambda total: tqdm(
                total=total,
                desc="embed",
                unit=" chunks",
                disable=quiet or None,
                file=sys.stderr,
                leave=False,
            ),
        )
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    for note in () if quiet else report.notes:
        click.echo(note, err=True)
    click.echo(f"{index_path}: {report.summary()}")


@click.command()
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_path", type=click.Path(path_type=Path), required=True)
@click.option("-k", "--k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option(
    "--split",
    type=click.Choice(["dev", "test", "all"]),
    default="all",
    show_default=True,
    help='Only the questions of this split (the question set\'s "split" field).',
)
@click.option("--bm25", "bm25_only", is_flag=True, help="BM25 only, without dense similarity.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--answers",
    is_flag=True,
    help="Evaluate answers, not retrieval: correctness, not-found precision/recall, time to "
    "first text, per split (sidechat.answers.evaluate).",
)
def eval_cmd(
    questions: Path,
    index_path: Path,
    k: int,
    split: str,
    bm25_only: bool,
    as_json: bool,
    answers: bool,
) -> None:
    """Report recall@1, recall@k and MRR of the cited pages for QUESTIONS.json, overall, per kind
    and per split: a list of {"q", "expect": [paths or URLs]} or of {"id", "q", "kind", "expect",
    "facts", "split", "history"}; questions with an empty "expect" (unanswerable) are not scored.
    With --answers, the answers themselves (sidechat.answers.evaluate)."""
    if answers:
        from sidechat.answers.cli import eval_answers

        eval_answers(questions, index_path, k=k, as_json=as_json)
        return
    from sidechat.content.evaluate import evaluate, load_questions
    from sidechat.content.search import SqliteRetriever

    try:
        retriever = SqliteRetriever(index_path, dense=not bm25_only)
        items = load_questions(questions)
        if split != "all":
            items = [q for q in items if q.split == split]
            if not items:
                raise click.ClickException(f"{questions}: no questions in split {split!r}")
        if not retriever.hybrid and not bm25_only:
            click.echo("note: the index has no usable vectors: BM25 only", err=True)
        result = evaluate(retriever, items, k=k)
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        out = {"retrieval": "hybrid" if retriever.hybrid else "bm25", **result.as_json()}
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    for miss in result.misses:
        click.echo(f"miss: {miss['q']!r} expected {miss['expect']} got {miss['got'][:3]}", err=True)

    def line(name: str, s: Scores) -> str:
        return (
            f"{name}: {s.questions} questions: recall@1 {s.recall_at_1:.3f}, "
            f"recall@{k} {s.recall_at_k:.3f}, MRR {s.mrr:.3f}"
        )

    for label, groups in (("kind", result.per_kind), ("split", result.per_split)):
        if len(groups) > 1:
            for name, scores in sorted(groups.items()):
                click.echo("  " + line(f"{label} {name}", scores))
    excluded = f" ({result.excluded} unanswerable not scored)" if result.excluded else ""
    click.echo(line("all", result.overall) + excluded)


@click.group()
def _main() -> None:
    """Content commands (also available as `sidechat ingest` / `sidechat eval`)."""


_main.add_command(ingest)
_main.add_command(eval_cmd, name="eval")

if __name__ == "__main__":
    _main()
