//! Backup schedules as pure decisions: parsing a schedule's cron expression and
//! target, when it fires next, whether it is due now, how its shards are spread
//! over a short window, and which shards a target means at a given moment.
//!
//! Owns no IO: the coordinator's scheduler pass (`scheduler_pass.rs`) reads the
//! [`Schedule`] records, jobs, shards and tablets from the cache and calls
//! [`plan_slot`] and [`scheduled_job`]; [`target_shards`] is the one expansion of
//! a stored target; the `cairn schedule` commands use the same parsing to refuse
//! bad input before anything is written. All times are UTC. May call: `select`
//! (its [`Choice`]), `cairn-topo`'s record types.
//!
//! When a schedule fires (see [`due`]): at the first cron slot after its last run
//! (or its creation, when it never ran), but never before the `next_run` stored in
//! its record (`schedule set` and `schedule resume` store the next slot after
//! "now", so defining or resuming a schedule does not make up slots it was never
//! meant to run). A stretch of missed slots, such as the time no coordinator led,
//! yields exactly one run: the latest missed slot.
//!
//! A schedule's `--drill-cron` is planned by the same rules through a view of
//! the schedule ([`drill`]): its drill slots, jobs and skips are a schedule of
//! their own in everything but the record they are written into.
//!
//! Two rooms of their own: [`period`], the minimum schedule period (how close a
//! cron's slots come; refused below `--min-schedule-period`), and [`skip`], what
//! becomes of a shard of a slot that cannot start (waited for, then given up and
//! counted on the schedule, never recorded per slot). They use this file; it
//! does not use them.

use std::time::Duration;

use cairn_topo::names::{validate_keyspace, validate_shard};
use std::collections::HashSet;

use cairn_topo::{Job, JobKind, Schedule};
use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
pub use croner::Cron;
use sha2::{Digest, Sha256};

use super::select::Choice;

/// A schedule's cron expression or target that cannot be used; the message says
/// what is wrong and what is expected, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchedule(pub String);

/// Parses a cron expression of 5 fields (minute hour day-of-month month
/// day-of-week) or 6 fields (seconds first). Names (`MON`, `JAN`), ranges, steps,
/// lists and croner's `L`, `#`, `W` are accepted; nicknames (`@daily`) and 7-field
/// (year) patterns are not, as the contract fixes 5 or 6 fields.
pub fn parse_cron(expr: &str) -> Result<Cron, InvalidSchedule> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: {fields} fields, expected 5 \
             (minute hour day-of-month month day-of-week) or 6 (seconds first)"
        )));
    }
    if expr.contains('@') {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: nicknames such as @daily are not supported; \
             write the 5 or 6 fields"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(expr)
        .map_err(|e| InvalidSchedule(format!("invalid cron expression {expr:?}: {e}")))?;
    // A pattern that never matches (e.g. 30 February) parses; refuse it here,
    // where the operator sees it, instead of in the scheduler.
    let probe = DateTime::<Utc>::UNIX_EPOCH;
    if next_run(&cron, probe).is_none() {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: it never fires"
        )));
    }
    Ok(cron)
}

/// What a schedule backs up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every shard of the keyspace, including shards added after the schedule was
    /// set (the shard list is read at each run).
    Keyspace(String),
    /// One shard.
    Shard {
        /// The shard's keyspace.
        keyspace: String,
        /// The shard's name (e.g. `-80`).
        shard: String,
    },
}

impl Target {
    /// The keyspace the target belongs to.
    pub fn keyspace(&self) -> &str {
        match self {
            Target::Keyspace(ks) => ks,
            Target::Shard { keyspace, .. } => keyspace,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Keyspace(ks) => f.write_str(ks),
            Target::Shard { keyspace, shard } => write!(f, "{keyspace}/{shard}"),
        }
    }
}

