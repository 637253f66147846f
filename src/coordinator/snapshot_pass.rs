//! The etcd snapshot pass of the leader loop: when [`schedule::snapshot_due`]
//! says the `--topo-snapshot-cron` slot has come, takes a snapshot into backup
//! storage and prunes old ones ([`etcd_snapshot`] does both).
//!
//! May call: `schedule` (cron rules), `etcd_snapshot`, the backup storage.

use chrono::{DateTime, Utc};

use super::etcd_snapshot;
use super::schedule;
use super::shared::Shared;

/// Takes an etcd snapshot into storage when the snapshot cron is due; `last` is
/// when the previous one was taken by this leader (`started` before the first).
pub(super) async fn snapshot_pass(
    shared: &Shared,
    expr: &str,
    started: DateTime<Utc>,
    last: &mut Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let cron = schedule::parse_cron(expr)?;
    if schedule::snapshot_due(&cron, started, *last, now).is_none() {
        return Ok(());
    }
    *last = Some(now);
    let (name, _) = etcd_snapshot::save_to_storage(
        &shared.topo,
        shared.storage.as_ref(),
        now,
        shared.cfg.encryption.as_deref(),
    )
    .await?;
    etcd_snapshot::prune_snapshots(shared.storage.as_ref(), shared.cfg.snapshot_keep).await?;
    shared.metrics.snapshots.inc();
    tracing::info!(%name, "etcd snapshot stored");
    Ok(())
}
