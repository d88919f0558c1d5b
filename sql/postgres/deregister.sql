-- The relay ($1) found events and is busy: producers need not notify it. Runs in the
-- acknowledging transaction.
DELETE FROM event_log_waiting WHERE relay = $1
