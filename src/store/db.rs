//! The two databases behind one store. A `Pool` or a `Tx` holds either database; `db_run!` compiles one
//! statement for each (sqlx infers the database from the executor), so the SQL both dialects accept is written
//! once as ordinary Rust, and what differs is a method of `Backend` or a function per dialect.

use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{Backend, ImportMessage, Result, WriteHealth};

/// ferry's store on SQLite or PostgreSQL: every `…Store` trait is implemented once for it.
pub struct SqlStore {
    pool: Pool,
    health: WriteHealth,
    /// SQLite's background WAL checkpoints, stopped with the store.
    _checkpointer: Option<super::sqlite::Checkpointer>,
}

impl SqlStore {
    pub async fn connect_postgres(url: &str) -> Result<Self> {
        Ok(Self {
            pool: Pool::Postgres(super::pg::connect(url).await?),
            health: WriteHealth::default(),
            _checkpointer: None,
        })
    }

    pub async fn connect_sqlite(url: &str) -> Result<Self> {
        let pool = super::sqlite::connect(url).await?;
        Ok(Self {
            _checkpointer: Some(super::sqlite::Checkpointer::spawn(pool.clone())),
            pool: Pool::Sqlite(pool),
            health: WriteHealth::default(),
        })
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(super) fn health(&self) -> &WriteHealth {
        &self.health
    }
}

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
        #[allow(unused_imports)]
        // A function generic over `Executes` has it from its bound already.
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

    /// Applies this database's schema migrations (`migrations/sqlite`, `migrations/pg`).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/pg").run(p).await?,
        }
        Ok(())
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

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// What the two databases do differently enough to need a function each (`pg.rs`, `sqlite.rs`).
impl Tx {
    /// Ids for `n` new rows of `table`: PostgreSQL draws them from the table's identity sequence; SQLite counts
    /// on the write lock `begin_write` took.
    pub async fn allocate_ids(&mut self, table: &'static str, n: usize) -> Result<Vec<i64>> {
        match self {
            Tx::Sqlite(tx) => super::sqlite::allocate_ids(tx, table, n).await,
            Tx::Postgres(tx) => super::pg::allocate_ids(tx, table, n).await,
        }
    }

    /// `(legacy_thread_id, conversation id)` of the account's conversations imported from these threads.
    pub async fn conversations_by_legacy_thread(
        &mut self,
        account_id: i64,
        threads: &[&str],
    ) -> Result<Vec<(String, i64)>> {
        match self {
            Tx::Sqlite(tx) => {
                super::sqlite::conversations_by_legacy_thread(tx, account_id, threads).await
            }
            Tx::Postgres(tx) => {
                super::pg::conversations_by_legacy_thread(tx, account_id, threads).await
            }
        }
    }

    /// An import batch's messages (skipping legacy ids already imported): `(legacy_message_id, id)` of the new.
    pub async fn insert_import_messages(
        &mut self,
        account_id: i64,
        import_id: i64,
        rows: &[(i64, &ImportMessage)],
    ) -> Result<Vec<(String, i64)>> {
        match self {
            Tx::Sqlite(tx) => {
                super::sqlite::insert_import_messages(tx, account_id, import_id, rows).await
            }
            Tx::Postgres(tx) => {
                super::pg::insert_import_messages(tx, account_id, import_id, rows).await
            }
        }
    }
}
