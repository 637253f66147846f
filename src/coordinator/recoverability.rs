//! The recoverability picture of each shard ([`ShardPicture`]): the newest complete
//! full backup and its age against the schedule that covers the shard, the newest
//! verified backup (its restore drill succeeded), the last drill, the loss window,
//! and one light for all of it ([`Light`]: green, amber, red). The same picture
//! feeds `/metrics`, `/api/v1/status`, the status page and `cairn status`.
//!
//! The rules are pure functions with table tests ([`backup_light`], [`drill_light`],
//! [`picture`], [`schedule_periods`], [`expectation`]); [`from_view`] is the thin
//! adapter that reads them out of the coordinator's [`TopoView`].
//!
//! May call: [`super::schedule`] (crons, targets), [`super::archive_plan`] (the loss
//! window), [`super::cache`] (the view, read only), `cairn-topo` records.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_topo::{BackupRecord, BackupRecordState, DrillResult, Schedule};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cache::TopoView;
use super::schedule::{next_run, usable_schedule, Target};

/// How many slots ahead a cron's longest gap is looked for (as `cairn verify`).
const PERIOD_SLOTS: usize = 64;

/// A shard's state at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Light {
    /// As promised.
    Green,
    /// Look at it soon: one run missed, or nothing promises a backup.
    Amber,
    /// Act: runs missed, no backup at all, or the last drill failed.
    Red,
}

impl Light {
    /// `green`, `amber`, `red`.
    pub fn as_str(self) -> &'static str {
        match self {
            Light::Green => "green",
            Light::Amber => "amber",
            Light::Red => "red",
        }
    }

    /// 0, 1, 2 (the `shard_health` gauge).
    pub fn value(self) -> i64 {
        self as i64
    }
}

/// An active schedule of full backups and how far apart its runs may be.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePeriod {
    /// The schedule's name.
    pub name: String,
    /// Its stored target, `KS` or `KS/SHARD`.
    pub target: String,
    /// The longest gap between two of its next slots (a weekday cron's weekend).
    pub period: Duration,
}

/// The last restore drill of a shard: the newest backup that has a drill result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastDrill {
    /// The drilled backup.
    pub backup: String,
    /// `succeeded` or `failed`.
    pub result: DrillResult,
    /// The measured recovery time.
    pub seconds: Option<f64>,
    /// When a drill of this backup last succeeded.
    pub verified_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Everything the page, the metrics and `cairn status` say about one shard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardPicture {
    pub keyspace: String,
    pub shard: String,
    /// The worst of the backup's age and the last drill.
    pub health: Light,
    /// Why it is not green, one line each.
    pub reasons: Vec<String>,
    /// The newest complete full backup.
    pub newest_backup: Option<String>,
    pub newest_backup_time: Option<DateTime<Utc>>,
    pub newest_backup_age_seconds: Option<f64>,
    /// How old the newest backup may be: the schedule's period plus the usual
    /// backup duration. `None`: no active schedule of full backups covers it.
    pub backup_max_age_seconds: Option<f64>,
    /// The schedule that sets it.
    pub schedule: Option<String>,
    /// The newest backup whose drill succeeded.
    pub newest_verified_backup: Option<String>,
    pub newest_verified_backup_age_seconds: Option<f64>,
    pub last_drill: Option<LastDrill>,
    /// Point-in-time loss window of an archived shard.
    pub loss_window_seconds: Option<f64>,
}

/// The light of a backup `age` against the `limit` a schedule sets: green within
/// it, amber past it (one run missed), red past twice it (two missed) or with no
/// backup at all. Without a schedule: amber (nothing promises the next backup).
pub fn backup_light(age: Option<Duration>, limit: Option<Duration>) -> (Light, Option<String>) {
    let f = short_duration;
    match (age, limit) {
        (None, Some(l)) => (
            Light::Red,
            Some(format!("no complete backup; its schedule allows {}", f(l))),
        ),
        (Some(a), Some(l)) if a > l * 2 => (
            Light::Red,
            Some(format!(
                "newest backup {} old, more than twice the {} its schedule allows",
                f(a),
                f(l)
            )),
        ),
        (Some(a), Some(l)) if a > l => (
            Light::Amber,
            Some(format!(
                "newest backup {} old, more than the {} its schedule allows",
                f(a),
                f(l)
            )),
        ),
        (Some(_), Some(_)) => (Light::Green, None),
        (None, None) => (
            Light::Amber,
            Some("no complete backup and no active schedule".into()),
        ),
        (Some(_), None) => (
            Light::Amber,
            Some("no active schedule of full backups covers it".into()),
        ),
    }
}

