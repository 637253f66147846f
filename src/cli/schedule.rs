//! `schedule set|list|remove|pause|resume`: backup schedules in topo
//! (`<root>/global/schedules/<name>`), which the elected coordinator runs.
//!
//! Input is validated before etcd is contacted (bad cron or target: exit 2,
//! nothing written). `set` creates or replaces; replacing keeps `last_run`,
//! `created_at` and the paused state. `set` and `resume` store as `next_run` the
//! first slot after now, so neither makes up slots the schedule was not meant to
//! run (see [`crate::coordinator::schedule`]).
//!
//! A cron whose slots come closer together than `--min-schedule-period` (default
//! 5m; also `CAIRN_MIN_SCHEDULE_PERIOD`) is refused the same way: the coordinator
//! would refuse to run it.
//!
//! `--drill-cron EXPR` adds restore drills on their own cron (validated the same
//! way; see [`crate::coordinator::schedule::drill`]); `--drill-to-now` (only
//! with it) makes each a drill to now, as `cairn drill --to-now`.
//!
//! `list --json` fields: `name, cron, target, keep_count, keep_for, paused,
//! last_run, next_run`, plus `keep_for_seconds`, `backup_engine`, `created_at`,
//! `drill_cron`, `drill_last_run`, `drill_next_run`, `drill_to_now`,
//! and the runs the coordinator did not take: `skipped_runs`, `last_skip_reason`,
//! `last_skip_at` (counted on the schedule instead of a job per slot).
//! `keep_for` is a duration string in the spelling `--keep-for` accepts, in whole
//! seconds (`168h`, `1h30m`, `45s`); `keep_for_seconds` is the same as a number.
//! `next_run` is `null` for a paused schedule; a `next_run` in the past means the
//! slot is overdue (no coordinator has run it yet) and will be made up once.

use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::{BackupMethod, Schedule, Topo};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::args::{GlobalArgs, ScheduleCommand, SchedulePruneArgs, ScheduleSetArgs};
use super::config::open_storage;
use super::output::{opt, print_rows};
use super::UsageError;
use crate::backup::catalog::Catalog;
use crate::coordinator::prune::{plan_shard_retention, prune_scope, prune_shard, ShardRetention};
use crate::coordinator::retention::human;
use crate::coordinator::schedule::period::check_min_period;
use crate::coordinator::schedule::{next_run, parse_cron, parse_target, upcoming, Target};

/// A `schedule set` whose input passed validation.
#[derive(Debug, Clone)]
struct ValidSet {
    /// The schedule's name (validated by clap).
    name: String,
    /// The cron expression as given (it parsed).
    cron: String,
    /// The parsed target, to check it against topo and store its canonical text.
    target: Target,
    /// `--keep-count`, at least 1.
    keep_count: Option<u32>,
    /// `--keep-for` in whole seconds, at least 1.
    keep_for_seconds: Option<u64>,
    /// `--backup-engine`, as stored in jobs.
    backup_engine: Option<BackupMethod>,
    /// `--incremental`.
    incremental: bool,
    /// `--drill-cron`, as given (it parsed), whitespace normalised.
    drill_cron: Option<String>,
    /// `--drill-to-now` (only with `--drill-cron`).
    drill_to_now: bool,
}

