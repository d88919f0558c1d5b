-- The PostgreSQL sink's archive table (in another database, e.g. for long-term audit).
-- event_id is the outbox id: a redelivered batch adds nothing (ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS {archive} (
    event_id    bigint      PRIMARY KEY,
    event_type  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    environment text        NOT NULL,
    context     jsonb       NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
)
