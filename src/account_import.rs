//! Capability C, on-demand account import from the legacy system (SPEC 5). Built in a later issue; the
//! schema it needs (`account_imports`, `accounts.migration_status`, `legacy_*` and `import_id` columns) exists.