/// Parses `KS` or `KS/SHARD`, validating both names with the contract's rules.
pub fn parse_target(s: &str) -> Result<Target, InvalidSchedule> {
    let bad = |e: &dyn std::fmt::Display| {
        InvalidSchedule(format!(
            "invalid target {s:?}: {e} (expected KEYSPACE or KEYSPACE/SHARD)"
        ))
    };
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ks), None, _) => {
            validate_keyspace(ks).map_err(|e| bad(&e))?;
            Ok(Target::Keyspace(ks.to_string()))
        }
        (Some(ks), Some(shard), None) => {
            validate_keyspace(ks).map_err(|e| bad(&e))?;
            validate_shard(shard).map_err(|e| bad(&e))?;
            Ok(Target::Shard {
                keyspace: ks.to_string(),
                shard: shard.to_string(),
            })
        }
        _ => Err(bad(&"more than one slash")),
    }
}

/// The shards a target means now, given the keyspace's current shards (sorted by
/// the caller or not; the result is sorted). A keyspace target is every current
/// shard, so shards added later are included from their first run on. A shard
/// target is that shard even when it is not (yet) in `current_shards`: the run
/// then fails visibly ("no tablets") instead of silently backing up nothing.
pub fn expand_target(target: &Target, current_shards: &[String]) -> Vec<(String, String)> {
    match target {
        Target::Keyspace(ks) => {
            let mut shards: Vec<(String, String)> = current_shards
                .iter()
                .map(|s| (ks.clone(), s.clone()))
                .collect();
            shards.sort();
            shards.dedup();
            shards
        }
        Target::Shard { keyspace, shard } => vec![(keyspace.clone(), shard.clone())],
    }
}

impl Target {
    /// A target as stored in a schedule record, read without validation (the
    /// record was validated when written; one edited by hand is taken at its
    /// word): `KS/SHARD` (split at the first slash) is a shard, anything else a
    /// keyspace.
    pub fn stored(s: &str) -> Target {
        match s.split_once('/') {
            Some((ks, shard)) => Target::Shard {
                keyspace: ks.to_string(),
                shard: shard.to_string(),
            },
            None => Target::Keyspace(s.to_string()),
        }
    }
}

/// The shards a stored schedule target covers now, given every (keyspace, shard)
/// topo knows: [`Target::stored`] then [`expand_target`]. The one expansion the
/// scheduler, retention and `schedule prune` use; sorted.
pub fn target_shards<'a>(
    target: &str,
    known: impl IntoIterator<Item = &'a (String, String)>,
) -> Vec<(String, String)> {
    let target = Target::stored(target);
    let ks = target.keyspace();
    let current: Vec<String> = known
        .into_iter()
        .filter(|(k, _)| k == ks)
        .map(|(_, shard)| shard.clone())
        .collect();
    expand_target(&target, &current)
}

/// Whether a stored schedule record can be planned at all: its cron parses and its
/// target is a valid `KS` or `KS/SHARD`. A record written by hand (or by a newer
/// version) that fails either is skipped by the scheduler pass, which logs and
/// counts it; every other schedule still runs. Pure.
pub fn usable_schedule(schedule: &Schedule) -> Result<Cron, InvalidSchedule> {
    let cron = parse_cron(&schedule.cron)
        .map_err(|e| InvalidSchedule(format!("schedule {}: {e}", schedule.name)))?;
    parse_target(&schedule.target)
        .map_err(|e| InvalidSchedule(format!("schedule {}: {e}", schedule.name)))?;
    Ok(cron)
}

