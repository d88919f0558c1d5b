-- Through the function, so a producer role needs only EXECUTE on outbox_publish.
SELECT outbox_publish($1, $2, $3)
