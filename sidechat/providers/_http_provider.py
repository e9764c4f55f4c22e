"""What HTTP upstreams share: pooled connections to the upstream (`_client`), upstream HTTP
errors turned into visitor-safe `ProviderError`s, broken connections marked retryable, the proxy
the environment names (`_proxy`), and the POST-and-decode step every HTTP provider's `push`
makes."""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import ipaddress
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from sidechat import __version__
from sidechat.errors import ConfigError, ProviderError
from sidechat.providers._client import Refused, Upstream, UpstreamResponse, WireError
from sidechat.providers._proxy import Proxy, proxy_for
from sidechat.providers.base import Provider, Sink

__all__ = [
    "Decoder",
    "HTTPProvider",
    "broken_stream",
    "garbled_reply",
    "is_loopback",
    "raise_for_upstream_status",
]

logger = logging.getLogger("sidechat.providers")

# How llama.cpp, OpenAI (and vLLM), and Anthropic say that a prompt is over the context size.
_TOO_LONG = ("exceed_context_size", "context_length_exceeded", "prompt is too long")


def garbled_reply(detail: str) -> ProviderError:
    return ProviderError("The assistant's model service sent a garbled reply.", detail=detail)


def broken_stream(detail: str) -> ProviderError:
    """The stream ended before its end marker: a dropped connection, worth retrying."""
    return ProviderError(
        "The connection to the assistant's model service broke mid-answer.",
        detail=detail,
        retryable=True,
    )


class Decoder(Protocol):
    """Turns an upstream's streamed body into events for a sink."""

    def feed(self, chunk: bytes) -> bool:
        """Decode a piece of the body, calling the sink; True once the stream is over."""

    def end(self) -> None:
        """The body ended: emit the closing events, or raise if the stream was cut short."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`.
    `headers` has lower-case names."""
    with contextlib.suppress(ValueError):
        if millis := headers.get("retry-after-ms"):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
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


async def raise_for_upstream_status(response: UpstreamResponse, vendor: str) -> None:
    """Turn an upstream HTTP error into a `ProviderError` with a visitor-safe message."""
    if response.status < 300:
        return
    if response.status < 400:
        # A redirect is a configuration error (a wrong base URL, http for https): said at once,
        # never retried, never streamed as if it were the answer.
        location = response.headers.get("location", "")[:200]
        raise ProviderError(
            "The assistant is not configured correctly (its model API address redirects).",
            detail=f"{vendor} answered HTTP {response.status} to {location or 'nowhere'}",
            upstream_status=response.status,
        )
    body = (await response.read(2048)).decode("utf-8", "replace")
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


def _refuse_encoding(response: UpstreamResponse, vendor: str) -> None:
    if response.refused_encoding:
        raise ProviderError(
            "The assistant is not configured correctly (its model API compresses its answers "
            "in a way sidechat cannot read).",
            detail=(
                f"{vendor} answered HTTP {response.status} with Content-Encoding: "
                f"{response.refused_encoding[:100]} (sidechat reads identity, gzip and deflate)"
            ),
            upstream_status=response.status,
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
    """A provider that POSTs a JSON body and decodes the streamed response with a `Decoder`.
    Subclasses implement `push` with `_post`."""

    vendor = "The model API"

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        keepalive: bool = True,
        trust_env: bool = True,
    ) -> None:
        """`trust_env`: go through the proxy that HTTPS_PROXY/HTTP_PROXY/NO_PROXY name."""
        self.base_url = base_url.rstrip("/")
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._proxy: Proxy | None = None
        if trust_env:  # read now, so that a proxy sidechat cannot use stops `serve` at once
            parts = urllib.parse.urlsplit(self.base_url)
            default = 443 if parts.scheme == "https" else 80
            try:
                self._proxy = proxy_for(parts.scheme, parts.hostname or "", parts.port or default)
            except ValueError as exc:
                raise ConfigError(f"{exc} (from the environment, for {self.base_url})") from exc
        self._upstream: Upstream | None = None
        self._path_prefix = urllib.parse.urlsplit(self.base_url).path

    async def open(self) -> None:
        if self._upstream is None:
            if self._proxy is not None:
                logger.info("reaching %s through the proxy %s", self.base_url, self._proxy.address)
            self._upstream = Upstream(
                self.base_url,
                connect_timeout=self._connect_timeout,
                keepalive=self._keepalive,
                user_agent=f"sidechat/{__version__}",
                proxy=self._proxy,
            )

    async def aclose(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        decoder: Callable[[Sink], Decoder],
        sink: Sink,
    ) -> None:
        """POST `body` to `path` under the base URL and push the decoded stream to `sink`."""
        if self._upstream is None:
            await self.open()
        assert self._upstream is not None
        url = f"{self.base_url}/{path}"
        try:
            response = await self._upstream.post(
                f"{self._path_prefix}/{path}", orjson.dumps(body), headers
            )
        except WireError as exc:
            raise ProviderError(
                "The assistant could not reach its model service. Please try again.",
                detail=f"{url}: {exc}",
                retryable=True,
            ) from exc
        except Refused as exc:  # the proxy refused the tunnel: a retry would meet the same
            raise ProviderError(
                "The assistant is not configured correctly (its proxy refused the connection).",
                detail=f"{url}: {exc}",
            ) from exc
        try:
            _refuse_encoding(response, self.vendor)
            await raise_for_upstream_status(response, self.vendor)
            reader = decoder(sink)
            try:
                await response.pump(reader.feed)
            except WireError as exc:
                raise broken_stream(f"{url}: {exc}") from exc
            except Refused as exc:
                raise garbled_reply(f"{url}: {exc}") from exc
            reader.end()
        finally:
            response.close()
