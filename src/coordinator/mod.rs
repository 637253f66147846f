//! The cluster-wide coordinator: election, scheduler, replica selection, job
//! supervision, retention, catalog reconciliation, etcd snapshots, HTTP status.
//!
//! - [`select`]: which tablet of a shard to back up (pure, shared with `backup-shard`).

pub mod cache;
pub mod config;
pub mod etcd_snapshot;
pub mod http;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod select;
pub mod supervise;
