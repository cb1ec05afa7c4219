//! An HTTP proxy on 127.0.0.1 that forwards to a portal and fails a random share of requests:
//! 429 with `Retry-After` and 5xx before forwarding (nothing was done), and 502 after forwarding
//! (the portal did the work; its answer is lost on the way back). It notes when each request
//! arrived and when each `Retry-After` was given, to check that the client waited.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// The shares of requests that get each fault (the rest are forwarded untouched).
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// 429 with `Retry-After: retry_after_seconds`, not forwarded.
    pub too_many_requests: f64,
    /// 500 or 503 (no Retry-After), not forwarded.
    pub failed_before: f64,
    /// Forwarded and done, then answered 502.
    pub lost_answer: f64,
    pub retry_after_seconds: u64,
}

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct ProxyLog {
    /// When each request arrived, in order.
    pub arrivals: Vec<Instant>,
    /// When each 429 was answered, and the pause it asked for.
    pub pauses: Vec<(Instant, Duration)>,
    /// Faults given, by kind.
    pub faults: BTreeMap<&'static str, u64>,
}

struct Shared {
    target: String,
    client: reqwest::Client,
    mix: Mutex<FaultMix>,
    log: Mutex<ProxyLog>,
}

pub struct FaultProxy {
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: &str, mix: FaultMix) -> FaultProxy {
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            mix: Mutex::new(mix),
            log: Mutex::new(ProxyLog::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { base, shared, task }
    }

    /// From now on, faults in these shares.
    pub fn set_mix(&self, mix: FaultMix) {
        *self.shared.mix.lock().unwrap() = mix;
    }

    pub fn log(&self) -> ProxyLog {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests that arrived while a `Retry-After` was in force, except those that arrived
    /// within `in_flight` of the 429 (sent before its answer could have reached the client).
    pub fn early_requests(&self, in_flight: Duration) -> Vec<(Duration, Duration)> {
        let log = self.log();
        let mut early = Vec::new();
        for (given, pause) in &log.pauses {
            for arrival in &log.arrivals {
                if *arrival > *given + in_flight && *arrival < *given + *pause {
                    early.push((*arrival - *given, *pause));
                }
            }
        }
        early
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

fn problem(status: StatusCode, slug: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("https://portal.dev/problems/{slug}"),
        "title": detail, "status": status.as_u16(), "detail": detail,
    });
    (
        status,
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mix = *shared.mix.lock().unwrap();
    let roll: f64 = rand::random();
    let now = Instant::now();
    let fault = {
        let mut log = shared.log.lock().unwrap();
        log.arrivals.push(now);
        let fault = if roll < mix.too_many_requests {
            log.pauses
                .push((now, Duration::from_secs(mix.retry_after_seconds)));
            Some("429")
        } else if roll < mix.too_many_requests + mix.failed_before {
            Some(if roll < mix.too_many_requests + mix.failed_before / 2.0 {
                "500"
            } else {
                "503"
            })
        } else if roll < mix.too_many_requests + mix.failed_before + mix.lost_answer {
            Some("502 after")
        } else {
            None
        };
        if let Some(fault) = fault {
            *log.faults.entry(fault).or_default() += 1;
        }
        fault
    };
    match fault {
        Some("429") => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "slow down (injected)",
            );
            response.headers_mut().insert(
                "retry-after",
                mix.retry_after_seconds.to_string().parse().unwrap(),
            );
            return response;
        }
        Some("500") => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "injected fault",
            );
        }
        Some("503") => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "injected fault",
            );
        }
        _ => {}
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = shared
        .client
        .request(method, format!("{}{path}", shared.target));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let upstream = match request.body(body).send().await {
        Ok(upstream) => upstream,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    if fault == Some("502 after") {
        // The portal did it; the answer never comes back.
        let _ = upstream.bytes().await;
        return (StatusCode::BAD_GATEWAY, "injected: the answer was lost").into_response();
    }
    let mut response = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        if name != "transfer-encoding" && name != "content-length" && name != "connection" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap()
}