/// The first slot strictly after `after`; `None` when the pattern never fires again
/// (croner gives up searching past year 5000).
pub fn next_run(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Slots are whole seconds: croner keeps a fraction it is given, which would make
    // slots (the key that dedupes runs across leaders) depend on when we asked.
    cron.find_next_occurrence(&whole_second(after), false)
        .ok()
        .map(whole_second)
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

/// The slot a schedule waits for: the first slot after its last run (or creation),
/// postponed to its stored `next_run` when that is later. `None` when the pattern
/// never fires again. Paused schedules are not special here; see [`due`].
pub fn upcoming(schedule: &Schedule, cron: &Cron) -> Option<DateTime<Utc>> {
    let base = schedule.last_run.unwrap_or(schedule.created_at);
    let first = next_run(cron, base)?;
    Some(match schedule.next_run {
        Some(stored) if stored > first => stored,
        _ => first,
    })
}

/// The slot to run now, if the schedule is due at `now`: its [`upcoming`] slot has
/// come. The slot returned is the latest one at or before `now`, so a stretch of
/// missed slots is made up by one run, never one per slot. The caller records the
/// run with [`record_run`] (which makes the schedule not due until the following
/// slot). A paused schedule is never due. Fails only on a cron that does not parse
/// (a record written by hand).
pub fn due(
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, InvalidSchedule> {
    if schedule.paused {
        return Ok(None);
    }
    let cron = parse_cron(&schedule.cron)
        .map_err(|e| InvalidSchedule(format!("schedule {}: {e}", schedule.name)))?;
    Ok(due_with(schedule, &cron, now))
}

/// [`due`] with the cron already parsed (the scheduler keeps it parsed).
pub fn due_with(schedule: &Schedule, cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if schedule.paused {
        return None;
    }
    let first = upcoming(schedule, cron)?;
    if first > now {
        return None;
    }
    // The latest slot at or before now; at least `first`, which is a slot ≤ now.
    let latest = whole_second(
        cron.find_previous_occurrence(&whole_second(now), true)
            .ok()?,
    );
    Some(latest.max(first))
}

/// Records that the schedule ran (or was skipped) for `slot`: `last_run` becomes
/// the slot and `next_run` the slot after it, so [`due`] answers `None` until then.
pub fn record_run(schedule: &mut Schedule, cron: &Cron, slot: DateTime<Utc>) {
    schedule.last_run = Some(slot);
    schedule.next_run = next_run(cron, slot);
}

/// A deterministic delay within `window` for one shard of one schedule's run, so
/// the shards of a keyspace start spread over the window instead of in the same
/// second. The same inputs always give the same delay (a sha256 of the names, not
/// Rust's per-process hasher), so a coordinator that takes over mid-window picks
/// the same times. A zero window gives zero.
pub fn stagger(schedule_name: &str, keyspace: &str, shard: &str, window: Duration) -> Duration {
    let window_ms = window.as_millis();
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let mut h = Sha256::new();
    // Separators that cannot occur in the names keep ("a","bc") apart from ("ab","c").
    for part in [schedule_name, keyspace, shard] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let offset = u128::from_be_bytes(first) % window_ms;
    // offset < window_ms, which came from a Duration, so it fits in u64 millis.
    Duration::from_millis(u64::try_from(offset).unwrap_or(0))
}

/// What the scheduler does for one schedule in one pass ([`plan_slot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// The slot being run: the pinned slot, else the latest due one (a stretch of
    /// missed slots is made up by this one run).
    pub slot: DateTime<Utc>,
    /// Every shard the target covers now.
    pub shards: Vec<(String, String)>,
    /// Shards whose job is created now, with their stagger delay after the slot.
    pub start: Vec<(String, String, Duration)>,
    /// Shards not started in this pass, and why.
    pub skip: Vec<(String, String, SlotSkip)>,
    /// No shard waits for its stagger delay: once `start` is settled (each shard
    /// started or given up, [`skip::settle`]) the run can be recorded (`last_run`)
    /// and the slot unpinned. Otherwise the slot is pinned, so it stays the slot
    /// until its last shard is settled even if the cron moves on meanwhile.
    pub done: bool,
}

/// Why a shard of a slot is not started in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSkip {
    /// A job of this schedule and slot exists already (this leader or an earlier
    /// one created it): runs are deduplicated by the jobs themselves.
    AlreadyStarted,
    /// Its stagger delay has not passed yet; started on a later pass.
    Waiting {
        /// When it may start.
        until: DateTime<Utc>,
    },
}

