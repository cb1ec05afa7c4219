//! An in-memory Kubernetes API server double, served over real HTTP on 127.0.0.1, that an
//! unmodified `kube::Client` (or `kubectl`) talks to. It is test infrastructure: its value is its
//! fidelity to the real API server, so every difference is listed here.
//!
//! What it does, generically over resources (custom resources from CRD documents, plus core
//! Secrets and Namespaces, `coordination.k8s.io/v1` Leases and `events.k8s.io/v1` Events):
//! discovery (`/api`, `/apis`, `/apis/{group}/{version}`, `/version`); GET; LIST with label and
//! field selectors (`metadata.name`, `metadata.namespace`), `limit`/`continue` and the list
//! resourceVersion; WATCH from a resourceVersion with ADDED/MODIFIED/DELETED, BOOKMARKs when
//! `allowWatchBookmarks`, `timeoutSeconds`, and a 410 Gone ERROR event for a resourceVersion older
//! than the retained history; CREATE (uid, creationTimestamp, generateName, AlreadyExists); UPDATE
//! with optimistic concurrency; PATCH as merge, JSON patch (with `test`) and server-side apply
//! (`fieldManager`, `force`, ownership by leaf field, lists atomic); strategic merge on a custom
//! resource → 415; the status subresource isolated both ways; `metadata.generation` bumped on
//! changes outside metadata and status only; DELETE with finalizers and `deletionTimestamp`;
//! garbage collection of objects whose ownerReferences name a deleted owner; custom resources
//! defaulted, pruned and validated against `openAPIV3Schema` and its CEL rules (422 with field
//! paths; on an update, values left unchanged are not checked again, transition rules apart, as
//! with the real server's validation ratcheting); errors as
//! `metav1.Status` with the real reasons and codes.
//!
//! Measurement and faults: per-verb, per-resource request counters; the next N requests can
//! fail (a status, 429 with Retry-After, or a stall), and all open watches can be cut.
//!
//! Known differences from a real kube-apiserver:
//! - CEL rules run on standard CEL (the `cel` crate), without the Kubernetes extension
//!   libraries (`isURL`, quantities, `format.*`), and `oldSelf` is not correlated inside lists;
//! - strategic merge patches on built-in kinds are applied as JSON merge patches;
//! - one storage version: objects of every served version of a CRD are stored and returned as
//!   sent (no conversion);
//! - server-side apply tracks ownership by leaf path, not `managedFields` (which is not returned),
//!   and treats every list as atomic;
//! - garbage collection is immediate and always background-style (no foreground/orphan policies);
//! - no authentication, authorization, admission webhooks, or OpenAPI (`/openapi/v2`, `/v3`).

pub mod registry;
pub mod status;
pub mod store;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot, watch};

use self::registry::Resource;
use self::status::ApiError;
use self::store::{Change, PatchKind, State};

/// A fault to inject into upcoming requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (a metav1.Status body).
    Status(u16),
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after_seconds: u64 },
    /// Hold the request this long, then serve it.
    Stall(Duration),
}

impl Fault {
    /// The answer this fault gives instead of serving (none for a stall, which serves late).
    async fn answer(&self) -> Option<Response> {
        match self {
            Fault::Status(code) => {
                let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut error = ApiError::internal("injected fault");
                error.code = code;
                // The reason the real API server gives with each code, which clients act on.
                error.reason = match code.as_u16() {
                    404 => "NotFound",
                    409 => "Conflict",
                    410 => "Expired",
                    422 => "Invalid",
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    _ => "InternalError",
                };
                Some(error.into_response())
            }
            Fault::TooManyRequests {
                retry_after_seconds,
            } => Some(ApiError::too_many_requests(*retry_after_seconds).into_response()),
            Fault::Stall(duration) => {
                tokio::time::sleep(*duration).await;
                None
            }
        }
    }
}

