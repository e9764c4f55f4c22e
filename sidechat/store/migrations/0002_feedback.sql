-- Visitors' ratings and comments, one per turn (a later rating replaces the earlier one).
-- depends: 0001_conversations_turns
CREATE TABLE feedback (
    turn_id TEXT PRIMARY KEY REFERENCES turns (id),
    rating TEXT NOT NULL,
    comment TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
