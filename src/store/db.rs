//! The two databases behind one store. A `Pool` or a `Tx` holds either database; `db_run!` compiles one
//! statement for each (sqlx infers the database from the executor), so the SQL both dialects accept is written
//! once as ordinary Rust, and what differs is a method of `Backend` or a function per dialect.

use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{Backend, Result};

pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction on either database.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Either database's executor: what `db_run!` matches on.
pub enum Exec<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// What `db_run!` can run a statement on: a pool or an open transaction.
pub trait Executes {
    type Sqlite;
    type Postgres;
    fn exec(self) -> Exec<Self::Sqlite, Self::Postgres>;
}

impl<'a> Executes for &'a Pool {
    type Sqlite = &'a SqlitePool;
    type Postgres = &'a PgPool;
    fn exec(self) -> Exec<Self::Sqlite, Self::Postgres> {
        match self {
            Pool::Sqlite(p) => Exec::Sqlite(p),
            Pool::Postgres(p) => Exec::Postgres(p),
        }
    }
}

impl<'a> Executes for &'a mut Tx {
    type Sqlite = &'a mut SqliteConnection;
    type Postgres = &'a mut PgConnection;
    fn exec(self) -> Exec<Self::Sqlite, Self::Postgres> {
        match self {
            Tx::Sqlite(tx) => Exec::Sqlite(&mut **tx),
            Tx::Postgres(tx) => Exec::Postgres(&mut **tx),
        }
    }
}

/// Runs `$body` with `$c` bound to the executor of whichever database `$on` (a `&Pool` or a `&mut Tx`) holds.
/// The body is one statement; both databases must give it the same result type.
macro_rules! db_run {
    ($on:expr, |$c:ident| $body:expr) => {{
        use $crate::store::db::Executes as _;
        // Method syntax reborrows a `&mut Tx`: the transaction stays usable after the statement.
        match ($on).exec() {
            $crate::store::db::Exec::Sqlite($c) => $body,
            $crate::store::db::Exec::Postgres($c) => $body,
        }
    }};
}
pub(crate) use db_run;

impl Pool {
    pub fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front, so a transaction that
    /// reads before it writes cannot fail half-way with SQLITE_BUSY when another writer commits in between.
    pub async fn begin_write(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A transaction that takes SQLite's write lock only when it first writes.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
