//! The cluster-wide coordinator: election, scheduler, replica selection, job
//! supervision, retention, catalog reconciliation, etcd snapshots, HTTP status.
//!
//! - [`select`]: which tablet of a shard to back up (pure, shared with `backup-shard`).
//! - [`prune`]: retention carried out, by the leader after each scheduled backup
//!   and by `schedule prune`, through the backup catalog.
//! - [`reconcile`]: the leader's catalog reconciler (topo's records follow storage).

pub mod cache;
pub mod config;
pub mod http;
pub mod prune;
pub mod reconcile;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod select;
pub mod snapshot;
pub mod supervise;
