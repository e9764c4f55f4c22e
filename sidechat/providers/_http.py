"""What HTTP upstreams share: one pooled aiohttp session, upstream HTTP errors turned into
visitor-safe `ProviderError`s, and connection failures marked retryable."""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import ipaddress
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from sidechat.errors import ProviderError
from sidechat.providers.base import Provider, StreamEvent

__all__ = ["HTTPProvider", "is_loopback", "raise_for_upstream_status"]

# How llama.cpp, OpenAI (and vLLM), and Anthropic say that a prompt is over the context size.
_TOO_LONG = ("exceed_context_size", "context_length_exceeded", "prompt is too long")

Reader = Callable[[aiohttp.ClientResponse], AsyncIterator[StreamEvent]]


def _retry_after(headers: Any) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`."""
    if headers is None:
        return None
    with contextlib.suppress(ValueError):
        if millis := headers.get("retry-after-ms"):
            return max(0.0, float(millis) / 1000)
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


async def raise_for_upstream_status(response: aiohttp.ClientResponse, vendor: str) -> None:
    """Turn an upstream HTTP error into a `ProviderError` with a visitor-safe message."""
    if response.status < 400:
        return
    body = (await response.content.read(2048)).decode("utf-8", "replace")
    detail = f"{vendor} answered HTTP {response.status}: {body}"
    status = response.status
    if status in (401, 403):
        message = "The assistant is not configured correctly (the model API refused its key)."
    elif status == 404:
        message = "The assistant is not configured correctly (unknown model or endpoint)."
    elif status == 429:
        message = "The assistant is busy right now. Please try again in a moment."
    elif status >= 500:
        message = "The assistant's model service failed. Please try again in a moment."
    elif any(marker in body for marker in _TOO_LONG):
        message = "This conversation is too long for the assistant. Please start a new one."
    else:
        message = "The model service refused this request."
    raise ProviderError(
        message,
        detail=detail,
        retryable=status == 429 or status >= 500,
        upstream_status=status,
        retry_after=_retry_after(response.headers),
    )


def is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HTTPProvider(Provider):
    """A provider that POSTs a JSON body and reads an SSE response with `reader`."""

    vendor = "The model API"

    def __init__(self, *, connect_timeout: float = 10.0, keepalive: bool = True) -> None:
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=300, force_close=not self._keepalive
            )
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post_stream(
        self, url: str, body: dict[str, Any], headers: dict[str, str], reader: Reader
    ) -> AsyncIterator[StreamEvent]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(url, data=orjson.dumps(body), headers=headers) as r:
                await raise_for_upstream_status(r, self.vendor)
                async for event in reader(r):
                    yield event
        except aiohttp.ClientError as exc:
            raise ProviderError(
                "The assistant could not reach its model service. Please try again.",
                detail=f"{url}: {exc!r}",
                retryable=True,
            ) from exc
