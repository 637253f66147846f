//! cairn: backups and seeded replicas for a sharded MariaDB/MySQL fleet,
//! coordinated through etcd.
//!
//! Module map (each module owns one room and calls only downward):
//! - [`cli`]: the admin commands (vtctl-like) and the argument model of the binary.
//! - [`tablet`]: the tablet agent: mysqld lifecycle, registration and health,
//!   replication, job runner, restore at start.
//! - [`backup`]: backup engines, storage backends, the MANIFEST, and the
//!   compression/hashing pipeline.
//! - [`testkit`]: real etcd and MariaDB processes on loopback for tests, benchmarks
//!   and the local-cluster example.
//!
//! The topology model and its etcd store live in the `cairn-topo` crate.

pub mod backup;
pub mod cli;
pub mod coordinator;
pub mod tablet;
pub mod testkit;

pub mod util;
