//! The SQLite writer: one connection that makes every write, with group commit.
//!
//! sqlx runs each SQLite connection on its own thread, so every statement is a round trip
//! between threads, and a commit writes each page it changed to the write-ahead log. Writers
//! are serialised by an in-process lock; to keep that lock short, each request's writes run in
//! a savepoint of a transaction that several requests share:
//!
//! 1. [`SqliteWriter::begin`] takes the lock and opens the request's savepoint (beginning the
//!    shared transaction if none is open) in one round trip.
//! 2. The request runs its statements; its deferred writes and the savepoint's release go in one
//!    more round trip at [`WriterGuard::commit`].
//! 3. If nobody is waiting for the lock, the request commits at once (the `COMMIT` rides in the
//!    same round trip). Otherwise it hands the lock on and waits: a committer task queues for the
//!    lock behind the requests already waiting, and commits all of them with one `COMMIT`, one
//!    log write. No request is answered before the transaction holding its writes commits.
//!
//! A request that fails rolls back to its savepoint, leaving the others' writes in place. What
//! it read on the writer connection may include the group's uncommitted writes, so a refusal
//! waits for the group to commit before it is answered ([`SqliteWriter::settled`]): a client told
//! "already exists" can then read what it ran into. If the shared `COMMIT` fails, every request
//! in it fails.
//!
//! Automatic checkpoints are off on this connection (they would run inside a commit, under the
//! lock); a background task checkpoints the log from another connection without blocking
//! writers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, ConnectOptions, Executor, Row};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, broadcast, oneshot, watch};

use super::store::{Value, bind_all};

/// Per connection: WAL (readers never block the writer), NORMAL sync (durable against a process
/// crash: a commit is in the log before it returns), foreign keys, a wait rather than an
/// error when another process holds the write lock, and a log cut back to 64 MiB when a
/// checkpoint restarts it (it otherwise keeps the size of its busiest moment).
pub const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                           PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                           PRAGMA journal_size_limit = 67108864;";

/// How often the log is checkpointed while there are writes.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A handle on the writer; clones share it.
#[derive(Clone)]
pub struct SqliteWriter {
    shared: Arc<Shared>,
}

struct Shared {
    state: Arc<Mutex<State>>,
    /// Requests queued for the lock (the committer is not counted).
    waiting: AtomicUsize,
    /// Wakes the committer: a request joined an empty group.
    group_waiting: Arc<Notify>,
    /// Commits so far (the checkpointer runs only when this moves), and the requests whose
    /// writes they carried.
    commits: Counter,
    writes: Counter,
    marks: Arc<GroupMarks>,
    feed: broadcast::Sender<i64>,
}

/// Where groups stand, readable without the lock.
struct GroupMarks {
    /// The number of the group waiting to commit (0 when none is).
    pending: AtomicU64,
    /// The number of the last group that committed or failed.
    settled: watch::Sender<u64>,
}

struct State {
    options: AnyConnectOptions,
    /// `None` after a failure that leaves the connection's state unknown; reopened on next use.
    connection: Option<AnyConnection>,
    /// A transaction is open on the connection.
    open: bool,
    /// A request's savepoint is open: its request holds the lock, or was dropped where nothing
    /// could roll it back, and then the next holder does.
    in_request: bool,
    group: Group,
}

/// The requests whose writes are in the open transaction, waiting for it to commit.
struct Group {
    members: Vec<oneshot::Sender<Result<(), String>>>,
    /// The newest change-feed event the members wrote.
    last_event: Option<i64>,
    /// Groups formed so far: the current one's number.
    number: u64,
    marks: Arc<GroupMarks>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds a member; true when it is the first (the committer needs waking).
    fn join(
        &mut self,
        member: oneshot::Sender<Result<(), String>>,
        last_event: Option<i64>,
    ) -> bool {
        let first = self.members.is_empty();
        if first {
            self.number += 1;
            self.marks.pending.store(self.number, Ordering::Release);
        }
        self.members.push(member);
        if last_event.is_some() {
            self.last_event = last_event;
        }
        first
    }

    /// Answers every member with `outcome` and returns the newest event they wrote, if it
    /// committed.
    fn finish(&mut self, outcome: Result<(), String>) -> Option<i64> {
        let last_event = self.last_event.take().filter(|_| outcome.is_ok());
        for member in self.members.drain(..) {
            let _ = member.send(outcome.clone());
        }
        self.marks.pending.store(0, Ordering::Release);
        self.marks.settled.send_replace(self.number);
        last_event
    }
}

