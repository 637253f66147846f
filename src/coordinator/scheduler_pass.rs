//! The scheduler pass of the leader loop: reads the schedules, jobs, shards and
//! tablets from the watched [`TopoView`](super::cache::TopoView), asks
//! [`schedule::plan_slot`] which shards of each due slot start now,
//! [`schedule::scheduled_job`] which job each one gets (on the tablet
//! [`select_backup_tablet`] picks) or why it cannot start, and
//! [`schedule::skip::settle`] what becomes of the slot; then writes those jobs and,
//! once the slot is settled, records the run with its given-up shards counted
//! (fenced, one write of the schedule record per slot). Runs are deduplicated by
//! the jobs themselves, so a new leader never doubles a run, and it finishes the slot a dead leader left
//! half started ([`schedule::slot_in_progress`]), so it never leaves a shard out
//! of one; nothing is written for a shard that does not run.
//!
//! A schedule with a `--drill-cron` is planned twice: its backups, and its
//! drills through [`schedule::drill::drill_view`] (DRILL jobs on the tablet
//! [`select_drill_tablet`] picks, of the newest complete full backup, among the
//! tablets with the disk space for it), by the same rules (a shard where no
//! tablet has room waits like one with no eligible tablet, then is counted as
//! skipped with the reasons); the drills' run is written back into the same
//! record.
//!
//! A schedule the pass cannot run at all (a cron or target that does not parse,
//! or a cron below `--min-schedule-period`) is refused: logged, counted
//! (`cairn_coordinator_pass_items_skipped_total{pass="scheduler"}`) and noted on
//! its record once per refusal; every other schedule still runs.
//!
//! May call: the pure rules (`schedule`, `select`), `cairn-topo` (fenced writes),
//! `common`.

use cairn_topo::{BackupRecord, Fence, Job, Schedule};
use chrono::{DateTime, Utc};

use super::schedule::period::check_min_period;
use super::schedule::skip::{self, GivenUp, Settled, SlotMemo};
use super::schedule::{self, Cron, ScheduledRun, SlotPlan};
use super::select::{select_backup_tablet, select_drill_tablet, with_pending_jobs, SelectOptions};
use super::shared::Shared;
use crate::backup::drill::{choose_drill_backup, drill_room_for};
use crate::common::{failpoint, lock};

/// Jobs created at once by a keyspace-wide run.
const JOB_CREATE_CONCURRENCY: usize = 64;

/// One schedule's work in a pass.
enum Planned {
    /// The schedule cannot be run at all, and why.
    Refused {
        /// The schedule's name.
        name: String,
        /// Why, in one line.
        reason: String,
    },
    /// Its slot, planned and settled.
    Slot(Box<SlotWork>),
}

/// One schedule's slot in a pass: its plan and what becomes of each shard.
struct SlotWork {
    /// The schedule, as read at the start of the pass.
    sched: Schedule,
    /// Its cron, parsed (to record the run).
    cron: Cron,
    /// What the planner decided.
    plan: SlotPlan,
    /// The jobs to create, the shards given up or waiting.
    settled: Settled,
}

