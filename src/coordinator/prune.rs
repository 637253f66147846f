//! Retention as it is carried out: after each successful scheduled backup (the
//! leader's retention pass) and on demand (`schedule prune`). Both list the
//! shard's backups in storage, apply the pure rule of [`super::retention`], and
//! remove what it returns through the backup catalog
//! ([`crate::backup::catalog::Catalog::remove_backup`]: record first, fenced when
//! the leader removes, then storage).
//!
//! Owns the shard retention plan, the set of backups restores are reading, and
//! the leader's retention pass. May call: the coordinator's cache and retention
//! rule, and `backup` (catalog, storage, manifest names). The decision itself is
//! [`super::retention::owned_by`] and [`super::retention::plan`]; here is only
//! the IO around it, and what they are fed: each backup's owning schedule (from
//! its MANIFEST), whether a RUNNING backup job names it ([`backups_in_flight`]),
//! and whether a SUCCEEDED one does ([`backups_of_succeeded_jobs`]).
//! Unreadable backups (see [`crate::backup::storage::BackupState`]) are never
//! removed here.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use cairn_topo::{Fence, Job, JobKind, JobState, Schedule, Topo};
use chrono::{DateTime, Utc};

use super::cache::{Cache, TopoView};
use super::retention::{self, chain, BackupState, Removal, RetentionInput, Rule};
use super::schedule;
use super::shared::Shared;
use crate::backup::catalog::Catalog;
use crate::backup::storage::BackupStorage;
use crate::common::{failpoint, lock};

/// One shard under one schedule's rule, at one moment: what a retention plan
/// needs besides storage.
#[derive(Debug, Clone, Copy)]
pub struct ShardRetention<'a> {
    /// The schedule whose `keep_count`/`keep_for` apply.
    pub schedule: &'a Schedule,
    /// The shard's keyspace.
    pub keyspace: &'a str,
    /// The shard.
    pub shard: &'a str,
    /// The moment ages are measured from.
    pub now: DateTime<Utc>,
    /// Backups restores are reading: never removed.
    pub in_use: &'a HashSet<String>,
    /// Backups RUNNING backup jobs are writing: never removed.
    pub in_flight: &'a HashSet<String>,
    /// Backups SUCCEEDED backup jobs name (see [`backups_of_succeeded_jobs`]).
    pub succeeded: &'a HashSet<String>,
    /// Incomplete backups younger than this may still be being written.
    pub incomplete_grace: Duration,
}

/// What a schedule's retention rule would remove from one shard now: storage
/// listed, the pure rule applied. Shared by the leader and `schedule prune`
/// (its dry run prints exactly this).
pub async fn plan_shard_retention(
    storage: &dyn BackupStorage,
    r: &ShardRetention<'_>,
) -> anyhow::Result<Vec<Removal>> {
    let listed = storage.list_backups(r.keyspace, r.shard).await?;
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
                .unwrap_or(r.now),
            state: b.state,
            schedule: b.manifest.as_ref().and_then(|m| m.schedule.clone()),
            in_flight: r.in_flight.contains(&b.name),
            once_complete: r.succeeded.contains(&b.name),
            incremental: b.manifest.as_ref().is_some_and(|m| m.is_incremental()),
            position: b.manifest.as_ref().map(|m| m.position.clone()),
        })
        .collect();
    let all = inputs;
    let inputs = retention::owned_by(&all, &r.schedule.name);
    for b in listed.iter().filter(|b| b.is_unreadable()) {
        tracing::warn!(backup = %b.name, shard = %format!("{}/{}", r.keyspace, r.shard),
            error = b.error.as_deref().unwrap_or(""),
            "unreadable MANIFEST: retention keeps this backup and does not count it; remove it with remove-backup once understood");
    }
    let rule = Rule {
        keep_count: r.schedule.keep_count,
        keep_for: r.schedule.keep_for_seconds.map(Duration::from_secs),
        incomplete_grace: r.incomplete_grace,
    };
    let mut plan = retention::plan(&inputs, rule, r.now, r.in_use);
    // Incrementals go only once every full backup that stays holds them.
    let removed: HashSet<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    let kept_fulls: Vec<&RetentionInput> = all
        .iter()
        .filter(|b| !b.incremental && b.state != BackupState::Incomplete)
        .filter(|b| !removed.contains(b.name.as_str()))
        .collect();
    let incrementals = chain::plan_incrementals(&inputs, &kept_fulls, r.in_use);
    if !incrementals.is_empty() {
        plan.extend(incrementals);
        plan.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(plan)
}

