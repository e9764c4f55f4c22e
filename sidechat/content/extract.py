"""Main-content extraction from HTML (navigation, headers and footers dropped) with trafilatura,
kept as Markdown so headings still split it into chunks."""

from __future__ import annotations

import logging

__all__ = ["MIN_TEXT_CHARS", "html_to_markdown"]

MIN_TEXT_CHARS = 20

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
    # Broken markup can come back as a few stray symbols: demand some actual words.
    if not markdown or sum(ch.isalnum() for ch in markdown) < MIN_TEXT_CHARS:
        return None
    title = (metadata.title if metadata is not None and metadata.title else "") or ""
    return title.strip(), markdown
