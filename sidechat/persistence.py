"""Between the app's memory and its store: opening the store for a server, bringing back a
conversation memory no longer holds, and forgetting what is past its retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from sidechat.conversations import Conversation, Conversations, StoredMessage
from sidechat.settings import Settings
from sidechat.store import Store, StoredTurn, close_interrupted, make_store
from sidechat.store.recorder import Recorder

__all__ = ["Persistence", "open_persistence"]

logger = logging.getLogger("sidechat.store")
_PURGE_EVERY = 3600.0  # seconds


class Persistence:
    """A server's store with its recorder; `lifespan()` opens both, closes the turns left
    generating by the last run, and purges past retention in the background."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.recorder = Recorder(store)
        self._purger: asyncio.Task[None] | None = None
        # Told how many turns a crashed run left open and start-up closed (the app's metrics).
        self.on_recovered: Callable[[int], None] | None = None
        # With Redis the store is shared by replicas: `recover` runs once the bus is up (the
        # app's lifespan), sparing the turns other replicas still generate.
        self.shared = settings.redis_url is not None

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        await self.store.open()
        try:
            if not self.shared:
                await self.recover()
            await self.recorder.start()
            self._purger = asyncio.create_task(self._purge_every(), name="sidechat-retention")
            yield
        finally:
            if self._purger is not None:
                self._purger.cancel()
                await asyncio.gather(self._purger, return_exceptions=True)
            await self.recorder.aclose()
            await self.store.aclose()

    async def recover(
        self, alive: Callable[[Sequence[StoredTurn]], Awaitable[set[str]]] | None = None
    ) -> None:
        """Close the turns the last run left generating (but those `alive` names)."""
        recovered = await close_interrupted(self.store, alive)
        if recovered and self.on_recovered is not None:
            self.on_recovered(recovered)

    async def conversation(
        self, conversations: Conversations, conversation_id: str
    ) -> Conversation | None:
        """The conversation from memory, else from the store (then kept in memory again).
        On a shared store (replicas) memory may be behind, a follow-up having been answered
        by another replica: it is read again unless a reply is being written here."""
        held = conversations.find(conversation_id)
        if held is not None and (not self.shared or held.active_turn is not None):
            return held
        stored = await self.store.load_conversation(conversation_id)
        held = conversations.find(conversation_id)  # loaded by another request meanwhile
        if stored is None or (held is not None and held.active_turn is not None):
            return held
        conversation = held or conversations.create(stored.id)
        messages: list[StoredMessage] = []
        for turn in stored.turns:
            messages.append(StoredMessage("user", turn.question))
            messages.append(StoredMessage("assistant", turn.answer, turn.id, turn.status))
        conversation.messages = messages
        return conversation

    async def _purge_every(self) -> None:
        days = self.settings.retention
        while True:
            try:
                await self.store.purge(time.time() - days * 86400)
            except Exception:  # the store logs its own failures; the next hour tries again
                logger.exception("store: purging past retention failed")
            await asyncio.sleep(_PURGE_EVERY)


def open_persistence(settings: Settings) -> Persistence | None:
    """The store these settings name, prepared (schema migrated, writes checked), or None for
    `memory_only`. Raises StoreError with the reason it cannot be used."""
    if settings.memory_only:
        return None
    url = settings.database_url.get_secret_value() if settings.database_url else None
    store = make_store(settings.data_dir, url)
    store.prepare()
    return Persistence(settings, store)
