-- Per-session staging for COPY: COPY cannot skip conflicting rows, so a batch is copied
-- here (context as text, parsed once by the INSERT) and moved with ON CONFLICT DO NOTHING.
-- Emptied at every commit.
CREATE TEMP TABLE IF NOT EXISTS outbox_relay_staging (
    event_id    bigint,
    event_type  text,
    created_at  timestamptz,
    environment text,
    context     text
) ON COMMIT DELETE ROWS
