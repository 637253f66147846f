//! Runs that cannot start, counted instead of recorded: nothing is written per
//! slot that does not run. A shard of a slot that cannot start now ([`Blocked`]):
//! - its previous backup is still running: the slot is given up for that shard at
//!   once (runs never pile up on a shard);
//! - no tablet of the shard is eligible: it is looked at again on every pass until
//!   its give-up time ([`give_up_at`]: half the schedule's period after its
//!   stagger delay), and started if a tablet becomes eligible meanwhile.
//!
//! Once every shard of the slot has its job or is given up, the slot is recorded
//! ([`super::record_run`]) together with its given-up shards ([`record_skips`]):
//! `skipped_runs` grows by one per shard, `last_skip_reason`/`last_skip_at` say
//! the last one; one write of the schedule record per slot, as for a slot that
//! ran. A schedule the coordinator refuses altogether is noted once per refusal
//! ([`note_refusal`]), never per slot.
//!
//! Pure; part of [`super`] (the schedule rules). The scheduler pass keeps a
//! [`SlotMemo`] per schedule while a slot is open.

use std::collections::HashSet;
use std::time::Duration;

use cairn_topo::{Job, Schedule};
use chrono::{DateTime, Utc};
use croner::Cron;

use super::{next_run, Blocked, SlotPlan};

/// One shard of a slot that was given up, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    /// The shard's keyspace.
    pub keyspace: String,
    /// The shard.
    pub shard: String,
    /// Why, in one line.
    pub reason: String,
}

/// What the scheduler remembers of a slot still open (in memory, per schedule):
/// the slot (pinned, so it stays the slot until its last shard is settled), the
/// shards already given up (not looked at again), and the waiting shards already
/// logged (logged once, not on every pass). Lost with the leadership: a new
/// leader looks at every shard again, and counts a shard at most once, when the
/// slot is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMemo {
    /// The open slot.
    pub slot: DateTime<Utc>,
    /// Shards of it given up so far.
    pub given_up: Vec<GivenUp>,
    /// Waiting shards already logged, as (keyspace, shard).
    pub logged_waiting: HashSet<(String, String)>,
}

/// The longest reason kept in `last_skip_reason`.
const REASON_MAX_CHARS: usize = 500;

/// When a shard with no eligible tablet is given up: half the schedule's period
/// (from this slot to the next) after the shard's stagger delay, so the shard is
/// looked at for a while (a replica restarting, a lagging one catching up) yet
/// the slot ends well before the next one. A cron that never fires again gives
/// the shard no wait.
pub fn give_up_at(cron: &Cron, slot: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    let period = next_run(cron, slot)
        .and_then(|n| (n - slot).to_std().ok())
        .unwrap_or_default();
    let wait = delay + period / 2;
    slot + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

/// What a pass does with one schedule's slot ([`settle`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// Jobs to create now, one per shard that starts.
    pub create: Vec<Job>,
    /// Every shard of the slot given up so far (earlier passes included).
    pub given_up: Vec<GivenUp>,
    /// Shards waiting for an eligible tablet, with the time they are given up.
    pub waiting: Vec<(String, String, DateTime<Utc>)>,
    /// The slot is settled: every shard has its job or is given up. Record it.
    pub done: bool,
}

/// Settles one pass of a slot over plain data: `plan` (from [`super::plan_slot`]),
/// the shards `earlier` passes gave up, and for each shard of `plan.start` not
/// among them, its stagger delay and either its job or why it cannot start.
/// A busy shard is given up now; a shard without an eligible tablet waits until
/// [`give_up_at`], then is given up. The slot is done when no shard waits for its
/// stagger delay or for a tablet.
pub fn settle(
    plan: &SlotPlan,
    cron: &Cron,
    earlier: &[GivenUp],
    outcomes: Vec<(String, String, Duration, Result<Job, Blocked>)>,
    now: DateTime<Utc>,
) -> Settled {
    let mut out = Settled {
        create: Vec::new(),
        given_up: earlier.to_vec(),
        waiting: Vec::new(),
        done: false,
    };
    for (keyspace, shard, delay, outcome) in outcomes {
        if earlier
            .iter()
            .any(|g| g.keyspace == keyspace && g.shard == shard)
        {
            continue;
        }
        match outcome {
            Ok(job) => out.create.push(job),
            Err(Blocked::NoTablet { .. }) if now < give_up_at(cron, plan.slot, delay) => {
                let until = give_up_at(cron, plan.slot, delay);
                out.waiting.push((keyspace, shard, until));
            }
            Err(why) => out.given_up.push(GivenUp {
                keyspace,
                shard,
                reason: why.to_string(),
            }),
        }
    }
    out.done = plan.done && out.waiting.is_empty();
    out
}

/// `s` cut to [`REASON_MAX_CHARS`] characters, on one line.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() <= REASON_MAX_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(REASON_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Counts the given-up shards of a slot on its schedule: `skipped_runs` grows by
/// one per shard, `last_skip_reason` names the first shard and its reason (and how
/// many more there were), `last_skip_at` becomes `now`. Nothing changes when none
/// was given up.
pub fn record_skips(schedule: &mut Schedule, given_up: &[GivenUp], now: DateTime<Utc>) {
    let Some(first) = given_up.first() else {
        return;
    };
    schedule.skipped_runs = schedule.skipped_runs.saturating_add(given_up.len() as u64);
    let more = match given_up.len() - 1 {
        0 => String::new(),
        1 => " (and 1 more shard)".into(),
        n => format!(" (and {n} more shards)"),
    };
    schedule.last_skip_reason = Some(one_line(&format!(
        "{}/{}: {}{more}",
        first.keyspace, first.shard, first.reason
    )));
    schedule.last_skip_at = Some(now);
}

/// Notes on the schedule that the coordinator refuses it (`reason`): counted
/// once per refusal, so a refused schedule does not write on every slot. Returns
/// whether the record changed (it does not when it already says so).
pub fn note_refusal(schedule: &mut Schedule, reason: &str, now: DateTime<Utc>) -> bool {
    let reason = one_line(reason);
    if schedule.last_skip_reason.as_deref() == Some(reason.as_str()) {
        return false;
    }
    schedule.skipped_runs = schedule.skipped_runs.saturating_add(1);
    schedule.last_skip_reason = Some(reason);
    schedule.last_skip_at = Some(now);
    true
}

#[cfg(test)]
#[path = "skip_tests.rs"]
mod tests;
