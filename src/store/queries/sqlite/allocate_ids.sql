-- SQLite has no sequences: under the write lock of BEGIN IMMEDIATE, MAX(id) + 1 … are ours alone.
-- {table} is one of a fixed list of table names, substituted in sqlite.rs (it cannot be a parameter).
SELECT COALESCE(MAX(id), 0) FROM {table}
