-- Conversations, their turns and each turn's event log, in SQL both SQLite and PostgreSQL read.
-- Times are Unix seconds; a turn's events are kept as chunks (one row per write batch, never one
-- per token), each the events' SSE frames as sent (`id: N\ndata: JSON\n\n`), joined.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX conversations_updated ON conversations (updated_at);

CREATE TABLE turns (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    question TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    finish_reason TEXT,
    sources INTEGER NOT NULL DEFAULT 0,
    id_ceiling BIGINT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE INDEX turns_conversation ON turns (conversation_id, started_at);
CREATE INDEX turns_status ON turns (status);

CREATE TABLE turn_events (
    turn_id TEXT NOT NULL REFERENCES turns (id),
    first_id BIGINT NOT NULL,
    frames TEXT NOT NULL,
    PRIMARY KEY (turn_id, first_id)
);
