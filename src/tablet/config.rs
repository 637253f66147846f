//! [`AgentConfig`]: everything a tablet agent is told at start, resolved and
//! validated by the CLI from `cairn tablet`'s flags. The agent takes this, never the
//! flags themselves. Plain data; refers only to `backup`'s engine and storage
//! settings and `cairn-topo`'s names.

use std::path::PathBuf;
use std::time::Duration;

use cairn_topo::{TabletAlias, TabletType};

use crate::backup::engine::EngineConfig;
use crate::backup::StorageConfig;

/// Settings of one agent, resolved from its flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The tablet's identity.
    pub alias: TabletAlias,
    /// Keyspace and shard it serves.
    pub keyspace: String,
    pub shard: String,
    /// Type to take when not primary and not busy.
    pub base_type: TabletType,
    /// mysqld's directory (data, socket, logs).
    pub tablet_dir: PathBuf,
    /// mysqld's TCP port and address.
    pub mysql_port: u16,
    pub mysql_bind_address: String,
    /// Hostname published for replicas to connect to.
    pub hostname: String,
    /// Replication credentials (the password never goes to topo or logs).
    pub repl_user: String,
    pub repl_password: String,
    /// Lease TTL of Health.
    pub health_ttl: Duration,
    /// How often Health is written and roles are reconciled.
    pub health_interval: Duration,
    /// A running job's progress is written into its record at most this often
    /// (and once more when it ends).
    pub job_progress_interval: Duration,
    /// InnoDB buffer pool size for mysqld.
    pub innodb_buffer_pool_size: String,
    /// Backup engine settings (flags).
    pub backup: EngineConfig,
    /// `--restore-from-backup`.
    pub restore_from_backup: bool,
    /// `--wait-for-backup-interval`.
    pub wait_for_backup_interval: Duration,
    /// `--restore-from-backup-ts`.
    pub restore_from_backup_ts: Option<String>,
    /// `--restore-to-pos` / `--restore-to-timestamp` (with `--restore-from-backup`):
    /// restore to that point and stay DRAINED.
    pub restore_to: Option<crate::backup::pitr::RestoreTarget>,
    /// Backup storage (`None` when not configured).
    pub storage: StorageConfig,
    /// The agent's HTTP port; 0 picks a free one.
    pub http_port: u16,
}
