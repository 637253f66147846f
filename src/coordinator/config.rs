//! [`CoordinatorConfig`]: everything a coordinator is told at start, resolved and
//! validated by the CLI from `cairn coordinator`'s flags.
//!
//! Plain data; may call `backup` (the storage it opens) and `common`.

use std::sync::Arc;
use std::time::Duration;

use crate::backup::encryption::Recipients;
use crate::backup::StorageConfig;

/// Settings of the coordinator (its flags).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Identity in the election and on the status page.
    pub id: String,
    /// Leadership lease TTL: a dead or frozen leader is replaced this fast.
    pub lease_ttl: Duration,
    /// How often storage and the catalog are compared.
    pub reconcile_interval: Duration,
    /// Replicas lagging more than this are not backed up.
    pub max_lag_seconds: u64,
    /// Shards of a keyspace-wide run start spread over this window.
    pub stagger_window: Duration,
    /// A job not taken within this long is failed (agent down).
    pub pending_timeout: Duration,
    /// A running job is failed past this.
    pub job_timeout: Duration,
    /// A running job whose tablet lost its Health is failed after this long.
    pub lost_health_grace: Duration,
    /// Attempts of one scheduled backup (first try included).
    pub max_attempts: u32,
    /// Wait before the first retry (doubled for each further one).
    pub retry_delay: Duration,
    /// Finished jobs are forgotten after this long.
    pub job_history: Duration,
    /// CANCELLED jobs, and manual jobs that failed before they started, are
    /// forgotten after this long (never later than `job_history`).
    pub cancelled_job_history: Duration,
    /// A stored schedule whose slots come closer together than this is refused
    /// (not run; noted on its record once).
    pub min_schedule_period: Duration,
    /// Incomplete backups older than this are removed by retention.
    pub incomplete_grace: Duration,
    /// `--topo-snapshot-cron`.
    pub snapshot_cron: Option<String>,
    /// `--topo-snapshot-keep`.
    pub snapshot_keep: u32,
    /// Backup storage (read, pruned, reconciled; snapshots under `_topo/`).
    pub storage: StorageConfig,
    /// `--backup-encryption-recipient(s-file)`: etcd snapshots stored under
    /// `_topo/` are age files to these (`None`: plaintext).
    pub encryption: Option<Arc<Recipients>>,
    /// HTTP port (/healthz, /metrics, /api/v1/status); 0 picks a free one.
    pub http_port: u16,
}
