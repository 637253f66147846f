//! The coordinator process: campaign for leadership; while leading, run the
//! level-triggered loops (scheduler, job supervisor, retention, catalog reconciler,
//! etcd snapshots) with every write fenced on leadership; serve the HTTP status
//! whether leading or standing by.
//!
//! Each loop pass reads the watched [`Cache`] and acts on what differs from what
//! should be, so a pass interrupted by a crash or a lost election is simply run
//! again by whoever leads next.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_topo::{
    BackupRecord, Fence, Job, JobKind, JobState, Schedule, Shard, TabletAlias, Topo, TopoConfig,
    TopoError,
};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
pub use super::config::CoordinatorConfig;
use super::etcd_snapshot;
use super::http::{self, CoordinatorMetrics};
use super::retention::{self, RetentionInput, Rule};
use super::schedule;
use super::select::{select_backup_tablet, Choice, SelectOptions};
use super::supervise::{self, Verdict};
use crate::backup::storage::BackupStorage;

/// Jobs created at once by a keyspace-wide run.
const JOB_CREATE_CONCURRENCY: usize = 64;

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
    counted: Mutex<HashSet<String>>,
    /// Schedule slots whose shards are still being started, by schedule name.
    slots_in_progress: Mutex<HashMap<String, DateTime<Utc>>>,
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

    campaign_loop(shared.clone(), cancel.clone()).await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), follow).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Campaigns, leads until leadership is lost, campaigns again; until cancelled.
