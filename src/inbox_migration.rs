//! Capability A, inbox migration (SPEC 3). Built in a later issue; the schema it needs (`inbox_migrations`,
//! `inbox_migration_locks`, `inbox_migration_journal`) exists.