/// Applies a schedule's retention rule to one shard: the plan, then each removal
/// through the catalog. Returns what was removed, with why. Shared by the leader
/// (fenced catalog) and `schedule prune` (unfenced).
pub async fn prune_shard(
    catalog: &Catalog<'_>,
    r: &ShardRetention<'_>,
) -> anyhow::Result<Vec<Removal>> {
    let plan = plan_shard_retention(catalog.storage(), r).await?;
    for (i, removal) in plan.iter().enumerate() {
        catalog
            .remove_backup(r.keyspace, r.shard, &removal.name)
            .await?;
        tracing::info!(backup = %removal.name, reason = %removal.reason, "removed by retention");
        if i == 0 && plan.len() > 1 {
            // One backup of the plan removed, the others not yet.
            failpoint::hit("prune-after-first-removal");
        }
    }
    Ok(plan)
}

/// Backups that restores and drills are reading right now (retention keeps
/// them): those tablets report restoring, and those of restore and drill jobs
/// not yet finished.
pub fn backups_in_use(s: &TopoView) -> HashSet<String> {
    let mut in_use: HashSet<String> = s
        .health
        .values()
        .filter_map(|h| h.restoring_backup.clone())
        .collect();
    in_use.extend(
        s.jobs
            .values()
            .filter(|j| {
                matches!(j.value.kind, JobKind::Restore | JobKind::Drill)
                    && !j.value.state.is_final()
            })
            .filter_map(|j| j.value.backup_name.clone()),
    );
    in_use
}

/// Backups being written right now (retention keeps them whatever their age):
/// those named by RUNNING backup jobs. An agent names its backup in the same
/// write that takes the job, before anything is stored.
pub fn backups_in_flight(s: &TopoView) -> HashSet<String> {
    s.jobs
        .values()
        .filter(|j| j.value.kind == JobKind::Backup && j.value.state == JobState::Running)
        .filter_map(|j| j.value.backup_name.clone())
        .collect()
}

/// Backups that were complete once: those named by SUCCEEDED backup jobs (an
/// agent finishes a backup job only once its MANIFEST is written). One of them
/// found without a MANIFEST is a removal cut short, finished at once.
pub fn backups_of_succeeded_jobs(s: &TopoView) -> HashSet<String> {
    s.jobs
        .values()
        .filter(|j| j.value.kind == JobKind::Backup && j.value.state == JobState::Succeeded)
        .filter_map(|j| j.value.backup_name.clone())
        .collect()
}

/// What `schedule prune` reads from topo before pruning.
#[derive(Debug, Clone, Default)]
pub struct PruneScope {
    /// The shards the schedule targets now.
    pub shards: Vec<(String, String)>,
    /// Backups restores are reading (see [`backups_in_use`]).
    pub in_use: HashSet<String>,
    /// Backups being written (see [`backups_in_flight`]).
    pub in_flight: HashSet<String>,
    /// Backups that were complete once (see [`backups_of_succeeded_jobs`]).
    pub succeeded: HashSet<String>,
}

/// Reads the topology once and says which shards `schedule prune` visits and
/// which backups it must keep, by the same definitions the leader uses.
pub async fn prune_scope(topo: &Topo, schedule: &Schedule) -> anyhow::Result<PruneScope> {
    let cache = Cache::load(topo).await?;
    let snap = cache.inner.read().await;
    Ok(PruneScope {
        shards: schedule::target_shards(&schedule.target, snap.shards.keys()),
        in_use: backups_in_use(&snap),
        in_flight: backups_in_flight(&snap),
        succeeded: backups_of_succeeded_jobs(&snap),
    })
}

