//! `GET /v1/events`: the change feed, as server-sent events resumable from `Last-Event-ID`
//! (or `?after=`), or as one JSON page when the client asks for `application/json`.
//!
//! Event ids are the store's sequence numbers: increasing in commit order, so a client that
//! resumes after N misses nothing. A caller sees the events of accounts it can read; the
//! platform principal sees all.

use super::json::Params;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;

use super::AppState;
use super::auth::{Principal, authorize};
use super::problem::{ApiError, ApiResult};
use crate::api::Event;
use crate::api::events::EventPage;
use crate::domain::Permission;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeedQuery {
    /// Resume after this event id, or `latest` for only what happens from now on.
    #[serde(default)]
    pub after: Option<String>,
    /// JSON pages only: 1 to 500.
    #[serde(default)]
    #[schemars(with = "Option<u16>", range(min = 1, max = 500))]
    pub limit: Option<String>,
}

const PAGE: i64 = 500;
/// Readers re-check the store at least this often, even with no wake-up.
const POLL: Duration = Duration::from_secs(1);

pub async fn events(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Params(query): Params<FeedQuery>,
) -> ApiResult<Response> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after.clone());
    let after = match resume.as_deref().map(str::trim) {
        None => 0,
        Some("latest") => state
            .store
            .latest_event()
            .await
            .map_err(|e| ApiError::internal("read the feed position", e))?,
        Some(text) => text.parse::<i64>().map_err(|_| {
            ApiError::invalid(
                "/after",
                "the event cursor (Last-Event-ID or after) must be an event id from this feed, or `latest`",
            )
        })?,
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.contains("application/json") && !accept.contains("text/event-stream")
        });
    if wants_json {
        let limit = match &query.limit {
            None => PAGE,
            Some(text) => match text.parse::<i64>() {
                Ok(limit) if (1..=PAGE).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::invalid(
                        "/limit",
                        "limit must be a whole number from 1 to 500",
                    ));
                }
            },
        };
        let mut visibility = Visibility::new(principal);
        let batch = state
            .store
            .events_after(after, limit)
            .await
            .map_err(|e| ApiError::internal("read the change feed", e))?;
        let next = batch.last().map(|e| e.seq).unwrap_or(after);
        let mut items = Vec::with_capacity(batch.len());
        for event in batch {
            if visibility.allows(&state, &event).await {
                items.push(event);
            }
        }
        return Ok(Json(EventPage { items, next }).into_response());
    }
    Ok(Sse::new(stream(state, principal, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn stream(
    state: AppState,
    principal: Principal,
    after: i64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let wake = state.store.feed.subscribe();
    let closing = state.closing.subscribe();
    let reader = Reader {
        state,
        visibility: Visibility::new(principal),
        wake,
        cursor: after,
        pending: std::collections::VecDeque::new(),
        behind: true,
        closing,
    };
    futures::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        let sse = SseEvent::default()
            .id(event.seq.to_string())
            .event(event.event_type.as_str())
            .json_data(&event)
            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event"));
        Some((Ok(sse), reader))
    })
}

/// One feed stream's position, and what it has read but not sent.
struct Reader {
    state: AppState,
    visibility: Visibility,
    wake: tokio::sync::broadcast::Receiver<i64>,
    cursor: i64,
    pending: std::collections::VecDeque<Event>,
    /// Whether the store may hold events after `cursor`: reads go to the store only then. A
    /// wake per commit read the store per commit (and once more to find nothing), though one
    /// read after a burst of commits gets all of them.
    behind: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Reader {
    /// The next event the caller may see; `None` once the server is shutting down.
    async fn next(&mut self) -> Option<Event> {
        loop {
            // The server is shutting down: end the stream so the shutdown can finish.
            if *self.closing.borrow() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                if self.visibility.allows(&self.state, &event).await {
                    return Some(event);
                }
                continue;
            }
            if self.behind {
                match self.state.store.events_after(self.cursor, PAGE).await {
                    Ok(batch) => {
                        // A short page is everything committed when it was read; what commits
                        // later wakes this reader.
                        self.behind = batch.len() as i64 == PAGE;
                        self.cursor = batch.last().map_or(self.cursor, |e| e.seq);
                        self.pending.extend(batch);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the change feed failed; retrying");
                        tokio::time::sleep(POLL).await;
                    }
                }
                continue;
            }
            tokio::select! {
                woken = tokio::time::timeout(POLL, self.wake.recv()) => {
                    self.behind = match woken {
                        Ok(Ok(last)) => {
                            // Every commit queued since wakes once: the newest says enough.
                            let mut newest = last;
                            while let Ok(last) = self.wake.try_recv() {
                                newest = newest.max(last);
                            }
                            newest > self.cursor
                        }
                        // Wakes were dropped, the poll's time is up, or nobody will wake it:
                        // read the store anyway.
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                            true
                        }
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                            tokio::time::sleep(POLL).await;
                            true
                        }
                    };
                }
                _ = self.closing.changed() => return None,
            }
        }
    }
}

/// Which events a caller may see, cached per account and forgotten when grants or accounts
/// change (those change what it may see).
struct Visibility {
    principal: Principal,
    accounts: HashMap<String, bool>,
}

impl Visibility {
    fn new(principal: Principal) -> Self {
        Visibility {
            principal,
            accounts: HashMap::new(),
        }
    }

    async fn allows(&mut self, state: &AppState, event: &Event) -> bool {
        if self.principal.is_platform() {
            return true;
        }
        if event.event_type.changes_grants() || event.event_type.is_account() {
            self.accounts.clear();
        }
        let Some(account) = &event.account_id else {
            return false;
        };
        if let Some(known) = self.accounts.get(account) {
            return *known;
        }
        let visible = match state.connection().await {
            Ok(mut connection) => authorize(
                &mut connection,
                &self.principal,
                account,
                Permission::AccountsRead,
            )
            .await
            .is_ok(),
            Err(_) => false,
        };
        self.accounts.insert(account.clone(), visible);
        visible
    }
}