impl SqliteWriter {
    /// Opens the writer connection and starts its committer and checkpointer; `pool` is used
    /// for checkpoints.
    pub async fn open(
        options: AnyConnectOptions,
        pool: AnyPool,
        feed: broadcast::Sender<i64>,
    ) -> Result<SqliteWriter, sqlx::Error> {
        let connection = connect(&options).await?;
        let marks = Arc::new(GroupMarks {
            pending: AtomicU64::new(0),
            settled: watch::channel(0).0,
        });
        let shared = Arc::new(Shared {
            state: Arc::new(Mutex::new(State {
                options,
                connection: Some(connection),
                open: false,
                in_request: false,
                group: Group {
                    members: Vec::new(),
                    last_event: None,
                    number: 0,
                    marks: marks.clone(),
                },
            })),
            waiting: AtomicUsize::new(0),
            group_waiting: Arc::new(Notify::new()),
            commits: Counter::default(),
            writes: Counter::default(),
            marks,
            feed,
        });
        tokio::spawn(run_committer(
            Arc::downgrade(&shared),
            shared.group_waiting.clone(),
        ));
        tokio::spawn(run_checkpointer(Arc::downgrade(&shared), pool));
        Ok(SqliteWriter { shared })
    }

    /// Returns once the group waiting to commit now, if any, has committed or failed. A request
    /// refused after reading on the writer connection waits for this before it answers.
    pub async fn settled(&self) {
        self.shared.settled().await;
    }

    /// Transactions committed, and the requests whose writes they carried (for `/metrics`).
    pub fn counters(&self) -> (Counter, Counter) {
        (self.shared.commits.clone(), self.shared.writes.clone())
    }

    /// Takes the lock and opens a savepoint for one request's writes.
    pub async fn begin(&self) -> Result<WriterGuard, sqlx::Error> {
        let mut state = {
            let _queued = Queued::new(&self.shared.waiting);
            self.shared.state.clone().lock_owned().await
        };
        roll_back_leftover(&mut state).await;
        if state.connection.is_none() {
            state.connection = Some(connect(&state.options).await?);
        }
        let was_open = state.open;
        let statement = if was_open {
            "SAVEPOINT request"
        } else {
            "BEGIN IMMEDIATE; SAVEPOINT request"
        };
        // Marked before the statement runs. A request whose client hangs up is cancelled
        // wherever it is, the lock held: the statement may still run on the connection's
        // worker, or part of it, and the next holder rolls back whatever it left.
        state.open = true;
        state.in_request = true;
        let connection = state.connection.as_mut().expect("opened above");
        if let Err(error) = connection.execute(statement).await {
            if was_open {
                // No savepoint was made; the group's transaction stands.
                state.in_request = false;
            } else {
                // BEGIN may have run without the savepoint: start over on a new connection.
                abandon(&mut state, &error.to_string());
            }
            return Err(error);
        }
        Ok(WriterGuard {
            state: Some(state),
            shared: self.shared.clone(),
        })
    }
}

impl Shared {
    async fn settled(&self) {
        let pending = self.marks.pending.load(Ordering::Acquire);
        if pending == 0 {
            return;
        }
        let mut settled = self.marks.settled.subscribe();
        let _ = settled.wait_for(|group| *group >= pending).await;
    }
}

/// Counts a request queued for the lock, until it has it (or gave up waiting).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Queued(waiting)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connect(options: &AnyConnectOptions) -> Result<AnyConnection, sqlx::Error> {
    let mut connection = options.connect().await?;
    connection.execute(PRAGMAS).await?;
    connection.execute("PRAGMA wal_autocheckpoint = 0").await?;
    Ok(connection)
}

/// Rolls back a savepoint left open by a request that could not roll it back itself.
async fn roll_back_leftover(state: &mut State) {
    if state.in_request {
        rollback_request(state).await;
    }
}

/// Undoes the current request's writes, keeping the group's. The state says what the
/// connection holds once the rollback is done before it starts, since a cancelled caller leaves
/// it to finish on the connection's worker; a rollback that fails (the savepoint already
/// released, say) gives up the connection, and SQLite rolls back what it held.
async fn rollback_request(state: &mut State) {
    state.in_request = false;
    let whole = state.group.is_empty();
    let statement = if whole {
        "ROLLBACK"
    } else {
        "ROLLBACK TO request; RELEASE request"
    };
    if whole {
        state.open = false;
    }
    let outcome = match state.connection.as_mut() {
        Some(connection) => connection.execute(statement).await.map(drop),
        None => Ok(()),
    };
    if let Err(error) = outcome {
        abandon(state, &error.to_string());
    }
}

