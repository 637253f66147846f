//! The archive pass of the leader loop: for every shard with an archive record,
//! and every shard with a live ARCHIVE job, applies [`archive_plan::plan_archive`]
//! (create the job on the tablet [`archive_plan::place_archive`] picks, cancel
//! jobs no longer wanted), all fenced; and sets each archived shard's loss window
//! gauge.
//!
//! May call: the pure rules (`archive_plan`), `cairn-topo` (fenced writes),
//! [`super::shared`], `supervisor_pass::end_job` (the one way the leader ends a job).

use std::collections::BTreeSet;

use cairn_topo::{Fence, Job, JobKind, JobState};
use chrono::{DateTime, Utc};

use super::archive_plan::{self, ArchiveAction};
use super::metrics::ShardLabels;
use super::shared::Shared;
use super::supervisor_pass::end_job;

/// One pass over the archived shards.
pub(super) async fn archive_pass(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut todo: Vec<((String, String), Vec<ArchiveAction>)> = Vec::new();
    let mut windows: Vec<(ShardLabels, f64)> = Vec::new();
    {
        let s = shared.cache.inner.read().await;
        let mut shards: BTreeSet<(String, String)> = s.archives.keys().cloned().collect();
        for j in s.jobs.values() {
            if j.value.kind == JobKind::Archive && !j.value.state.is_final() {
                shards.insert((j.value.keyspace.clone(), j.value.shard.clone()));
            }
        }
        for (ks, shard) in shards {
            let key = (ks.clone(), shard.clone());
            let record = s.archives.get(&key).map(|v| &v.value);
            let jobs: Vec<&Job> = s
                .jobs
                .values()
                .map(|v| &v.value)
                .filter(|j| j.kind == JobKind::Archive && j.keyspace == ks && j.shard == shard)
                .collect();
            let primary = s
                .shards
                .get(&key)
                .and_then(|v| v.value.primary_alias.clone());
            let place =
                archive_plan::place_archive(&s.shard_tablets(&ks, &shard), primary.as_ref());
            let actions = archive_plan::plan_archive(record, &jobs, place.as_ref(), now);
            if let Some(rec) = record {
                let pos = primary
                    .as_ref()
                    .and_then(|p| s.health.get(&p.to_string()))
                    .and_then(|h| h.gtid_position.as_deref());
                if let Some(w) = archive_plan::loss_window(rec, pos, now) {
                    let labels = ShardLabels {
                        keyspace: ks.clone(),
                        shard: shard.clone(),
                    };
                    windows.push((labels, w.as_secs_f64()));
                }
            }
            if !actions.is_empty() {
                todo.push((key, actions));
            }
        }
    }
    // Shards no longer archived lose their series.
    let gauge = &shared.metrics.archive_loss_window_seconds;
    gauge.clear();
    for (labels, w) in windows {
        gauge.get_or_create(&labels).set(w);
    }
    for ((ks, shard), actions) in todo {
        for a in actions {
            match a {
                ArchiveAction::Create(alias) => {
                    let job = Job::pending(JobKind::Archive, &ks, &shard, &alias);
                    shared
                        .topo
                        .fenced(fence)
                        .create(&shared.topo.keys().job(&job.id), &job, None)
                        .await?;
                    tracing::info!(job = %job.id, tablet = %alias, keyspace = %ks, %shard, "placed the shard's archive job");
                }
                ArchiveAction::Cancel { job_id, reason } => {
                    end_job(shared, fence, &job_id, JobState::Cancelled, &reason).await?;
                    tracing::info!(job = %job_id, %reason, "cancelled an archive job");
                }
            }
        }
    }
    Ok(())
}
