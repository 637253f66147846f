//! The agent's small HTTP endpoint: `/healthz` (200 while mysqld is up) and
//! `/metrics` (Prometheus text). Takes an already-bound listener so the caller
//! chooses the port (0 in tests) and publishes the real one. Calls no other module
//! of the crate; the agent's other rooms update [`AgentMetrics`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What the agent exposes; updated by the health loop.
#[derive(Default)]
pub struct AgentMetrics {
    /// 1 while mysqld answers.
    pub mysqld_up: Gauge,
    /// Seconds behind the primary; -1 when unknown.
    pub replication_lag_seconds: Gauge,
    /// Health records written to topo.
    pub health_writes: Counter,
    /// Health writes that failed (etcd trouble).
    pub health_write_errors: Counter,
    /// Times the agent restarted a dead mysqld.
    pub mysqld_restarts: Counter,
    /// Bytes copied by backup and restore jobs.
    pub job_bytes: Counter,
    /// Times a replication thread was seen stopped on an error (once per stop).
    pub replication_errors: Counter,
    /// 1 while the replica is failing (a replication error not yet outlived).
    pub replication_failing: Gauge,
}

struct HttpState {
    /// Rendered by `/metrics`.
    registry: Registry,
    /// `/healthz` reads the mysqld gauge from here.
    metrics: Arc<AgentMetrics>,
}

impl AgentMetrics {
    fn register(self: &Arc<Self>) -> Registry {
        let mut r = Registry::with_prefix("cairn_tablet");
        r.register(
            "mysqld_up",
            "1 while mysqld answers",
            self.mysqld_up.clone(),
        );
        r.register(
            "replication_lag_seconds",
            "Seconds behind the primary (-1 unknown)",
            self.replication_lag_seconds.clone(),
        );
        r.register(
            "health_writes",
            "Health records written",
            self.health_writes.clone(),
        );
        r.register(
            "health_write_errors",
            "Health writes that failed",
            self.health_write_errors.clone(),
        );
        r.register(
            "mysqld_restarts",
            "Restarts of a dead mysqld",
            self.mysqld_restarts.clone(),
        );
        r.register(
            "job_bytes",
            "Bytes copied by backup and restore jobs",
            self.job_bytes.clone(),
        );
        r.register(
            "replication_errors",
            "Times a replication thread was seen stopped on an error",
            self.replication_errors.clone(),
        );
        r.register(
            "replication_failing",
            "1 while replication failed and has not yet run cleanly for long enough",
            self.replication_failing.clone(),
        );
        r
    }
}

/// Serves until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
) {
    let state = Arc::new(HttpState {
        registry: metrics.register(),
        metrics,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::warn!(error = %e, "agent HTTP server stopped");
    }
}

async fn healthz(State(s): State<Arc<HttpState>>) -> (StatusCode, &'static str) {
    if s.metrics.mysqld_up.get() == 1 {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "mysqld down\n")
    }
}

async fn metrics_text(State(s): State<Arc<HttpState>>) -> (StatusCode, String) {
    let mut out = String::new();
    match encode(&mut out, &s.registry) {
        Ok(()) => (StatusCode::OK, out),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        ),
    }
}