/// Gives up the connection and whatever it held uncommitted, failing the group.
fn abandon(state: &mut State, reason: &str) {
    tracing::error!(
        error = reason,
        "the SQLite writer connection failed; reopening it"
    );
    state.connection = None;
    state.open = false;
    state.in_request = false;
    state.group.finish(Err(reason.to_owned()));
}

/// The lock, held by one request between [`SqliteWriter::begin`] and
/// [`commit`](WriterGuard::commit). Dropped without a commit, the request's writes are rolled
/// back.
pub struct WriterGuard {
    state: Option<OwnedMutexGuard<State>>,
    shared: Arc<Shared>,
}

impl WriterGuard {
    pub fn connection(&self) -> &AnyConnection {
        let state = self.state.as_ref().expect("held until commit");
        state.connection.as_ref().expect("open while held")
    }

    pub fn connection_mut(&mut self) -> &mut AnyConnection {
        let state = self.state.as_mut().expect("held until commit");
        state.connection.as_mut().expect("open while held")
    }

    /// Runs `statements` (`;`-separated, sharing `values`; rows they return are change-feed
    /// sequence numbers), releases the savepoint, and returns once the writes are committed.
    pub async fn commit(
        mut self,
        statements: String,
        values: Vec<Value>,
    ) -> Result<(), sqlx::Error> {
        let mut state = self.state.take().expect("committed once");
        let alone = state.group.is_empty() && self.shared.waiting.load(Ordering::Acquire) == 0;
        let mut sql = statements;
        sql.push_str(if alone {
            "RELEASE request; COMMIT"
        } else {
            "RELEASE request"
        });
        let connection = state.connection.as_mut().expect("open while held");
        let rows = match bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .fetch_all(&mut *connection)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                // The statements after the failing one did not run, RELEASE and COMMIT included.
                rollback_request(&mut state).await;
                drop(state);
                // It may have failed on a write of the group (a key or reference taken).
                self.shared.settled().await;
                return Err(error);
            }
        };
        state.in_request = false;
        // Written, and committed if alone: nothing from here may fail the request.
        let last_event = rows.last().and_then(|row| row.try_get::<i64, _>(0).ok());
        if alone {
            state.open = false;
            self.shared.commits.inc();
            self.shared.writes.inc();
            drop(state);
            if let Some(last) = last_event {
                let _ = self.shared.feed.send(last);
            }
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        if state.group.join(done, last_event) {
            self.shared.group_waiting.notify_one();
        }
        drop(state);
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(shared_commit_failed(reason)),
            Err(_) => Err(shared_commit_failed("the committer stopped".into())),
        }
    }
}

fn shared_commit_failed(reason: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!(
        "the transaction these writes shared with other requests did not commit: {reason}"
    )))
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        if !state.in_request {
            return;
        }
        // Roll back now, holding the lock until it is done; with no runtime to do it on, the
        // next holder does it first.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { rollback_request(&mut state).await });
        }
    }
}

/// Commits groups: woken when a request joins an empty group, it queues for the lock behind the
/// requests already waiting, which join the group, and commits them all.
async fn run_committer(shared: Weak<Shared>, group_waiting: Arc<Notify>) {
    loop {
        // Wake now and then to notice that the store is gone.
        let woken = tokio::time::timeout(Duration::from_secs(1), group_waiting.notified()).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if woken.is_err() {
            continue;
        }
        let mut state = shared.state.clone().lock_owned().await;
        roll_back_leftover(&mut state).await;
        if state.group.is_empty() {
            continue;
        }
        let outcome = match state.connection.as_mut() {
            Some(connection) => connection.execute("COMMIT").await.map(drop),
            None => Err(sqlx::Error::PoolClosed),
        };
        match outcome {
            Ok(()) => {
                state.open = false;
                shared.commits.inc();
                shared.writes.inc_by(state.group.members.len() as u64);
                if let Some(last) = state.group.finish(Ok(())) {
                    let _ = shared.feed.send(last);
                }
            }
            Err(error) => {
                let reason = error.to_string();
                if let Some(connection) = state.connection.as_mut()
                    && connection.execute("ROLLBACK").await.is_ok()
                {
                    state.open = false;
                    state.group.finish(Err(reason));
                } else {
                    abandon(&mut state, &reason);
                }
            }
        }
    }
}

