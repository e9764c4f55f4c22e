"""Markdown and HTML folders, in the layouts of the common static site generators."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.content._helpers import ingest, pages, write

POST = (
    "---\ntitle: {title}\ndate: 2024-05-01\n{extra}---\n# Heading one\n\n"
    "Some words about {topic}.\n"
)


@pytest.mark.parametrize(
    ("layout", "files", "expected"),
    [
        (
            "hugo",
            {
                "hugo.toml": "",
                "content/posts/first.md": POST.format(title="First", extra="", topic="otters"),
                "content/_index.md": "# Home\n\nhome page",
                "themes/x/layouts/readme.md": "# not content",
            },
            {"/posts/first/": "First", "/": "Home"},
        ),
        (
            "jekyll",
            {
                "_config.yml": "",
                "_posts/2024-05-01-hello-world.md": POST.format(
                    title="Hello", extra="", topic="otters"
                ),
                "about.md": "# About\n\nme",
                "_drafts/wip.md": "# WIP\n\nsecret",
            },
            {"/2024/05/01/hello-world/": "Hello", "/about/": "About"},
        ),
        (
            "mkdocs",
            {
                "mkdocs.yml": "",
                "docs/index.md": "# Docs home\n\nhi",
                "docs/guide/install.md": "# Install\n\nrun pip",
            },
            {"/": "Docs home", "/guide/install/": "Install"},
        ),
        (
            "docusaurus",
            {
                "docusaurus.config.js": "",
                "docs/intro.md": POST.format(title="Intro", extra="slug: start\n", topic="x"),
                "blog/2024-01-01-post.md": "# Post\n\ny",
            },
            {"/docs/start/": "Intro", "/blog/2024-01-01-post/": "Post"},
        ),
        (
            "plain",
            {
                "notes/a-note.md": "no heading at all, just text",
                "notes/b.md": POST.format(title="Bee", extra="url: /custom/bee/\n", topic="b"),
                "notes/draft.md": POST.format(title="D", extra="draft: true\n", topic="d"),
            },
            {"/notes/a-note/": "A note", "/custom/bee/": "Bee"},
        ),
    ],
)
def test_layouts_titles_and_urls(
    tmp_path: Path, layout: str, files: dict[str, str | bytes], expected: dict[str, str]
) -> None:
    root = write(tmp_path / "site", files)
    index = tmp_path / "index.db"
    result = ingest(root, "--index", index)
    assert f"{layout} layout" in result.stderr
    found = {url: title for url, (title, _) in pages(index).items()}
    assert found == expected


def test_base_url_makes_absolute_urls(tmp_path: Path) -> None:
    root = write(
        tmp_path / "site",
        {
            "docusaurus.config.js": "",
            "docs/x.md": "# X\n\ntext",
            "docs/guide/y.md": "---\nslug: why\n---\n# Y\n\ntext",
            "docs/guide/z.md": "---\nslug: /zed\n---\n# Z\n\ntext",
            "docs/w.md": "---\nurl: /custom/w/\n---\n# W\n\ntext",
        },
    )
    index = tmp_path / "i.db"
    ingest(root, "--index", index, "--base-url", "https://blog.example/")
    assert set(pages(index)) == {
        "https://blog.example/docs/x/",
        "https://blog.example/docs/guide/why/",
        "https://blog.example/zed/",
        "https://blog.example/custom/w/",
    }


def test_html_main_content_not_navigation(tmp_path: Path) -> None:
    article = " ".join(["The otter holds hands with other otters while sleeping."] * 8)
    html = f"""<!doctype html><html><head><title>Otter facts</title></head><body>
      <nav><a href="/">Home</a> <a href="/menu">NAVIGATIONWORD menu</a></nav>
      <header>SITEHEADERWORD</header>
      <main><article><h1>Otter facts</h1><p>{article}</p>
      <h2>Diet</h2><p>{"Otters eat fish and crabs and sea urchins every day. " * 6}</p>
      </article></main>
      <footer>FOOTERWORD copyright</footer></body></html>"""
    root = write(tmp_path / "site", {"otters.html": html})
    index = tmp_path / "i.db"
    ingest(root, "--index", index)
    with sqlite3.connect(index) as conn:
        text = " ".join(row[0] for row in conn.execute("SELECT text FROM chunks"))
        headings = {row[0] for row in conn.execute("SELECT heading FROM chunks")}
    assert "holds hands" in text and "sea urchins" in text
    assert "NAVIGATIONWORD" not in text and "FOOTERWORD" not in text
    assert "SITEHEADERWORD" not in text
    assert "Diet" in headings
    assert pages(index)["/otters/"][0] == "Otter facts"


def test_bad_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    root = write(
        tmp_path / "site",
        {
            "good.md": "# Good\n\nfine",
            "binary.md": b"\x00\x01\x02PNG" * 10,
            "latin1.md": "caf\xe9".encode("latin-1"),
            "huge.md": "# Huge\n\n" + "word " * 2000,
            "broken.html": "<html><body><<<div<p>>>",
            "zdup.md": "---\nurl: /good/\n---\n# Dup\n\nsame url",
            "front.md": "---\ntitle: [unclosed\n---\n# Front\n\nbody text",
        },
    )
    os.symlink(root / "missing-target.md", root / "dangling.md")
    index = tmp_path / "i.db"
    result = ingest(root, "--index", index, "--max-bytes", "5000")
    err = result.stderr
    for name, reason in [
        ("binary.md", "binary file"),
        ("latin1.md", "not UTF-8"),
        ("huge.md", "larger than 5,000 bytes"),
        ("dangling.md", "unreadable"),
        ("broken.html", "no main content"),
        ("zdup.md", "duplicate URL"),
    ]:
        assert name in err and reason in err, (name, err)
    assert "front.md: unreadable front matter" in err
    assert "6 skipped" in result.stdout
    assert set(pages(index)) == {"/good/", "/front/"}
