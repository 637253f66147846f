//! The scheduler pass of the leader loop: reads the schedules, jobs, shards and
//! tablets from the watched [`TopoView`](super::cache::TopoView), asks
//! [`schedule::plan_slot`] which shards of each due slot start now and
//! [`schedule::scheduled_job`] which job each one gets (on the tablet
//! [`select_backup_tablet`] picks), then writes those jobs and records the run
//! (fenced). Runs are deduplicated by the jobs themselves, so a new leader never
//! doubles a run, and it finishes the slot a dead leader left half started
//! ([`schedule::slot_in_progress`]), so it never leaves a shard out of one.
//!
//! May call: the pure rules (`schedule`, `select`), `cairn-topo` (fenced writes),
//! `common`.

use cairn_topo::{Fence, Job, JobState, Schedule};
use chrono::{DateTime, Utc};

use super::schedule::{self, Cron, ScheduledRun, SlotPlan};
use super::select::{select_backup_tablet, SelectOptions};
use super::shared::Shared;
use crate::common::{failpoint, lock};

/// Jobs created at once by a keyspace-wide run.
const JOB_CREATE_CONCURRENCY: usize = 64;

/// One schedule's work in a pass: its slot plan and the jobs it writes.
struct SlotWork {
    /// The schedule, as read at the start of the pass.
    sched: Schedule,
    /// Its cron, parsed (to record the run).
    cron: Cron,
    /// What the planner decided.
    plan: SlotPlan,
    /// One job per shard of `plan.start`.
    jobs: Vec<Job>,
}

/// Creates the jobs of due schedule slots, one per shard and slot, spread over the
/// stagger window; records `last_run` once every shard of the slot has its job.
/// One bad schedule never stops the pass: a record that cannot be planned
/// ([`schedule::usable_schedule`]) or whose jobs cannot be written is logged,
/// counted (`cairn_coordinator_pass_items_skipped_total{pass="scheduler"}`) and
/// skipped; every other schedule still runs. A lost fence ends the pass.
pub(super) async fn scheduler_pass(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for work in plan_pass(shared, now).await {
        let work = match work {
            Ok(w) => w,
            Err(e) => {
                skip(shared, &e);
                continue;
            }
        };
        let name = work.sched.name.clone();
        if let Err(e) = apply(shared, fence, work).await {
            if super::reconcile::lost_leadership(&e) {
                return Err(e);
            }
            skip(shared, &e.context(format!("schedule {name}")));
        }
    }
    Ok(())
}

/// Logs and counts one schedule the pass skipped.
fn skip(shared: &Shared, e: &anyhow::Error) {
    tracing::warn!(error = %format!("{e:#}"), "scheduler pass: skipping a schedule");
    shared.metrics.count_skipped("scheduler");
}

/// Plans every schedule from one read of the cache; a schedule that cannot be
/// planned yields its error in place and the others are still planned.
async fn plan_pass(shared: &Shared, now: DateTime<Utc>) -> Vec<anyhow::Result<SlotWork>> {
    let pinned_slots = lock(&shared.slots_in_progress).clone();
    let select = SelectOptions {
        allow_primary: false,
        max_lag_seconds: shared.cfg.max_lag_seconds,
    };
    let view = shared.cache.inner.read().await;
    let jobs: Vec<Job> = view.jobs.values().map(|v| v.value.clone()).collect();
    let mut out = Vec::new();
    for sched in view.schedules.values().map(|v| &v.value) {
        if sched.paused {
            continue;
        }
        let cron = match schedule::usable_schedule(sched) {
            Ok(c) => c,
            Err(e) => {
                out.push(Err(e.into()));
                continue;
            }
        };
        let shards = schedule::target_shards(&sched.target, view.shards.keys());
        let Some(plan) = schedule::plan_slot(
            sched,
            &cron,
            now,
            pinned_slots
                .get(&sched.name)
                .copied()
                .or_else(|| schedule::slot_in_progress(sched, &jobs)),
            shards,
            &jobs,
            shared.cfg.stagger_window,
        ) else {
            continue;
        };
        let created = Utc::now();
        let new_jobs = plan
            .start
            .iter()
            .map(|(ks, shard, _)| {
                let choice = select_backup_tablet(&view.shard_tablets(ks, shard), &select);
                let run = ScheduledRun {
                    schedule: sched,
                    slot: plan.slot,
                    keyspace: ks,
                    shard,
                    pending_timeout: shared.cfg.pending_timeout,
                };
                schedule::scheduled_job(&run, &jobs, &choice, created)
            })
            .collect();
        out.push(Ok(SlotWork {
            sched: sched.clone(),
            cron,
            plan,
            jobs: new_jobs,
        }));
    }
    out
}

/// Writes one schedule's jobs (concurrently for a keyspace-wide run), then pins
/// the slot while shards still wait for their stagger, or records the run.
async fn apply(shared: &Shared, fence: &Fence, work: SlotWork) -> anyhow::Result<()> {
    let SlotWork {
        sched,
        cron,
        plan,
        jobs,
    } = work;
    for chunk in jobs.chunks(JOB_CREATE_CONCURRENCY) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|job| create_job(shared, fence, &sched, job))
            .collect();
        for r in futures::future::join_all(batch).await {
            r?;
        }
    }
    let slot = plan.slot;
    if !plan.done {
        lock(&shared.slots_in_progress).insert(sched.name.clone(), slot);
        if !jobs.is_empty() {
            // Some shards of the slot have their job, others still wait.
            failpoint::hit("scheduler-slot-partly-started");
        }
        return Ok(());
    }
    failpoint::hit("scheduler-before-recording-run");
    lock(&shared.slots_in_progress).remove(&sched.name);
    let key = shared.topo.keys().schedule(&sched.name);
    shared
        .topo
        .fenced(fence)
        .update_with::<Schedule, _>(&key, |cur| {
            let Some(mut s) = cur else { return Ok(None) };
            if s.last_run.is_some_and(|l| l >= slot) {
                return Ok(None);
            }
            schedule::record_run(&mut s, &cron, slot);
            Ok(Some(s))
        })
        .await?;
    tracing::info!(schedule = %sched.name, %slot, shards = plan.shards.len(), "schedule run started");
    Ok(())
}

/// Writes one scheduled job (fenced) and says what it is.
async fn create_job(
    shared: &Shared,
    fence: &Fence,
    sched: &Schedule,
    job: &Job,
) -> anyhow::Result<()> {
    shared
        .topo
        .fenced(fence)
        .create(&shared.topo.keys().job(&job.id), job, None)
        .await?;
    match job.state {
        JobState::Pending => {
            tracing::info!(schedule = %sched.name, job = %job.id, tablet = %job.tablet_alias, "scheduled backup")
        }
        _ => {
            tracing::warn!(schedule = %sched.name, shard = %format!("{}/{}", job.keyspace, job.shard), reason = ?job.error, "scheduled backup not started")
        }
    }
    Ok(())
}
