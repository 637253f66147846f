//! Backups: where they are stored, what describes them, how bytes move, and the
//! engines that take and restore them. This layer may call only [`crate::mysql`],
//! [`crate::common`] and `cairn-topo`; the tablet agent, the coordinator and the
//! CLI call it, never the other way round.
//!
//! - [`manifest`]: the MANIFEST document (Vitess field names), backup names and
//!   timestamps, the rule for file names inside a backup. Pure, no IO.
//! - [`storage`]: the [`storage::BackupStorage`] trait (object-store friendly,
//!   shared as `Arc<dyn BackupStorage>`), its errors and name rules, and its
//!   backends: `file` ([`storage::FileStorage`]: layout, permissions,
//!   MANIFEST-last, blobs) and, in test builds only, the fault-injecting wrapper.
//! - [`encryption`]: encryption at rest with age: recipients and identities
//!   from the flags, whether identities can open a backup, the streaming
//!   encryptor/decryptor the pipeline and the etcd snapshots use.
//! - [`location`]: [`StorageConfig`], which backend and where, opened into a
//!   `dyn BackupStorage`.
//! - [`pipeline`]: the parallel compress+hash copy into storage and the verifying
//!   restore out of it (`encode`, `backup`, `verify` with the one
//!   [`pipeline::VerifiedReader`], `restore`); what makes backups fast and
//!   restores trustworthy.
//! - [`engine`]: the engines as the tablet agent sees them: which engine, its
//!   settings, [`engine::BackupParams`] / [`engine::RestoreParams`], backup and
//!   restore-to-staging dispatched to the engine.
//! - [`params`]: what an engine is given: [`params::EngineConfig`],
//!   [`params::BackupParams`], [`params::RestoreParams`].
//! - [`builtin`]: the builtin engine: mysqld shut down, the data directory copied
//!   file by file.
//! - [`external`]: data a data directory only points to (symlinks, InnoDB
//!   `.isl` link files) and each engine's rule about it: refused, never skipped.
//! - [`xtrabackup`]: the xtrabackup engine: `mariabackup --stream` piped through
//!   the pipeline while mysqld serves; restore through `mbstream -x` and
//!   `--prepare`.
//! - [`incremental`]: incremental backups (Vitess's `--incremental-from-pos`):
//!   the server's closed binary logs from a position, stored through the
//!   pipeline as a backup whose MANIFEST says `Incremental`; mysqld keeps serving.
//! - [`pitr`]: point-in-time restores, the pure half: targets, the chain of a
//!   full backup and incrementals that reaches one, the transactions to apply.
//! - [`binlog_archive`]: archived binlog segments under `_binlog/<ks>/<shard>/`:
//!   their names (source file, byte range, GTIDs, times), lookups by GTID and
//!   time, resume point, gaps; encoded like backups (compression, age).
//! - [`archive_compact`]: merging runs of old small segments into bigger ones
//!   (written and checked before the small ones go), and the one-per-range
//!   choice readers make while both exist.
//! - [`catalog`]: the backup records in topo and each shard's latest backup, kept
//!   in step with storage; the one way to remove a backup (record, then data).
//!   The one module here that talks to etcd.
//! - [`drill`]: restore drills, the pure half: the disk a drill needs, its timed
//!   stages, its outcome as the backup's record reads it.
//! - [`verify`]: checking stored backups without restoring them or a key (every
//!   object's size and hash, archived segments, the chains of incrementals and
//!   segments from each full backup), OK / WARNING / FAILURE; `cairn verify`.
//!
//! The engines sit on top of storage and the pipeline and decide what to copy and
//! when; only they talk to mysqld, and only the catalog talks to etcd.

pub mod archive_compact;
pub mod binlog_archive;
pub mod builtin;
pub mod catalog;
pub mod drill;
pub mod encryption;
pub mod engine;
pub mod external;
pub mod incremental;
pub mod location;
pub mod manifest;
pub mod params;
pub mod pipeline;
pub mod pitr;
pub mod storage;
pub mod verify;
pub mod xtrabackup;

pub use location::StorageConfig;
pub use manifest::{BackupMethod, CompressionEngine, FileEntry, Manifest};
pub use pipeline::{Compression, CopyOptions, Progress, SourceFile};
pub use storage::{
    BackupInfo, BackupState, BackupStorage, BackupWriter, FileStorage, StorageError,
    StorageResultExt,
};
