//! Backups: where they are stored, what describes them, and how bytes move.
//!
//! - [`manifest`]: the MANIFEST document (Vitess field names), backup names and
//!   timestamps, the rule for file names inside a backup. Pure, no IO.
//! - [`storage`]: the [`storage::BackupStorage`] trait (object-store friendly,
//!   shared as `Arc<dyn BackupStorage>`) and its `file` backend
//!   [`storage::FileStorage`]: layout, permissions, MANIFEST-last, blobs.
//! - [`location`]: [`StorageConfig`], which backend and where, opened into a
//!   `dyn BackupStorage`.
//! - [`pipeline`]: the parallel compress+hash copy into storage and the verifying
//!   restore out of it; what makes backups fast and restores trustworthy.
//! - [`catalog`]: the backup records in topo and each shard's latest backup, kept
//!   in step with storage; the one way to remove a backup (record, then data).
//!   The one module here that talks to etcd.
//!
//! The engines (builtin, xtrabackup) sit on top of these and decide what to copy
//! and when; nothing here talks to mysqld or etcd.

pub mod builtin;
pub mod catalog;
pub mod engine;
pub mod location;
pub mod manifest;
pub mod pipeline;
pub mod storage;
pub mod xtrabackup;

pub use location::StorageConfig;
pub use manifest::{BackupMethod, CompressionEngine, FileEntry, Manifest};
pub use pipeline::{Compression, CopyOptions, Progress, SourceFile};
pub use storage::{BackupInfo, BackupStorage, BackupWriter, FileStorage, StorageError};
