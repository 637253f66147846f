//! cairn: backups and seeded replicas for a sharded MariaDB/MySQL fleet,
//! coordinated through etcd.
//!
//! Module map. Layers point one way, each calling only the ones below it:
//!
//! ```text
//! cli  ->  tablet, coordinator  ->  backup  ->  mysql  ->  cairn-topo (crate)
//!                     \________________\__________\______->  common
//! ```
//!
//! - [`cli`]: the edge: clap argument model, one file per command family, output and
//!   exit codes; builds the typed configurations the layers below take.
//! - [`tablet`]: the tablet agent: registration and health, following the shard
//!   primary, the job runner, restore at start and in place.
//! - [`coordinator`]: the elected coordinator: scheduler, replica selection, job
//!   supervision, retention, catalog reconciliation, etcd snapshots, HTTP status.
//! - [`backup`]: backup engines, storage backends, the MANIFEST, the
//!   compression/hashing pipeline and the catalog of backups in etcd.
//! - [`mysql`]: the mysqld process and the SQL of each flavor.
//! - [`common`]: plumbing below everything: the usage error, shutdown signals,
//!   waiting with a deadline, durations, hostname.
//! - `testkit` (feature `testkit`, for tests, benchmarks and the demo only): real
//!   etcd and MariaDB processes on loopback.
//!
//! `tablet` and `coordinator` never import each other or `cli`. The topology model
//! and its etcd store live in the `cairn-topo` crate.

pub mod backup;
pub mod cli;
pub mod common;
pub mod coordinator;
pub mod mysql;
pub mod tablet;
#[cfg(feature = "testkit")]
pub mod testkit;