/// Moves committed pages from the log into the database file, from a pooled connection, in
/// PASSIVE mode: it never blocks the writer or readers, and the log restarts from its beginning
/// once a checkpoint has caught up.
async fn run_checkpointer(shared: Weak<Shared>, pool: AnyPool) {
    let mut checkpointed = 0;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let commits = strong.commits.get();
        drop(strong);
        if commits == checkpointed || pool.is_closed() {
            continue;
        }
        match pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            Ok(_) => checkpointed = commits,
            Err(error) => tracing::warn!(%error, "checkpointing the SQLite log failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::any::AnyPoolOptions;

    use super::*;

    struct Fixture {
        writer: SqliteWriter,
        pool: AnyPool,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let options = AnyConnectOptions::from_str(&url).unwrap();
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .unwrap();
        pool.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT PRIMARY KEY)")
            .await
            .unwrap();
        let (feed, _) = broadcast::channel(16);
        let writer = SqliteWriter::open(options, pool.clone(), feed)
            .await
            .unwrap();
        Fixture {
            writer,
            pool,
            _dir: dir,
        }
    }

    fn insert(name: &str) -> (String, Vec<Value>) {
        (
            "INSERT INTO t (name) VALUES ($1);\n".to_owned(),
            vec![name.into()],
        )
    }

    /// One request that inserts `name`.
    async fn write(writer: &SqliteWriter, name: &str) -> Result<(), sqlx::Error> {
        let (sql, values) = insert(name);
        writer.begin().await?.commit(sql, values).await
    }

    async fn names(pool: &AnyPool) -> Vec<String> {
        sqlx::query("SELECT name FROM t ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    fn commits(fixture: &Fixture) -> u64 {
        fixture.writer.shared.commits.get()
    }

    #[tokio::test]
    async fn a_writer_with_nobody_waiting_commits_at_once() {
        let f = fixture().await;
        write(&f.writer, "a").await.unwrap();
        assert_eq!(names(&f.pool).await, ["a"]);
        assert_eq!(commits(&f), 1);
    }

    #[tokio::test]
    async fn writers_queued_behind_each_other_share_one_commit() {
        let f = fixture().await;
        let first = f.writer.begin().await.unwrap();
        let queued: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|name| {
                let writer = f.writer.clone();
                tokio::spawn(async move { write(&writer, name).await })
            })
            .collect();
        while f.writer.shared.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let (sql, values) = insert("a");
        first.commit(sql, values).await.unwrap();
        for task in queued {
            task.await.unwrap().unwrap();
        }
        assert_eq!(names(&f.pool).await, ["a", "b", "c"]);
        assert_eq!(commits(&f), 1, "three writes, one commit");
        assert_eq!(f.writer.counters().1.get(), 3);
    }

    #[tokio::test]
    async fn a_failed_write_in_a_group_undoes_only_its_own_statements() {
        let f = fixture().await;
        let first = f.writer.begin().await.unwrap();
        let failing = {
            let writer = f.writer.clone();
            tokio::spawn(async move {
                // "x" is new, "a" is taken by the first writer: the whole request is undone.
                let sql = "INSERT INTO t (name) VALUES ($1);\nINSERT INTO t (name) VALUES ($2);\n";
                writer
                    .begin()
                    .await
                    .unwrap()
                    .commit(sql.to_owned(), vec!["x".into(), "a".into()])
                    .await
            })
        };
        while f.writer.shared.waiting.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let (sql, values) = insert("a");
        let first = tokio::spawn(first.commit(sql, values));
        let error = failing.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("UNIQUE"), "{error}");
        // It answers once the write it ran into is committed, so what it met can be read.
        assert_eq!(commits(&f), 1);
        assert_eq!(names(&f.pool).await, ["a"]);
        first.await.unwrap().unwrap();
        write(&f.writer, "y").await.unwrap();
        assert_eq!(names(&f.pool).await, ["a", "y"]);
    }

    #[tokio::test]
    async fn a_dropped_writer_rolls_back_and_releases_the_lock() {
        let f = fixture().await;
        {
            let mut guard = f.writer.begin().await.unwrap();
            guard
                .connection_mut()
                .execute("INSERT INTO t (name) VALUES ('gone')")
                .await
                .unwrap();
        }
        write(&f.writer, "kept").await.unwrap();
        assert_eq!(names(&f.pool).await, ["kept"]);
    }
}
