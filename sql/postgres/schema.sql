-- The outbox. Installed by `outbox-relay migrate` into the first schema of the connection's
-- search_path. Every statement is idempotent: a second run changes nothing.

CREATE TABLE IF NOT EXISTS event_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    environment text        NOT NULL,
    context     jsonb       NOT NULL DEFAULT '{}'
);

-- A queue table: rows live for milliseconds and every one is deleted, so dead tuples are
-- nearly all it ever holds. With the defaults (vacuum once dead rows pass 20 % of the live
-- ones, throttled by cost delays) a large backlog piles up hundreds of thousands of dead
-- tuples, and every claim walks the dead index entries at the head of the primary key
-- before it finds a live row. Vacuum after a fixed 10,000 dead rows, whatever the table's
-- size, and unthrottled: the table is small once drained, so each pass is cheap.
-- Analyze stays on the defaults: the claim's plan (primary-key index scan) does not
-- depend on statistics.
ALTER TABLE event_log SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);

-- Relays that are idle and want a notification for the next event, one row each (the id
-- is in the relay sessions' application_name, 'outbox-relay/<relay>'). A busy relay is not
-- here: it polls, and producers skip the NOTIFY, whose commit-time global lock would
-- otherwise serialise every producer's commit.
CREATE TABLE IF NOT EXISTS event_log_waiting (
    relay         text        PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- Wake an idle relay. Statement level with an empty payload: at most one notification per
-- inserting statement, never the event body (payloads are capped at 8000 bytes, and the relay
-- reads the rows anyway), and none at all while every relay is busy. The channel is the
-- table's qualified name, so relays of different schemas in one database do not wake each
-- other. The registrations table is named with its schema, written in when migrate runs,
-- so producers with any search_path find it (cheaper than pinning search_path per call).
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION event_log_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM %I.event_log_waiting) THEN
                PERFORM pg_notify(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, '');
            END IF;
            RETURN NULL;
        END
        $$ $f$, current_schema());
END
$do$;

CREATE OR REPLACE TRIGGER event_log_notify
    AFTER INSERT ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION event_log_notify();

-- For producers in any language: SELECT outbox_publish('user_created', '{"id": 1}'::jsonb).
-- Without an environment it takes the setting outbox.environment (e.g.
-- ALTER DATABASE app SET outbox.environment = 'Production'), else 'Local'.
-- SECURITY DEFINER: a producer needs only EXECUTE on it (sql/postgres/roles.sql), not
-- privileges on the table (RETURNING id would need SELECT). search_path is pinned (FROM
-- CURRENT: the one migrate ran with), as SECURITY DEFINER requires for safety, so the function
-- finds its own event_log whatever the caller's search_path.
CREATE OR REPLACE FUNCTION outbox_publish(
    event_type  text,
    context     jsonb DEFAULT '{}',
    environment text  DEFAULT NULL
) RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
    INSERT INTO event_log (type, context, environment)
    VALUES (
        event_type,
        coalesce(context, '{}'),
        coalesce(environment, nullif(current_setting('outbox.environment', true), ''), 'Local')
    )
    RETURNING id
$$;

-- Events a sink permanently refused (a value it cannot store, over the size limit), moved
-- here by the relay in the same transaction that deletes them from event_log: nothing is
-- lost, and the stream does not stall behind one bad event. `outbox-relay dead-letter
-- replay` moves them back (same id, so a sink that collapses by id never double counts);
-- the row stays with replayed_at set, and attempts counts how often it was dead-lettered.
CREATE TABLE IF NOT EXISTS event_log_dead_letter (
    id          bigint      PRIMARY KEY,
    type        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    environment text        NOT NULL,
    context     jsonb       NOT NULL,
    error       text        NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 1,
    replayed_at timestamptz
);
