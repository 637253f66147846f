//! The coordinator process: load the topology, serve the HTTP status whether
//! leading or standing by, and campaign (`leader.rs`), which runs the leader loop
//! while leading.
//!
//! Each pass reads the watched [`Cache`], asks a pure planner what should be, and
//! applies the difference, so a pass interrupted by a crash or a lost election is
//! simply run again by whoever leads next.
//!
//! May call: the cache, the leader, the HTTP endpoints and [`Shared`], `backup` (storage),
//! `common`, `cairn-topo`; never `tablet` or `cli`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_topo::{Topo, TopoConfig};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
pub use super::config::CoordinatorConfig;
use super::http;
use super::leader;
use super::metrics::CoordinatorMetrics;
pub use super::shared::Shared;

/// Entry point of `cairn coordinator`.
pub async fn run(topo_cfg: TopoConfig, cfg: CoordinatorConfig) -> anyhow::Result<()> {
    let storage = cfg
        .storage
        .open()
        .context("opening the backup storage")?
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
        refused: Mutex::new(HashMap::new()),
        period_checks: Mutex::new(HashMap::new()),
        recoverability: Mutex::default(),
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
