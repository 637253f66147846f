//! The coordinator's HTTP endpoints: `/healthz`, `/metrics` (Prometheus),
//! `/api/v1/status` (JSON: who leads, schedules, shards with their latest backup,
//! its age, their count of unreadable backups and their binlog archive with its
//! window and loss window, each shard's recoverability picture (its light, the
//! newest and newest verified backup's ages, the age its schedule allows, the last
//! drill), running jobs, and the
//! unreadable backups with their errors as this coordinator's reconciler last saw
//! them, so on the leader), and `/`, the status page ([`super::page`]). Served by
//! leader and standbys alike.
//!
//! Point-in-time fields of each shard (issue 10, item 5; computed by the
//! leader's recoverability pass, `null` on a standby or before its first pass):
//! `recoverable_from` and `recoverable_to` (RFC 3339: the oldest complete full
//! backup's moment, the newest archived transaction's commit or newest backup's
//! moment), `recoverable_window_seconds`, and `archive_gap`: `null` when the
//! archive has none, else `{"missing_gtids", "detail"}` of the oldest gap and
//! `gaps`, every gap as `{"missing_gtids", "detail"}`.
//!
//! May call: the cache, [`super::metrics`], [`super::archive_plan`] (the loss
//! window), [`super::recoverability`], [`super::page`] and [`Shared`] (read only),
//! `common`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::shared::Shared;

/// Serves until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "coordinator HTTP server stopped");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    shared.metrics.refresh(&shared.cache).await;
    shared.metrics.refresh_recovery(&shared.cache).await;
    let mut out = String::new();
    match encode(&mut out, &shared.metrics.registry()) {
        Ok(()) => (StatusCode::OK, out),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        ),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let s = shared.cache.inner.read().await;
    let now = Utc::now();
    let schedules: Vec<_> = s
        .schedules
        .values()
        .map(|v| {
            let x = &v.value;
            json!({"name": x.name, "cron": x.cron, "target": x.target, "paused": x.paused,
                   "last_run": x.last_run, "next_run": x.next_run})
        })
        .collect();
    let unreadable = shared.metrics.unreadable();
    let pictures = super::recoverability::from_view(&s, now);
    let recoverable = crate::common::lock(&shared.recoverability).results.clone();
    let shards: Vec<_> = pictures
        .iter()
        .map(|p| {
            let (ks, shard) = (&p.keyspace, &p.shard);
            let record = s.shards.get(&(ks.clone(), shard.clone()));
            let n = unreadable
                .iter()
                .filter(|u| &u.keyspace == ks && &u.shard == shard)
                .count();
            let archive = s.archives.get(&(ks.clone(), shard.clone())).map(|a| {
                let pos = record
                    .and_then(|v| v.value.primary_alias.as_ref())
                    .and_then(|p| s.health.get(&p.to_string()))
                    .and_then(|h| h.gtid_position.as_deref());
                let loss = super::archive_plan::loss_window(&a.value, pos, now);
                let st = &a.value.state;
                json!({"interval_ms": a.value.interval_ms, "tablet": st.tablet,
                       "position": st.position, "first_timestamp": st.first_timestamp,
                       "last_timestamp": st.last_timestamp, "safe_at": st.safe_at,
                       "segments": st.segments, "stored_bytes": st.stored_bytes,
                       "last_error": st.last_error,
                       "loss_window_seconds": loss.map(|d| d.as_secs_f64())})
            });
            let v = record.map(|r| &r.value);
            let r = recoverable.get(&(ks.clone(), shard.clone()));
            let gap = r.and_then(|r| {
                let first = r.gaps.first()?;
                Some(json!({"missing_gtids": first.missing_gtids, "detail": first.detail,
                            "gaps": r.gaps.iter().map(|g| json!({"missing_gtids": g.missing_gtids,
                                "detail": g.detail})).collect::<Vec<_>>()}))
            });
            let mut out = json!({"keyspace": ks, "shard": shard,
                   "primary": v.and_then(|v| v.primary_alias.as_ref()),
                   "recoverable_from": r.and_then(|r| r.recoverable_from),
                   "recoverable_to": r.and_then(|r| r.recoverable_to),
                   "recoverable_window_seconds": r.and_then(|r| r.window_seconds()),
                   "archive_gap": gap,
                   "latest_backup": v.and_then(|v| v.latest_backup.as_ref()),
                   "latest_backup_age_seconds": v.and_then(|v| v.latest_backup_time).map(|t| (now - t).num_seconds()),
                   "unreadable_backups": n,
                   "archive": archive});
            merge_picture(&mut out, p);
            out
        })
        .collect();
    let jobs: Vec<_> = s
        .jobs
        .values()
        .filter(|j| !j.value.state.is_final())
        .map(|j| {
            let x = &j.value;
            json!({"id": x.id, "kind": x.kind, "keyspace": x.keyspace, "shard": x.shard,
                   "tablet_alias": x.tablet_alias, "state": x.state, "attempt": x.attempt,
                   "bytes_done": x.progress.bytes_done, "bytes_total": x.progress.bytes_total})
        })
        .collect();
    let leader = crate::common::lock(&shared.leader_id).clone();
    Json(json!({
        "id": shared.cfg.id,
        "is_leader": shared.is_leader.load(Ordering::SeqCst),
        "leader_id": leader,
        "tablets": s.tablets.len(),
        "revision": s.revision,
        "schedules": schedules,
        "shards": shards,
        "jobs": jobs,
        "unreadable_backups": unreadable,
    }))
}

/// Adds a shard's recoverability picture to its status object: the picture's own
/// fields, plus `last_drill_seconds` and `last_drill_success` flattened as in
/// `/metrics`.
fn merge_picture(out: &mut serde_json::Value, p: &super::recoverability::ShardPicture) {
    let (Some(obj), Ok(serde_json::Value::Object(pic))) =
        (out.as_object_mut(), serde_json::to_value(p))
    else {
        return;
    };
    obj.extend(pic);
    let drill = p.last_drill.as_ref();
    obj.insert(
        "last_drill_seconds".into(),
        json!(drill.and_then(|d| d.seconds)),
    );
    obj.insert(
        "last_drill_success".into(),
        json!(drill.map(|d| d.result == cairn_topo::DrillResult::Succeeded)),
    );
}

/// `/`: the status page, rendered from the cache on each request.
async fn page(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let who = super::page::data::Who {
        coordinator_id: shared.cfg.id.clone(),
        is_leader: shared.is_leader.load(Ordering::SeqCst),
        leader_id: crate::common::lock(&shared.leader_id).clone(),
    };
    let data = {
        let s = shared.cache.inner.read().await;
        super::page::data::from_view(&s, who, Utc::now())
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(super::page::render(&data)),
    )
}
