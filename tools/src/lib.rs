//! Keel's deployment and measurement tooling.