/// Checks everything `schedule set` can check without etcd; a failure is a
/// [`UsageError`] (exit 2).
fn validate_set(a: &ScheduleSetArgs) -> Result<ValidSet, UsageError> {
    let cron = parse_cron(&a.cron).map_err(|e| UsageError(format!("--cron: {e}")))?;
    check_min_period(&a.cron, &cron, a.min_schedule_period, Utc::now())
        .map_err(|e| UsageError(format!("--cron: {e}")))?;
    let target = parse_target(&a.target).map_err(|e| UsageError(format!("--target: {e}")))?;
    let drill_cron = match &a.drill_cron {
        Some(expr) => {
            let dc = parse_cron(expr).map_err(|e| UsageError(format!("--drill-cron: {e}")))?;
            check_min_period(expr, &dc, a.min_schedule_period, Utc::now())
                .map_err(|e| UsageError(format!("--drill-cron: {e}")))?;
            Some(expr.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        None => None,
    };
    if a.drill_to_now && drill_cron.is_none() {
        return Err(UsageError(
            "--drill-to-now needs --drill-cron (it says how the scheduled drills run)".into(),
        ));
    }
    if a.keep_count == Some(0) {
        return Err(UsageError(
            "--keep-count must be at least 1 (the newest complete backup is always kept)".into(),
        ));
    }
    if a.incremental && a.backup_engine.is_some() {
        return Err(UsageError(
            "--backup-engine does not apply to --incremental (it copies binary logs)".into(),
        ));
    }
    let keep_for_seconds = match a.keep_for {
        Some(d) if d < Duration::from_secs(1) => {
            return Err(UsageError("--keep-for must be at least 1s".into()))
        }
        Some(d) => Some(d.as_secs()),
        None => None,
    };
    Ok(ValidSet {
        name: a.name.clone(),
        cron: a.cron.split_whitespace().collect::<Vec<_>>().join(" "),
        target,
        keep_count: a.keep_count,
        keep_for_seconds,
        backup_engine: a.backup_engine,
        incremental: a.incremental,
        drill_cron,
        drill_to_now: a.drill_to_now,
    })
}

/// Runs one `schedule` subcommand; validation comes before connecting.
pub async fn run(g: &GlobalArgs, cmd: ScheduleCommand) -> anyhow::Result<()> {
    match cmd {
        ScheduleCommand::Set(a) => {
            let v = validate_set(&a)?;
            set(&super::connect_admin(g).await?, v).await
        }
        ScheduleCommand::List { json } => list(&super::connect_admin(g).await?, json).await,
        ScheduleCommand::Prune(a) => prune(&super::connect_admin(g).await?, a).await,
        ScheduleCommand::Remove { name } => remove(&super::connect_admin(g).await?, &name).await,
        ScheduleCommand::Pause { name } => {
            set_paused(&super::connect_admin(g).await?, &name, true).await
        }
        ScheduleCommand::Resume { name } => {
            set_paused(&super::connect_admin(g).await?, &name, false).await
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn set(topo: &Topo, v: ValidSet) -> anyhow::Result<()> {
    // A target naming nothing yet is allowed (tablets may come later), but said.
    match &v.target {
        Target::Keyspace(ks) => {
            if topo
                .list_shards(ks)
                .await
                .context("reading shards")?
                .is_empty()
            {
                eprintln!(
                    "warning: keyspace {ks} has no shards yet; each run backs up the shards it has then"
                );
            }
        }
        Target::Shard { keyspace, shard } => {
            if topo
                .get_shard(keyspace, shard)
                .await
                .context("reading the shard")?
                .is_none()
            {
                eprintln!(
                    "warning: shard {keyspace}/{shard} does not exist yet; runs fail until it does"
                );
            }
        }
    }
    let now = Utc::now();
    let cron = parse_cron(&v.cron)?;
    let drill_cron = v.drill_cron.as_deref().map(parse_cron).transpose()?;
    let key = topo.keys().schedule(&v.name);
    let mut replaced = false;
    let stored = topo
        .update_with::<Schedule, _>(&key, |cur| {
            replaced = cur.is_some();
            let (created_at, last_run, paused) = match &cur {
                Some(c) => (c.created_at, c.last_run, c.paused),
                None => (now, None, false),
            };
            // The skip counters are the schedule's history: a replacement keeps them.
            let (skipped_runs, last_skip_reason, last_skip_at) = match &cur {
                Some(c) => (c.skipped_runs, c.last_skip_reason.clone(), c.last_skip_at),
                None => (0, None, None),
            };
            // The drills' last run is kept while they keep their cron.
            let drill_last_run = cur
                .as_ref()
                .filter(|c| c.drill_cron.is_some() && c.drill_cron == v.drill_cron)
                .and_then(|c| c.drill_last_run);
            Ok(Some(Schedule {
                name: v.name.clone(),
                cron: v.cron.clone(),
                target: v.target.to_string(),
                keep_count: v.keep_count,
                keep_for_seconds: v.keep_for_seconds,
                backup_engine: v.backup_engine,
                paused,
                last_run,
                next_run: next_run(&cron, now),
                created_at,
                skipped_runs,
                last_skip_reason,
                last_skip_at,
                incremental: v.incremental,
                drill_cron: v.drill_cron.clone(),
                drill_last_run,
                drill_next_run: drill_cron.as_ref().and_then(|c| next_run(c, now)),
                drill_to_now: v.drill_to_now,
            }))
        })
        .await
        .with_context(|| format!("writing schedule {}", v.name))?
        .context("the schedule vanished while it was written")?
        .value;
    println!(
        "schedule {} {}; {}",
        stored.name,
        if replaced { "replaced" } else { "created" },
        match (stored.paused, stored.next_run) {
            (true, _) => "paused".to_string(),
            (false, Some(t)) => format!("next run {}", ts(t)),
            (false, None) => "it never fires again".to_string(),
        }
    );
    if let (false, Some(t)) = (stored.paused, stored.drill_next_run) {
        let to_now = if stored.drill_to_now { " (to now)" } else { "" };
        println!("next drill{to_now} {}", ts(t));
    }
    Ok(())
}

/// One row of `schedule list --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScheduleRow {
    /// The schedule's name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// `KS` or `KS/SHARD`.
    pub target: String,
    /// `--keep-count`.
    pub keep_count: Option<u32>,
    /// `--keep-for` as a duration string (`168h`), whole seconds.
    pub keep_for: Option<String>,
    /// `--keep-for` in seconds, for scripts.
    pub keep_for_seconds: Option<u64>,
    /// `--backup-engine`; `null` means each tablet's default.
    pub backup_engine: Option<BackupMethod>,
    /// Paused schedules do not fire.
    pub paused: bool,
    /// The slot of the last run (or skipped run).
    pub last_run: Option<DateTime<Utc>>,
    /// The slot the schedule waits for; `null` when paused or never again.
    pub next_run: Option<DateTime<Utc>>,
    /// When the schedule was first set.
    pub created_at: DateTime<Utc>,
    /// Runs the coordinator did not take: shards of slots given up (no eligible
    /// tablet, previous backup still running) and refusals of the schedule.
    pub skipped_runs: u64,
    /// Why the last one was skipped.
    pub last_skip_reason: Option<String>,
    /// When.
    pub last_skip_at: Option<DateTime<Utc>>,
    /// Each run takes an incremental backup from the newest backup of the shard.
    pub incremental: bool,
    /// `--drill-cron`: restore drills of each shard's newest full backup.
    pub drill_cron: Option<String>,
    /// The drill slot last run (or skipped).
    pub drill_last_run: Option<DateTime<Utc>>,
    /// The drill slot waited for; `null` when paused, without drills or never again.
    pub drill_next_run: Option<DateTime<Utc>>,
    /// `--drill-to-now`: each drill applies the chain to the newest archived
    /// transaction.
    pub drill_to_now: bool,
}

/// The row of a stored schedule. `next_run` is computed the way the scheduler
/// decides, falling back to the stored one for a cron that does not parse.
pub fn row(s: &Schedule) -> ScheduleRow {
    let next = if s.paused {
        None
    } else {
        match parse_cron(&s.cron) {
            Ok(c) => upcoming(s, &c),
            Err(_) => s.next_run,
        }
    };
    let drill_next = match crate::coordinator::schedule::drill::drill_view(s) {
        Some(v) if !s.paused => match parse_cron(&v.cron) {
            Ok(c) => upcoming(&v, &c),
            Err(_) => s.drill_next_run,
        },
        _ => None,
    };
    ScheduleRow {
        name: s.name.clone(),
        cron: s.cron.clone(),
        target: s.target.clone(),
        keep_count: s.keep_count,
        keep_for: s.keep_for_seconds.map(|k| human(Duration::from_secs(k))),
        keep_for_seconds: s.keep_for_seconds,
        backup_engine: s.backup_engine,
        paused: s.paused,
        last_run: s.last_run,
        next_run: next,
        created_at: s.created_at,
        skipped_runs: s.skipped_runs,
        last_skip_reason: s.last_skip_reason.clone(),
        last_skip_at: s.last_skip_at,
        incremental: s.incremental,
        drill_cron: s.drill_cron.clone(),
        drill_last_run: s.drill_last_run,
        drill_next_run: drill_next,
        drill_to_now: s.drill_to_now,
    }
}

async fn list(topo: &Topo, json: bool) -> anyhow::Result<()> {
    let mut schedules = topo.list_schedules().await.context("listing schedules")?;
    schedules.sort_by(|a, b| {
        (a.value.created_at, &a.value.name).cmp(&(b.value.created_at, &b.value.name))
    });
    let rows: Vec<ScheduleRow> = schedules.iter().map(|s| row(&s.value)).collect();
    print_rows(
        json,
        &[
            "NAME",
            "CRON",
            "TARGET",
            "KEEP_COUNT",
            "KEEP_FOR",
            "PAUSED",
            "LAST_RUN",
            "NEXT_RUN",
            "SKIPPED",
            "LAST_SKIP_AT",
            "LAST_SKIP_REASON",
            "DRILL_CRON",
            "NEXT_DRILL",
        ],
        &rows,
        |r| {
            vec![
                r.name.clone(),
                r.cron.clone(),
                r.target.clone(),
                opt(&r.keep_count),
                opt(&r.keep_for),
                if r.paused { "yes" } else { "no" }.to_string(),
                opt(&r.last_run.map(ts)),
                opt(&r.next_run.map(ts)),
                r.skipped_runs.to_string(),
                opt(&r.last_skip_at.map(ts)),
                opt(&r.last_skip_reason),
                opt(&r
                    .drill_cron
                    .as_ref()
                    .map(|c| format!("{c}{}", if r.drill_to_now { " to-now" } else { "" }))),
                opt(&r.drill_next_run.map(ts)),
            ]
        },
    )
}

async fn remove(topo: &Topo, name: &str) -> anyhow::Result<()> {
    let key = topo.keys().schedule(name);
    // Raw, so that a record that no longer parses can still be removed.
    let (current, _) = topo.get_raw(&key).await.context("reading the schedule")?;
    if current.is_none() {
        bail!("schedule {name} not found");
    }
    topo.delete(&key, None)
        .await
        .with_context(|| format!("removing schedule {name}"))?;
    println!("schedule {name} removed");
    Ok(())
}

async fn set_paused(topo: &Topo, name: &str, paused: bool) -> anyhow::Result<()> {
    let key = topo.keys().schedule(name);
    let now = Utc::now();
    let mut changed = false;
    let after = topo
        .update_with::<Schedule, _>(&key, |cur| {
            let Some(mut s) = cur else { return Ok(None) };
            if s.paused == paused {
                changed = false;
                return Ok(None);
            }
            changed = true;
            s.paused = paused;
            if !paused {
                // Slots missed while paused were skipped on purpose: resume waits
                // for the next one instead of making one up.
                s.next_run = parse_cron(&s.cron).ok().and_then(|c| next_run(&c, now));
                s.drill_next_run = s
                    .drill_cron
                    .as_deref()
                    .and_then(|d| parse_cron(d).ok())
                    .and_then(|c| next_run(&c, now));
            }
            Ok(Some(s))
        })
        .await
        .with_context(|| format!("updating schedule {name}"))?;
    let Some(after) = after else {
        bail!("schedule {name} not found");
    };
    let what = if paused { "paused" } else { "resumed" };
    if changed {
        println!("schedule {name} {what}");
    } else {
        println!("schedule {name} was already {what}");
    }
    if !paused {
        if let Some(next) = row(&after.value).next_run {
            eprintln!("next run {}", ts(next));
        }
    }
    Ok(())
}

/// `schedule prune NAME [--dry-run]`: the schedule's retention rule applied now to
/// every shard it targets, by the same plan and the same catalog removal the
/// leader uses after each backup (unfenced here: an operator's command).
async fn prune(topo: &Topo, a: SchedulePruneArgs) -> anyhow::Result<()> {
    let storage = open_storage(&a.storage)?;
    let sched: Schedule = topo
        .get(&topo.keys().schedule(&a.name))
        .await
        .with_context(|| format!("reading schedule {}", a.name))?
        .with_context(|| format!("schedule {} does not exist", a.name))?
        .value;
    let scope = prune_scope(topo, &sched).await?;
    let catalog = Catalog::new(topo, storage.as_ref());
    let now = Utc::now();
    let mut rows = Vec::new();
    for (ks, shard) in &scope.shards {
        let r = ShardRetention {
            schedule: &sched,
            keyspace: ks,
            shard,
            now,
            in_use: &scope.in_use,
            in_flight: &scope.in_flight,
            succeeded: &scope.succeeded,
            incomplete_grace: a.incomplete_grace,
        };
        let removals = if a.dry_run {
            plan_shard_retention(storage.as_ref(), &r).await?
        } else {
            prune_shard(&catalog, &r).await?
        };
        for r in removals {
            rows.push(serde_json::json!({
                "keyspace": ks, "shard": shard, "name": r.name,
                "reason": r.reason.to_string(), "removed": !a.dry_run,
            }));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("nothing to remove");
    } else {
        for r in &rows {
            println!(
                "{} {}/{} {}: {}",
                if a.dry_run { "would remove" } else { "removed" },
                r["keyspace"].as_str().unwrap_or_default(),
                r["shard"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                r["reason"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cron: &str, target: &str) -> ScheduleSetArgs {
        ScheduleSetArgs {
            name: "nightly".into(),
            cron: cron.into(),
            target: target.into(),
            keep_count: None,
            keep_for: None,
            backup_engine: None,
            incremental: false,
            drill_cron: None,
            drill_to_now: false,
            min_schedule_period: Duration::from_secs(300),
        }
    }

    #[test]
    fn drill_to_now_needs_a_drill_cron() {
        let mut a = args("0 2 * * *", "ks");
        a.drill_to_now = true;
        let e = validate_set(&a).unwrap_err().to_string();
        assert_eq!(
            e,
            "--drill-to-now needs --drill-cron (it says how the scheduled drills run)"
        );
        a.drill_cron = Some("0 4 * * 0".into());
        assert!(validate_set(&a).unwrap().drill_to_now);
        a.drill_to_now = false;
        assert!(!validate_set(&a).unwrap().drill_to_now);
    }

    #[test]
    fn drill_cron_is_validated_like_the_cron() {
        let mut a = args("0 2 * * *", "ks");
        a.drill_cron = Some("0  4 * * 0".into());
        assert_eq!(
            validate_set(&a).unwrap().drill_cron.as_deref(),
            Some("0 4 * * 0")
        );
        for bad in ["* * * *", "nope", "*/10 * * * * *", "@daily"] {
            a.drill_cron = Some(bad.into());
            let e = validate_set(&a).unwrap_err().to_string();
            assert!(e.starts_with("--drill-cron: "), "{bad}: {e}");
        }
    }

    #[test]
    fn set_input_is_validated() {
        let mut a = args("0  2 * * *", "commerce/-80");
        a.keep_for = Some(Duration::from_secs(7 * 86400));
        a.backup_engine = Some(BackupMethod::Xtrabackup);
        let v = validate_set(&a).unwrap();
        assert_eq!(v.cron, "0 2 * * *");
        assert_eq!(v.target.to_string(), "commerce/-80");
        assert_eq!(v.keep_for_seconds, Some(604800));
        assert_eq!(v.backup_engine, Some(BackupMethod::Xtrabackup));
        for (cron, target) in [
            ("* * * *", "ks"),
            ("nope", "ks"),
            ("0 2 * * *", "a/b/c"),
            ("0 2 * * *", "k s"),
        ] {
            let e = validate_set(&args(cron, target)).unwrap_err().to_string();
            assert!(e.starts_with("--cron") || e.starts_with("--target"), "{e}");
        }
        let mut a = args("0 2 * * *", "ks");
        a.keep_count = Some(0);
        assert!(validate_set(&a).is_err());
        let mut a = args("0 2 * * *", "ks");
        a.keep_for = Some(Duration::from_millis(500));
        assert!(validate_set(&a).is_err());
    }

    #[test]
    fn set_refuses_a_cron_below_the_minimum_period() {
        let five_m = Duration::from_secs(300);
        // (cron, --min-schedule-period, refused)
        let cases = [
            ("*/10 * * * * *", five_m, true),
            ("* * * * *", five_m, true),
            ("*/5 * * * *", five_m, false),
            ("0 2 * * *", five_m, false),
            ("*/10 * * * * *", Duration::from_secs(10), false),
            ("0 * * * *", Duration::from_secs(2 * 3600), true),
        ];
        for (cron, min, refused) in cases {
            let mut a = args(cron, "ks");
            a.min_schedule_period = min;
            let got = validate_set(&a);
            assert_eq!(got.is_err(), refused, "{cron} {min:?}");
            if let Err(e) = got {
                let e = e.to_string();
                assert!(e.starts_with("--cron: "), "{e}");
                assert!(e.contains("--min-schedule-period"), "{e}");
                assert!(!e.contains('\n'), "{e}");
            }
        }
    }

    #[test]
    fn rows_show_keep_for_as_a_duration_and_no_next_run_when_paused() {
        let created = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut s = Schedule {
            name: "n".into(),
            cron: "0 2 * * *".into(),
            target: "ks".into(),
            keep_count: Some(7),
            keep_for_seconds: Some(7 * 86400),
            backup_engine: None,
            paused: false,
            last_run: None,
            next_run: None,
            created_at: created,
            skipped_runs: 0,
            last_skip_reason: None,
            last_skip_at: None,
            incremental: false,
            drill_cron: None,
            drill_last_run: None,
            drill_next_run: None,
            drill_to_now: false,
        };
        let r = row(&s);
        assert_eq!(r.keep_for.as_deref(), Some("168h"));
        assert_eq!(r.next_run, Some(created + chrono::Duration::hours(2)));
        s.paused = true;
        assert_eq!(row(&s).next_run, None);
        let j = serde_json::to_value(row(&s)).unwrap();
        for k in [
            "name",
            "cron",
            "target",
            "keep_count",
            "keep_for",
            "paused",
            "last_run",
            "next_run",
            "skipped_runs",
            "last_skip_reason",
            "last_skip_at",
            "drill_to_now",
        ] {
            assert!(j.get(k).is_some(), "{k} missing in {j}");
        }
    }
}
