//! Backup engines as the tablet agent sees them: which engine, what it needs, and
//! the two operations every engine has: take a backup of a mysqld, and restore a
//! backup into a staging directory that becomes a data directory.
//!
//! May call: the engines ([`super::builtin`], [`super::xtrabackup`]), their
//! parameters ([`super::params`]), storage and MANIFEST types, [`crate::mysql`].
//!
//! The agent owns the bracket around a backup (tablet type, replication, restarting
//! mysqld whatever happens); an engine only does its body.

use super::manifest::{BackupMethod, Manifest};
pub use super::params::{BackupParams, EngineConfig, RestoreParams};
pub use super::pipeline::Progress;
use super::storage::BackupStorage;
use super::{builtin, xtrabackup};
use crate::mysql::mysqld::Mysqld;

/// Whether the tablet leaves service (type BACKUP) while `method` runs.
pub fn drains(method: BackupMethod) -> bool {
    matches!(method, BackupMethod::Builtin)
}

/// Takes a backup with `method`. Builtin leaves mysqld shut down (the caller
/// restarts it); xtrabackup leaves it running. On error nothing complete is left in
/// storage.
pub async fn backup(
    method: BackupMethod,
    mysqld: &mut Mysqld,
    storage: &dyn BackupStorage,
    p: &BackupParams,
    cfg: &EngineConfig,
) -> anyhow::Result<Manifest> {
    match method {
        BackupMethod::Builtin => builtin::backup(mysqld, storage, p).await,
        BackupMethod::Xtrabackup => xtrabackup::backup(mysqld, storage, p, cfg).await,
    }
}

/// Restores the backup `p` names into `p.staging`, verifying every byte; on
/// success `staging` is a data directory mysqld can start on.
pub async fn restore_to_staging(p: RestoreParams<'_>) -> anyhow::Result<()> {
    match p.manifest.backup_method {
        BackupMethod::Builtin => builtin::restore(p).await,
        BackupMethod::Xtrabackup => xtrabackup::restore(p).await,
    }
}
