//! The portal's database: SQLite (one file, the embedded default) or PostgreSQL, behind sqlx's
//! `Any` driver with one set of portable migrations.
//!
//! Every request that writes runs in one [`WriteTx`]: it either commits whole or leaves nothing
//! behind. A write transaction first bumps the event counter and holds that row until it commits,
//! which (a) numbers the change feed in commit order, so a reader resuming after sequence N never
//! misses an event committed later with a smaller number, and (b) serialises writers, so
//! tree-wide checks such as "the account keeps an owner" cannot race. On SQLite, writers also queue on an in-process
//! lock so that a deferred transaction never meets SQLITE_BUSY when it upgrades to writing.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, broadcast};

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

/// A change-feed entry as stored and as sent.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub object_kind: String,
    pub object_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    pub data: serde_json::Value,
    pub created_at: String,
}

/// An event to append inside a write transaction.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_type: &'a str,
    pub object_kind: &'a str,
    pub object_id: &'a str,
    pub account_id: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub data: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
    sqlite_writer: Option<Arc<Mutex<()>>>,
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
                        // WAL: readers never block the writer; NORMAL sync is durable against a
                        // process crash (a commit is in the WAL before it returns).
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        let (feed, _) = broadcast::channel(1024);
        Ok(Store {
            pool,
            backend,
            sqlite_writer: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            feed,
        })
    }

    /// Takes the SQLite writer lock (nothing on PostgreSQL) for a single-statement write that
    /// needs no transaction and no change-feed number.
    pub async fn lock_writer(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Starts a write transaction (see the module doc).
    pub async fn write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'events' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        Ok(WriteTx {
            tx,
            _writer: guard,
            counter: seq,
            last_event: None,
            feed: self.feed.clone(),
        })
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
                    event_type: row.try_get("type")?,
                    object_kind: row.try_get("object_kind")?,
                    object_id: row.try_get("object_id")?,
                    account_id: row.try_get("account_id")?,
                    external_ref: row.try_get("external_ref")?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    created_at: super::time::format_millis(row.try_get("created_at")?),
                })
            })
            .collect()
    }
}

/// One request's writes. Dropped without [`commit`](WriteTx::commit), it rolls back.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
    /// The counter value this transaction holds; events take numbers from it.
    counter: i64,
    last_event: Option<i64>,
    feed: broadcast::Sender<i64>,
}

impl WriteTx {
    /// Appends a change-feed event, visible to readers once the transaction commits.
    pub async fn emit(&mut self, event: NewEvent<'_>, now_millis: i64) -> Result<i64, sqlx::Error> {
        let seq = match self.last_event {
            None => self.counter,
            Some(last) => {
                // A second event in one transaction takes the next number.
                sqlx::query(
                    "UPDATE counters SET value = value + 1 WHERE name = 'events' RETURNING value",
                )
                .fetch_one(&mut *self.tx)
                .await?
                .try_get::<i64, _>(0)
                .map(|next| next.max(last + 1))?
            }
        };
        sqlx::query(
            "INSERT INTO events (seq, type, object_kind, object_id, account_id, external_ref, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(event.event_type)
        .bind(event.object_kind)
        .bind(event.object_id)
        .bind(event.account_id)
        .bind(event.external_ref)
        .bind(event.data.to_string())
        .bind(now_millis)
        .execute(&mut *self.tx)
        .await?;
        self.last_event = Some(seq);
        Ok(seq)
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if let Some(last) = self.last_event {
            // Nobody listening is fine.
            let _ = self.feed.send(last);
        }
        Ok(())
    }
}
