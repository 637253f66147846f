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
use cairn_topo::{Fence, Topo, TopoConfig, TopoError};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
pub use super::config::CoordinatorConfig;
use super::http::{self, CoordinatorMetrics};
use super::{history, leader, prune, reconcile, scheduler_pass, snapshot_pass, supervisor_pass};
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
        if let Err(e) = prune::retention_pass(&shared, &fence, now, &shared.retention_done).await {
            log_pass_error("retention", &e);
        }
        if last_reconcile.is_none_or(|t| t.elapsed() >= shared.cfg.reconcile_interval) {
            last_reconcile = Some(Instant::now());
            if let Err(e) = reconcile::reconcile_catalog(&shared, &fence).await {
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
