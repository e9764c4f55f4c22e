"""Not found: whether retrieval found anything good enough to answer from, and the fixed, honest
reply with the closest pages when it did not. No model is asked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sidechat.answers._markdown import inline
from sidechat.answers.extractive import Extract
from sidechat.content.search import Passage

__all__ = [
    "DEFAULT",
    "MESSAGES",
    "Thresholds",
    "found",
    "language",
    "not_found_reply",
    "quoted_enough",
    "suggestions",
]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The best passage must reach every one of these to count as an answer. `similarity`
    applies only when the index has embeddings (a similarity above 0); `score` is BM25's, which
    grows with the corpus, so it is off unless calibrated for one."""

    coverage: float = 0.0
    similarity: float = 0.0
    score: float = 0.0
    names: bool = True  # a name the site never mentions ("PgBouncer") means not found
    weighted: float = 0.0  # Vocabulary.weighted_coverage of the best page
    # The quote's best unit's dense similarity to the question (`Extract.similarity`); applies
    # only when the quote was scored by an embedder.
    quote: float = 0.0
    # With `names`, a name that at most this many index chunks mention, none of them retrieved,
    # also means not found ("Litestream", mentioned in passing by 3 chunks about other things;
    # `Vocabulary.unknown_names`). 0: only names no page mentions.
    rare_names: int = 3


# Calibrated on the dev split of examples/questions/til-visitors.json with
# `python -m sidechat.answers.calibrate` (hybrid retrieval, quotes scored by the embedder). The
# calibration's `quote` = 0.4 (dev not-found recall 0.54 -> 0.69 at precision 0.90) rested on
# two dev questions and turned away 6 answerable test questions while catching none more
# (test precision 1.00 -> 0.45): off until a larger question set supports it.
DEFAULT = Thresholds()
SUGGESTIONS = 3

# The reply in the widget's languages; the key is a primary language subtag.
MESSAGES: dict[str, tuple[str, str]] = {
    "en": ("I couldn't find this on this site.", "These pages may be close:"),
    "de": ("Dazu habe ich auf dieser Website nichts gefunden.", "Diese Seiten kommen nahe:"),
    "es": ("No encontré esto en este sitio.", "Estas páginas podrían estar cerca:"),
    "fr": ("Je n'ai pas trouvé cela sur ce site.", "Ces pages s'en approchent peut-être :"),
    "it": ("Non ho trovato questo su questo sito.", "Queste pagine potrebbero avvicinarsi:"),
    "nl": ("Ik heb dit niet op deze site gevonden.", "Deze pagina's komen misschien in de buurt:"),
    "pt": ("Não encontrei isto neste site.", "Estas páginas podem estar próximas:"),
}


def found(
    passages: Sequence[Passage],
    thresholds: Thresholds = DEFAULT,
    *,
    unknown_names: Sequence[str] = (),
    weighted_coverage: float | None = None,
) -> bool:
    """True when the best passage is good enough to answer from. `unknown_names`: the
    question's names that no page mentions, and `weighted_coverage`, from a `Vocabulary`
    when there is one."""
    if not passages or (thresholds.names and unknown_names):
        return False
    if all(p.coverage <= 0 for p in passages):
        # The dense side always proposes its nearest chunks: sharing no word at all with any of
        # them is not finding anything.
        return False
    if weighted_coverage is not None and weighted_coverage < thresholds.weighted:
        return False
    best = passages[0]
    if best.coverage < thresholds.coverage or best.score < thresholds.score:
        return False
    top_similarity = max(p.similarity for p in passages)
    return not (top_similarity > 0 and top_similarity < thresholds.similarity)


def quoted_enough(quote: Extract | None, thresholds: Thresholds = DEFAULT) -> Extract | None:
    """The quote, or None when no sentence of it is close enough to the question (a question
    the site does not answer still shares words with some page, but no sentence means it)."""
    if quote is None or quote.similarity is None or quote.similarity >= thresholds.quote:
        return quote
    return None


def language(accept_language: str | None) -> str:
    """The first language of an Accept-Language header (or a bare tag) that has a reply."""
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language[:256].split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower().split("-")[0]))
    for negative_q, _, primary in sorted(ranked):
        if negative_q < 0 and primary in MESSAGES:
            return primary
    return "en"


def suggestions(passages: Sequence[Passage], limit: int = SUGGESTIONS) -> list[Passage]:
    """The closest pages (one passage each) that share any word with the question (a dense
    neighbour that shares none is as likely noise as close)."""
    out: list[Passage] = []
    seen: set[str] = set()
    for passage in passages:
        if passage.url in seen or passage.coverage <= 0:
            continue
        seen.add(passage.url)
        out.append(passage)
        if len(out) >= limit:
            break
    return out


def _link_target(url: str) -> str:
    # Inside "(...)": no space, parenthesis or angle bracket may end the destination early.
    return "".join(f"%{ord(ch):02X}" if ch in " ()<>\\" else ch for ch in url)


def not_found_reply(closest: Sequence[Passage], lang: str = "en") -> str:
    """The fixed reply, with the closest pages as Markdown links."""
    sorry, maybe = MESSAGES.get(lang, MESSAGES["en"])
    if not closest:
        return sorry
    links = "\n".join(f"- [{inline(p.title or p.url)}]({_link_target(p.url)})" for p in closest)
    return f"{sorry} {maybe}\n\n{links}"
