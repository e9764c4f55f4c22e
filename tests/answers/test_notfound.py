"""Not found: the decision from retrieval's figures, and the fixed reply with suggestions."""

from __future__ import annotations

from markdown_it import MarkdownIt

from sidechat.answers.notfound import (
    MESSAGES,
    Thresholds,
    found,
    language,
    not_found_reply,
    suggestions,
)
from sidechat.content import SqliteRetriever
from sidechat.content.search import Passage


def _p(coverage: float, similarity: float = 0.0, score: float = 10.0, url: str = "/a/") -> Passage:
    return Passage(url, "Title", "", "text", score, "1", "a.md", coverage, similarity)


def test_thresholds() -> None:
    rule = Thresholds(coverage=0.5, similarity=0.6, score=5.0)
    assert not found([], rule)
    assert found([_p(0.5)], rule)  # no embeddings: similarity is not judged
    assert not found([_p(0.4)], rule)
    assert not found([_p(0.9, score=4.0)], rule)
    assert not found([_p(0.9, similarity=0.5)], rule)
    assert found([_p(0.9, similarity=0.7)], rule)


def test_unanswerable_on_the_demo_blog(blog_index: SqliteRetriever) -> None:
    assert not found(blog_index.search("How do I bake sourdough bread?"))
    assert found(blog_index.search("How do I install sidechat?"))
    closest = suggestions(blog_index.search("Can I install it on a Raspberry Pi?"))
    assert 1 <= len(closest) <= 3 and len({p.url for p in closest}) == len(closest)


def test_reply_links_the_closest_pages() -> None:
    pages = [
        Passage("/a b/(x)", "Fish [and] *chips*", "", "", 1, "1", "", 0.2),
        Passage("https://e.example/q", "Q", "", "", 1, "2", "", 0.2),
    ]
    reply = not_found_reply(pages)
    assert reply.startswith("I couldn't find this on this site.")
    html = MarkdownIt("commonmark").render(reply)
    assert html.count("<a ") == 2
    assert 'href="/a%20b/%28x%29"' in html and "<em>" not in html
    assert not_found_reply([]) == "I couldn't find this on this site."
    assert not_found_reply([], "de") == MESSAGES["de"][0]


def test_language_from_accept_language() -> None:
    assert language(None) == "en"
    assert language("fr-CH, fr;q=0.9, en;q=0.8") == "fr"
    assert language("ja, de;q=0.5") == "de"
    assert language("ja") == "en"
    assert language("es;q=0, pt;q=0.3") == "pt"
    assert language("de;q=x, it") == "it"


def test_a_quote_far_from_the_question_is_not_found() -> None:
    from sidechat.answers.extractive import Extract
    from sidechat.answers.notfound import quoted_enough

    rule = Thresholds(quote=0.4)
    near = Extract("> text", (), 0.55)
    far = Extract("> text", (), 0.3)
    unscored = Extract("> text", ())  # no embedder: the words decided, nothing to check
    assert quoted_enough(near, rule) is near
    assert quoted_enough(far, rule) is None
    assert quoted_enough(unscored, rule) is unscored
    assert quoted_enough(None, rule) is None


def test_calibration_chooses_the_fewest_rare_names_that_separate() -> None:
    from sidechat.answers.calibrate import _decided, calibrate
    from sidechat.answers.evaluate import AnswerQuestion, Outcome

    page = Passage("/a/", "A", "", "text", 10.0, "1", "a.md", 0.5, 0.6)

    def run(kind: str, absent: tuple[tuple[str, int], ...]) -> tuple[Outcome, list[Passage]]:
        expect = ("a.md",) if kind == "answerable" else ()
        question = AnswerQuestion(kind + str(absent), "q", kind, expect, (), "dev")
        return Outcome(question, "quote", (page,), False, 0.01, True, absent=absent), [page]

    runs = [
        run("unanswerable", (("litestream", 2),)),
        run("answerable", (("spanish", 4),)),
        run("answerable", ()),
        run("unanswerable", (("pgbouncer", 0),)),
    ]
    chosen = calibrate(runs)
    assert chosen.rare_names == 2 and chosen.coverage == 0.0 and chosen.quote == 0.0
    decided = [_decided(o, p, chosen) for o, p in runs]
    assert [d.not_found for d in decided] == [True, False, False, True]
    assert all(d.correct for d in decided)
    # An answerable question with a rarer absent name than the unanswerable one: catching the
    # unanswerable one would cost precision, so no value above 0 is chosen.
    runs[1] = run("answerable", (("spanish", 1),))
    assert calibrate(runs).rare_names == 0
