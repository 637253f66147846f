//! Where backups live: [`StorageConfig`], built by the CLI from the storage flags and
//! opened here into the backend the tablets, the coordinator and the admin commands
//! share. Adding a backend means a variant here and a module beside `storage`.
//!
//! May call: [`super::storage`] (and, in builds with the `fault-injection` feature,
//! its fault wrapper); nothing above backup.

use std::path::PathBuf;
use std::sync::Arc;

use super::storage::{BackupStorage, FileStorage, S3Config, S3Storage, StorageResult};

/// The storage flags, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// No storage configured: tablets run, but their backup jobs fail with a clear
    /// reason.
    None,
    /// `--backup-storage-implementation file --file-backup-storage-root DIR`.
    File {
        /// The root directory of the layout `<root>/<keyspace>/<shard>/<backup>/`.
        root: PathBuf,
    },
    /// `--backup-storage-implementation s3` and the `--s3-backup-*` flags.
    S3(S3Config),
}

impl StorageConfig {
    /// Whether any storage is configured.
    pub fn is_configured(&self) -> bool {
        !matches!(self, StorageConfig::None)
    }

    /// The backend, or `None` when nothing is configured. Fails only on settings
    /// the backend refuses (nothing is sent or written here).
    pub fn open(&self) -> StorageResult<Option<Arc<dyn BackupStorage>>> {
        Ok(match self {
            StorageConfig::None => None,
            StorageConfig::File { root } => Some(with_faults(FileStorage::new(root.clone()))),
            StorageConfig::S3(cfg) => Some(with_faults(S3Storage::open(cfg.clone())?)),
        })
    }

    /// Where the backups are, for messages: the root directory or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::None => "no backup storage".into(),
            StorageConfig::File { root } => root.display().to_string(),
            StorageConfig::S3(cfg) => cfg.url(),
        }
    }
}

/// Without the `fault-injection` feature (every real build): the backend as is.
#[cfg(not(feature = "fault-injection"))]
fn with_faults<S: BackupStorage + 'static>(storage: S) -> Arc<dyn BackupStorage> {
    Arc::new(storage)
}

/// Fault injection for integration tests, compiled only with the `fault-injection`
/// feature (never in a release build): `CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES=N`
/// makes storage writes fail after N bytes; `CAIRN_FAULT_STORAGE_BYTES_PER_SEC=N`
/// slows them to N bytes/s. Without either, the backend as is.
#[cfg(feature = "fault-injection")]
fn with_faults<S: BackupStorage + 'static>(storage: S) -> Arc<dyn BackupStorage> {
    use super::storage::{FaultConfig, FaultyStorage};
    let faults = FaultConfig::from_env();
    if faults.is_empty() {
        return Arc::new(storage);
    }
    if let Some(n) = faults.fail_after_bytes {
        tracing::warn!(
            bytes = n,
            "fault injection: storage writes fail after this many bytes"
        );
    }
    if let Some(n) = faults.bytes_per_sec {
        tracing::warn!(
            bytes_per_sec = n,
            "fault injection: storage writes are throttled"
        );
    }
    Arc::new(FaultyStorage::new(storage, faults))
}
