COPY outbox_relay_staging (event_id, event_type, created_at, environment, context) FROM STDIN BINARY
