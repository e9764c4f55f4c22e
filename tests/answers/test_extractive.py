"""Extractive answers from real indexes: the site's own words, quoted and attributed, and
nothing a passage could smuggle out of its quote."""

from __future__ import annotations

import time
from collections.abc import Sequence

from markdown_it import MarkdownIt

from sidechat.answers import extract
from sidechat.answers._markdown import plain_text, quote
from sidechat.content import SqliteRetriever
from sidechat.content.search import Passage, query_terms

_md = MarkdownIt("commonmark")


def _passage(text: str, title: str = "A page", url: str = "/a/") -> Passage:
    return Passage(url, title, "", text, 1.0, "1", "a.md", 1.0)


def _words(text: str) -> set[str]:
    return set(query_terms(text))


def test_install_question_on_the_demo_blog(blog_index: SqliteRetriever) -> None:
    passages = blog_index.search("How do I install sidechat?")
    result = extract("How do I install sidechat?", passages)
    assert result is not None
    assert result.markdown.startswith("From *Installing sidechat in two minutes*:\n\n> ")
    assert "pip install sidechat" in plain_text(result.markdown)
    assert result.sources[0].url == "/#installing-sidechat"


def test_every_word_comes_from_the_passages(blog_index: SqliteRetriever) -> None:
    for question in [
        "How do I install sidechat?",
        "What Python version do I need?",
        "Does the widget work on mobile?",
        "What is Tidepool?",
        "How do I embed the widget?",
    ]:
        passages = blog_index.search(question)
        result = extract(question, passages)
        assert result is not None, question
        source_words = _words(" ".join(p.title + " " + p.text for p in passages))
        added = _words(plain_text(result.markdown)) - source_words
        assert added <= {"from"}, (question, added)  # the attribution frame only
        assert 1 <= len(result.sources) <= 2


def test_nothing_in_common_is_no_answer(blog_index: SqliteRetriever) -> None:
    passages = blog_index.search("tidepool")
    assert extract("zebra quantum", passages) is None
    assert extract("anything", []) is None


def test_code_follows_its_lead_in_for_how_questions(til_index: SqliteRetriever) -> None:
    question = (
        "In bash a *.db wildcard with no matching files gets passed to my command literally. "
        "How do I make it expand to nothing instead?"
    )
    result = extract(question, til_index.search(question))
    assert result is not None
    assert "shopt -s nullglob" in plain_text(result.markdown)
    assert result.sources[0].path == "bash/nullglob-in-bash.md"


def test_a_follow_up_uses_the_earlier_question(til_index: SqliteRetriever) -> None:
    history = ["How do I get a bash shell inside a Docker container that is already running?"]
    question = "And what happens if I use docker attach for that instead?"
    passages = til_index.search(question, history=history)
    result = extract(question, passages, history=history)
    assert result is not None
    assert result.sources[0].path == "docker/attach-bash-to-running-container.md"


def test_hostile_passages_stay_quoted() -> None:
    hostile = (
        "Install it like this: [click](javascript:alert(1)) ![x](http://evil/x.png) "
        "<script>alert(1)</script> **bold** # not a heading.\n"
        "1. not a list item, just install text.\n"
        "> not a nested quote, install it.\n"
        "```\n"
        "install --evil\n"
        "````\n"
        "still code, install"
    )
    result = extract("how do I install it", [_passage(hostile, title="T*i*t[l]e")])
    assert result is not None
    html = _md.render(result.markdown)
    for tag in ("<a ", "<img", "<strong>", "<h1>", "<ol>", "<script"):
        assert tag not in html, (tag, html)
    assert html.count("<em>") == 1  # the frame's title, nothing from the text
    # Quoted stretches are blockquotes side by side; the passage's own ">" stays literal.
    assert "<blockquote>\n<blockquote>" not in html and "&gt; not a nested quote" in html
    assert html.count("<blockquote>") == html.count("</blockquote>") <= 4
    # Every code line stays inside one code block that its own fences cannot close.
    assert result.markdown.count("`````") in (0, 2)
    assert "T*i*t[l]e" in plain_text(result.markdown)


def test_hostile_prose_is_literal() -> None:
    lines = [
        "See [click](javascript:alert(1)) and ![x](http://evil/x.png) to install it.",
        "Then run <script>alert(1)</script> with **bold** and _it_ to install it.",
        "# Install it: this is not a heading.",
        "1. Install it: this is not a list.",
        "> Install it: this is not a nested quote.",
        "- Install it: not a bullet either.",
    ]
    # Lines like these usually read as code (and are shown as such); as prose they are
    # quoted literally.
    html = _md.render(quote(lines))
    for tag in ("<a ", "<img", "<strong>", "<em>", "<h1>", "<ol>", "<ul>", "<script"):
        assert tag not in html, (tag, html)
    assert html.count("<blockquote>") == 1 and html.count("<p>") == 1
    assert plain_text(quote(lines)) == "\n".join("> " + line for line in lines)