/// The scheduler's decision for one schedule at `now`, over plain data:
/// - paused: nothing (`None`);
/// - the slot is `pinned` (a slot whose shards are still being started: pinned
///   in this leader's memory, else [`slot_in_progress`]; ignored once `last_run`
///   reached it), else the slot [`due_with`] gives, else nothing;
/// - each shard of `shards` that has no job of this schedule and slot in `jobs` is
///   started once its [`stagger`] delay passed; the stagger window is
///   `stagger_window`, but never more than half the schedule's period.
pub fn plan_slot(
    schedule: &Schedule,
    cron: &Cron,
    now: DateTime<Utc>,
    pinned: Option<DateTime<Utc>>,
    shards: Vec<(String, String)>,
    jobs: &[Job],
    stagger_window: Duration,
) -> Option<SlotPlan> {
    if schedule.paused {
        return None;
    }
    let pinned = pinned.filter(|p| schedule.last_run.is_none_or(|l| l < *p));
    let slot = pinned.or_else(|| due_with(schedule, cron, now))?;
    // Spread shards over the window, but never past half the schedule's period.
    let period = next_run(cron, slot)
        .map(|n| (n - slot).to_std().unwrap_or_default())
        .unwrap_or(stagger_window);
    let window = stagger_window.min(period / 2);
    let started: HashSet<(&str, &str)> = jobs
        .iter()
        .filter(|j| {
            j.schedule.as_deref() == Some(schedule.name.as_str()) && j.scheduled_for == Some(slot)
        })
        .map(|j| (j.keyspace.as_str(), j.shard.as_str()))
        .collect();
    let mut start = Vec::new();
    let mut skip = Vec::new();
    for (ks, shard) in &shards {
        if started.contains(&(ks.as_str(), shard.as_str())) {
            skip.push((ks.clone(), shard.clone(), SlotSkip::AlreadyStarted));
            continue;
        }
        let delay = stagger(&schedule.name, ks, shard, window);
        let until = slot + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        if now < until {
            skip.push((ks.clone(), shard.clone(), SlotSkip::Waiting { until }));
        } else {
            start.push((ks.clone(), shard.clone(), delay));
        }
    }
    let done = !skip
        .iter()
        .any(|(_, _, why)| matches!(why, SlotSkip::Waiting { .. }));
    Some(SlotPlan {
        slot,
        shards,
        start,
        skip,
        done,
    })
}

/// The slot of `schedule` whose shards were being started when the leader that
/// started them died: the latest slot some job of this schedule was written for
/// that the schedule has not recorded as run (after `last_run`, or after its
/// creation when it never ran) and not skipped past (at or after the stored
/// `next_run`, which `schedule set` and `resume` move beyond "now"). A new leader
/// finishes that slot (its remaining shards) before the cron moves on, so a
/// leader change never leaves a shard out of a run. Pure.
pub fn slot_in_progress(schedule: &Schedule, jobs: &[Job]) -> Option<DateTime<Utc>> {
    let after = schedule.last_run.unwrap_or(schedule.created_at);
    jobs.iter()
        .filter(|j| j.schedule.as_deref() == Some(schedule.name.as_str()))
        .filter_map(|j| j.scheduled_for)
        .filter(|s| *s > after && schedule.next_run.is_none_or(|n| *s >= n))
        .max()
}

