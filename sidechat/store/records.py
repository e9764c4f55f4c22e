"""What the store keeps: plain records, and a finished turn's event log rebuilt from its chunks."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

from sidechat.eventlog import Batch, EventLog, payload_of
from sidechat.sse import DATA_FRAME

__all__ = [
    "Chunk",
    "StoredConversation",
    "StoredEventLog",
    "StoredTurn",
    "TurnStart",
    "day_of",
    "frames_of",
    "join_frames",
    "split_frames",
]

Status = Literal["streaming", "done", "error", "aborted"]
_DELTA_HEAD = b'{"type":"text-delta"'


_EPOCH = datetime.date(1970, 1, 1)
_DAYS: dict[int, str] = {}


def day_of(timestamp: float) -> str:
    """The UTC day of a Unix time, `YYYY-MM-DD` (computed once a day: every turn asks)."""
    number = int(timestamp // 86400)
    day = _DAYS.get(number)
    if day is None:
        if len(_DAYS) > 64:
            _DAYS.clear()
        day = _DAYS[number] = (_EPOCH + datetime.timedelta(days=number)).isoformat()
    return day


@dataclass(frozen=True, slots=True)
class TurnStart:
    """A turn as it starts: the visitor's question, in its conversation."""

    id: str
    conversation_id: str
    question: str
    started_at: float
    # No event of this turn will ever have a larger id (see `close_interrupted`).
    id_ceiling: int


@dataclass(slots=True)
class StoredTurn:
    id: str
    conversation_id: str
    question: str
    answer: str
    status: Status
    finish_reason: str | None
    sources: int
    id_ceiling: int
    started_at: float
    finished_at: float | None
    rating: str | None = None
    comment: str | None = None


@dataclass(slots=True)
class StoredConversation:
    id: str
    created_at: float
    updated_at: float
    turns: list[StoredTurn] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive events `first_id, first_id + 1, ...` as written in one batch: their SSE
    frames, byte for byte as readers got them."""

    first_id: int
    frames: tuple[bytes, ...]

    @property
    def payloads(self) -> list[bytes]:
        return [payload_of(frame) for frame in self.frames]


def frames_of(first_id: int, payloads: Sequence[bytes]) -> list[bytes]:
    """The frames of events `first_id...` with these payloads (as `EventLog.append` makes)."""
    return [DATA_FRAME % (first_id + i, payload) for i, payload in enumerate(payloads)]


def join_frames(frames: Sequence[bytes]) -> str:
    """One chunk's column value: the frames joined (one C-level join: nothing per event)."""
    return b"".join(frames).decode()


def split_frames(text: str) -> tuple[bytes, ...]:
    # A frame is `id: N\ndata: JSON\n\n` and compact JSON has no raw newline, so frames end
    # exactly where a blank line does.
    parts = text.encode().split(b"\n\n")
    return tuple(part + b"\n\n" for part in parts[:-1])


def _delta(payload: bytes) -> str | None:
    if payload.startswith(_DELTA_HEAD):
        value = orjson.loads(payload).get("delta")
        return value if isinstance(value, str) else None
    return None


class StoredEventLog(EventLog):
    """A finished turn's events, read back from the store: ids may jump once (a turn closed
    after a crash continues past every id it could have sent), so it is kept as runs of
    consecutive events and a read never spans two runs."""

    __slots__ = ("_runs",)

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        runs: list[tuple[int, tuple[bytes, ...], tuple[str | None, ...]]] = []
        frames: list[bytes] = []
        deltas: list[str | None] = []
        first = next_id = 1
        for chunk in sorted(chunks, key=lambda c: c.first_id):
            if chunk.first_id < next_id:
                continue  # a batch written twice (a retried write): the first copy counts
            if chunk.first_id != next_id and frames:
                runs.append((first, tuple(frames), tuple(deltas)))
                frames, deltas = [], []
            if not frames:
                first = chunk.first_id
            frames += chunk.frames
            deltas += [_delta(payload_of(frame)) for frame in chunk.frames]
            next_id = chunk.first_id + len(chunk.frames)
        if frames:
            runs.append((first, tuple(frames), tuple(deltas)))
        self._runs = tuple(runs)

    @property
    def last_id(self) -> int:
        if not self._runs:
            return 0
        first, frames, _ = self._runs[-1]
        return first + len(frames) - 1

    def append(self, payload: bytes, delta: str | None = None) -> int:
        raise RuntimeError("append to a finished event log")

    def finish(self) -> None:
        pass

    @property
    def finished(self) -> bool:
        return True

    @property
    def last_append(self) -> float:
        return 0.0

    def wake(self) -> None:
        pass

    async def read(self, after: int, wait: float | None = 0) -> Batch:
        return self.read_now(after)

    def since(self, after: int) -> Sequence[bytes]:
        return [f for first, frames, _ in self._runs for f in frames[max(after - first + 1, 0) :]]

    def read_now(self, after: int) -> Batch:
        after = max(after, 0)
        runs = self._runs
        for index, (first, frames, deltas) in enumerate(runs):
            if after < first + len(frames) - 1:
                start = max(after, first - 1)  # a reader inside the jump goes on after it
                cut = start - (first - 1)
                return Batch(start, frames[cut:], deltas[cut:], index == len(runs) - 1)
        return Batch(after, (), (), True)
