//! The coordinator's Prometheus metrics ([`CoordinatorMetrics`]): backups
//! succeeded and failed, seconds since each shard's latest backup, job durations,
//! bytes backed up, leadership, unreadable backups per shard (as the catalog
//! reconciler last saw them), the items a leader pass skipped and the shards of
//! schedule slots given up. Updated by the
//! passes and refreshed from the cache; rendered by [`super::http`]. The
//! recoverability gauges (per shard: backup ages, drills, the shard's light; the
//! oldest running job) live in `metrics_recovery.rs`, set from
//! [`super::recoverability`].

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use cairn_topo::{Job, JobState};
use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::cache::Cache;

#[path = "metrics_recovery.rs"]
pub mod recovery;

/// Labels of per-shard series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// Keyspace of the shard.
    pub keyspace: String,
    /// Shard name.
    pub shard: String,
}

/// Labels of the per-pass series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabels {
    /// The leader pass (`retention`, `reconcile`).
    pub pass: String,
}

/// A backup whose MANIFEST is present but cannot be read, parsed or restored,
/// as the reconciler last listed it (also in `/api/v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableBackup {
    /// Keyspace of the shard.
    pub keyspace: String,
    /// Shard name.
    pub shard: String,
    /// The backup's name.
    pub name: String,
    /// Why it is unreadable.
    pub error: String,
}

/// What the coordinator exposes.
pub struct CoordinatorMetrics {
    /// 1 while this process leads.
    pub is_leader: Gauge,
    /// Backups that succeeded, per shard.
    pub backups_succeeded: Family<ShardLabels, Counter>,
    /// Backups that failed, per shard.
    pub backups_failed: Family<ShardLabels, Counter>,
    /// Seconds since the shard's latest complete backup.
    pub seconds_since_last_backup: Family<ShardLabels, Gauge>,
    /// Duration of finished jobs, seconds.
    pub job_duration_seconds: Histogram,
    /// Bytes stored by successful backups (from the catalog).
    pub bytes_backed_up: Counter,
    /// etcd snapshots taken.
    pub snapshots: Counter,
    /// Backups with an unreadable MANIFEST, per shard (kept, never restored).
    pub unreadable_backups: Family<ShardLabels, Gauge>,
    /// Items (a shard, a job) a leader pass logged and skipped, per pass.
    pub pass_items_skipped: Family<PassLabels, Counter>,
    /// Shards of schedule slots given up (no eligible tablet until the give-up
    /// time, or the shard's previous backup still running), per shard.
    pub scheduled_runs_skipped: Family<ShardLabels, Counter>,
    /// The loss window of each archived shard: seconds of the primary's
    /// transactions not yet in the binlog archive (0 when all are).
    pub archive_loss_window_seconds: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// Per shard: backup ages, drills, the shard's light; the oldest running job.
    pub recovery: recovery::RecoveryMetrics,
    /// 1 while an archived shard's archive has a gap (a segment missing from
    /// storage, GTIDs no segment or backup holds), else 0.
    pub archive_gap: Family<ShardLabels, Gauge>,
    /// Seconds from the oldest complete full backup to the newest archived
    /// transaction (or backup): how far back a point-in-time restore reaches.
    pub recoverable_window_seconds: Family<ShardLabels, Gauge<f64, AtomicU64>>,
    /// The unreadable backups themselves, per shard, for `/api/v1/status`.
    unreadable: Mutex<BTreeMap<(String, String), Vec<UnreadableBackup>>>,
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        Self {
            is_leader: Gauge::default(),
            backups_succeeded: Family::default(),
            backups_failed: Family::default(),
            seconds_since_last_backup: Family::default(),
            job_duration_seconds: Histogram::new([
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
            ]),
            bytes_backed_up: Counter::default(),
            snapshots: Counter::default(),
            unreadable_backups: Family::default(),
            pass_items_skipped: Family::default(),
            scheduled_runs_skipped: Family::default(),
            archive_loss_window_seconds: Family::default(),
            recovery: recovery::RecoveryMetrics::default(),
            archive_gap: Family::default(),
            recoverable_window_seconds: Family::default(),
            unreadable: Mutex::default(),
        }
    }
}

