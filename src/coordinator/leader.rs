//! The coordinator's campaign: get a lease, campaign for the election key, lead
//! until the key or the lease is lost, campaign again; until cancelled. While
//! standing by it shows who leads (for the status page); while leading it runs
//! [`lead_loops`] with the leadership's fence: one level-triggered pass after
//! another (scheduler, job supervisor, retention, catalog reconciler, job history,
//! etcd snapshots), every write fenced on leadership.
//!
//! May call: `cairn-topo` (leases, election), `common`, [`super::shared`] and the
//! passes. No decisions live here: it follows the election and runs the passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_topo::{Fence, TopoError};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use super::{
    archive_pass, history, prune, reconcile, recoverable_pass, scheduler_pass, snapshot_pass,
    supervisor_pass,
};
use crate::common::lock;

/// Campaigns, leads until leadership is lost, campaigns again; until cancelled.
pub(super) async fn campaign_loop(shared: Arc<Shared>, cancel: CancellationToken) {
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
                        *lock(&shared.leader_id) = l;
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
        *lock(&shared.leader_id) = Some(shared.cfg.id.clone());
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
        if let Err(e) = archive_pass::archive_pass(&shared, &fence, now).await {
            log_pass_error("archive", &e);
        }
        if let Err(e) = recoverable_pass::recoverable_pass(&shared, &fence).await {
            log_pass_error("recoverability", &e);
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
