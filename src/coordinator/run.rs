//! The coordinator process: load the topology, serve the HTTP status whether
//! leading or standing by, campaign (`leader.rs`); while leading, run the
//! leader loop: one level-triggered pass after another (scheduler, job supervisor,
//! retention, catalog reconciler, job history, etcd snapshots), every write fenced
//! on leadership. Owns [`Shared`], the state the passes and the HTTP endpoints
//! share, and (for now) the retention and catalog passes.
//!
//! Each pass reads the watched [`Cache`], asks a pure planner what should be, and
//! applies the difference, so a pass interrupted by a crash or a lost election is
//! simply run again by whoever leads next.
//!
//! May call: the passes and pure rules of this module, `backup` (storage),
//! `common`, `cairn-topo`; never `tablet` or `cli`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_topo::{
    BackupRecord, Fence, Job, JobKind, JobState, Schedule, Shard, Topo, TopoConfig, TopoError,
};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
pub use super::config::CoordinatorConfig;
use super::http::{self, CoordinatorMetrics};
use super::retention::{self, RetentionInput, Rule};
use super::{history, leader, scheduler_pass, snapshot_pass, supervisor_pass};
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
    retention_done: Mutex<HashSet<String>>,
    /// Jobs whose outcome is already counted in the metrics.
    pub(super) counted: Mutex<HashSet<String>>,
    /// Schedule slots whose shards are still being started, by schedule name.
    pub(super) slots_in_progress: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// Entry point of `cairn coordinator`.
pub async fn run(topo_cfg: TopoConfig, cfg: CoordinatorConfig) -> anyhow::Result<()> {
    let storage = cfg
        .storage
        .open()
        .context("the coordinator needs a backup storage")?;
    let cancel = CancellationToken::new();
    crate::common::shutdown::spawn_signal_handler(cancel.clone());
    let topo = tokio::select! {
        t = Topo::connect(&topo_cfg, None) => t.context("connecting to etcd")?,
        _ = cancel.cancelled() => anyhow::bail!("interrupted before etcd was reachable"),
    };
    let started = Instant::now();
    let cache = Cache::load(&topo).await.context("loading the topology")?;
    {
        let s = cache.inner.read().await;
        tracing::info!(
            tablets = s.tablets.len(),
            shards = s.shards.len(),
            jobs = s.jobs.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "topology loaded"
        );
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.http_port))
        .await
        .with_context(|| format!("binding the coordinator HTTP port {}", cfg.http_port))?;
    let port = listener.local_addr()?.port();
    let shared = Arc::new(Shared {
        topo: topo.clone(),
        cfg,
        cache: cache.clone(),
        storage,
        is_leader: AtomicBool::new(false),
        leader_id: Mutex::new(None),
        metrics: Arc::new(CoordinatorMetrics::default()),
        changed: Arc::new(tokio::sync::Notify::new()),
        retention_done: Mutex::new(HashSet::new()),
        counted: Mutex::new(HashSet::new()),
        slots_in_progress: Mutex::new(HashMap::new()),
    });
    tracing::info!(id = %shared.cfg.id, port, "coordinator started");
    let follow = tokio::spawn(cache.follow(topo.clone(), shared.changed.clone(), cancel.clone()));
    let server = tokio::spawn(http::serve(listener, shared.clone(), cancel.clone()));

    leader::campaign_loop(shared.clone(), cancel.clone()).await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), follow).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// The leader's loops; they stop when `lead` fires.
