//! cairn-topo: the topology model of cairn and its etcd store.
//!
//! Modules, each depending only on those above it (no import circles):
//!
//! - [`error`]: [`TopoError`], the outcomes callers branch on.
//! - [`engines`]: the enums naming backup engines, compression and stream modes.
//! - [`names`]: validation of keyspace, shard, cell, alias and backup names.
//! - [`keys`]: the key layout of the contract: building keys and parsing them back.
//! - [`records`]: the typed JSON records (Keyspace, Shard, Tablet, Health,
//!   BackupRecord, Job, Schedule).
//! - [`archive`]: a shard's binlog archive record (setting and state).
//! - [`retry`]: deadlines, backoffs and transient-error classification.
//! - [`codec`]: [`Versioned`] records and their JSON encoding.
//! - `explain`: clear, permanent errors for connection failures the operator
//!   must fix (TLS handshakes, logins, permissions).
//! - `tls_probe`: a one-off TLS handshake that learns why a server dropped us.
//! - `health`: member health checks that keep a multi-member client on the
//!   members that answer.
//! - [`conn`]: [`TopoConfig`], TLS/auth, connecting; [`Topo`] and its retried unary call.
//! - [`snapshot`]: etcd's maintenance snapshot as a [`SnapshotStream`] of chunks.
//! - [`txn`]: the conditional (CAS) transaction and [`Fence`], its leader condition.
//! - [`store`]: the typed store API: get, list, create, update, put, delete,
//!   read-modify-write, `create_if_absent`, `delete_if_exists`.
//! - [`fenced`]: [`Fenced`], the same writes guarded by a fence.
//! - [`watch`]: raw watches that resume after errors and report compaction gaps.
//! - [`record_watch`]: typed watches ([`RecordWatch`]) and list-and-watch.
//! - [`lease`]: leases with a keepalive loop that re-grants when the lease is lost.
//! - [`lock`]: shard locks and leader election.
//! - [`typed`]: typed reads of the contract's records (tablets with health, shards...).
//! - [`fault`]: ambiguous writes (applied, then reported as a timeout) for tests
//!   (only with the `fault-injection` feature).
//! - [`testkit`]: a real etcd process on loopback for tests and examples
//!   (only with the `testkit` feature).
//!
//! No MySQL and no backup code lives here.

pub mod archive;
pub mod codec;
pub mod conn;
pub mod engines;
pub mod error;
mod explain;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod fenced;
mod health;
pub mod keys;
pub mod lease;
pub mod lock;
pub mod names;
pub mod record_watch;
pub mod records;
pub mod retry;
pub mod snapshot;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tls_probe;
pub mod txn;
pub mod typed;
pub mod watch;

pub use archive::{ArchiveGap, ArchiveRecord, ArchiveState};
pub use codec::Versioned;
pub use conn::{Topo, TopoConfig};
pub use engines::{BackupMethod, CompressionEngine, StreamMode};
pub use error::TopoError;
pub use fenced::Fenced;
pub use keys::{Keys, TopoKey};
pub use lease::{LeaseHandle, LeaseState};
pub use lock::{Leadership, ShardLock};
pub use names::TabletAlias;
pub use record_watch::{RecordEvent, RecordWatch};
pub use records::*;
pub use snapshot::SnapshotStream;
pub use txn::Fence;
pub use watch::{WatchEvent, WatchStream};