/// Creates the jobs of due schedule slots, one per shard and slot, spread over the
/// stagger window; records `last_run` (and the shards given up) once every shard
/// of the slot is settled. One bad schedule never stops the pass: a refused one
/// is noted and skipped, one whose writes fail is logged, counted and skipped;
/// every other schedule still runs. A lost fence ends the pass.
pub(super) async fn scheduler_pass(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for planned in plan_pass(shared, now).await {
        let (name, result) = match planned {
            Planned::Refused { name, reason } => {
                let r = refuse(shared, fence, &name, &reason, now).await;
                (name, r)
            }
            Planned::Slot(work) => {
                let name = work.sched.name.clone();
                (name, apply(shared, fence, *work, now).await)
            }
        };
        if let Err(e) = result {
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

/// Why the pass refuses a stored schedule, if it does: its cron or target does
/// not parse ([`schedule::usable_schedule`]), or its cron fires more often than
/// `--min-schedule-period` ([`check_min_period`], computed once per cron text).
fn refusal(shared: &Shared, sched: &Schedule, now: DateTime<Utc>) -> Result<Cron, String> {
    let cron = schedule::usable_schedule(sched).map_err(|e| e.to_string())?;
    let mut checks = lock(&shared.period_checks);
    let verdict = checks.entry(sched.cron.clone()).or_insert_with(|| {
        check_min_period(&sched.cron, &cron, shared.cfg.min_schedule_period, now)
            .err()
            .map(|e| e.to_string())
    });
    match verdict {
        Some(why) => Err(format!("schedule {}: {why}; it is not run", sched.name)),
        None => Ok(cron),
    }
}

/// Plans every schedule from one read of the cache; a schedule that cannot be
/// planned yields its refusal in place and the others are still planned.
async fn plan_pass(shared: &Shared, now: DateTime<Utc>) -> Vec<Planned> {
    let memos = lock(&shared.slots_in_progress).clone();
    let select = SelectOptions {
        allow_primary: false,
        max_lag_seconds: shared.cfg.max_lag_seconds,
    };
    let view = shared.cache.inner.read().await;
    let jobs: Vec<Job> = view.jobs.values().map(|v| v.value.clone()).collect();
    let mut out = Vec::new();
    // Each schedule, and the drills of those with a drill cron as schedules of
    // their own.
    let all: Vec<(Schedule, bool)> = view
        .schedules
        .values()
        .flat_map(|v| {
            let drills = schedule::drill::drill_view(&v.value).map(|d| (d, true));
            std::iter::once((v.value.clone(), false)).chain(drills)
        })
        .collect();
    for (sched, is_drill) in &all {
        if sched.paused {
            continue;
        }
        let cron = match refusal(shared, sched, now) {
            Ok(c) => c,
            Err(reason) => {
                out.push(Planned::Refused {
                    name: sched.name.clone(),
                    reason,
                });
                continue;
            }
        };
        lock(&shared.refused).remove(&sched.name);
        let shards = schedule::target_shards(&sched.target, view.shards.keys());
        let memo = memos.get(&sched.name);
        let Some(plan) = schedule::plan_slot(
            sched,
            &cron,
            now,
            memo.map(|m| m.slot)
                .or_else(|| schedule::slot_in_progress(sched, &jobs)),
            shards,
            &jobs,
            shared.cfg.stagger_window,
        ) else {
            continue;
        };
        let earlier: &[GivenUp] = match memo {
            Some(m) if m.slot == plan.slot => &m.given_up,
            _ => &[],
        };
        let outcomes = plan
            .start
            .iter()
            .filter(|(ks, shard, _)| {
                !earlier
                    .iter()
                    .any(|g| &g.keyspace == ks && &g.shard == shard)
            })
            .map(|(ks, shard, delay)| {
                let tablets = view.shard_tablets(ks, shard);
                let run = ScheduledRun {
                    schedule: sched,
                    slot: plan.slot,
                    keyspace: ks,
                    shard,
                    pending_timeout: shared.cfg.pending_timeout,
                };
                let outcome = if *is_drill {
                    // Not a tablet with a job written but not taken yet (its
                    // Health does not say busy until it takes it).
                    let tablets = with_pending_jobs(tablets, &jobs);
                    let records: Vec<BackupRecord> = view
                        .backups
                        .get(&(ks.clone(), shard.clone()))
                        .map(|m| m.values().cloned().collect())
                        .unwrap_or_default();
                    // Only where the disk has room for the backup it drills.
                    let need = choose_drill_backup(&records, None)
                        .ok()
                        .and_then(drill_room_for);
                    let choice = select_drill_tablet(&tablets, select.max_lag_seconds, need);
                    schedule::drill::drill_job(&run, &jobs, &records, &choice)
                } else {
                    let choice = select_backup_tablet(&tablets, &select);
                    schedule::scheduled_job(&run, &jobs, &choice)
                };
                (ks.clone(), shard.clone(), *delay, outcome)
            })
            .collect();
        let settled = skip::settle(&plan, &cron, earlier, outcomes, now);
        out.push(Planned::Slot(Box::new(SlotWork {
            sched: sched.clone(),
            cron,
            plan,
            settled,
        })));
    }
    out
}

/// A refused schedule: logged, counted and noted on its record (fenced) the first
/// time this coordinator refuses it for this reason; nothing on later passes.
async fn refuse(
    shared: &Shared,
    fence: &Fence,
    name: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let already = lock(&shared.refused).insert(name.to_string(), reason.to_string());
    if already.as_deref() == Some(reason) {
        return Ok(());
    }
    tracing::warn!(schedule = %name, %reason, "scheduler pass: refusing a schedule");
    shared.metrics.count_skipped("scheduler");
    // A drill view's refusal is noted on its schedule's record.
    let key = shared
        .topo
        .keys()
        .schedule(schedule::drill::real_name(name).0);
    let noted = shared
        .topo
        .fenced(fence)
        .update_with::<Schedule, _>(&key, |cur| {
            let Some(mut s) = cur else { return Ok(None) };
            Ok(skip::note_refusal(&mut s, reason, now).then_some(s))
        })
        .await;
    if noted.is_err() {
        // Noted on a later pass (or by the next leader).
        lock(&shared.refused).remove(name);
    }
    noted?;
    Ok(())
}

/// Writes one schedule's jobs (concurrently for a keyspace-wide run), then keeps
/// the slot open while shards still wait (stagger or tablet), or records the run
/// with its given-up shards counted.
async fn apply(
    shared: &Shared,
    fence: &Fence,
    work: SlotWork,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let SlotWork {
        sched,
        cron,
        plan,
        settled,
    } = work;
    for chunk in settled.create.chunks(JOB_CREATE_CONCURRENCY) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|job| create_job(shared, fence, &sched, job))
            .collect();
        for r in futures::future::join_all(batch).await {
            r?;
        }
    }
    let slot = plan.slot;
    let memo = {
        let memos = lock(&shared.slots_in_progress);
        memos
            .get(&sched.name)
            .filter(|m| m.slot == slot)
            .cloned()
            .unwrap_or(SlotMemo {
                slot,
                ..SlotMemo::default()
            })
    };
    log_news(&sched.name, slot, &memo, &settled);
    if !settled.done {
        if !settled.create.is_empty() {
            // Some shards of the slot have their job, others still wait.
            failpoint::hit("scheduler-slot-partly-started");
        }
        let mut logged = memo.logged_waiting;
        logged.extend(
            settled
                .waiting
                .iter()
                .map(|(k, s, _)| (k.clone(), s.clone())),
        );
        lock(&shared.slots_in_progress).insert(
            sched.name.clone(),
            SlotMemo {
                slot,
                given_up: settled.given_up,
                logged_waiting: logged,
            },
        );
        return Ok(());
    }
    failpoint::hit("scheduler-before-recording-run");
    lock(&shared.slots_in_progress).remove(&sched.name);
    let (real, is_drill) = schedule::drill::real_name(&sched.name);
    let key = shared.topo.keys().schedule(real);
    let mut counted = false;
    shared
        .topo
        .fenced(fence)
        .update_with::<Schedule, _>(&key, |cur| {
            counted = false;
            let Some(mut s) = cur else { return Ok(None) };
            // The drills' run is recorded on their view, then written back.
            let mut v = if is_drill {
                let Some(v) = schedule::drill::drill_view(&s) else {
                    return Ok(None);
                };
                v
            } else {
                s.clone()
            };
            if v.last_run.is_some_and(|l| l >= slot) {
                return Ok(None);
            }
            schedule::record_run(&mut v, &cron, slot);
            skip::record_skips(&mut v, &settled.given_up, now);
            if is_drill {
                schedule::drill::write_back(&mut s, &v);
            } else {
                s = v;
            }
            counted = true;
            Ok(Some(s))
        })
        .await?;
    if counted {
        for g in &settled.given_up {
            shared.metrics.count_skipped_run(&g.keyspace, &g.shard);
        }
    }
    tracing::info!(schedule = %sched.name, %slot, shards = plan.shards.len(), skipped = settled.given_up.len(), "schedule run started");
    Ok(())
}

/// Logs what is new for the slot in this pass: shards given up (a warning each)
/// and shards that began waiting for a tablet (once each).
fn log_news(name: &str, slot: DateTime<Utc>, memo: &SlotMemo, settled: &Settled) {
    for g in &settled.given_up {
        if !memo.given_up.contains(g) {
            tracing::warn!(schedule = %name, %slot, shard = %format!("{}/{}", g.keyspace, g.shard), reason = %g.reason, "scheduled backup skipped for this slot (counted on the schedule)");
        }
    }
    for (ks, shard, until) in &settled.waiting {
        if !memo.logged_waiting.contains(&(ks.clone(), shard.clone())) {
            tracing::info!(schedule = %name, %slot, shard = %format!("{ks}/{shard}"), %until, "no eligible tablet yet; looking again until the give-up time");
        }
    }
}

/// Writes one scheduled job (fenced) and says so.
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
    tracing::info!(schedule = %sched.name, job = %job.id, kind = ?job.kind, tablet = %job.tablet_alias, backup = ?job.backup_name, "scheduled job created");
    Ok(())
}
