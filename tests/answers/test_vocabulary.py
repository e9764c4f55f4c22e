"""Names the site never mentions: told by their shape, looked up in the real index."""

from __future__ import annotations

from pathlib import Path

from sidechat.answers.notfound import Thresholds, found
from sidechat.answers.vocabulary import Vocabulary, names
from sidechat.content import SqliteRetriever
from tests.answers._index import ROOT
from tests.content._helpers import ingest


def test_names_by_shape() -> None:
    assert names("How do I put PgBouncer in front of PostgreSQL?") == ["pgbouncer", "postgresql"]
    assert names("What is asyncio.TaskGroup? Does Tidepool run it.") == ["taskgroup", "tidepool"]
    assert names("Shrink my screen recording to fewer megabytes") == []
    assert names("I use TOTP. Also reCAPTCHA") == ["totp", "recaptcha"]
    assert len(names(" ".join(f"Word{i}x" for i in range(100)))) == 16


def test_unknown_names_in_the_demo_blog(tmp_path: Path, blog_index: SqliteRetriever) -> None:
    index = tmp_path / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", index, "--quiet")
    vocabulary = Vocabulary(index)
    question = "How do I run sidechat under Kubernetes on my Raspberry Pi?"
    assert vocabulary.unknown_names(question) == ["kubernetes"]
    passages = blog_index.search(question)
    assert passages and not found(passages, unknown_names=vocabulary.unknown_names(question))
    assert vocabulary.unknown_names("Does Tidepool need Python?") == []
    # ingest swaps the file in: the next lookup sees the new pages
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "k.md").write_text("# Kubernetes\n\nRunning on Kubernetes.\n")
    ingest(tmp_path / "more", "--index", index, "--quiet")
    assert vocabulary.unknown_names(question) == []
    vocabulary.close()


def test_weighted_coverage(blog_index: SqliteRetriever, tmp_path: Path) -> None:
    index = tmp_path / "blog.db"
    ingest(ROOT / "examples" / "blog", "--index", index, "--quiet")
    vocabulary = Vocabulary(index)
    good = "How do I install sidechat?"
    vague = "How do I configure logrotate for my application logs on the server?"
    high = vocabulary.weighted_coverage(good, blog_index.search(good))
    low = vocabulary.weighted_coverage(vague, blog_index.search(vague))
    assert 0.9 <= high <= 1.0 and 0.0 <= low < 0.5
    assert vocabulary.weighted_coverage(good, []) == 0.0
    assert vocabulary.weighted_coverage("?!", blog_index.search(good)) == 0.0
    rule = Thresholds(weighted=0.5)
    passages = blog_index.search(vague)
    assert passages and not found(passages, rule, weighted_coverage=low)
    assert found(passages, rule)  # without a vocabulary the rule does not apply


def _site(root: Path) -> None:
    root.mkdir()
    (root / "backups.md").write_text(
        "# Backing up SQLite\n\nCopy the database file with the sqlite3 backup command while"
        " nothing writes to it. Some people stream changes to S3 with Litestream instead.\n"
    )
    (root / "docker.md").write_text(
        "# Running the app in Docker\n\nBuild the image with docker build, then run it with"
        " docker run and publish port 8000 so the browser can reach the app.\n"
    )
    for i in range(4):  # a name four pages mention: not rare
        (root / f"tidepool{i}.md").write_text(
            f"# Tidepool note {i}\n\nTidepool is the home lab that hosts note {i}.\n"
        )


def test_a_rare_name_that_no_retrieved_passage_mentions(tmp_path: Path) -> None:
    _site(tmp_path / "site")
    index = tmp_path / "site.db"
    ingest(tmp_path / "site", "--index", index, "--quiet", "--no-vectors")
    retriever = SqliteRetriever(index)
    vocabulary = Vocabulary(index)
    question = "How do I run Litestream in Docker with its Dockerfile?"
    docker = [p for p in retriever.search("docker run port image", k=5) if "Docker" in p.title]
    backups = [p for p in retriever.search("backing up sqlite backup", k=5) if "SQLite" in p.title]
    assert docker and backups
    # Litestream is in one chunk, not the Docker page's; Dockerfile is in none at all.
    assert vocabulary.absent_names(question, docker) == [("litestream", 1), ("dockerfile", 0)]
    assert vocabulary.unknown_names(question, docker, rare=3) == ["litestream", "dockerfile"]
    assert vocabulary.unknown_names(question, docker, rare=0) == ["dockerfile"]
    assert vocabulary.unknown_names(question) == ["dockerfile"]  # without passages: as before
    # From the backups page's side it is Docker (one page) that the passages do not mention.
    assert vocabulary.unknown_names(question, backups, rare=3) == ["docker", "dockerfile"]
    assert vocabulary.absent_names("How do I run Litestream?", backups) == []
    # A name in four chunks is the site's own vocabulary, not mentioned in passing.
    tidepool = "How do I back up Tidepool?"
    assert vocabulary.unknown_names(tidepool, backups, rare=3) == []
    assert vocabulary.unknown_names(tidepool, backups, rare=4) == ["tidepool"]
    unknown = vocabulary.unknown_names("How do I run Litestream in Docker?", docker, rare=3)
    assert unknown == ["litestream"] and not found(docker, unknown_names=unknown)
    assert found(docker, unknown_names=[])
    vocabulary.close()
    retriever.close()


def test_a_capital_after_a_bracket_or_a_stop_word_is_no_name() -> None:
    from sidechat.answers.vocabulary import names

    # A scripted question ("[[ttft=3]] How…") or a bracketed one starts a sentence; before this,
    # "how" counted as a name the small demo site mentions rarely, and the answer was not found.
    assert names("[[ttft=3]] How do I install sidechat?") == []
    assert names("(How do I use Datasette?)") == ["datasette"]
    assert names("Does it work with PgBouncer and The Redis setup?") == ["pgbouncer", "redis"]
