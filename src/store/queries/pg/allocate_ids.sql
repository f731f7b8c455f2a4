-- $1: table name, $2: how many ids. nextval never hands the same value to two sessions.
SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2::bigint)
