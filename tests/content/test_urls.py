"""Page URLs at ingest: --base-url and a Hugo config's baseURL make root-relative URLs absolute;
placeholder and local base URLs are not used; javascript:/data: URLs never reach the index."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidechat.content.urls import safe_page_url
from tests.content._helpers import ingest, pages, write

ROOT = Path(__file__).resolve().parents[2]
HUGO_PAGE = '---\ntitle: "About"\nurl: "/#about"\n---\n# About\n\nHello.\n'


def _hugo(tmp_path: Path, base: str) -> Path:
    return write(
        tmp_path / "site",
        {"hugo.toml": f'baseURL = "{base}"\n', "content/about.md": HUGO_PAGE},
    )


def test_base_url_flag_resolves_root_relative_front_matter(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    ingest(_hugo(tmp_path, "http://127.0.0.1:8000/"), "--index", index,
           "--base-url", "https://blog.example/")  # fmt: skip
    assert set(pages(index)) == {"https://blog.example/#about"}


def test_hugo_base_url_is_read_when_no_flag(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    result = ingest(_hugo(tmp_path, "https://notes.example.net/blog/"), "--index", index)
    assert set(pages(index)) == {"https://notes.example.net/blog/#about"}
    assert "made absolute with baseURL" in result.stderr


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000/", "https://example.org/", "/"])
def test_local_or_placeholder_hugo_base_url_keeps_site_relative_urls(
    tmp_path: Path, base: str
) -> None:
    index = tmp_path / "i.db"
    ingest(_hugo(tmp_path, base), "--index", index)
    assert set(pages(index)) == {"/#about"}


def test_the_demo_blog_keeps_site_relative_urls(tmp_path: Path) -> None:
    index = tmp_path / "i.db"
    result = ingest(ROOT / "examples" / "blog", "--index", index, "--no-vectors")
    assert "/#installing-sidechat" in pages(index)
    assert "placeholder or local address" in result.stderr


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "data:text/html,hi", "ftp://x.example/"])
def test_bad_base_url_is_a_clear_error(tmp_path: Path, bad: str) -> None:
    site = write(tmp_path / "site", {"a.md": "# A\n\na"})
    result = ingest(site, "--index", tmp_path / "i.db", "--base-url", bad, ok=False)
    assert result.returncode == 2 and "not an http(s) URL" in result.stderr


def test_script_urls_in_front_matter_are_refused(tmp_path: Path) -> None:
    site = write(
        tmp_path / "site",
        {
            "x.md": '---\nurl: "javascript:alert(1)"\n---\n# X\n\nx',
            "y.md": '---\npermalink: "data:text/html,<script>1</script>"\n---\n# Y\n\ny',
            "z.md": '---\nurl: "elsewhere/z/"\n---\n# Z\n\nz',
        },
    )
    index = tmp_path / "i.db"
    result = ingest(site, "--index", index)
    assert set(pages(index)) == {"/x/", "/y/", "/z/elsewhere/z/"}
    assert result.stderr.count("refused") == 2


def test_safe_page_url() -> None:
    assert safe_page_url("/a/", "/") == "/a/"
    assert safe_page_url("https://x.example/a", "/") == "https://x.example/a"
    assert safe_page_url("b/", "https://x.example/a/") == "https://x.example/a/b/"
    for bad in ("javascript:alert(1)", " JavaScript:x", "data:,x", "//evil.example/", "vbscript:x"):
        assert safe_page_url(bad, "/") is None
