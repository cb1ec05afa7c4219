//! The portal's database: SQLite (one file, the embedded default) or PostgreSQL, behind sqlx's
//! `Any` driver with one set of portable migrations.
//!
//! Every request that writes runs in one [`WriteTx`]: it either commits whole or leaves nothing
//! behind, and its writers are serialised, so tree-wide checks such as "the account keeps an
//! owner" cannot race and the change feed is numbered in commit order (a reader resuming after
//! sequence N never misses an event committed later with a smaller number).
//!
//! - On PostgreSQL a write transaction starts by locking the event counter's row, held until it
//!   commits.
//! - On SQLite all writes go through one dedicated connection behind an in-process lock, with
//!   group commit (see [`super::sqlite_writer`]). A request's tail writes (rows it never reads
//!   back: the new row, its email, its events, its idempotent response) are
//!   [deferred](WriteTx::defer) and sent in one round trip with the end of its savepoint.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, Transaction};
use tokio::sync::broadcast;

use super::sqlite_writer::{SqliteWriter, WriterGuard};
pub use crate::api::{Event, EventType};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("run database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// An event to append inside a write transaction.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_type: EventType,
    pub object_kind: &'a str,
    pub object_id: &'a str,
    pub account_id: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub data: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    /// SQLite only: the one connection that writes.
    sqlite_writer: Option<SqliteWriter>,
    /// Wakes change-feed readers after a commit that appended events.
    pub feed: broadcast::Sender<i64>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/portal/migrations");

impl Store {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        connection.execute(super::sqlite_writer::PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        let (feed, _) = broadcast::channel(1024);
        let sqlite_writer = match backend {
            Backend::Sqlite => Some(
                SqliteWriter::open(options, pool.clone(), feed.clone())
                    .await
                    .map_err(StoreError::Connect)?,
            ),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            sqlite_writer,
            feed,
        })
    }

    /// Starts a write transaction (see the module doc).
    pub async fn write(&self) -> Result<WriteTx, sqlx::Error> {
        let connection = match &self.sqlite_writer {
            Some(writer) => WriteConnection(Some(Connection::Sqlite(writer.begin().await?))),
            None => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT value FROM counters WHERE name = 'events' FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
                WriteConnection(Some(Connection::Postgres(tx)))
            }
        };
        Ok(WriteTx {
            tx: connection,
            deferred: Vec::new(),
            first: None,
            feed: self.feed.clone(),
        })
    }

    /// SQLite only: transactions committed, and the requests whose writes they carried.
    pub fn sqlite_counters(
        &self,
    ) -> Option<(
        prometheus_client::metrics::counter::Counter,
        prometheus_client::metrics::counter::Counter,
    )> {
        self.sqlite_writer.as_ref().map(SqliteWriter::counters)
    }

    /// Returns once the writes other requests have made and not yet committed, if any, are
    /// committed or have failed (SQLite's group commit; nothing to wait for on PostgreSQL).
    pub async fn settled(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.settled().await;
        }
    }

    /// SQLite: moves every committed page from the log into the database file and empties the
    /// log, once the server has stopped serving. The log is otherwise left at its largest size
    /// on disk (its checkpoints restart it from the beginning, they do not shrink it): after a
    /// 10,000-object `apply` on the embedded portal, 229 MB beside a 21 MB database.
    pub async fn checkpoint_for_stop(&self) {
        if self.sqlite_writer.is_none() {
            return;
        }
        self.settled().await;
        if let Err(error) = self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await {
            tracing::warn!(%error, "emptying the SQLite log at shutdown failed; it is replayed at the next start");
        }
    }

    /// The id of the newest committed event (0 when there is none): where a reader that wants
    /// only what happens from now on resumes.
    pub async fn latest_event(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>(0)
    }

    /// Events after `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT seq, type, object_kind, object_id, account_id, external_ref, data, created_at \
             FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("data")?;
                Ok(Event {
                    seq: row.try_get("seq")?,
                    event_type: EventType::parse(row.try_get::<&str, _>("type")?),
                    object_kind: row.try_get("object_kind")?,
                    object_id: row.try_get("object_id")?,
                    account_id: row.try_get("account_id")?,
                    external_ref: row.try_get("external_ref")?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    created_at: crate::api::time::format_millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }
}

