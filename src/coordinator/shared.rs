//! [`Shared`]: the state the coordinator's leader loop, its passes and the HTTP
//! endpoints share. Plain data and handles; no behaviour, so every pass can import
//! it without importing the loop that runs the passes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use cairn_topo::Topo;

use super::cache::Cache;
use super::config::CoordinatorConfig;
use super::metrics::CoordinatorMetrics;
use super::schedule::skip::SlotMemo;
use crate::backup::storage::BackupStorage;

/// State shared by the loops and the HTTP endpoints.
pub struct Shared {
    /// The topology store.
    pub topo: Topo,
    /// Flags.
    pub cfg: CoordinatorConfig,
    /// Watched picture of the topology.
    pub cache: Cache,
    /// Backup storage (read, pruned, reconciled).
    pub storage: Arc<dyn BackupStorage>,
    /// Whether this process leads now.
    pub is_leader: AtomicBool,
    /// Who leads, as far as we know.
    pub leader_id: Mutex<Option<String>>,
    /// Prometheus metrics.
    pub metrics: Arc<CoordinatorMetrics>,
    /// Notified when the cache changes.
    pub changed: Arc<tokio::sync::Notify>,
    /// Successful jobs whose retention already ran (in memory: rerunning is harmless).
    pub(super) retention_done: Mutex<HashSet<String>>,
    /// Jobs whose outcome is already counted in the metrics.
    pub(super) counted: Mutex<HashSet<String>>,
    /// Schedule slots whose shards are still being settled (started or given
    /// up), by schedule name.
    pub(super) slots_in_progress: Mutex<HashMap<String, SlotMemo>>,
    /// Schedules the scheduler refuses, by name, with the reason already logged,
    /// counted and noted on the record (once per refusal, not on every pass).
    pub(super) refused: Mutex<HashMap<String, String>>,
    /// The minimum period check of each cron seen, by cron text: `Some(reason)`
    /// when it fires more often than `--min-schedule-period` allows. Computed
    /// once per cron (it scans up to thousands of slots).
    pub(super) period_checks: Mutex<HashMap<String, Option<String>>>,
    /// Each shard's recoverable window and gaps, and the archive listings
    /// they come from (the recoverability pass; read by `/api/v1/status`).
    pub(super) recoverability: Mutex<super::recoverable::RecoverabilityMemo>,
}