/// A fault given at random to a share of the requests of one verb (and resource).
#[derive(Debug, Clone)]
pub struct Injection {
    /// get, list, watch, create, update, patch or delete.
    pub verb: &'static str,
    /// The resource as [`ApiServer::counters`] names it (`admininvitations/status` for the
    /// status subresource); none: every resource.
    pub resource: Option<String>,
    /// The share of matching requests that get the fault, 0 to 1.
    pub rate: f64,
    pub fault: Fault,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// How many changes watches can resume from; older resourceVersions get 410 Gone.
    pub history: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history: 10_000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

struct Shared {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
    cut: watch::Sender<u64>,
    counters: Mutex<BTreeMap<(String, String), u64>>,
    faults: Mutex<VecDeque<Fault>>,
    injections: Mutex<Vec<Injection>>,
    /// Faults given by injections, by (verb, resource).
    injected: Mutex<BTreeMap<(String, String), u64>>,
    bookmark_interval: Duration,
}

impl Shared {
    /// The fault, if any, an injection gives this request.
    fn injection(&self, verb: &str, resource: &str) -> Option<Fault> {
        let fault = self
            .injections
            .lock()
            .expect("injections")
            .iter()
            .filter(|i| i.verb == verb && i.resource.as_deref().is_none_or(|r| r == resource))
            .find(|i| rand::random::<f64>() < i.rate)
            .map(|i| i.fault.clone())?;
        *self
            .injected
            .lock()
            .expect("injected")
            .entry((verb.to_owned(), resource.to_owned()))
            .or_default() += 1;
        Some(fault)
    }
}

/// A double's faults, from anywhere ([`ApiServer::faults`]).
#[derive(Clone)]
pub struct Faults(Arc<Shared>);

impl Faults {
    /// As [`ApiServer::cut_watches`].
    pub fn cut_watches(&self) {
        self.0.cut.send_modify(|epoch| *epoch += 1);
    }

    /// As [`ApiServer::inject`].
    pub fn inject(&self, injection: Injection) {
        self.0
            .injections
            .lock()
            .expect("injections")
            .push(injection);
    }

    /// As [`ApiServer::clear_injections`].
    pub fn clear_injections(&self) {
        self.0.injections.lock().expect("injections").clear();
    }
}

/// A running double. Stop it with [`ApiServer::stop`] (or drop it).
pub struct ApiServer {
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Serves the built-in kinds and the custom resources of `crds` (CRD documents).
    pub async fn start(crds: &[Value]) -> Result<ApiServer, String> {
        ApiServer::start_with(crds, Options::default()).await
    }

    /// Parses a multi-document CRD YAML file.
    pub fn crds_from_yaml(text: &str) -> Result<Vec<Value>, String> {
        let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
        Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
    }

    pub async fn start_with(crds: &[Value], options: Options) -> Result<ApiServer, String> {
        let mut resources = Resource::builtins();
        for crd in crds {
            resources.extend(Resource::from_crd(crd)?);
        }
        let (changes, _) = broadcast::channel(4096);
        let (cut, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(resources, options.history)),
            changes,
            cut,
            counters: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(VecDeque::new()),
            injections: Mutex::new(Vec::new()),
            injected: Mutex::new(BTreeMap::new()),
            bookmark_interval: options.bookmark_interval,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        Ok(ApiServer {
            url,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// A `kube::Client` for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("the server URL is a URI"));
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        kube::Client::try_from(config).expect("a client for the double")
    }

    /// A kubeconfig for `kubectl` pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {url}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n    namespace: default\ncurrent-context: double\nusers:\n- name: tester\n  user: {{}}\n",
            url = self.url
        )
    }