/// A value bound to a [`Deferred`] statement. Nulls are typed, as PostgreSQL needs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(Some(value))
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Self {
        Value::Int(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(Some(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(Some(value.to_owned()))
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(Some(value.clone()))
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        Value::Text(value)
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        Value::Text(value.map(str::to_owned))
    }
}

impl From<&Option<String>> for Value {
    fn from(value: &Option<String>) -> Self {
        Value::Text(value.clone())
    }
}

/// A write statement that returns no rows, queued with [`WriteTx::defer`]. Its placeholders are
/// `$1`, `$2`, … in the order of the values bound.
#[derive(Debug, Clone)]
pub struct Deferred {
    sql: &'static str,
    values: Vec<Value>,
    /// An event insert, which returns the event's sequence number.
    event: bool,
}

impl Deferred {
    pub fn new(sql: &'static str) -> Deferred {
        Deferred {
            sql,
            values: Vec::new(),
            event: false,
        }
    }

    pub fn bind(mut self, value: impl Into<Value>) -> Deferred {
        self.values.push(value.into());
        self
    }
}

pub(super) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    values: impl IntoIterator<Item = Value>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for value in values {
        query = match value {
            Value::Int(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
        };
    }
    query
}

/// The number of the placeholder that `text` (what follows a `$`) starts with, and how many
/// digits it takes.
fn placeholder(text: &str) -> Option<(usize, usize)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text[..digits].parse().ok().map(|n| (n, digits))
}

/// Appends `sql` to `out` with each placeholder `$n` renumbered `$(n + offset)`, so statements
/// with their own numbering can share one argument list.
fn append_renumbered(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        if let Some((n, digits)) = placeholder(rest) {
            out.push_str(&(n + offset).to_string());
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
}

/// The highest placeholder number in `sql` (0 when it has none).
fn placeholders(sql: &str) -> usize {
    sql.match_indices('$')
        .filter_map(|(at, _)| placeholder(&sql[at + 1..]).map(|(n, _)| n))
        .max()
        .unwrap_or(0)
}

enum Connection {
    Sqlite(WriterGuard),
    Postgres(Transaction<'static, Any>),
}

/// The connection a write transaction runs its statements on; use it as `&mut *tx.tx`.
pub struct WriteConnection(Option<Connection>);

impl std::ops::Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self
            .0
            .as_ref()
            .expect("a finished transaction is not used again")
        {
            Connection::Sqlite(writer) => writer.connection(),
            Connection::Postgres(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self
            .0
            .as_mut()
            .expect("a finished transaction is not used again")
        {
            Connection::Sqlite(writer) => writer.connection_mut(),
            Connection::Postgres(tx) => tx,
        }
    }
}

/// One request's writes. Dropped without [`commit`](WriteTx::commit), they are rolled back.
pub struct WriteTx {
    pub tx: WriteConnection,
    /// Writes queued to run at commit, in order.
    deferred: Vec<Deferred>,
    /// A write queued to run before all the others (the idempotent response: when its key is
    /// taken, nothing else runs).
    first: Option<Deferred>,
    feed: broadcast::Sender<i64>,
}

impl WriteTx {
    fn backend(&self) -> Backend {
        match self.tx.0 {
            Some(Connection::Postgres(_)) => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// Queues a write to run at commit, after every statement run directly on `tx` and in the
    /// order queued. Only for rows this request does not read back; its errors are
    /// [`commit`](WriteTx::commit)'s.
    pub fn defer(&mut self, statement: Deferred) {
        debug_assert_eq!(
            placeholders(statement.sql),
            statement.values.len(),
            "placeholders and values of {:?}",
            statement.sql
        );
        self.deferred.push(statement);
    }

    /// Queues `statement` ahead of every other deferred write.
    pub fn defer_first(&mut self, statement: Deferred) {
        debug_assert!(self.first.is_none(), "one write goes first");
        self.first = Some(statement);
    }

    /// Queues a change-feed event, visible to readers once the transaction commits. It is
    /// numbered when the transaction commits, after the events queued before it.
    pub fn emit(&mut self, event: NewEvent<'_>, now_millis: i64) {
        let sql = match self.backend() {
            Backend::Postgres => {
                "WITH next AS (UPDATE counters SET value = value + 1 WHERE name = 'events' RETURNING value) \
                 INSERT INTO events (seq, type, object_kind, object_id, account_id, external_ref, data, created_at) \
                 SELECT value, $1, $2, $3, $4, $5, $6, $7 FROM next RETURNING seq"
            }
            Backend::Sqlite => {
                "UPDATE counters SET value = value + 1 WHERE name = 'events'; \
                 INSERT INTO events (seq, type, object_kind, object_id, account_id, external_ref, data, created_at) \
                 SELECT value, $1, $2, $3, $4, $5, $6, $7 FROM counters WHERE name = 'events' RETURNING seq"
            }
        };
        let mut statement = Deferred::new(sql)
            .bind(event.event_type.as_str())
            .bind(event.object_kind)
            .bind(event.object_id)
            .bind(event.account_id)
            .bind(event.external_ref)
            .bind(event.data.to_string())
            .bind(now_millis);
        statement.event = true;
        self.deferred.push(statement);
    }

    /// Runs the deferred writes and commits; on SQLite in one round trip.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let statements: Vec<Deferred> = self
            .first
            .take()
            .into_iter()
            .chain(self.deferred.drain(..))
            .collect();
        match self.tx.0.take().expect("committed once") {
            Connection::Sqlite(writer) => {
                let mut sql = String::new();
                let mut values = Vec::new();
                for statement in statements {
                    append_renumbered(&mut sql, statement.sql, values.len());
                    sql.push_str(";\n");
                    values.extend(statement.values);
                }
                // Broadcasts its events once they are committed.
                writer.commit(sql, values).await
            }
            Connection::Postgres(mut tx) => {
                let mut last_event = None;
                for statement in statements {
                    let query = bind_all(sqlx::query(statement.sql), statement.values);
                    if statement.event {
                        last_event = Some(query.fetch_one(&mut *tx).await?.try_get::<i64, _>(0)?);
                    } else {
                        query.execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                if let Some(last) = last_event {
                    // Nobody listening is fine.
                    let _ = self.feed.send(last);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_after_the_statements_before() {
        let mut out = String::new();
        append_renumbered(&mut out, "INSERT INTO t (a, b) VALUES ($1, $2)", 0);
        out.push(';');
        append_renumbered(&mut out, "UPDATE t SET a = $2 WHERE b = $1 AND c = $10", 2);
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES ($1, $2);UPDATE t SET a = $4 WHERE b = $3 AND c = $12"
        );
    }

    #[test]
    fn a_dollar_without_digits_is_kept() {
        let mut out = String::new();
        append_renumbered(&mut out, "SELECT '$' || $1", 3);
        assert_eq!(out, "SELECT '$' || $4");
    }

    #[tokio::test]
    async fn a_stopping_sqlite_store_leaves_its_log_empty() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("portal.db");
        let store = Store::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
        store
            .pool
            .execute("CREATE TABLE scratch (n INTEGER); INSERT INTO scratch VALUES (1), (2), (3)")
            .await
            .unwrap();
        let log = dir.path().join("portal.db-wal");
        let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(size() > 0, "the writes are in the log first");
        store.checkpoint_for_stop().await;
        assert_eq!(size(), 0, "the log is emptied into the database file");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scratch")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, 3, "and nothing is lost");
    }

    #[test]
    fn placeholders_counts_the_highest_number() {
        assert_eq!(placeholders("SELECT 1"), 0);
        assert_eq!(placeholders("VALUES ($1, $3, $2, $3)"), 3);
    }
}
