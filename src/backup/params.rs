//! What an engine is given: the tablet's engine settings ([`EngineConfig`]), one
//! backup to take ([`BackupParams`]) and one restore to make ([`RestoreParams`]).
//! Plain data shared by the dispatcher ([`super::engine`]) and the engines
//! ([`super::builtin`], [`super::xtrabackup`]), which import it from here so that
//! none of them imports another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_topo::{StreamMode, TabletAlias};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::encryption::{Identities, Recipients};
use super::manifest::{BackupMethod, Manifest};
use super::pipeline::{Compression, CopyOptions, Progress, StoredBackup};
use super::storage::BackupStorage;

/// Engine settings of a tablet (its flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `--backup-engine-implementation`.
    pub default_engine: BackupMethod,
    /// `--compression-engine` as pipeline settings.
    pub compression: Compression,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--xtrabackup-user` (default: root over the socket).
    pub xtrabackup_user: Option<String>,
    /// `--xtrabackup-stream-mode`.
    pub xtrabackup_stream_mode: Option<StreamMode>,
    /// `--xtrabackup-root-path`.
    pub xtrabackup_root_path: Option<PathBuf>,
    /// Where engine tools write their logs and scratch files (the tablet dir).
    pub work_dir: PathBuf,
    /// `--allow-other-shard`: restores may use a backup whose MANIFEST names another
    /// keyspace or shard than the tablet's.
    pub allow_other_shard: bool,
    /// `--backup-encryption-recipient(s-file)`: backups are age files to these.
    pub encryption: Option<Arc<Recipients>>,
    /// `--backup-encryption-identity-file`: what decrypts encrypted backups on
    /// restore (plaintext ones need none).
    pub identities: Option<Arc<Identities>>,
}

/// One backup to take.
#[derive(Debug, Clone)]
pub struct BackupParams {
    /// Where it belongs.
    pub keyspace: String,
    pub shard: String,
    /// Who takes it.
    pub alias: TabletAlias,
    /// Host of the tablet, for the MANIFEST.
    pub hostname: String,
    /// `YYYY-MM-DD.HHMMSS.<alias>`.
    pub name: String,
    /// The name's timestamp.
    pub backup_time: DateTime<Utc>,
    /// The schedule whose job this is (`None` for a manual backup): recorded in
    /// the MANIFEST, so that only that schedule's retention rule prunes it.
    pub schedule: Option<String>,
    /// Copy settings of this job.
    pub copy: CopyOptions,
    /// Shared with the job's progress reporter.
    pub progress: Arc<Progress>,
    /// Fired when the agent stops.
    pub cancel: CancellationToken,
}

impl BackupParams {
    /// The MANIFEST of this backup, finished now, with its file entries set; the
    /// engines fill in what differs between them.
    pub fn manifest(
        &self,
        method: BackupMethod,
        position: String,
        mysql_version: String,
        flavor: &str,
        entries: Vec<super::manifest::FileEntry>,
    ) -> Manifest {
        let mut m = Manifest {
            backup_name: self.name.clone(),
            backup_method: method,
            position,
            purged_position: String::new(),
            backup_time: self.backup_time,
            finished_time: Utc::now(),
            server_uuid: String::new(),
            tablet_alias: self.alias.to_string(),
            hostname: self.hostname.clone(),
            keyspace: self.keyspace.clone(),
            shard: self.shard.clone(),
            schedule: self.schedule.clone(),
            mysql_version,
            upgrade_safe: false,
            compression_engine: self.copy.compression.engine(),
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: flavor.to_string(),
            format_version: super::manifest::FORMAT_VERSION_PLAIN,
            incremental: Default::default(),
        };
        m.set_file_entries(entries);
        if let Some(r) = &self.copy.encryption {
            m.set_encryption(r.names());
        }
        m
    }
}

/// One restore to run: `manifest`'s backup, found in storage under
/// `keyspace/shard` (where it lies now, which for a backup copied in from
/// elsewhere may differ from what its MANIFEST says), into `staging`.
pub struct RestoreParams<'a> {
    /// The storage holding the backup.
    pub storage: &'a dyn BackupStorage,
    /// The keyspace directory it lies under.
    pub keyspace: &'a str,
    /// The shard directory it lies under.
    pub shard: &'a str,
    /// Its MANIFEST (its name is the backup's directory name).
    pub manifest: &'a Manifest,
    /// Where the data directory is built; created, must not exist.
    pub staging: &'a Path,
    /// The tablet's engine settings (concurrency, tool paths, work dir).
    pub cfg: &'a EngineConfig,
    /// The version of the restoring tablet's mysqld (a MANIFEST from a newer server
    /// is refused).
    pub server_version: &'a str,
    /// Shared with the job's progress reporter.
    pub progress: Arc<Progress>,
    /// Fired when the agent stops.
    pub cancel: CancellationToken,
}

impl<'a> RestoreParams<'a> {
    /// The backup to read, as the pipeline takes it.
    pub fn stored(&self) -> StoredBackup<'a> {
        StoredBackup {
            storage: self.storage,
            keyspace: self.keyspace,
            shard: self.shard,
            name: &self.manifest.backup_name,
            manifest: self.manifest,
            identities: self.cfg.identities.as_deref(),
        }
    }
}