    /// Requests served, by (verb, resource); the resource of a subresource request is
    /// `plural/subresource`. Verbs: get, list, watch, create, update, patch, delete.
    pub fn counters(&self) -> BTreeMap<(String, String), u64> {
        self.shared.counters.lock().expect("counters").clone()
    }

    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.counters()
            .get(&(verb.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Create, update, patch and delete requests, on every resource.
    pub fn writes(&self) -> u64 {
        self.counters()
            .iter()
            .filter(|((verb, _), _)| {
                matches!(verb.as_str(), "create" | "update" | "patch" | "delete")
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn reset_counters(&self) {
        self.shared.counters.lock().expect("counters").clear();
    }

    /// Fails (or stalls) the next `count` requests.
    pub fn fail_next(&self, count: usize, fault: Fault) {
        let mut faults = self.shared.faults.lock().expect("faults");
        for _ in 0..count {
            faults.push_back(fault.clone());
        }
    }

    /// From now on, gives `injection.fault` to a random share of the matching requests.
    pub fn inject(&self, injection: Injection) {
        self.faults().inject(injection);
    }

    /// Stops every injection.
    pub fn clear_injections(&self) {
        self.faults().clear_injections();
    }

    /// How many faults injections gave, by (verb, resource).
    pub fn injected(&self) -> BTreeMap<(String, String), u64> {
        self.shared.injected.lock().expect("injected").clone()
    }

    /// A handle that injects faults and cuts watches from another task.
    pub fn faults(&self) -> Faults {
        Faults(self.shared.clone())
    }

    /// Ends every open watch stream, as a connection loss or an apiserver restart would.
    pub fn cut_watches(&self) {
        self.faults().cut_watches();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().expect("state").rv
    }

    pub async fn stop(mut self) {
        self.cut_watches();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where a request points.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(path: &str, state: &State) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && state
            .resource(&group, &version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (namespace, rest) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first()?.to_string();
    Some(Target {
        group,
        version,
        namespace,
        plural,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_pairs(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.faults.lock().expect("faults").pop_front();
    if let Some(fault) = fault
        && let Some(answer) = fault.answer().await
    {
        return answer;
    }
    match serve(&shared, &method, &uri, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn json_response(status: StatusCode, value: impl Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

async fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let path = uri.path();
    if let Some(response) = discovery(shared, path) {
        return Ok(response);
    }
    let query = query_pairs(uri);
    let (target, resource) = {
        let state = shared.state.lock().expect("state");
        let target = parse_target(path, &state).ok_or_else(|| ApiError::not_found("", "", path))?;
        let resource = state
            .resource(&target.group, &target.version, &target.plural)
            .cloned()
            .ok_or_else(|| {
                let mut error = ApiError::not_found(&target.group, &target.plural, "");
                error.message = "the server could not find the requested resource".into();
                error
            })?;
        (target, resource)
    };
    let status_sub = match target.subresource.as_deref() {
        None => false,
        Some("status") if resource.status_subresource => true,
        Some(other) => {
            return Err(ApiError::not_found(
                &resource.group,
                &format!("{}/{other}", resource.plural),
                target.name.as_deref().unwrap_or(""),
            ));
        }
    };
    let counted = if status_sub {
        format!("{}/status", resource.plural)
    } else {
        resource.plural.clone()
    };
    let namespace = if resource.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    if resource.namespaced
        && namespace.is_none()
        && (target.name.is_some() || *method != Method::GET)
    {
        return Err(ApiError::not_found(
            &resource.group,
            &resource.plural,
            target.name.as_deref().unwrap_or(""),
        ));
    }
    let verb = match (method, target.name.is_some()) {
        (&Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            "watch"
        }
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        _ => "other",
    };
    if let Some(fault) = shared.injection(verb, &counted)
        && let Some(answer) = fault.answer().await
    {
        return Ok(answer);
    }
    let ns = namespace.clone().unwrap_or_default();
    if verb != "other" {
        *shared
            .counters
            .lock()
            .expect("counters")
            .entry((verb.to_owned(), counted.clone()))
            .or_default() += 1;
    }
    let publish = |changes: Vec<Arc<Change>>| {
        for change in changes {
            let _ = shared.changes.send(change);
        }
    };
    match (verb, target.name.as_deref()) {
        ("watch", _) => watch_response(shared, &resource, namespace, &query),
        ("list", _) => list(shared, &resource, namespace.as_deref(), &query)
            .map(|v| json_response(StatusCode::OK, v)),
        ("get", Some(name)) => {
            let object = shared
                .state
                .lock()
                .expect("state")
                .get(&resource, &ns, name);
            object.map(|v| json_response(StatusCode::OK, &*v))
        }
        ("create", _) => {
            let object = parse_body(headers, body)?;
            let mut state = shared.state.lock().expect("state");
            let (created, changes) = state.create(&resource, &ns, object)?;
            // Published under the lock, so watchers see changes in resourceVersion order.
            publish(changes);
            drop(state);
            Ok(json_response(StatusCode::CREATED, &*created))
        }
        ("update", Some(name)) => {
            let object = parse_body(headers, body)?;
            let mut state = shared.state.lock().expect("state");
            let (updated, changes) = state.replace(&resource, &ns, name, object, status_sub)?;
            // Published under the lock, so watchers see changes in resourceVersion order.
            publish(changes);
            drop(state);
            Ok(json_response(StatusCode::OK, &*updated))
        }
        ("patch", Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            let kind = match content_type.as_str() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let patch = parse_any(body)?;
            let force = query.get("force").is_some_and(|f| f == "true");
            let mut state = shared.state.lock().expect("state");
            let (patched, changes) = state.patch(
                &resource,
                &ns,
                name,
                kind,
                &patch,
                status_sub,
                query.get("fieldManager").map(String::as_str),
                force,
            )?;
            // Published under the lock, so watchers see changes in resourceVersion order.
            publish(changes);
            drop(state);
            Ok(json_response(StatusCode::OK, &*patched))
        }
        ("delete", Some(name)) => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_any(body)?
            };
            let mut state = shared.state.lock().expect("state");
            let (deleted, changes) =
                state.delete(&resource, &ns, name, options.get("preconditions"))?;
            // Published under the lock, so watchers see changes in resourceVersion order.
            publish(changes);
            drop(state);
            Ok(json_response(StatusCode::OK, &*deleted))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {path}"
        ))),
    }
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("yaml") {
        return parse_any(body);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// JSON, or YAML (server-side apply bodies may be either).
fn parse_any(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

// --- selectors ------------------------------------------------------------------------------

enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn parse_label_selector(text: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut requirements = Vec::new();
    // Split on commas outside parentheses.
    let mut depth = 0;
    let mut current = String::new();
    let mut parts = Vec::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect()
        };
        if let Some((key, values)) = part.split_once(" notin ") {
            requirements.push(Requirement::NotIn(key.trim().into(), set(values)));
        } else if let Some((key, values)) = part.split_once(" in ") {
            requirements.push(Requirement::In(key.trim().into(), set(values)));
        } else if let Some((key, value)) = part.split_once("!=") {
            requirements.push(Requirement::NotEquals(
                key.trim().into(),
                value.trim().into(),
            ));
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            requirements.push(Requirement::Equals(key.trim().into(), value.trim().into()));
        } else if let Some(key) = part.strip_prefix('!') {
            requirements.push(Requirement::NotExists(key.trim().into()));
        } else if part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            requirements.push(Requirement::Exists(part.into()));
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: {part:?}"
            )));
        }
    }
    Ok(requirements)
}

fn matches_labels(object: &Value, requirements: &[Requirement]) -> bool {
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    requirements.iter().all(|requirement| match requirement {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, values) => get(k).is_some_and(|v| values.iter().any(|x| x == v)),
        Requirement::NotIn(k, values) => get(k).is_none_or(|v| !values.iter().any(|x| x == v)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

fn matches_fields(object: &Value, selector: &str) -> Result<bool, ApiError> {
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (f, false, v)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid field selector {part:?}"
            )));
        };
        let actual = match field.trim() {
            "metadata.name" => object.pointer("/metadata/name"),
            "metadata.namespace" => object.pointer("/metadata/namespace"),
            other => {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {other}"
                )));
            }
        }
        .and_then(Value::as_str)
        .unwrap_or("");
        if (actual == value.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

struct Filter {
    namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Option<String>,
}

impl Filter {
    fn new(
        namespace: Option<String>,
        query: &BTreeMap<String, String>,
    ) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace,
            labels: parse_label_selector(
                query.get("labelSelector").map(String::as_str).unwrap_or(""),
            )?,
            fields: query
                .get("fieldSelector")
                .filter(|f| !f.is_empty())
                .cloned(),
        })
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn matches(&self, namespace: &str, object: &Value) -> Result<bool, ApiError> {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return Ok(false);
        }
        if !matches_labels(object, &self.labels) {
            return Ok(false);
        }
        match &self.fields {
            Some(selector) => matches_fields(object, selector),
            None => Ok(true),
        }
    }
}

// --- list and watch -------------------------------------------------------------------------

fn list(
    shared: &Arc<Shared>,
    resource: &Resource,
    namespace: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Result<ListBody, ApiError> {
    let filter = Filter::new(namespace.map(str::to_owned), query)?;
    let limit: Option<usize> = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0);
    let state = shared.state.lock().expect("state");
    let (snapshot_rv, after) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let (rv, key) = decoded
                .split_once('|')
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            if rv < state.oldest_resumable() {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (rv, Some(key.to_owned()))
        }
        None => (state.rv, None),
    };
    let mut items = Vec::new();
    let mut next = None;
    for ((_, _, ns, name), object) in state.of_resource(resource, namespace) {
        let position = format!("{ns}/{name}");
        if after.as_ref().is_some_and(|a| &position <= a) {
            continue;
        }
        if !filter.matches(ns, object)? {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            next = Some(
                URL_SAFE_NO_PAD.encode(format!("{snapshot_rv}|{}", items_last_position(&items))),
            );
            break;
        }
        items.push((position, object.clone()));
    }
    let mut metadata = json!({ "resourceVersion": snapshot_rv.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    Ok(ListBody {
        api_version: resource.api_version(),
        kind: resource.list_kind.clone(),
        metadata,
        items: SharedItems(items.into_iter().map(|(_, o)| o).collect()),
    })
}

/// A list's answer. Its items are the stored objects themselves, serialized once the state's
/// lock is released.
#[derive(Serialize)]
struct ListBody {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: Value,
    items: SharedItems,
}

struct SharedItems(Vec<Arc<Value>>);

impl Serialize for SharedItems {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|item| &**item))
    }
}

