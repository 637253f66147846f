//! Where backups live: [`StorageConfig`], built by the CLI from the storage flags and
//! opened here into the backend the tablets, the coordinator and the admin commands
//! share. Adding a backend means a variant here and a module beside `storage`.

use std::path::PathBuf;
use std::sync::Arc;

use super::storage::{BackupStorage, FileStorage};

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
}

impl StorageConfig {
    /// Whether any storage is configured.
    pub fn is_configured(&self) -> bool {
        !matches!(self, StorageConfig::None)
    }

    /// The backend, or `None` when nothing is configured.
    pub fn open(&self) -> Option<Arc<dyn BackupStorage>> {
        match self {
            StorageConfig::None => None,
            StorageConfig::File { root } => {
                let storage = FileStorage::new(root.clone());
                #[cfg(feature = "fault-injection")]
                let storage = with_faults(storage);
                Some(Arc::new(storage))
            }
        }
    }
}

/// Fault injection for integration tests, compiled only with the `fault-injection`
/// feature (never in a release build): `CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES=N`
/// makes storage writes fail after N bytes; `CAIRN_FAULT_STORAGE_BYTES_PER_SEC=N`
/// slows them to N bytes/s.
#[cfg(feature = "fault-injection")]
fn with_faults(mut storage: FileStorage) -> FileStorage {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = var("CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES") {
        tracing::warn!(
            bytes = n,
            "fault injection: storage writes fail after this many bytes"
        );
        storage = storage.with_fail_after_bytes(n);
    }
    if let Some(n) = var("CAIRN_FAULT_STORAGE_BYTES_PER_SEC") {
        tracing::warn!(
            bytes_per_sec = n,
            "fault injection: storage writes are throttled"
        );
        storage = storage.with_write_throttle(n);
    }
    storage
}
