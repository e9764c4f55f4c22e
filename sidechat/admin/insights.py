"""What the dashboard shows, computed from stored turns: pure functions, no I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sidechat.store.queries import TurnRow

__all__ = [
    "Day",
    "Group",
    "cited_pages",
    "days",
    "errors_by_kind",
    "group_similar",
    "percentile",
    "says_unknown",
    "unanswered",
    "why_unanswered",
]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words that say nothing about what was asked: grouping ignores them.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
    ]
)
_UNKNOWN = re.compile(
    r"\b(i\s+(?:do\s+not|don'?t|don’t)\s+know|i\s+(?:could\s+not|couldn'?t|couldn’t|cannot|"
    r"can'?t|can’t)\s+find|no\s+page\s+of\s+this\s+website|not\s+(?:covered|mentioned)\s+"
    r"(?:on|in)\s+(?:this|the)\s+(?:site|website|pages?))",
    re.IGNORECASE,
)


def says_unknown(answer: str) -> bool:
    """The answer says it does not know (checked in its first 400 characters)."""
    return bool(_UNKNOWN.search(answer[:400]))


def why_unanswered(turn: TurnRow) -> str | None:
    """Why a turn counts as unanswered, or None when it was answered."""
    if turn.status == "error" or turn.outcome in ("error", "interrupted"):
        return "failed"
    if turn.rating == "down":
        return "thumbs down"
    if turn.found is False:
        return "not found"
    if turn.status == "done" and says_unknown(turn.answer):
        return "didn't know"
    return None


def unanswered(turns: Iterable[TurnRow]) -> list[tuple[TurnRow, str]]:
    return [(t, why) for t in turns if (why := why_unanswered(t)) is not None]


def _tokens(text: str) -> frozenset[str]:
    words = (w.lower() for w in _WORD.findall(text))
    kept = frozenset(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words)
    return (kept - _STOP) or kept


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


@dataclass(slots=True)
class Group:
    """Questions worded alike (normalised words' Jaccard similarity), newest first."""

    words: frozenset[str]
    items: list[tuple[TurnRow, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.items[0][0].question

    @property
    def reasons(self) -> Counter[str]:
        return Counter(why for _, why in self.items)

    @property
    def pages(self) -> list[tuple[str, str]]:
        """The pages retrieved for these questions, most often first."""
        counts: Counter[tuple[str, str]] = Counter()
        for turn, _ in self.items:
            counts.update(turn.sources)
        return [page for page, _ in counts.most_common(5)]


def group_similar(
    items: Sequence[tuple[TurnRow, str]], threshold: float = 0.5, limit: int = 2000
) -> list[Group]:
    """Greedy grouping: each question joins the first group it is similar enough to (compared
    with the group's first question). Largest groups first."""
    groups: list[Group] = []
    for turn, why in items[:limit]:
        words = _tokens(turn.question)
        for group in groups:
            if _jaccard(words, group.words) >= threshold:
                group.items.append((turn, why))
                break
        else:
            groups.append(Group(words, [(turn, why)]))
    groups.sort(key=lambda g: (-len(g.items), -g.items[0][0].started_at))
    return groups


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0-1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


@dataclass(slots=True)
class Day:
    day: str
    questions: int = 0
    up: int = 0
    down: int = 0
    unanswered: int = 0
    errors: int = 0
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    @property
    def satisfaction(self) -> float | None:
        """Share of ratings that are thumbs up; None without ratings."""
        rated = self.up + self.down
        return self.up / rated if rated else None


def days(turns: Iterable[TurnRow]) -> list[Day]:
    """Per UTC day, oldest first."""
    by_day: dict[str, Day] = {}
    for turn in turns:
        day = by_day.setdefault(turn.day, Day(turn.day))
        day.questions += 1
        if turn.rating == "up":
            day.up += 1
        elif turn.rating == "down":
            day.down += 1
        if why_unanswered(turn) is not None:
            day.unanswered += 1
        if turn.status == "error":
            day.errors += 1
        if turn.ttft is not None:
            day.ttft.append(turn.ttft)
        if turn.total is not None and turn.status != "streaming":
            day.total.append(turn.total)
    return [by_day[d] for d in sorted(by_day)]


def errors_by_kind(turns: Iterable[TurnRow]) -> Counter[str]:
    return Counter(t.error_kind or t.outcome or "error" for t in turns if t.status == "error")


def cited_pages(turns: Iterable[TurnRow]) -> Counter[tuple[str, str]]:
    """Pages shown as sources of answers that found their page, by how often."""
    counts: Counter[tuple[str, str]] = Counter()
    for turn in turns:
        if turn.found is not False:
            counts.update(turn.sources)
    return counts
