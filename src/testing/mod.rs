//! Test infrastructure, compiled only with the `testing` feature (the test suite enables it;
//! release builds never do).
//!
//! [`apiserver`] is an in-memory Kubernetes API server double that `kube::Client` talks to over
//! real HTTP on 127.0.0.1.

pub mod apiserver;