def test_a_fence_inside_code_cannot_close_the_block() -> None:
    code = "echo one\n```\necho two --install\n````\necho three --install"
    text = "To install run this:\n" + code
    result = extract("how do I install", [_passage(text)])
    assert result is not None
    html = _md.render(result.markdown)
    assert html.count("<pre>") == 1
    assert "echo three" in html.split("<pre>")[1].split("</pre>")[0]


def _timed(retriever: SqliteRetriever, questions: Sequence[str]) -> list[float]:
    times = []
    for q in questions:
        passages = retriever.search(q)
        started = time.perf_counter()
        extract(q, passages)
        times.append(time.perf_counter() - started)
    return sorted(times)


def test_fast_enough_to_stream_at_once(til_index: SqliteRetriever) -> None:
    questions = [
        "How do I switch the active gcloud account?",
        "How do I make pprint keep dictionary order?",
        "How do I get a Unix timestamp in milliseconds in SQLite?",
        "How do I ignore a line for flake8 and mypy?",
    ] * 5
    times = _timed(til_index, questions)
    # Measured ~5 ms each on 2 shared cores; 100 ms would still be unnoticeable in a stream.
    assert times[len(times) // 2] < 0.1


def test_similarity_chooses_among_units_and_reads_only_a_few() -> None:
    # Six sentences share the question's words equally; the similarity decides which are
    # quoted, and it is asked about at most SIMILAR_UNITS units.
    from sidechat.answers import extractive

    tools = ["cron", "anacron", "launchd", "at", "fcron", "systemd"]
    same = " ".join(f"Backups run on day {i} with {tool}." for i, tool in enumerate(tools))
    filler = " ".join(f"Unrelated sentence number {i} about cooking." for i in range(40))
    text = f"{same} {filler}"
    asked: list[int] = []

    def similarity(question: str, texts: Sequence[str]) -> Sequence[float]:
        asked.append(len(texts))
        return [0.9 if "systemd" in t else 0.1 for t in texts]

    result = extract("When do backups run?", [_passage(text)], similarity=similarity)
    assert result is not None
    assert "systemd" in result.markdown
    assert result.similarity == 0.9
    assert asked and max(asked) <= extractive.SIMILAR_UNITS
    plain = extract("When do backups run?", [_passage(text)])
    assert plain is not None and plain.similarity is None
    assert "systemd" not in plain.markdown


def test_dense_similarity_with_the_packaged_embedder() -> None:
    import pytest

    from sidechat.answers.extractive import dense_similarity
    from sidechat.content.embeddings import get_embedder

    embedder = get_embedder()
    if embedder is None:
        pytest.skip("no embedding model installed")
    similarity = dense_similarity(embedder)
    scores = similarity(
        "How do I delete a git branch?",
        ["Run git branch -d name to delete a branch.", "Bake the bread for forty minutes."],
    )
    assert scores[0] > scores[1] + 0.2
    assert similarity("anything", []) == []


def test_up_to_four_stretches_of_one_page() -> None:
    # A page that answers a question in four places, apart: each is quoted, in page order.
    filler = " ".join(f"Unrelated filler sentence number {i} about the weather." for i in range(5))
    names = ["alpha", "bravo", "charlie", "delta", "echo"]
    text = " ".join(
        f"To configure {n} set the {n} option in the settings file. {filler}" for n in names[:4]
    )
    result = extract("How do I configure alpha, bravo, charlie and delta?", [_passage(text)])
    assert result is not None
    seen = plain_text(result.markdown)
    assert all(f"set the {n} option" in seen for n in names[:4])
    assert [seen.index(n) for n in names[:4]] == sorted(seen.index(n) for n in names[:4])
    assert result.markdown.count("\n\n…\n\n") == 3 and "weather" not in seen
    # A fifth place is one too many: the answer stays a quote, not the page.
    text = " ".join(
        f"To configure {n} set the {n} option in the settings file. {filler}" for n in names
    )
    result = extract("How do I configure alpha, bravo, charlie, delta and echo?", [_passage(text)])
    assert result is not None and result.markdown.count("\n\n…\n\n") == 3
