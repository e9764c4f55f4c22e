"""`sidechat ingest` and `sidechat eval`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import orjson

from sidechat.content.documents import Page
from sidechat.errors import SidechatError

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
    help="Turns file paths into page URLs, e.g. "
    "https://blog.example (default: site-relative URLs like /posts/hello/).",
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
@click.option("--quiet", is_flag=True, help="Only the summary line.")
def ingest(
    sources: tuple[str, ...],
    index_path: Path,
    base_url: str,
    delay: float,
    concurrency: int,
    user_agent: str | None,
    max_pages: int,
    max_bytes: int,
    quiet: bool,
) -> None:
    """Index SOURCES (folders of Markdown/HTML, sitemap.xml or RSS/Atom URLs) into --index.

    Re-running only re-processes pages whose content changed and removes pages that are gone.
    """
    from tqdm import tqdm

    from sidechat.content.folders import read_folder
    from sidechat.content.index import write_index
    from sidechat.content.report import Report
    from sidechat.content.web import USER_AGENT, Crawl, read_site

    report = Report(echo=not quiet)
    crawl = Crawl(
        delay=delay,
        concurrency=concurrency,
        max_pages=max_pages,
        max_bytes=max_bytes,
        user_agent=user_agent or USER_AGENT,
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
                yield from read_folder(
                    Path(source), base_url=base_url.rstrip("/"), report=report, max_bytes=max_bytes
                )

    progress = tqdm(
        pages(), desc="ingest", unit=" pages", disable=quiet or None, file=sys.stderr, leave=False
    )
    try:
        write_index(index_path, progress, origins, report)
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    for note in () if quiet else report.notes:
        click.echo(note, err=True)
    click.echo(f"{index_path}: {report.summary()}")


@click.command()
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_path", type=click.Path(path_type=Path), required=True)
@click.option("-k", "--k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--answers",
    is_flag=True,
    help="Evaluate answers, not retrieval: correctness, not-found precision/recall, time to "
    "first text, per split (sidechat.answers.evaluate).",
)
def eval_cmd(questions: Path, index_path: Path, k: int, as_json: bool, answers: bool) -> None:
    """Report recall@1 and recall@k of the cited pages for QUESTIONS.json
    (a list of {"q": ..., "expect": [paths or URLs]})."""
    if answers:
        from sidechat.answers.cli import eval_answers

        eval_answers(questions, index_path, k=k, as_json=as_json)
        return
    from sidechat.content import open_index
    from sidechat.content.evaluate import evaluate, load_questions

    try:
        retriever = open_index(index_path)
        result = evaluate(retriever, load_questions(questions), k=k)
    except SidechatError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    for miss in result.misses:
        click.echo(f"miss: {miss['q']!r} expected {miss['expect']} got {miss['got'][:3]}", err=True)
    click.echo(
        f"{result.total} questions: recall@1 {result.recall_at_1:.3f}, "
        f"recall@{k} {result.recall_at_5:.3f}"
    )


@click.group()
def _main() -> None:
    """Content commands (also available as `sidechat ingest` / `sidechat eval`)."""


_main.add_command(ingest)
_main.add_command(eval_cmd, name="eval")

if __name__ == "__main__":
    _main()
