-- Forget events the sink has. Runs in the claiming transaction, on rows it holds locked.
DELETE FROM {outbox} WHERE {id} = ANY($1)
