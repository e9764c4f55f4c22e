"""sidechat: a self-hosted chat assistant for a site's own content, streamed over SSE."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
