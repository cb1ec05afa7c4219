//! Events published off the reconcile's path. A reconcile hands its Event to a shard's queue and
//! goes on; the shard's task publishes them in order through its own `Recorder`. An object always
//! goes to the same shard, so its Events keep their order and repeated ones aggregate into a
//! series. The queues are bounded: when the API server falls behind, a reconcile waits for room
//! rather than an Event being dropped.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::{mpsc, oneshot};

/// Shards of objects, each with its own recorder and publishing task. kube-runtime's `Recorder`
/// sweeps its whole cache of recent events under a write lock on every publish; one per shard
/// keeps that cache small and lets the shards publish side by side.
const SHARDS: usize = 16;
/// Events waiting per shard before a reconcile has to wait for room.
const QUEUED: usize = 1024;

enum Job {
    Publish(Box<(Event, ObjectReference)>),
    /// Answered once every Event queued before it is published.
    Flush(oneshot::Sender<()>),
}

/// The queues of the publishing tasks; the tasks end when this is dropped.
pub struct Events {
    shards: Vec<mpsc::Sender<Job>>,
}

impl Events {
    /// Starts the publishing tasks on the current runtime.
    pub fn start(client: &kube::Client, reporter: &Reporter) -> Events {
        let shards = (0..SHARDS)
            .map(|_| {
                let (queue, jobs) = mpsc::channel(QUEUED);
                tokio::spawn(publishing(
                    Recorder::new(client.clone(), reporter.clone()),
                    jobs,
                ));
                queue
            })
            .collect();
        Events { shards }
    }

    /// Queues `event` about `reference`.
    pub async fn publish(&self, event: Event, reference: ObjectReference) {
        let shard = self.shard(&reference);
        if shard
            .send(Job::Publish(Box::new((event, reference))))
            .await
            .is_err()
        {
            tracing::debug!("an event after the publisher stopped");
        }
    }

    /// Waits (at most `limit`) until every Event queued so far is published.
    pub async fn flushed(&self, limit: Duration) {
        let acks = self.shards.iter().map(|shard| async move {
            let (ack, done) = oneshot::channel();
            if shard.send(Job::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        });
        if tokio::time::timeout(limit, futures::future::join_all(acks))
            .await
            .is_err()
        {
            tracing::warn!(?limit, "events still unpublished at shutdown");
        }
    }

    fn shard(&self, reference: &ObjectReference) -> &mpsc::Sender<Job> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        reference.uid.hash(&mut hasher);
        reference.namespace.hash(&mut hasher);
        reference.name.hash(&mut hasher);
        &self.shards[(hasher.finish() as usize) % self.shards.len()]
    }
}

/// Publishes a shard's Events in order. A failure to publish is logged, not fatal.
async fn publishing(recorder: Recorder, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Publish(job) => {
                let (event, reference) = *job;
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %error, "publish an event");
                }
            }
            Job::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}
