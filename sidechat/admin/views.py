"""The dashboard's pages: overview, unanswered questions, feedback, pages, a transcript."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from sidechat.admin import insights
from sidechat.admin._html import bar_chart, esc, line_chart
from sidechat.content.index import connect_readonly
from sidechat.store.queries import FeedbackRow, TurnRow

__all__ = ["feedback_page", "index_pages", "overview", "pages_page", "transcript", "unanswered"]


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _conversation_link(conversation_id: str, text: str = "conversation") -> str:
    return f'<a href="/admin/conversations/{esc(conversation_id)}">{esc(text)}</a>'


def _sources(pages: Sequence[tuple[str, str]]) -> str:
    if not pages:
        return '<span class="muted">no page retrieved</span>'
    items = "".join(
        f'<li><a href="{esc(url)}" rel="noreferrer">{esc(title or url)}</a></li>'
        for url, title in pages
    )
    return f'<ul class="sources">{items}</ul>'


def overview(turns: list[TurnRow], retention: float) -> str:
    days = insights.days(turns)
    labels = [d.day for d in days]
    total_q = sum(d.questions for d in days)
    up = sum(d.up for d in days)
    down = sum(d.down for d in days)
    missed = sum(d.unanswered for d in days)
    satisfaction = f"{up / (up + down) * 100:.0f}%" if up + down else "–"
    cards = (
        '<ul class="cards">'
        f"<li><strong>{total_q}</strong> questions</li>"
        f'<li><strong>{missed}</strong> <a href="/admin/unanswered">unanswered</a></li>'
        f"<li><strong>{satisfaction}</strong> thumbs up ({up} up, {down} down)</li>"
        "</ul>"
    )
    rows = "".join(
        f"<tr><th scope=row>{esc(d.day)}</th><td>{d.questions}</td>"
        f"<td>{_seconds(insights.percentile(d.ttft, 0.5))}</td>"
        f"<td>{_seconds(insights.percentile(d.ttft, 0.95))}</td>"
        f"<td>{_seconds(insights.percentile(d.total, 0.5))}</td>"
        f"<td>{_seconds(insights.percentile(d.total, 0.95))}</td><td>{d.errors}</td></tr>"
        for d in reversed(days)
    )
    latency = (
        '<div class="scroll"><table><caption>Latency per day (time to first token and total '
        "time, p50 and p95)</caption><thead><tr><th scope=col>Day</th><th scope=col>Questions"
        "</th><th scope=col>First token p50</th><th scope=col>p95</th><th scope=col>Total p50"
        "</th><th scope=col>p95</th><th scope=col>Errors</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        if days
        else ""
    )
    errors = insights.errors_by_kind(turns)
    error_list = (
        "<ul>" + "".join(f"<li>{esc(k)}: {n}</li>" for k, n in errors.most_common()) + "</ul>"
        if errors
        else '<p class="empty">No failed turns.</p>'
    )
    return (
        f'<p class="muted">The last {retention:g} days (the retention): older conversations '
        "are purged.</p>"
        f"{cards}<section><h2>Questions per day</h2>"
        f"{bar_chart('Questions per day', labels, [d.questions for d in days])}</section>"
        "<section><h2>Satisfaction over time</h2>"
        f"{line_chart('Share of thumbs up per day', labels, [d.satisfaction for d in days])}"
        f"</section><section><h2>Latency</h2>{latency or '<p class=empty>No turns yet.</p>'}"
        f"</section><section><h2>Errors by kind</h2>{error_list}</section>"
    )


def unanswered(turns: list[TurnRow]) -> str:
    groups = insights.group_similar(insights.unanswered(turns))
    if not groups:
        return '<p class="empty">Every question found an answer.</p>'
    out = [
        '<p class="muted">Questions that found no good page, got a "don\'t know", failed or '
        "got a thumbs down, grouped by similar wording: the posts to write next.</p>"
    ]
    for group in groups[:200]:
        reasons = ", ".join(f"{why} ×{n}" for why, n in group.reasons.most_common())
        asked = "".join(
            f"<li>{esc(turn.question)} <span class=muted>({esc(why)}, {_when(turn.started_at)},"
            f" {_conversation_link(turn.conversation_id)})</span></li>"
            for turn, why in group.items[:10]
        )
        more = len(group.items) - 10
        out.append(
            f'<article class="group"><h2>{esc(group.label)}</h2>'
            f"<p><strong>{len(group.items)}</strong> time(s): {esc(reasons)}</p>"
            f"<ul>{asked}</ul>{f'<p class=muted>and {more} more</p>' if more > 0 else ''}"
            f"<h3>Pages retrieved</h3>{_sources(group.pages)}</article>"
        )
    return "".join(out)


def feedback_page(rows: list[FeedbackRow]) -> str:
    if not rows:
        return '<p class="empty">No feedback yet.</p>'
    items = []
    for row in rows:
        thumb = "Thumbs up" if row.rating == "up" else "Thumbs down"
        comment = (
            f"<blockquote>{esc(row.comment)}</blockquote>"
            if row.comment
            else '<p class="muted">No comment.</p>'
        )
        items.append(
            f'<article class="feedback {esc(row.rating)}"><p><strong>{thumb}</strong> · '
            f"{_when(row.created_at)} · {_conversation_link(row.conversation_id)}</p>"
            f"<p class=question>{esc(row.question)}</p>{comment}</article>"
        )
    return "".join(items)


def pages_page(turns: list[TurnRow], index: list[tuple[str, str]] | None) -> str:
    cited = insights.cited_pages(turns)
    top = "".join(
        f'<tr><td><a href="{esc(url)}" rel="noreferrer">{esc(title or url)}</a></td>'
        f"<td>{n}</td></tr>"
        for (url, title), n in cited.most_common(50)
    )
    out = [
        "<section><h2>Top cited pages</h2>",
        (
            '<div class="scroll"><table><thead><tr><th scope=col>Page</th><th scope=col>'
            f"Cited</th></tr></thead><tbody>{top}</tbody></table></div>"
            if top
            else '<p class="empty">No page cited yet.</p>'
        ),
        "</section><section><h2>Pages never cited</h2>",
    ]
    if index is None:
        out.append('<p class="empty">No index is configured (<code>--index</code>).</p>')
    else:
        seen = {url for url, _ in cited}
        never = [(url, title) for url, title in index if url not in seen]
        out.append(
            f"<p>{len(never)} of {len(index)} indexed pages.</p>{_sources(never[:500])}"
            if never
            else '<p class="empty">Every indexed page was cited.</p>'
        )
    out.append("</section>")
    return "".join(out)


def transcript(turns: list[TurnRow]) -> str:
    out = []
    for turn in turns:
        rating = f" · rated {esc(turn.rating)}" if turn.rating else ""
        comment = f"<blockquote>{esc(turn.comment)}</blockquote>" if turn.comment else ""
        out.append(
            f'<article class="turn"><p class="muted">{_when(turn.started_at)} · '
            f"{esc(turn.outcome or turn.status)} · first token {_seconds(turn.ttft)}{rating}</p>"
            f'<p class="question"><strong>Visitor:</strong> {esc(turn.question)}</p>'
            f'<div class="answer"><strong>Assistant:</strong> {esc(turn.answer)}</div>'
            f"<h3>Sources</h3>{_sources(turn.sources)}{comment}</article>"
        )
    return "".join(out)


def _read_pages(path: Path) -> list[tuple[str, str]]:
    conn = connect_readonly(path)
    try:
        return [(str(u), str(t)) for u, t in conn.execute("SELECT url, title FROM pages")]
    finally:
        conn.close()


async def index_pages(path: Path | None) -> list[tuple[str, str]] | None:
    """The index's pages (url, title), or None without an index or when it cannot be read."""
    if path is None:
        return None
    try:
        return await asyncio.to_thread(_read_pages, path)
    except (sqlite3.Error, OSError, Exception):
        return None


def since(retention_days: float) -> float:
    return time.time() - retention_days * 86400