impl CoordinatorMetrics {
    pub(super) fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("cairn_coordinator");
        r.register(
            "is_leader",
            "1 while this coordinator leads",
            self.is_leader.clone(),
        );
        r.register(
            "backups_succeeded",
            "Backups that succeeded",
            self.backups_succeeded.clone(),
        );
        r.register(
            "backups_failed",
            "Backups that failed",
            self.backups_failed.clone(),
        );
        r.register(
            "seconds_since_last_backup",
            "Seconds since the shard's latest complete backup",
            self.seconds_since_last_backup.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Duration of finished jobs",
            self.job_duration_seconds.clone(),
        );
        r.register(
            "bytes_backed_up",
            "Bytes stored by successful backups",
            self.bytes_backed_up.clone(),
        );
        r.register(
            "topo_snapshots",
            "etcd snapshots taken",
            self.snapshots.clone(),
        );
        r.register(
            "unreadable_backups",
            "Backups whose MANIFEST cannot be read, parsed or restored (kept, never restored)",
            self.unreadable_backups.clone(),
        );
        r.register(
            "archive_loss_window_seconds",
            "Point-in-time loss window of an archived shard: seconds since everything its \
             primary had was last in the binlog archive (0 while it all is)",
            self.archive_loss_window_seconds.clone(),
        );
        r.register(
            "archive_gap",
            "1 while an archived shard's binlog archive has a gap (a segment missing from \
             storage, GTIDs that no segment and no backup holds), else 0",
            self.archive_gap.clone(),
        );
        r.register(
            "recoverable_window_seconds",
            "Seconds from a shard's oldest complete full backup to its newest archived \
             transaction (or newest backup): the reach of a point-in-time restore",
            self.recoverable_window_seconds.clone(),
        );
        r.register(
            "pass_items_skipped",
            "Items (shards, jobs) a leader pass could not handle, logged and skipped",
            self.pass_items_skipped.clone(),
        );
        r.register(
            "scheduled_runs_skipped",
            "Shards of schedule slots given up: no eligible tablet until the give-up time, \
             or the shard's previous backup still running (also on the schedule record)",
            self.scheduled_runs_skipped.clone(),
        );
        self.recovery.register(&mut r);
        r
    }

    /// Records the unreadable backups of one shard (the whole list, replacing
    /// the previous one; empty when there are none any more).
    pub fn set_unreadable(&self, keyspace: &str, shard: &str, list: Vec<UnreadableBackup>) {
        let labels = ShardLabels {
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
        };
        let key = (keyspace.to_string(), shard.to_string());
        let mut all = crate::common::lock(&self.unreadable);
        if list.is_empty() && !all.contains_key(&key) {
            // Never had any: no series for it.
            return;
        }
        self.unreadable_backups
            .get_or_create(&labels)
            .set(list.len() as i64);
        if list.is_empty() {
            all.remove(&key);
        } else {
            all.insert(key, list);
        }
    }

    /// Every unreadable backup last seen, by shard then name.
    pub fn unreadable(&self) -> Vec<UnreadableBackup> {
        crate::common::lock(&self.unreadable)
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Counts one item a leader pass skipped.
    pub fn count_skipped(&self, pass: &str) {
        self.pass_items_skipped
            .get_or_create(&PassLabels {
                pass: pass.to_string(),
            })
            .inc();
    }

    /// Counts one shard of a schedule slot given up.
    pub fn count_skipped_run(&self, keyspace: &str, shard: &str) {
        self.scheduled_runs_skipped
            .get_or_create(&ShardLabels {
                keyspace: keyspace.to_string(),
                shard: shard.to_string(),
            })
            .inc();
    }

    /// Counts a finished backup job once.
    pub fn count_outcome(&self, job: &Job, counted: &Mutex<HashSet<String>>) {
        if !job.state.is_final() || job.kind != cairn_topo::JobKind::Backup {
            return;
        }
        let mut c = crate::common::lock(counted);
        if !c.insert(job.id.clone()) {
            return;
        }
        let labels = ShardLabels {
            keyspace: job.keyspace.clone(),
            shard: job.shard.clone(),
        };
        match job.state {
            JobState::Succeeded => {
                self.backups_succeeded.get_or_create(&labels).inc();
                self.bytes_backed_up.inc_by(job.progress.bytes_done);
            }
            JobState::Failed => {
                self.backups_failed.get_or_create(&labels).inc();
            }
            _ => {}
        }
        if let (Some(s), Some(f)) = (job.started_at, job.finished_at) {
            self.job_duration_seconds
                .observe((f - s).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    /// Recomputes the gauges from the cache.
    pub async fn refresh(&self, cache: &Cache) {
        let s = cache.inner.read().await;
        let now = Utc::now();
        for ((ks, shard), v) in &s.shards {
            if let Some(t) = v.value.latest_backup_time {
                self.seconds_since_last_backup
                    .get_or_create(&ShardLabels {
                        keyspace: ks.clone(),
                        shard: shard.clone(),
                    })
                    .set((now - t).num_seconds());
            }
        }
    }

    /// Recomputes the recoverability gauges from the cache: on each scrape only
    /// (not on every leader pass), since nothing else reads them. The pictures are
    /// computed under the cache's read lock, the gauges set after it is released.
    pub async fn refresh_recovery(&self, cache: &Cache) {
        let now = Utc::now();
        let (pictures, oldest) = {
            let s = cache.inner.read().await;
            let jobs: Vec<&Job> = s.jobs.values().map(|j| &j.value).collect();
            (
                super::recoverability::from_view(&s, now),
                recovery::oldest_running(&jobs, now),
            )
        };
        self.recovery.set(&pictures, oldest);
    }
}