/// A failed last drill is red: the newest proof says the backup does not restore.
/// No drill yet says nothing either way (green).
pub fn drill_light(last: Option<&LastDrill>) -> (Light, Option<String>) {
    match last {
        Some(d) if d.result == DrillResult::Failed => (
            Light::Red,
            Some(format!(
                "last drill of {} failed: {}",
                d.backup,
                d.error.as_deref().unwrap_or("no reason given")
            )),
        ),
        _ => (Light::Green, None),
    }
}

/// A backup that restores a shard by itself: complete, readable, not incremental.
pub fn is_full_complete(b: &BackupRecord) -> bool {
    b.complete && b.state == BackupRecordState::Complete && !b.incremental
}

/// The active full-backup schedules with their period: paused schedules, schedules
/// of incrementals and records that do not parse promise no full backup.
pub fn schedule_periods<'a>(
    schedules: impl IntoIterator<Item = &'a Schedule>,
    now: DateTime<Utc>,
) -> Vec<SchedulePeriod> {
    schedules
        .into_iter()
        .filter(|s| !s.paused && !s.incremental)
        .filter_map(|s| {
            let cron = usable_schedule(s).ok()?;
            let period = longest_gap(now, |t| next_run(&cron, t))?;
            Some(SchedulePeriod {
                name: s.name.clone(),
                target: s.target.clone(),
                period,
            })
        })
        .collect()
}

/// The schedule that promises the shard the most: the shortest period among those
/// covering it.
pub fn expectation<'a>(
    periods: &'a [SchedulePeriod],
    keyspace: &str,
    shard: &str,
) -> Option<&'a SchedulePeriod> {
    periods
        .iter()
        .filter(|p| covers(&p.target, keyspace, shard))
        .min_by_key(|p| p.period)
}

/// Whether a stored schedule target names this shard or its keyspace.
pub fn covers(target: &str, keyspace: &str, shard: &str) -> bool {
    match Target::stored(target) {
        Target::Keyspace(k) => k == keyspace,
        Target::Shard {
            keyspace: k,
            shard: s,
        } => k == keyspace && s == shard,
    }
}

/// The longest gap between consecutive slots in the next [`PERIOD_SLOTS`] after
/// `from`. `None` for fewer than two slots.
pub fn longest_gap(
    from: DateTime<Utc>,
    next: impl Fn(DateTime<Utc>) -> Option<DateTime<Utc>>,
) -> Option<Duration> {
    let mut prev = next(from)?;
    let mut best: Option<Duration> = None;
    for _ in 0..PERIOD_SLOTS {
        let Some(t) = next(prev) else { break };
        let gap = (t - prev).to_std().unwrap_or(Duration::ZERO);
        best = Some(best.map_or(gap, |b| b.max(gap)));
        prev = t;
    }
    best
}

