-- The relay's objects beside an outbox table: its registrations, its NOTIFY trigger and its
-- dead-letter table. Installed by `migrate` (after schema.sql) and by `migrate --adopt` on an
-- existing table, whose rows and columns this file never touches. Idempotent.

-- Relays that are idle and want a notification for the next event, one row each (the id
-- is in the relay sessions' application_name, 'outbox-relay/<relay>'). A busy relay is not
-- here: it polls, and producers skip the NOTIFY, whose commit-time global lock would
-- otherwise serialise every producer's commit.
CREATE TABLE IF NOT EXISTS {waiting} (
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
        CREATE OR REPLACE FUNCTION {notify}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM %I.{waiting}) THEN
                PERFORM pg_notify(TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, '');
            END IF;
            RETURN NULL;
        END
        $$ $f$, current_schema());
END
$do$;

CREATE OR REPLACE TRIGGER {notify}
    AFTER INSERT ON {outbox}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify}();

-- Events a sink permanently refused (a value it cannot store, over the size limit), moved
-- here by the relay in the same transaction that deletes them from event_log: nothing is
-- lost, and the stream does not stall behind one bad event. `outbox-relay dead-letter
-- replay` moves them back (same id, so a sink that collapses by id never double counts);
-- the row stays with replayed_at set, and attempts counts how often it was dead-lettered.
CREATE TABLE IF NOT EXISTS {dead_letter} (
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