/// The leader's retention pass: after each successful scheduled backup, prunes
/// its shard by the schedule's rule. A shard that fails is logged, counted
/// (`pass_items_skipped{pass="retention"}`) and retried on the next pass; the
/// others go on. `done` holds the jobs already handled (in
/// memory: running one again after a restart is harmless).
pub async fn retention_pass(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
    done: &Mutex<HashSet<String>>,
) -> anyhow::Result<()> {
    let (work, in_use, in_flight, succeeded) = {
        let s = shared.cache.inner.read().await;
        let handled = lock(done).clone();
        let work: Vec<(Job, Schedule)> = s
            .jobs
            .values()
            .map(|v| &v.value)
            .filter(|j| {
                j.state == JobState::Succeeded
                    && j.kind == JobKind::Backup
                    && !handled.contains(&j.id)
            })
            .filter_map(|j| {
                let sched = s.schedules.get(j.schedule.as_deref()?)?;
                Some((j.clone(), sched.value.clone()))
            })
            .collect();
        (
            work,
            backups_in_use(&s),
            backups_in_flight(&s),
            backups_of_succeeded_jobs(&s),
        )
    };
    let catalog = Catalog::fenced(&shared.topo, shared.storage.as_ref(), fence);
    for (job, sched) in work {
        let pruned = prune_shard(
            &catalog,
            &ShardRetention {
                schedule: &sched,
                keyspace: &job.keyspace,
                shard: &job.shard,
                now,
                in_use: &in_use,
                in_flight: &in_flight,
                succeeded: &succeeded,
                incomplete_grace: shared.cfg.incomplete_grace,
            },
        )
        .await;
        let removed = match pruned {
            Ok(removed) => removed,
            Err(e) if super::reconcile::lost_leadership(&e) => return Err(e),
            Err(e) => {
                // One failing shard never stops the others; retried next pass.
                shared.metrics.count_skipped("retention");
                tracing::warn!(schedule = %sched.name, shard = %format!("{}/{}", job.keyspace, job.shard),
                    error = format!("{e:#}"), "retention skipped a shard; retrying on the next pass");
                continue;
            }
        };
        if !removed.is_empty() {
            let names: Vec<&str> = removed.iter().map(|r| r.name.as_str()).collect();
            tracing::info!(schedule = %sched.name, shard = %format!("{}/{}", job.keyspace, job.shard), removed = ?names, "retention pruned backups");
        }
        lock(done).insert(job.id.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_topo::{TabletAlias, Versioned};

    /// Only a RUNNING backup job's backup is in flight: not one still PENDING
    /// (nothing stored yet), finished, or read by a restore.
    #[test]
    fn in_flight_is_what_running_backup_jobs_name() {
        let alias: TabletAlias = "zone1-101".parse().unwrap();
        let mut view = TopoView::default();
        for (id, kind, state, name) in [
            ("a", JobKind::Backup, JobState::Running, Some("writing")),
            ("b", JobKind::Backup, JobState::Pending, None),
            ("c", JobKind::Backup, JobState::Succeeded, Some("done")),
            ("d", JobKind::Backup, JobState::Failed, Some("abandoned")),
            ("e", JobKind::Restore, JobState::Running, Some("read")),
            ("f", JobKind::Backup, JobState::Cancelled, Some("cancelled")),
            ("g", JobKind::Drill, JobState::Pending, Some("drilled")),
            (
                "h",
                JobKind::Drill,
                JobState::Failed,
                Some("drilled-before"),
            ),
        ] {
            let mut j = Job::pending(kind, "ks", "0", &alias);
            j.id = id.into();
            j.state = state;
            j.backup_name = name.map(str::to_string);
            view.jobs.insert(
                id.into(),
                Versioned {
                    value: j,
                    version: 1,
                },
            );
        }
        let want: HashSet<String> = ["writing".to_string()].into();
        assert_eq!(backups_in_flight(&view), want);
        let want: HashSet<String> = ["read".to_string(), "drilled".to_string()].into();
        assert_eq!(backups_in_use(&view), want);
        let want: HashSet<String> = ["done".to_string()].into();
        assert_eq!(backups_of_succeeded_jobs(&view), want);
    }
}
