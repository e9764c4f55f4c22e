"""Main-content extraction from HTML (navigation, headers and footers dropped) with trafilatura,
kept as Markdown so headings still split it into chunks."""

from __future__ import annotations

import logging

__all__ = ["html_to_markdown"]

# trafilatura logs every page it finds too short; our report says what was skipped.
logging.getLogger("trafilatura").setLevel(logging.ERROR)


def html_to_markdown(html: str, url: str | None = None) -> tuple[str, str] | None:
    """(title, markdown) of the page's main content, or None when there is none."""
    import trafilatura

    try:
        markdown = trafilatura.extract(
            html,
            url=url,
            output_format="markdown",
            include_formatting=True,
            include_links=False,
            include_images=False,
            include_comments=False,
            favor_recall=True,
        )
        metadata = trafilatura.extract_metadata(html, default_url=url)
    except (ValueError, TypeError, AttributeError):
        return None
    if not markdown or not markdown.strip():
        return None
    title = (metadata.title if metadata is not None and metadata.title else "") or ""
    return title.strip(), markdown
