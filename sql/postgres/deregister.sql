-- The relay ($1) found events and is busy: producers need not notify it. Runs in the
-- acknowledging transaction.
DELETE FROM {waiting} WHERE relay = $1
