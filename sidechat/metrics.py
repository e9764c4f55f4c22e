"""Prometheus metrics: what the service does and how fast, at `/metrics`.

Nothing here runs per token. Turns carry a few timestamps the generation loop takes anyway (the
first token's, a sampled token's write time) and are observed once, when they end; the gauges
are read from the turn registry when Prometheus scrapes. Each app has its own registry, so two
apps in one process (tests) do not share counts.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Histogram:
    """A histogram observed from the event loop only: a bisect and two additions (prometheus
    client's own takes a lock and checks exemplars: about 7 µs an observation)."""

    __slots__ = ("bounds", "counts", "doc", "name", "total")

    def __init__(self, name: str, doc: str, bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.bounds = name, doc, bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.total)


class _Collector(Collector):
    """What every turn updates (kept as plain numbers, read when Prometheus scrapes) and the
    gauges, computed at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        # The names, for the registry's check of duplicates: nothing is computed here.
        for histogram in self._m.histograms:
            yield HistogramMetricFamily(histogram.name, histogram.doc)
        yield CounterMetricFamily("sidechat_turns", "Turns ended, by outcome.")
        yield CounterMetricFamily("sidechat_tokens_streamed", "Text deltas streamed.")
        yield GaugeMetricFamily("sidechat_generating_turns", "Turns being generated now.")
        yield GaugeMetricFamily("sidechat_active_streams", "SSE responses open now.")

    def collect(self) -> Iterator[Metric]:
        m = self._m
        for histogram in m.histograms:
            yield histogram.family()
        turns = CounterMetricFamily(
            "sidechat_turns", "Turns ended, by outcome.", labels=["outcome"]
        )
        for outcome, count in m.outcomes.items():
            turns.add_metric([outcome], count)
        yield turns
        yield CounterMetricFamily(
            "sidechat_tokens_streamed", "Text deltas streamed.", value=m.tokens
        )
        yield GaugeMetricFamily(
            "sidechat_generating_turns", "Turns being generated now.", value=m.generating()
        )
        yield GaugeMetricFamily(
            "sidechat_active_streams", "SSE responses open now.", value=m.streams()
        )


class Metrics:
    """The app's metrics, in a registry of its own."""

    def __init__(self, generating: Callable[[], int], streams: Callable[[], int]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.generating, self.streams = generating, streams
        self.ttft = _Histogram(
            "sidechat_time_to_first_token_seconds",
            "From a turn's start (its request read) to its first token written to readers.",
            _TTFT_BUCKETS,
        )
        self.token_delay = _Histogram(
            "sidechat_token_added_delay_seconds",
            "Sampled tokens: from the upstream client handing a token over to its write to "
            "every live reader.",
            _DELAY_BUCKETS,
        )
        self.turn_seconds = _Histogram(
            "sidechat_turn_seconds", "A turn's total time, start to end.", _TTFT_BUCKETS
        )
        self.retrieval = _Histogram(
            "sidechat_retrieval_seconds",
            "Retrieving a question's passages from the index.",
            _FAST_BUCKETS,
        )
        self.store_writes = _Histogram(
            "sidechat_store_write_seconds",
            "One store transaction (a group of queued writes).",
            _FAST_BUCKETS,
        )
        self.redis_writes = _Histogram(
            "sidechat_redis_write_seconds",
            "One batch of turns' events appended to Redis (--redis-url): the round trip.",
            _FAST_BUCKETS,
        )
        self.histograms = (
            self.ttft, self.token_delay, self.turn_seconds, self.retrieval, self.store_writes,
            self.redis_writes,
        )  # fmt: skip
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.tokens = 0
        # Rare events: prometheus-client's own counters.
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
        self.refusals = Counter(
            "sidechat_rate_limit_refusals", "Requests refused with 429, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        for kind in RESUME_KINDS:
            self.resumes.labels(kind)
        r.register(_Collector(self))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- observations (none per token) ------------------------------------------------------
    def turn_ended(self, turn: Turn) -> None:
        outcome = outcome_of(turn)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.tokens += turn.tokens
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

    def recovered(self, turns: int) -> None:
        """Turns a crashed run left generating, closed at start-up: interrupted."""
        self.outcomes["interrupted"] = self.outcomes.get("interrupted", 0) + turns

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