/// The median duration of the newest five full backups (zero with none).
fn usual_duration(fulls: &[&BackupRecord]) -> Duration {
    let mut recent: Vec<Duration> = fulls
        .iter()
        .rev()
        .take(5)
        .filter_map(|b| (b.finished_time? - b.backup_time).to_std().ok())
        .collect();
    recent.sort();
    recent
        .get(recent.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO)
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

/// The picture of one shard from its backup records (any order), the schedule
/// covering it and its loss window.
pub fn picture(
    keyspace: &str,
    shard: &str,
    backups: &[&BackupRecord],
    schedule: Option<&SchedulePeriod>,
    loss_window: Option<Duration>,
    now: DateTime<Utc>,
) -> ShardPicture {
    let mut fulls: Vec<&BackupRecord> = backups
        .iter()
        .copied()
        .filter(|b| is_full_complete(b))
        .collect();
    fulls.sort_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)));
    let newest = fulls.last();
    let verified = fulls
        .iter()
        .rev()
        .find(|b| b.drill_result == Some(DrillResult::Succeeded));
    let last_drill = backups
        .iter()
        .filter(|b| b.drill_result.is_some())
        .max_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)))
        .and_then(|b| {
            Some(LastDrill {
                backup: b.name.clone(),
                result: b.drill_result?,
                seconds: b.drill_seconds,
                verified_at: b.verified_at,
                error: b.drill_error.clone(),
            })
        });
    let limit = schedule.map(|s| s.period + usual_duration(&fulls));
    let newest_age = newest.map(|b| age(now, b.backup_time));
    let (l1, r1) = backup_light(newest_age, limit);
    let (l2, r2) = drill_light(last_drill.as_ref());
    ShardPicture {
        keyspace: keyspace.to_string(),
        shard: shard.to_string(),
        health: l1.max(l2),
        reasons: r1.into_iter().chain(r2).collect(),
        newest_backup: newest.map(|b| b.name.clone()),
        newest_backup_time: newest.map(|b| b.backup_time),
        newest_backup_age_seconds: newest_age.map(|d| d.as_secs_f64()),
        backup_max_age_seconds: limit.map(|d| d.as_secs_f64()),
        schedule: schedule.map(|s| s.name.clone()),
        newest_verified_backup: verified.map(|b| b.name.clone()),
        newest_verified_backup_age_seconds: verified.map(|b| age(now, b.backup_time).as_secs_f64()),
        last_drill,
        loss_window_seconds: loss_window.map(|d| d.as_secs_f64()),
    }
}

/// Every shard the view knows (a shard record, a backup or a tablet), sorted.
pub fn known_shards(view: &TopoView) -> Vec<(String, String)> {
    let mut all: BTreeSet<(String, String)> = view.shards.keys().cloned().collect();
    all.extend(view.backups.keys().cloned());
    all.extend(view.by_shard.keys().cloned());
    all.into_iter()
        .filter(|(ks, s)| !ks.is_empty() && !s.is_empty())
        .collect()
}

/// The shard's loss window as the archive pass computes it (the primary's Health
/// position against the archive's).
pub fn shard_loss_window(
    view: &TopoView,
    keyspace: &str,
    shard: &str,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let key = (keyspace.to_string(), shard.to_string());
    let archive = view.archives.get(&key)?;
    let pos = view
        .shards
        .get(&key)
        .and_then(|s| s.value.primary_alias.as_ref())
        .and_then(|p| view.health.get(&p.to_string()))
        .and_then(|h| h.gtid_position.as_deref());
    super::archive_plan::loss_window(&archive.value, pos, now)
}

/// The picture of every known shard, read out of the coordinator's view.
pub fn from_view(view: &TopoView, now: DateTime<Utc>) -> Vec<ShardPicture> {
    let periods = schedule_periods(view.schedules.values().map(|v| &v.value), now);
    known_shards(view)
        .into_iter()
        .map(|(ks, shard)| {
            let backups: Vec<&BackupRecord> = view
                .backups
                .get(&(ks.clone(), shard.clone()))
                .map(|m| m.values().collect())
                .unwrap_or_default();
            let loss = shard_loss_window(view, &ks, &shard, now);
            picture(
                &ks,
                &shard,
                &backups,
                expectation(&periods, &ks, &shard),
                loss,
                now,
            )
        })
        .collect()
}

/// A duration in its two largest units: `3d4h`, `5h12m`, `42m10s`, `12s`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60, s % 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d{h}h"),
    }
}

/// [`short_duration`] of seconds (negative counts as zero).
pub fn short_secs(secs: f64) -> String {
    short_duration(Duration::from_secs_f64(secs.max(0.0)))
}

#[cfg(test)]
#[path = "recoverability_tests.rs"]
mod tests;
