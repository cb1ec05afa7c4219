//! The operator's Prometheus metrics: reconciles, errors by category, durations, portal
//! requests by outcome, the change feed's lag, and resyncs.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    outcome: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    portal_requests: Family<RequestLabels, Counter>,
    feed_events: Counter,
    feed_events_unreadable: Counter,
    feed_lag: Gauge<f64, AtomicU64>,
    resyncs: Counter,
    resync_triggers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portal_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let portal_requests = Family::<RequestLabels, Counter>::default();
        let feed_events = Counter::default();
        let feed_events_unreadable = Counter::default();
        let feed_lag = Gauge::<f64, AtomicU64>::default();
        let resyncs = Counter::default();
        let resync_triggers = Counter::default();
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by kind and error category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile, by kind",
            durations.clone(),
        );
        registry.register(
            "portal_requests",
            "Requests to the portal, by method and outcome (ok, refused, transient)",
            portal_requests.clone(),
        );
        registry.register(
            "feed_events",
            "Change-feed events received from the portal",
            feed_events.clone(),
        );
        registry.register(
            "feed_events_unreadable",
            "Change-feed events skipped because they could not be read",
            feed_events_unreadable.clone(),
        );
        registry.register(
            "feed_lag_seconds",
            "Age of the last change-feed event when it arrived",
            feed_lag.clone(),
        );
        registry.register("resyncs", "Bulk resyncs completed", resyncs.clone());
        registry.register(
            "resync_triggers",
            "Objects a resync found out of line and reconciled",
            resync_triggers.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            durations,
            portal_requests,
            feed_events,
            feed_events_unreadable,
            feed_lag,
            resyncs,
            resync_triggers,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// How many reconciles of `kind` have run.
    pub fn reconciles(&self, kind: &str) -> u64 {
        self.reconciles
            .get_or_create(&KindLabels { kind: kind.into() })
            .get()
    }

    pub fn error(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                category: category.into(),
            })
            .inc();
    }

    pub fn portal_request(&self, method: &str, outcome: &str) {
        self.portal_requests
            .get_or_create(&RequestLabels {
                method: method.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn feed_event(&self, lag: Duration) {
        self.feed_events.inc();
        self.feed_lag.set(lag.as_secs_f64());
    }

    /// Counts a skipped event; how many have been skipped so far.
    pub fn feed_event_unreadable(&self) -> u64 {
        self.feed_events_unreadable.inc() + 1
    }

    pub fn resynced(&self, triggered: u64) {
        self.resyncs.inc();
        self.resync_triggers.inc_by(triggered);
    }

    /// Completed resyncs so far.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.get()
    }

    /// Objects resyncs have found out of line so far.
    pub fn resync_triggers(&self) -> u64 {
        self.resync_triggers.get()
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode to a string");
        text
    }
}
