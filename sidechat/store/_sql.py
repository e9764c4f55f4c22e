"""The store's SQL, written once for SQLite and PostgreSQL (`%s` marks; SQLite's become `?`)."""

from __future__ import annotations

__all__ = [
    "DELETE_OLD",
    "FINISH_TURN",
    "INSERT_EVENTS",
    "SELECT_CONVERSATION",
    "SELECT_EVENTS",
    "SELECT_EXPORT_CONVERSATIONS",
    "SELECT_INTERRUPTED",
    "SELECT_TURN",
    "SELECT_TURNS_OF",
    "START_TURN",
    "STATS_DAYS",
    "STATS_RATINGS",
    "TOUCH_CONVERSATION",
    "TURN_COLUMNS",
    "UPSERT_CONVERSATION",
    "UPSERT_FEEDBACK",
    "qmark",
]

UPSERT_CONVERSATION = (
    "INSERT INTO conversations (id, created_at, updated_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at"
)
TOUCH_CONVERSATION = "UPDATE conversations SET updated_at = %s WHERE id = %s"
START_TURN = (
    "INSERT INTO turns (id, conversation_id, question, status, id_ceiling, started_at, day) "
    "VALUES (%s, %s, %s, 'streaming', %s, %s, %s) ON CONFLICT (id) DO NOTHING"
)
INSERT_EVENTS = (
    "INSERT INTO turn_events (turn_id, first_id, frames) VALUES (%s, %s, %s) "
    "ON CONFLICT (turn_id, first_id) DO NOTHING"
)
FINISH_TURN = (
    "UPDATE turns SET answer = %s, status = %s, finish_reason = %s, sources = %s, "
    "finished_at = %s WHERE id = %s"
)
UPSERT_FEEDBACK = (
    "INSERT INTO feedback (turn_id, rating, comment, created_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (turn_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment, "
    "created_at = excluded.created_at"
)

TURN_COLUMNS = (
    "t.id, t.conversation_id, t.question, t.answer, t.status, t.finish_reason, t.sources, "
    "t.id_ceiling, t.started_at, t.finished_at, f.rating, f.comment"
)
_TURNS = f"SELECT {TURN_COLUMNS} FROM turns t LEFT JOIN feedback f ON f.turn_id = t.id"
SELECT_TURN = f"{_TURNS} WHERE t.id = %s"
SELECT_TURNS_OF = f"{_TURNS} WHERE t.conversation_id = %s ORDER BY t.started_at, t.id"
SELECT_INTERRUPTED = f"{_TURNS} WHERE t.status = 'streaming' ORDER BY t.started_at"
SELECT_CONVERSATION = "SELECT id, created_at, updated_at FROM conversations WHERE id = %s"
SELECT_EVENTS = "SELECT first_id, frames FROM turn_events WHERE turn_id = %s ORDER BY first_id"
SELECT_EXPORT_CONVERSATIONS = (
    "SELECT id, created_at, updated_at FROM conversations WHERE updated_at >= %s "
    "ORDER BY created_at, id"
)

# Oldest first: events, feedback and turns of the conversations past retention, then those.
_OLD = "SELECT id FROM conversations WHERE updated_at < %s"
_OLD_TURNS = f"SELECT id FROM turns WHERE conversation_id IN ({_OLD})"
DELETE_OLD = (
    f"DELETE FROM turn_events WHERE turn_id IN ({_OLD_TURNS})",
    f"DELETE FROM feedback WHERE turn_id IN ({_OLD_TURNS})",
    f"DELETE FROM turns WHERE conversation_id IN ({_OLD})",
    "DELETE FROM conversations WHERE updated_at < %s",
)

STATS_DAYS = (
    "SELECT day, COUNT(*), "
    "SUM(CASE WHEN status = 'done' AND sources = 0 THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) "
    "FROM turns WHERE started_at >= %s GROUP BY day ORDER BY day"
)
STATS_RATINGS = (
    "SELECT t.day, f.rating, COUNT(*) FROM feedback f JOIN turns t ON t.id = f.turn_id "
    "WHERE t.started_at >= %s GROUP BY t.day, f.rating"
)

_QMARK: dict[str, str] = {}


def qmark(sql: str) -> str:
    """The statement in SQLite's spelling."""
    converted = _QMARK.get(sql)
    if converted is None:
        converted = _QMARK[sql] = sql.replace("%s", "?")
    return converted