pub(super) async fn lead_loops(shared: Arc<Shared>, fence: Fence, lead: CancellationToken) {
    let mut last_reconcile: Option<Instant> = None;
    let mut last_snapshot_slot: Option<DateTime<Utc>> = None;
    let started = Utc::now();
    loop {
        if lead.is_cancelled() {
            return;
        }
        let now = Utc::now();
        if let Err(e) = scheduler_pass::scheduler_pass(&shared, &fence, now).await {
            log_pass_error("scheduler", &e);
        }
        if let Err(e) = supervisor_pass::supervisor_pass(&shared, &fence, now).await {
            log_pass_error("job supervisor", &e);
        }
        if let Err(e) = retention_pass(&shared, &fence, now).await {
            log_pass_error("retention", &e);
        }
        if last_reconcile.is_none_or(|t| t.elapsed() >= shared.cfg.reconcile_interval) {
            last_reconcile = Some(Instant::now());
            if let Err(e) = reconcile_catalog(&shared, &fence).await {
                log_pass_error("catalog reconciler", &e);
            }
            if let Err(e) = history::forget_old_jobs(&shared, &fence, now).await {
                log_pass_error("job history", &e);
            }
        }
        if let Some(expr) = &shared.cfg.snapshot_cron {
            if let Err(e) =
                snapshot_pass::snapshot_pass(&shared, expr, started, &mut last_snapshot_slot, now)
                    .await
            {
                log_pass_error("etcd snapshot", &e);
            }
        }
        shared.metrics.refresh(&shared.cache).await;
        tokio::select! {
            _ = lead.cancelled() => return,
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

fn log_pass_error(pass: &str, e: &anyhow::Error) {
    if let Some(TopoError::Fenced(_)) = e.downcast_ref::<TopoError>() {
        tracing::warn!(pass, "write refused: no longer the leader");
    } else {
        tracing::warn!(pass, error = %format!("{e:#}"), "pass failed; retrying on the next tick");
    }
}

/// After each successful scheduled backup, prunes its shard by the schedule's rule.
async fn retention_pass(shared: &Shared, fence: &Fence, now: DateTime<Utc>) -> anyhow::Result<()> {
    let (work, in_use): (Vec<(Job, Schedule)>, HashSet<String>) = {
        let s = shared.cache.inner.read().await;
        let done = shared
            .retention_done
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let work = s
            .jobs
            .values()
            .map(|v| &v.value)
            .filter(|j| {
                j.state == JobState::Succeeded && j.kind == JobKind::Backup && !done.contains(&j.id)
            })
            .filter_map(|j| {
                let sched = s.schedules.get(j.schedule.as_deref()?)?;
                Some((j.clone(), sched.value.clone()))
            })
            .collect();
        let in_use = backups_in_use(&s);
        (work, in_use)
    };
    for (job, sched) in work {
        let removals = prune_shard(
            shared,
            fence,
            &sched,
            &job.keyspace,
            &job.shard,
            now,
            &in_use,
        )
        .await?;
        if !removals.is_empty() {
            tracing::info!(schedule = %sched.name, shard = %format!("{}/{}", job.keyspace, job.shard), removed = ?removals, "retention pruned backups");
        }
        if let Ok(mut d) = shared.retention_done.lock() {
            d.insert(job.id.clone());
        }
    }
    Ok(())
}

/// What a schedule's retention rule would remove from one shard now: storage
/// listed, the pure rule applied. Shared by the leader and `schedule prune`.
pub async fn plan_shard_retention(
    storage: &dyn BackupStorage,
    sched: &Schedule,
    ks: &str,
    shard: &str,
    now: DateTime<Utc>,
    in_use: &HashSet<String>,
    incomplete_grace: Duration,
) -> anyhow::Result<Vec<retention::Removal>> {
    let listed = storage.list_backups(ks, shard).await?;
    let inputs: Vec<RetentionInput> = listed
        .iter()
        .map(|b| RetentionInput {
            name: b.name.clone(),
            backup_time: b
                .manifest
                .as_ref()
                .map(|m| m.backup_time)
                .or_else(|| {
                    crate::backup::manifest::parse_backup_name(&b.name)
                        .ok()
                        .map(|(t, _)| t)
                })
                .unwrap_or(now),
            complete: b.complete,
        })
        .collect();
    let rule = Rule {
        keep_count: sched.keep_count,
        keep_for: sched.keep_for_seconds.map(Duration::from_secs),
        incomplete_grace,
    };
    Ok(retention::plan(&inputs, rule, now, in_use))
}

/// Backups that restores are reading right now (retention keeps them).
pub fn backups_in_use(s: &super::cache::TopoView) -> HashSet<String> {
    let mut in_use: HashSet<String> = s
        .health
        .values()
        .filter_map(|h| h.restoring_backup.clone())
        .collect();
    in_use.extend(
        s.jobs
            .values()
            .filter(|j| j.value.kind == JobKind::Restore && !j.value.state.is_final())
            .filter_map(|j| j.value.backup_name.clone()),
    );
    in_use
}

/// Applies a schedule's retention rule to one shard (catalog first, fenced, then
/// storage); returns the names removed.
#[allow(clippy::too_many_arguments)]
async fn prune_shard(
    shared: &Shared,
    fence: &Fence,
    sched: &Schedule,
    ks: &str,
    shard: &str,
    now: DateTime<Utc>,
    in_use: &HashSet<String>,
) -> anyhow::Result<Vec<String>> {
    let plan = plan_shard_retention(
        shared.storage.as_ref(),
        sched,
        ks,
        shard,
        now,
        in_use,
        shared.cfg.incomplete_grace,
    )
    .await?;
    let mut removed = Vec::new();
    for r in plan {
        // Catalog first (fenced): a deposed leader removes nothing.
        let key = shared.topo.keys().backup(ks, shard, &r.name);
        match shared.topo.delete_fenced(fence, &key, None).await {
            Ok(()) | Err(TopoError::NoNode(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match shared.storage.remove_backup(ks, shard, &r.name).await {
            Ok(()) | Err(crate::backup::storage::StorageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(backup = %r.name, reason = %r.reason, "removed by retention");
        removed.push(r.name);
    }
    if !removed.is_empty() {
        refresh_latest(shared, fence, ks, shard).await?;
    }
    Ok(removed)
}

/// Sets the shard's latest complete backup from storage (fenced).
async fn refresh_latest(
    shared: &Shared,
    fence: &Fence,
    ks: &str,
    shard: &str,
) -> anyhow::Result<()> {
    let listed = shared.storage.list_backups(ks, shard).await?;
    let latest = listed
        .iter()
        .filter(|b| b.complete)
        .filter_map(|b| b.manifest.as_ref())
        .max_by_key(|m| (m.backup_time, m.backup_name.clone()));
    let (name, time) = (
        latest.map(|m| m.backup_name.clone()),
        latest.map(|m| m.backup_time),
    );
    shared
        .topo
        .update_with_fenced::<Shard, _>(fence, &shared.topo.keys().shard(ks, shard), |cur| {
            let Some(mut s) = cur else { return Ok(None) };
            if s.latest_backup == name && s.latest_backup_time == time {
                return Ok(None);
            }
            s.latest_backup = name.clone();
            s.latest_backup_time = time;
            Ok(Some(s))
        })
        .await?;
    Ok(())
}

/// Storage is the truth: every complete backup gets its record (waking tablets
/// waiting for a seed), records whose backup is gone are removed.
pub async fn reconcile_catalog(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
    let mut shards: HashSet<(String, String)> = shared
        .storage
        .list_shards()
        .await?
        .into_iter()
        .map(|d| (d.keyspace, d.shard))
        .collect();
    let records: HashMap<(String, String), HashSet<String>> = {
        let s = shared.cache.inner.read().await;
        shards.extend(s.backups.keys().cloned());
        s.backups
            .iter()
            .map(|(k, m)| (k.clone(), m.keys().cloned().collect()))
            .collect()
    };
    for (ks, shard) in shards {
        let listed = shared.storage.list_backups(&ks, &shard).await?;
        let have = records
            .get(&(ks.clone(), shard.clone()))
            .cloned()
            .unwrap_or_default();
        let complete: HashSet<&str> = listed
            .iter()
            .filter(|b| b.complete)
            .map(|b| b.name.as_str())
            .collect();
        let mut changed = false;
        for b in listed
            .iter()
            .filter(|b| b.complete && !have.contains(&b.name))
        {
            let Some(m) = &b.manifest else { continue };
            let record = BackupRecord {
                name: b.name.clone(),
                keyspace: ks.clone(),
                shard: shard.clone(),
                tablet_alias: m.tablet_alias.clone(),
                engine: m.backup_method,
                backup_time: m.backup_time,
                finished_time: Some(m.finished_time),
                position: m.position.clone(),
                size_bytes: b.size_bytes,
                complete: true,
            };
            // Make sure the shard record exists (a backup copied in for a new shard).
            ensure_shard(shared, fence, &ks, &shard).await?;
            shared
                .topo
                .put_fenced(
                    fence,
                    &shared.topo.keys().backup(&ks, &shard, &b.name),
                    &record,
                    None,
                )
                .await?;
            tracing::info!(backup = %b.name, shard = %format!("{ks}/{shard}"), "catalogued a backup found in storage");
            changed = true;
        }
        for name in have.iter().filter(|n| !complete.contains(n.as_str())) {
            match shared
                .topo
                .delete_fenced(fence, &shared.topo.keys().backup(&ks, &shard, name), None)
                .await
            {
                Ok(()) | Err(TopoError::NoNode(_)) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(backup = %name, shard = %format!("{ks}/{shard}"), "removed a record whose backup is gone from storage");
            changed = true;
        }
        if changed {
            refresh_latest(shared, fence, &ks, &shard).await?;
        }
    }
    Ok(())
}

async fn ensure_shard(shared: &Shared, fence: &Fence, ks: &str, shard: &str) -> anyhow::Result<()> {
    let exists = shared
        .cache
        .inner
        .read()
        .await
        .shards
        .contains_key(&(ks.to_string(), shard.to_string()));
    if exists {
        return Ok(());
    }
    let now = Utc::now();
    let ks_rec = cairn_topo::Keyspace {
        name: ks.to_string(),
        created_at: now,
    };
    match shared
        .topo
        .create_fenced(fence, &shared.topo.keys().keyspace(ks), &ks_rec, None)
        .await
    {
        Ok(_) | Err(TopoError::NodeExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let rec = Shard {
        keyspace: ks.to_string(),
        name: shard.to_string(),
        primary_alias: None,
        primary_term_start_time: None,
        latest_backup: None,
        latest_backup_time: None,
        created_at: now,
    };
    match shared
        .topo
        .create_fenced(fence, &shared.topo.keys().shard(ks, shard), &rec, None)
        .await
    {
        Ok(_) | Err(TopoError::NodeExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