/// Why one shard of a slot cannot start now ([`scheduled_job`]); what becomes of
/// it is [`skip::settle`]'s to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// A backup job of the shard has not finished: the slot is given up for the
    /// shard at once.
    Busy {
        /// The unfinished job.
        job: String,
        /// Its state (PENDING or RUNNING).
        state: cairn_topo::JobState,
    },
    /// No tablet of the shard is eligible (or it has none): looked at again until
    /// the give-up time.
    NoTablet {
        /// Why each tablet was passed over, or "no tablets".
        why: String,
    },
    /// A drill: a drill job of the shard has not finished; the slot is given up
    /// for the shard at once.
    DrillBusy {
        /// The unfinished drill job.
        job: String,
    },
    /// A drill: the shard has no backup to drill; the slot is given up for it.
    NoBackup {
        /// Why, in one line.
        why: String,
    },
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::Busy { job, state } => write!(
                f,
                "backup job {job} of the shard is still {}",
                format!("{state:?}").to_uppercase()
            ),
            Blocked::NoTablet { why } => write!(f, "no eligible tablet ({why})"),
            Blocked::NoBackup { why } => write!(f, "nothing to drill: {why}"),
            Blocked::DrillBusy { job } => {
                write!(f, "drill job {job} of the shard has not finished")
            }
        }
    }
}

/// One run of a schedule on one shard, as the scheduler starts it.
#[derive(Debug, Clone)]
pub struct ScheduledRun<'a> {
    /// The schedule.
    pub schedule: &'a Schedule,
    /// The slot it runs for.
    pub slot: DateTime<Utc>,
    /// The shard's keyspace.
    pub keyspace: &'a str,
    /// The shard.
    pub shard: &'a str,
    /// How long the job may stay PENDING (written into the job).
    pub pending_timeout: Duration,
}

/// The job a scheduled run writes, chosen over plain data:
/// - a backup job of the shard has not finished (in `jobs`): none,
///   [`Blocked::Busy`] (the slot is given up for the shard, see [`skip`]);
/// - else a tablet was chosen: a PENDING job for it, carrying the schedule, the
///   slot (so the run is deduplicated), the schedule's engine and the pending
///   timeout;
/// - else none, [`Blocked::NoTablet`] with why each tablet was passed over ("no
///   tablets" when the shard has none).
///
/// Nothing is written for a shard that cannot start: the scheduler counts it on
/// the schedule ([`skip::record_skips`]) instead of leaving a job per slot.
pub fn scheduled_job(
    run: &ScheduledRun<'_>,
    jobs: &[Job],
    choice: &Choice,
) -> Result<Job, Blocked> {
    let (ks, shard) = (run.keyspace, run.shard);
    let running = jobs.iter().find(|j| {
        j.kind == JobKind::Backup && j.keyspace == ks && j.shard == shard && !j.state.is_final()
    });
    if let Some(r) = running {
        return Err(Blocked::Busy {
            job: r.id.clone(),
            state: r.state,
        });
    }
    let alias = match choice {
        Choice::Tablet(alias) => alias,
        Choice::None(reasons) => {
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            return Err(Blocked::NoTablet {
                why: if why.is_empty() {
                    "no tablets".into()
                } else {
                    why.join("; ")
                },
            });
        }
    };
    let mut job = Job::pending(JobKind::Backup, ks, shard, alias);
    job.schedule = Some(run.schedule.name.clone());
    job.scheduled_for = Some(run.slot);
    job.engine = run.schedule.backup_engine;
    job.pending_timeout_seconds = Some(run.pending_timeout.as_secs());
    if run.schedule.incremental {
        // From the newest backup of the shard, whichever tablet took it.
        job.incremental_from_pos = Some("auto".into());
        job.engine = None;
    }
    Ok(job)
}

/// When the coordinator's etcd snapshot cron (`--topo-snapshot-cron`) is due: its
/// first slot after the last snapshot (or after the leader started, before the
/// first one) has come. `None` while it has not (or never will).
pub fn snapshot_due(
    cron: &Cron,
    started: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slot = next_run(cron, last.unwrap_or(started))?;
    (slot <= now).then_some(slot)
}

pub mod drill;
pub mod period;
pub mod skip;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;
