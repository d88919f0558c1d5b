-- Least-privilege roles for outbox-relay. Run as the owner of the outbox schema, after
-- `outbox-relay migrate`, in that schema (SET search_path TO <schema>), e.g.
--   psql "$DATABASE_URL" -v relay_password="'…'" -f sql/postgres/roles.sql
-- then give the relay  postgresql://outbox_relay:…@host/db  as DATABASE_URL.
--
-- outbox_relay:    reads and deletes delivered events, moves refused ones to the dead letters. SELECT … FOR UPDATE needs the UPDATE
--                  privilege on some column; it gets it on `id` only, which, being
--                  GENERATED ALWAYS, cannot be updated anyway. LISTEN needs no privilege.
-- outbox_producer: writes events (directly or through outbox_publish), reads nothing back.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_relay') THEN
        CREATE ROLE outbox_relay LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_producer') THEN
        CREATE ROLE outbox_producer NOLOGIN;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO outbox_relay, outbox_producer', current_schema());
END
$$;

GRANT SELECT, DELETE ON event_log TO outbox_relay;
GRANT UPDATE (id) ON event_log TO outbox_relay;
-- Dead letters: INSERT, plus what its ON CONFLICT counter needs (read and bump attempts).
GRANT SELECT (id, attempts), INSERT ON event_log_dead_letter TO outbox_relay;
GRANT UPDATE (error, failed_at, attempts, replayed_at) ON event_log_dead_letter TO outbox_relay;
-- Idle relays register here so producers notify them.
GRANT SELECT, INSERT, DELETE, UPDATE (registered_at) ON event_log_waiting TO outbox_relay;

GRANT INSERT (type, created_at, environment, context) ON event_log TO outbox_producer;
-- The insert trigger checks whether any relay waits for a notification.
GRANT SELECT ON event_log_waiting TO outbox_producer;
GRANT EXECUTE ON FUNCTION outbox_publish(text, jsonb, text) TO outbox_producer;
-- Application roles join the producer role:  GRANT outbox_producer TO app;
