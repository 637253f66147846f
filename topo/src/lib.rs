//! cairn-topo: the topology model of cairn and its etcd store.
//!
//! - [`engines`]: the enums naming backup engines, compression and stream modes.
//! - [`names`]: validation of keyspace, shard, cell, alias and backup names.
//! - [`records`]: the typed JSON records (Keyspace, Shard, Tablet, Health,
//!   BackupRecord, Job, Schedule).
//! - [`keys`]: the key layout of the contract.
//! - [`store`]: [`Topo`], the etcd store: CAS by version, list, read-modify-write.
//! - [`watch`]: watches that resume after errors and report compaction gaps.
//! - [`lease`]: leases with a keepalive loop that re-grants when the lease is lost.
//! - [`lock`]: shard locks and leader election with a fencing condition.
//! - [`testkit`]: a real etcd process on loopback for tests and examples.
//!
//! No MySQL and no backup code lives here.

pub mod engines;
pub mod error;
pub mod keys;
pub mod lease;
pub mod lock;
pub mod names;
pub mod records;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod typed;
pub mod watch;

pub use engines::{BackupMethod, CompressionEngine, StreamMode};
pub use error::TopoError;
pub use keys::Keys;
pub use lease::{LeaseHandle, LeaseState};
pub use lock::{Fence, Leadership, ShardLock};
pub use names::TabletAlias;
pub use records::*;
pub use store::{Topo, TopoConfig, Versioned};
pub use watch::{WatchEvent, WatchStream};
