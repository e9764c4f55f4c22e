"""The UTC day a turn started (YYYY-MM-DD), so `sidechat stats` groups by day in portable SQL.

Turns stored before this migration get their day from `started_at` (computed here in Python:
SQLite and PostgreSQL spell date arithmetic differently).
"""

import datetime

from yoyo import step

__depends__ = {"0002_feedback"}


def _backfill(conn):  # type: ignore[no-untyped-def]
    mark = "?" if type(conn).__module__.startswith("sqlite3") else "%s"
    cursor = conn.cursor()
    cursor.execute("SELECT id, started_at FROM turns")
    rows = cursor.fetchall()
    for turn_id, started_at in rows:
        day = datetime.datetime.fromtimestamp(started_at, datetime.UTC).strftime("%Y-%m-%d")
        cursor.execute(f"UPDATE turns SET day = {mark} WHERE id = {mark}", (day, turn_id))


steps = [
    step("ALTER TABLE turns ADD COLUMN day TEXT NOT NULL DEFAULT ''"),
    step(_backfill),
    step("CREATE INDEX turns_day ON turns (day)"),
]