fn items_last_position(items: &[(String, Arc<Value>)]) -> String {
    items.last().map(|(p, _)| p.clone()).unwrap_or_default()
}

fn watch_line(event: &str, object: &Value) -> Bytes {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        event: &'a str,
        object: &'a Value,
    }
    let mut line = serde_json::to_vec(&Line { event, object }).expect("events serialize");
    line.push(b'\n');
    Bytes::from(line)
}

fn watch_response(
    shared: &Arc<Shared>,
    resource: &Resource,
    namespace: Option<String>,
    query: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = Filter::new(namespace, query)?;
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let requested: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
        ),
    };
    let mut live = shared.changes.subscribe();
    let mut cut = shared.cut.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let mut initial = Vec::new();
    // Serialized once the state's lock is released.
    let mut added: Vec<Arc<Value>> = Vec::new();
    let start_rv = {
        let state = shared.state.lock().expect("state");
        match requested {
            Some(rv) if rv < state.oldest_resumable() => {
                let status = ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    state.oldest_resumable()
                ))
                .status_object();
                initial.push(watch_line("ERROR", &status));
                None
            }
            Some(rv) => {
                // The history is in resourceVersion order: resume where `rv` ends.
                let first = state.history.partition_point(|c| c.rv <= rv);
                for change in state.history.range(first..) {
                    if change.group == resource.group
                        && change.plural == resource.plural
                        && filter.matches(&change.namespace, &change.object)?
                    {
                        initial.push(change.line());
                    }
                }
                Some(state.rv)
            }
            None => {
                for ((_, _, ns, _), object) in state.of_resource(resource, filter.namespace()) {
                    if filter.matches(ns, object)? {
                        added.push(object.clone());
                    }
                }
                Some(state.rv)
            }
        }
    };
    let resource = resource.clone();
    let shared = shared.clone();
    initial.extend(added.iter().map(|object| watch_line("ADDED", object)));
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let Some(mut last_rv) = start_rv else {
            return;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(shared.bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = cut.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    // The last change this watch has seen (of any resource): never ahead of a
                    // change still on its way, so resuming from a bookmark misses nothing.
                    let bookmark = json!({
                        "apiVersion": resource.api_version(),
                        "kind": resource.kind,
                        "metadata": { "resourceVersion": last_rv.to_string() },
                    });
                    if tx.send(Ok(watch_line("BOOKMARK", &bookmark))).await.is_err() {
                        return;
                    }
                }
                change = live.recv() => {
                    let change = match change {
                        Ok(change) => change,
                        // Fell behind: end the stream; the client re-watches and resumes.
                        Err(_) => return,
                    };
                    if change.rv <= last_rv {
                        continue;
                    }
                    last_rv = change.rv;
                    if change.group != resource.group || change.plural != resource.plural {
                        continue;
                    }
                    if !filter.matches(&change.namespace, &change.object).unwrap_or(false) {
                        continue;
                    }
                    if tx.send(Ok(change.line())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// --- discovery ------------------------------------------------------------------------------

fn discovery(shared: &Arc<Shared>, path: &str) -> Option<Response> {
    let path = path.trim_end_matches('/');
    // Every request asks here first: only a discovery path takes the state's lock.
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    let discoverable = match path.split('/').nth(1) {
        Some("version") => segments == 1,
        Some("api") => segments <= 2,
        Some("apis") => segments <= 3,
        _ => false,
    };
    if !discoverable {
        return None;
    }
    let state = shared.state.lock().expect("state");
    let ok = |value: Value| Some(json_response(StatusCode::OK, value));
    match path {
        "/version" => ok(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-portal-operator-double",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "none", "compiler": "none", "platform": "linux/amd64",
        })),
        "/api" => ok(
            json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }),
        ),
        "/apis" => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for resource in state.resources.iter().filter(|r| !r.group.is_empty()) {
                let versions = groups.entry(&resource.group).or_default();
                if !versions.contains(&resource.version.as_str()) {
                    versions.push(&resource.version);
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(group, versions)| {
                    let entries: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
                        .collect();
                    json!({ "name": group, "versions": entries, "preferredVersion": entries[0] })
                })
                .collect();
            ok(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
        }
        _ => {
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (group, version) = match segments.as_slice() {
                ["api", version] => ("", *version),
                ["apis", group, version] => (*group, *version),
                ["apis", group] => {
                    let versions: Vec<Value> = state
                        .resources
                        .iter()
                        .filter(|r| r.group == *group)
                        .map(|r| json!({ "groupVersion": r.api_version(), "version": r.version }))
                        .collect();
                    if versions.is_empty() {
                        return None;
                    }
                    return ok(
                        json!({ "kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions[0] }),
                    );
                }
                _ => return None,
            };
            let resources: Vec<Value> = state
                .resources
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .flat_map(Resource::discovery_entry)
                .collect();
            if resources.is_empty() {
                return None;
            }
            let group_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            ok(
                json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
            )
        }
    }
}
