//! portal-operator: admin access to multi-tenant telephony admin portals, as code.
//!
//! - [`domain`]: the seeds' role model, access evaluation and validation (pure).
//! - [`api`]: the portal API contract: request and response bodies, problem and change-feed
//!   types, external references, timestamps. Depends on `domain` only.
//! - [`portal`]: the reference portal server, a black box behind a small facade.
//! - [`portal_client`]: the operator's view of a portal: the `PortalApi` trait and its HTTP client.
//! - [`crd`]: the custom resource types (and their admission rules).
//! - [`reconcile`]: the pure plan of each kind, its `Kind` impl (observe, execute), and the one
//!   converge/cleanup driver both hosts run.
//! - [`controller`]: the operator (`portal-operator run`): the cluster as the driver's host, one
//!   controller registration per kind, the change feed, the resync, metrics, leader election.
//! - [`local`]: `apply` / `diff` / `status`: a folder of manifests as the driver's host.
//! - [`cli`]: the command line of the `portal-operator` binary.
//! - `testing` (feature `testing`, tests only): the Kubernetes API server double.

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod domain;
pub mod local;
pub mod portal;
pub mod portal_client;
pub mod reconcile;
#[cfg(feature = "testing")]
pub mod testing;
