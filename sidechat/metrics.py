"""Prometheus metrics: what the service does and how fast, at `/metrics`.

Nothing here runs per token. Turns carry a few timestamps the generation loop takes anyway (the
first token's, a sampled token's write time) and are observed once, when they end; the gauges
are read from the turn registry when Prometheus scrapes. Each app has its own registry, so two
apps in one process (tests) do not share counts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidechat.errors import ProviderError

if TYPE_CHECKING:
    from sidechat.store import Store
    from sidechat.turns import Turn

__all__ = [
    "OUTCOMES",
    "RESUME_KINDS",
    "Metrics",
    "error_kind",
    "outcome_of",
]

OUTCOMES = ("done", "length", "error", "aborted", "interrupted")
RESUME_KINDS = ("last_event_id", "long_poll", "ai_sdk")
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# Added delay per token is microseconds when all is well; milliseconds mean a busy loop.
_DELAY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def error_kind(exc: BaseException) -> str:
    """A short, bounded label for an upstream failure (never its message)."""
    if isinstance(exc, ProviderError):
        status = exc.upstream_status
        if status == 429:
            return "rate_limited"
        if status is not None and status >= 500:
            return "server_error"
        if status is not None:
            return "client_error"
        if "timed out" in (exc.detail or ""):
            return "timeout"
        return "connection" if exc.retryable else "upstream"
    return "crash"


def outcome_of(turn: Turn) -> str:
    if turn.outcome:
        return turn.outcome
    if turn.status == "done":
        return "length" if turn.finish_reason == "length" else "done"
    return turn.status if turn.status in OUTCOMES else "error"


class _Gauges(Collector):
    """Gauges computed at scrape time: nothing to keep up to date on the hot path."""

    def __init__(self, generating: Callable[[], int], streams: Callable[[], int]) -> None:
        self._generating = generating
        self._streams = streams

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("sidechat_generating_turns", "Turns being generated now.")
        yield GaugeMetricFamily("sidechat_active_streams", "SSE responses open now.")

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sidechat_generating_turns", "Turns being generated now.", value=self._generating()
        )
        yield GaugeMetricFamily(
            "sidechat_active_streams", "SSE responses open now.", value=self._streams()
        )


class Metrics:
    """The app's metrics, in a registry of its own."""

    def __init__(self, generating: Callable[[], int], streams: Callable[[], int]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.ttft = Histogram(
            "sidechat_time_to_first_token_seconds",
            "From a turn's start (its request read) to its first token written to readers.",
            buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.token_delay = Histogram(
            "sidechat_token_added_delay_seconds",
            "Sampled tokens: from the upstream client handing a token over to its write to "
            "every live reader.",
            buckets=_DELAY_BUCKETS, registry=r,
        )  # fmt: skip
        self.turn_seconds = Histogram(
            "sidechat_turn_seconds", "A turn's total time, start to end.",
            buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.turns = Counter("sidechat_turns", "Turns ended, by outcome.", ["outcome"], registry=r)
        self.tokens = Counter("sidechat_tokens_streamed", "Text deltas streamed.", registry=r)
        self.resumes = Counter(
            "sidechat_resumes", "Readers that resumed a turn, by kind.", ["kind"], registry=r
        )
        self.upstream_errors = Counter(
            "sidechat_upstream_errors", "Upstream failures that ended an attempt chain, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "sidechat_upstream_retries", "Upstream attempts retried, by the failure's kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            "sidechat_fallbacks", "Turns handed to a fallback provider, by provider.",
            ["provider"], registry=r,
        )  # fmt: skip
        self.retrieval = Histogram(
            "sidechat_retrieval_seconds", "Retrieving a question's passages from the index.",
            buckets=_FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "sidechat_rate_limit_refusals", "Requests refused with 429, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.store_writes = Histogram(
            "sidechat_store_write_seconds", "One store transaction (a group of queued writes).",
            buckets=_FAST_BUCKETS, registry=r,
        )  # fmt: skip
        for outcome in OUTCOMES:
            self.turns.labels(outcome)
        for kind in RESUME_KINDS:
            self.resumes.labels(kind)
        r.register(_Gauges(generating, streams))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- observations (none per token) ------------------------------------------------------
    def turn_ended(self, turn: Turn) -> None:
        self.turns.labels(outcome_of(turn)).inc()
        if turn.tokens:
            self.tokens.inc(turn.tokens)
        if turn.first_token_at is not None:
            self.ttft.observe(max(turn.first_token_at - turn.started_at, 0.0))
        self.turn_seconds.observe(max(time.time() - turn.started_at, 0.0))
        samples = turn.delay_samples
        if samples:
            observe = self.token_delay.observe
            for value in samples:
                observe(value)
        if turn.retrieval_seconds is not None:
            self.retrieval.observe(turn.retrieval_seconds)

    def resumed(self, kind: str) -> None:
        self.resumes.labels(kind).inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    # The provider chain's observer (sidechat.providers.resilience).
    def retried(self, exc: BaseException) -> None:
        self.upstream_retries.labels(error_kind(exc)).inc()

    def failed(self, exc: BaseException) -> None:
        self.upstream_errors.labels(error_kind(exc)).inc()

    def fell_back(self, provider: str) -> None:
        self.fallbacks.labels(provider).inc()

    def instrument_store(self, store: Store) -> None:
        """Time the store's transactions (wrapping its `_write`, so the store knows nothing of
        metrics)."""
        write: Callable[[Sequence[tuple[str, list[tuple[Any, ...]]]]], Awaitable[None]]
        write = store._write
        histogram = self.store_writes

        async def timed(groups: Sequence[tuple[str, list[tuple[Any, ...]]]]) -> None:
            started = time.perf_counter()
            try:
                await write(groups)
            finally:
                histogram.observe(time.perf_counter() - started)

        store._write = timed  # type: ignore[method-assign]
