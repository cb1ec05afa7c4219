//! portal-operator: admin access to multi-tenant telephony admin portals, as code.
//!
//! - [`domain`]: the seeds' role model, access evaluation and validation (pure).
//! - [`portal`]: the reference portal server.
//! - [`cli`]: the command line of the `portal-operator` binary.
//! - `testing` (feature `testing`, tests only): the Kubernetes API server double.

#![forbid(unsafe_code)]

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