async fn campaign_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let prefix = shared.topo.keys().election();
    let ttl = shared.cfg.lease_ttl.as_secs().max(2) as i64;
    while !cancel.is_cancelled() {
        let lease = match shared.topo.lease(ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get a lease to campaign with; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Show who leads while we stand by.
        let watcher = {
            let shared = shared.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                while !cancel.is_cancelled() {
                    if let Ok(l) = shared.topo.leader(&prefix_of(&shared)).await {
                        if let Ok(mut g) = shared.leader_id.lock() {
                            *g = l;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let leadership = tokio::select! {
            _ = cancel.cancelled() => {
                watcher.abort();
                let _ = lease.revoke().await;
                return;
            }
            l = shared.topo.campaign(&prefix, &shared.cfg.id, lease.id()) => l,
        };
        watcher.abort();
        let leadership = match leadership {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(id = %shared.cfg.id, "became the leader");
        shared.is_leader.store(true, Ordering::SeqCst);
        shared.metrics.is_leader.set(1);
        if let Ok(mut g) = shared.leader_id.lock() {
            *g = Some(shared.cfg.id.clone());
        }
        let lead = cancel.child_token();
        let fence = leadership.fence();
        let tasks = tokio::spawn(lead_loops(shared.clone(), fence, lead.clone()));
        let mut lease_state = lease.subscribe();
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = leadership.lost() => tracing::warn!(result = ?r.err(), "leadership lost: our election key is gone"),
            _ = async {
                loop {
                    if lease_state.changed().await.is_err() || !lease_state.borrow().alive {
                        break;
                    }
                }
            } => tracing::warn!("leadership lost: the lease expired"),
        }
        lead.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks).await;
        shared.is_leader.store(false, Ordering::SeqCst);
        shared.metrics.is_leader.set(0);
        if cancel.is_cancelled() {
            let _ = leadership.resign().await;
            let _ = lease.revoke().await;
            return;
        }
        drop(lease);
    }
}

fn prefix_of(shared: &Shared) -> String {
    shared.topo.keys().election()
}

/// The leader's loops; they stop when `lead` fires.
async fn lead_loops(shared: Arc<Shared>, fence: Fence, lead: CancellationToken) {
    let mut last_reconcile: Option<Instant> = None;
    let mut last_snapshot_slot: Option<DateTime<Utc>> = None;
    let started = Utc::now();
    loop {
        if lead.is_cancelled() {
            return;
        }
        let now = Utc::now();
        if let Err(e) = scheduler_pass(&shared, &fence, now).await {
            log_pass_error("scheduler", &e);
        }
        if let Err(e) = supervisor_pass(&shared, &fence, now).await {
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
            if let Err(e) = forget_old_jobs(&shared, &fence, now).await {
                log_pass_error("job history", &e);
            }
        }
        if let Some(expr) = &shared.cfg.snapshot_cron {
            if let Err(e) =
                snapshot_pass(&shared, expr, started, &mut last_snapshot_slot, now).await
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

/// Shards a schedule covers right now (a keyspace target includes shards added
/// since the schedule was made).
fn target_shards(s: &super::cache::TopoView, target: &str) -> Vec<(String, String)> {
    match target.split_once('/') {
        Some((ks, shard)) => vec![(ks.to_string(), shard.to_string())],
        None => s
            .shards
            .keys()
            .filter(|(ks, _)| ks == target)
            .cloned()
            .collect(),
    }
}

/// Creates the jobs of due schedule slots, one per shard and slot (deduped by the
/// jobs themselves, so a new leader never doubles a run), spread over the stagger
/// window; records `last_run` once every shard of the slot has its job.
async fn scheduler_pass(shared: &Shared, fence: &Fence, now: DateTime<Utc>) -> anyhow::Result<()> {
    let (schedules, snap_jobs): (Vec<Schedule>, Vec<Job>) = {
        let s = shared.cache.inner.read().await;
        (
            s.schedules.values().map(|v| v.value.clone()).collect(),
            s.jobs.values().map(|v| v.value.clone()).collect(),
        )
    };
    for sched in schedules {
        if sched.paused {
            continue;
        }
        // A slot whose shards are still being started (stagger) stays the slot until
        // they all are, even if the cron moved on meanwhile.
        let pinned = shared
            .slots_in_progress
            .lock()
            .ok()
            .and_then(|m| m.get(&sched.name).copied())
            .filter(|p| sched.last_run.is_none_or(|l| l < *p));
        let slot = match pinned {
            Some(p) => p,
            None => match schedule::due(&sched, now)? {
                Some(s) => s,
                None => continue,
            },
        };
        let cron = schedule::parse_cron(&sched.cron)?;
        // Spread shards over the window, but never past half the schedule's period.
        let period = schedule::next_run(&cron, slot)
            .map(|n| (n - slot).to_std().unwrap_or_default())
            .unwrap_or(shared.cfg.stagger_window);
        let window = shared.cfg.stagger_window.min(period / 2);
        let shards = {
            let s = shared.cache.inner.read().await;
            target_shards(&s, &sched.target)
        };
        let mut all_done = true;
        let started: HashSet<(&str, &str)> = snap_jobs
            .iter()
            .filter(|j| {
                j.schedule.as_deref() == Some(sched.name.as_str()) && j.scheduled_for == Some(slot)
            })
            .map(|j| (j.keyspace.as_str(), j.shard.as_str()))
            .collect();
        let mut to_start = Vec::new();
        for (ks, shard) in &shards {
            if started.contains(&(ks.as_str(), shard.as_str())) {
                continue;
            }
            let start_at = slot
                + chrono::Duration::from_std(schedule::stagger(&sched.name, ks, shard, window))?;
            if now < start_at {
                all_done = false;
                continue;
            }
            to_start.push((ks, shard));
        }
        // Many shards (a keyspace-wide run): create their jobs concurrently.
        for chunk in to_start.chunks(JOB_CREATE_CONCURRENCY) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|(ks, shard)| {
                    create_scheduled_job(shared, fence, &sched, slot, ks, shard, &snap_jobs)
                })
                .collect();
            for r in futures::future::join_all(batch).await {
                r?;
            }
        }
        if !all_done {
            if let Ok(mut m) = shared.slots_in_progress.lock() {
                m.insert(sched.name.clone(), slot);
            }
        } else {
            if let Ok(mut m) = shared.slots_in_progress.lock() {
                m.remove(&sched.name);
            }
            let key = shared.topo.keys().schedule(&sched.name);
            shared
                .topo
                .update_with_fenced::<Schedule, _>(fence, &key, |cur| {
                    let Some(mut s) = cur else { return Ok(None) };
                    if s.last_run.is_some_and(|l| l >= slot) {
                        return Ok(None);
                    }
                    schedule::record_run(&mut s, &cron, slot);
                    Ok(Some(s))
                })
                .await?;
            tracing::info!(schedule = %sched.name, %slot, shards = shards.len(), "schedule run started");
        }
    }
    Ok(())
}

/// One scheduled job for a shard: a new job on the healthiest eligible tablet, or
/// a CANCELLED record saying why the run was skipped.
#[allow(clippy::too_many_arguments)]
async fn create_scheduled_job(
    shared: &Shared,
    fence: &Fence,
    sched: &Schedule,
    slot: DateTime<Utc>,
    ks: &str,
    shard: &str,
    jobs: &[Job],
) -> anyhow::Result<()> {
    let running = jobs.iter().find(|j| {
        j.kind == JobKind::Backup && j.keyspace == ks && j.shard == shard && !j.state.is_final()
    });
    let tablets = {
        let s = shared.cache.inner.read().await;
        s.shard_tablets(ks, shard)
    };
    let choice = select_backup_tablet(
        &tablets,
        &SelectOptions {
            allow_primary: false,
            max_lag_seconds: shared.cfg.max_lag_seconds,
        },
    );
    let placeholder = TabletAlias {
        cell: "none".into(),
        uid: 0,
    };
    let mut job = match (&choice, running) {
        (_, Some(r)) => {
            let mut j = Job::pending(JobKind::Backup, ks, shard, &r.tablet_alias);
            j.state = JobState::Cancelled;
            j.error = Some(format!(
                "skipped: backup job {} of this shard is still {:?}",
                r.id, r.state
            ));
            j.finished_at = Some(Utc::now());
            j
        }
        (Choice::Tablet(alias), None) => Job::pending(JobKind::Backup, ks, shard, alias),
        (Choice::None(reasons), None) => {
            let mut j = Job::pending(JobKind::Backup, ks, shard, &placeholder);
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            j.state = JobState::Failed;
            j.error = Some(format!(
                "no eligible tablet ({})",
                if why.is_empty() {
                    "no tablets".into()
                } else {
                    why.join("; ")
                }
            ));
            j.finished_at = Some(Utc::now());
            j
        }
    };
    job.schedule = Some(sched.name.clone());
    job.scheduled_for = Some(slot);
    job.engine = sched.backup_engine;
    job.pending_timeout_seconds = Some(shared.cfg.pending_timeout.as_secs());
    shared
        .topo
        .create_fenced(fence, &shared.topo.keys().job(&job.id), &job, None)
        .await?;
    match job.state {
        JobState::Pending => {
            tracing::info!(schedule = %sched.name, job = %job.id, tablet = %job.tablet_alias, "scheduled backup")
        }
        _ => {
            tracing::warn!(schedule = %sched.name, shard = %format!("{ks}/{shard}"), reason = ?job.error, "scheduled backup not started")
        }
    }
    Ok(())
}

/// Fails jobs whose tablet died or that ran too long, and creates the retries of
/// failed scheduled backups (whoever failed them) on another eligible tablet once
/// their backoff passed.
async fn supervisor_pass(shared: &Shared, fence: &Fence, now: DateTime<Utc>) -> anyhow::Result<()> {
    let (jobs, health, registered): (Vec<Job>, HashSet<String>, HashSet<String>) = {
        let s = shared.cache.inner.read().await;
        (
            s.jobs.values().map(|v| v.value.clone()).collect(),
            s.health.keys().cloned().collect(),
            s.tablets.keys().cloned().collect(),
        )
    };
    let timeouts = supervise::Timeouts {
        pending: shared.cfg.pending_timeout,
        running: shared.cfg.job_timeout,
        ..supervise::Timeouts::default()
    };
    let policy = supervise::RetryPolicy {
        max_attempts: shared.cfg.max_attempts,
        base_delay: shared.cfg.retry_delay,
        ..supervise::RetryPolicy::default()
    };
    for job in &jobs {
        shared.metrics.count_outcome(job, &shared.counted);
        let alias = job.tablet_alias.to_string();
        // The cache does not see leases; an agent that restarted fails its own
        // orphaned jobs at start, so "Health present" stands for "same agent".
        let view = supervise::TabletView {
            registered: registered.contains(&alias),
            health_lease: health
                .contains(&alias)
                .then(|| job.owner_lease.unwrap_or(0)),
        };
        match supervise::judge(job, &view, now, &timeouts, &policy) {
            Verdict::Leave => {}
            Verdict::Fail { reason } | Verdict::FailAndRetry { reason, .. } => {
                fail_job(shared, fence, job, &reason).await?
            }
        }
    }
    let retried: HashSet<&str> = jobs.iter().filter_map(|j| j.retry_of.as_deref()).collect();
    for job in &jobs {
        if job.state != JobState::Failed
            || retried.contains(job.id.as_str())
            || !supervise::retryable(job, &policy)
        {
            continue;
        }
        let failed_at = job.finished_at.unwrap_or(job.created_at);
        let wait = chrono::Duration::from_std(supervise::backoff(job.attempt, &policy))?;
        if now < failed_at + wait {
            continue;
        }
        retry_job(shared, fence, job).await?;
    }
    Ok(())
}

async fn fail_job(shared: &Shared, fence: &Fence, job: &Job, reason: &str) -> anyhow::Result<()> {
    let key = shared.topo.keys().job(&job.id);
    let reason = reason.to_string();
    shared
        .topo
        .update_with_fenced::<Job, _>(fence, &key, |cur| {
            let Some(mut j) = cur else { return Ok(None) };
            if j.state.is_final() {
                return Ok(None);
            }
            j.state = JobState::Failed;
            j.error = Some(reason.clone());
            j.finished_at = Some(Utc::now());
            Ok(Some(j))
        })
        .await?;
    tracing::warn!(job = %job.id, tablet = %job.tablet_alias, %reason, "job failed by the supervisor");
    Ok(())
}

/// A new attempt of a failed scheduled backup, on another eligible tablet.
async fn retry_job(shared: &Shared, fence: &Fence, failed: &Job) -> anyhow::Result<()> {
    let mut excluded = failed.excluded_tablets.clone();
    excluded.push(failed.tablet_alias.clone());
    let tablets: Vec<_> = {
        let s = shared.cache.inner.read().await;
        s.shard_tablets(&failed.keyspace, &failed.shard)
            .into_iter()
            .filter(|t| !excluded.contains(&t.tablet.value.alias))
            .collect()
    };
    let choice = select_backup_tablet(
        &tablets,
        &SelectOptions {
            allow_primary: false,
            max_lag_seconds: shared.cfg.max_lag_seconds,
        },
    );
    let alias = match choice {
        Choice::Tablet(a) => a,
        // Nobody else is eligible: the same tablet may try again if it is healthy.
        Choice::None(_) => {
            let s = shared.cache.inner.read().await;
            let all = s.shard_tablets(&failed.keyspace, &failed.shard);
            match select_backup_tablet(
                &all,
                &SelectOptions {
                    allow_primary: false,
                    max_lag_seconds: shared.cfg.max_lag_seconds,
                },
            ) {
                Choice::Tablet(a) => a,
                Choice::None(_) => return Ok(()), // try again on a later pass
            }
        }
    };
    let mut job = Job::pending(JobKind::Backup, &failed.keyspace, &failed.shard, &alias);
    job.attempt = failed.attempt + 1;
    job.retry_of = Some(failed.id.clone());
    job.schedule = failed.schedule.clone();
    job.scheduled_for = failed.scheduled_for;
    job.engine = failed.engine;
    job.concurrency = failed.concurrency;
    job.excluded_tablets = excluded;
    job.pending_timeout_seconds = failed.pending_timeout_seconds;
    shared
        .topo
        .create_fenced(fence, &shared.topo.keys().job(&job.id), &job, None)
        .await?;
    tracing::info!(job = %job.id, retry_of = %failed.id, attempt = job.attempt, tablet = %alias, "retrying a failed backup");
    Ok(())
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

/// Deletes finished jobs older than the job history window, so the jobs prefix
/// does not grow without bound (a daily keyspace-wide run adds a job per shard).
/// The window (days) is far longer than any retry backoff, so a failed job is
/// never forgotten before its retry was created.
async fn forget_old_jobs(shared: &Shared, fence: &Fence, now: DateTime<Utc>) -> anyhow::Result<()> {
    let keep = chrono::Duration::from_std(shared.cfg.job_history)?;
    let old: Vec<(String, i64)> = {
        let s = shared.cache.inner.read().await;
        s.jobs
            .values()
            .filter(|j| {
                j.value.state.is_final() && j.value.finished_at.is_some_and(|f| now - f > keep)
            })
            .map(|j| (j.value.id.clone(), j.version))
            .collect()
    };
    for (id, version) in old {
        match shared
            .topo
            .delete_fenced(fence, &shared.topo.keys().job(&id), Some(version))
            .await
        {
            Ok(()) | Err(TopoError::NoNode(_)) | Err(TopoError::BadVersion(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Takes an etcd snapshot into storage when the snapshot cron is due.
async fn snapshot_pass(
    shared: &Shared,
    expr: &str,
    started: DateTime<Utc>,
    last: &mut Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let cron = schedule::parse_cron(expr)?;
    let after = last.unwrap_or(started);
    let Some(slot) = schedule::next_run(&cron, after) else {
        return Ok(());
    };
    if slot > now {
        return Ok(());
    }
    *last = Some(now);
    let (name, _) =
        etcd_snapshot::save_to_storage(&shared.topo, shared.storage.as_ref(), now).await?;
    etcd_snapshot::prune_snapshots(shared.storage.as_ref(), shared.cfg.snapshot_keep).await?;
    shared.metrics.snapshots.inc();
    tracing::info!(%name, "etcd snapshot stored");
    Ok(())
}
