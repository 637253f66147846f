//! `cairn verify KS/SHARD [--backup NAME] [--json]`: checks a shard's backups where
//! they are stored (every object's size and hash, no key needed) and, for the whole
//! shard, the archived binlog segments' objects, the chain of incrementals and
//! segments from each full backup to the newest known transaction (the archive
//! record's position counts), and that the newest good backup is as young as its
//! schedule promises. Prints one line per backup, the archive, one per chain and
//! one per problem; exit 0 when everything is OK (warnings included), 1 when
//! anything failed. Reads storage and etcd, changes nothing.
//!
//! May call: [`crate::backup::verify`] (the checks), [`crate::coordinator::schedule`]
//! (cron periods), [`crate::mysql::gtid`], `cairn-topo` (the archive record), the
//! CLI's own helpers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::args::{GlobalArgs, VerifyArgs};
use super::config::open_storage;
use crate::backup::storage::BackupInfo;
use crate::backup::verify::chain::{shard_chains, ChainReport, CheckedBackup};
use crate::backup::verify::segments::check_segments;
use crate::backup::verify::{judge_freshness, verify_backup, worst, BackupReport, Problem, Status};
use crate::coordinator::schedule::{next_run, usable_schedule, Target};
use crate::mysql::gtid::{parse_gtid_list, Gtid};
use cairn_topo::{ArchiveRecord, Topo};

/// How many slots ahead the longest gap of a cron is looked for.
const PERIOD_SLOTS: usize = 64;

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
struct ShardReport {
    keyspace: String,
    shard: String,
    status: Status,
    backups: Vec<BackupReport>,
    /// One per complete full backup, oldest first (absent with `--backup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    chains: Option<Vec<ChainReport>>,
    /// The archived binlog segments' object check (absent with `--backup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<ArchiveReport>,
    /// Shard-level findings (freshness, schedules).
    problems: Vec<Problem>,
}

/// The archive's part of the report.
#[derive(Debug, Serialize)]
struct ArchiveReport {
    status: Status,
    segments: usize,
    bytes: u64,
    problems: Vec<Problem>,
}

pub async fn verify(g: &GlobalArgs, a: VerifyArgs) -> anyhow::Result<()> {
    let storage = open_storage(&a.storage)?;
    let (ks, shard) = (&a.keyspace_shard.keyspace, &a.keyspace_shard.shard);
    let mut listed = storage
        .list_backups(ks, shard)
        .await
        .with_context(|| format!("listing the backups of {ks}/{shard} in storage"))?;
    if let Some(name) = &a.backup {
        listed.retain(|b| &b.name == name);
        if listed.is_empty() {
            return Err(anyhow!("no backup {name} in storage for {ks}/{shard}"));
        }
    }
    let concurrency = a.concurrency as usize;
    // Backups and segments in one pass: both read storage at once.
    let backups_pass = async {
        let mut backups = Vec::new();
        for info in &listed {
            backups.push(verify_backup(Arc::clone(&storage), ks, shard, info, concurrency).await);
        }
        backups
    };
    let segments_pass = async {
        match a.backup {
            Some(_) => None,
            None => Some(check_segments(Arc::clone(&storage), ks, shard, concurrency).await),
        }
    };
    let (backups, segments) = tokio::join!(backups_pass, segments_pass);
    let mut problems = Vec::new();
    let (mut chains, mut archive) = (None, None);
    if let Some(seg) = segments {
        let topo = super::connect_admin(g).await;
        let archived = match &topo {
            Ok(topo) => match archived_position(topo, ks, shard).await {
                Ok(p) => p,
                Err(e) => {
                    problems.push(warning(format!(
                        "the archive record was not read (the chains end at what storage holds): {e:#}"
                    )));
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        let checked: Vec<CheckedBackup> = listed
            .iter()
            .zip(&backups)
            .filter_map(|(info, r)| {
                // A backup with a missing object is listed unreadable, its
                // MANIFEST still read: its range is named as damaged.
                Some(CheckedBackup {
                    manifest: info.manifest.as_ref()?,
                    damaged: damage_of(r),
                })
            })
            .collect();
        let (c, holes) = shard_chains(ks, shard, &checked, &seg.segments, &archived);
        let mut archive_problems = seg.problems;
        archive_problems.extend(holes);
        archive = Some(ArchiveReport {
            status: worst(&archive_problems),
            segments: seg.segments.len(),
            bytes: seg.bytes,
            problems: archive_problems,
        });
        chains = Some(c);
        problems.extend(freshness(topo, ks, shard, &listed, &backups).await);
    }
    let status = worst(
        backups
            .iter()
            .flat_map(|b| &b.problems)
            .chain(chains.iter().flatten().flat_map(|c| &c.problems))
            .chain(archive.iter().flat_map(|a| &a.problems))
            .chain(&problems),
    );
    let report = ShardReport {
        keyspace: ks.clone(),
        shard: shard.clone(),
        status,
        backups,
        chains,
        archive,
        problems,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    if status == Status::Failure {
        let failures = report
            .backups
            .iter()
            .flat_map(|b| &b.problems)
            .chain(report.chains.iter().flatten().flat_map(|c| &c.problems))
            .chain(report.archive.iter().flat_map(|a| &a.problems))
            .chain(&report.problems)
            .filter(|p| p.status == Status::Failure)
            .count();
        return Err(anyhow!("verify of {ks}/{shard}: {failures} failure(s)"));
    }
    Ok(())
}

/// Why a backup cannot serve in a chain: its first failure (`None` when it
/// has none).
fn damage_of(r: &BackupReport) -> Option<String> {
    let failures: Vec<&Problem> = r
        .problems
        .iter()
        .filter(|p| p.status == Status::Failure)
        .collect();
    let first = failures.first()?;
    Some(match failures.len() {
        1 => first.message.clone(),
        n => format!("{} (and {} more)", first.message, n - 1),
    })
}

/// The position the shard's archive record says is archived (empty when the
/// shard is not archived).
async fn archived_position(topo: &Topo, ks: &str, shard: &str) -> anyhow::Result<Vec<Gtid>> {
    let rec = topo
        .get::<ArchiveRecord>(&topo.keys().archive(ks, shard))
        .await?;
    match rec {
        None => Ok(Vec::new()),
        Some(r) => parse_gtid_list(&r.value.state.position)
            .with_context(|| format!("archive position {:?}", r.value.state.position)),
    }
}

fn print_text(r: &ShardReport) {
    for b in &r.backups {
        println!(
            "{:<8} {}  ({} objects, {} bytes checked in {:.1}s)",
            b.status.as_str(),
            b.name,
            b.objects,
            b.bytes,
            b.seconds
        );
        for p in &b.problems {
            println!("  {:<8} {}", p.status.as_str(), p.message);
        }
    }
    if let Some(a) = &r.archive {
        println!(
            "{:<8} archive of {}/{}  ({} segments, {} bytes checked)",
            a.status.as_str(),
            r.keyspace,
            r.shard,
            a.segments,
            a.bytes
        );
        for p in &a.problems {
            println!("  {:<8} {}", p.status.as_str(), p.message);
        }
    }
    for c in r.chains.iter().flatten() {
        println!(
            "{:<8} chain from {}  reaches {} of {}",
            c.status.as_str(),
            c.full,
            if c.reaches.is_empty() {
                "-"
            } else {
                &c.reaches
            },
            if c.end.is_empty() { "-" } else { &c.end }
        );
        for p in &c.problems {
            println!("  {:<8} {}", p.status.as_str(), p.message);
        }
    }
    for p in &r.problems {
        println!(
            "{:<8} {}/{}: {}",
            p.status.as_str(),
            r.keyspace,
            r.shard,
            p.message
        );
    }
    println!(
        "{}: {}/{}, {} backup(s) checked",
        r.status.as_str(),
        r.keyspace,
        r.shard,
        r.backups.len()
    );
}

/// The freshness findings for the shard from every active schedule covering it.
/// etcd out of reach is a warning: the objects were still checked.
async fn freshness(
    topo: anyhow::Result<Topo>,
    ks: &str,
    shard: &str,
    listed: &[BackupInfo],
    reports: &[BackupReport],
) -> Vec<Problem> {
    let schedules = match topo {
        Ok(topo) => match topo.list_schedules().await {
            Ok(s) => s,
            Err(e) => return vec![warning(format!("schedules not checked: {e}"))],
        },
        Err(e) => return vec![warning(format!("schedules not checked: {e:#}"))],
    };
    let now = Utc::now();
    let good: Vec<&BackupInfo> = listed
        .iter()
        .zip(reports)
        .filter(|(info, r)| r.status != Status::Failure && info.complete)
        .map(|(info, _)| info)
        .collect();
    let newest_age = good
        .iter()
        .filter_map(|b| b.manifest.as_ref())
        .map(|m| m.backup_time)
        .max()
        .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
    let usual = usual_duration(good.iter().filter_map(|b| b.manifest.as_ref()).map(|m| {
        (m.finished_time - m.backup_time)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }));
    let mut out = Vec::new();
    for s in schedules.iter().map(|v| &v.value) {
        if !covers(&s.target, ks, shard) {
            continue;
        }
        if s.paused {
            out.push(warning(format!("schedule {} is paused", s.name)));
            continue;
        }
        let Ok(cron) = usable_schedule(s) else {
            out.push(warning(format!("schedule {} cannot be read", s.name)));
            continue;
        };
        let Some(period) = longest_gap(now, |t| next_run(&cron, t)) else {
            continue;
        };
        out.extend(judge_freshness(&s.name, newest_age, period, usual));
    }
    out
}

fn warning(message: String) -> Problem {
    Problem {
        status: Status::Warning,
        object: None,
        message,
    }
}

/// Whether a stored schedule target names this shard or its keyspace.
fn covers(target: &str, ks: &str, shard: &str) -> bool {
    match Target::stored(target) {
        Target::Keyspace(k) => k == ks,
        Target::Shard { keyspace, shard: s } => keyspace == ks && s == shard,
    }
}

/// The longest gap between consecutive slots in the next [`PERIOD_SLOTS`] after
/// `from` (a weekday-only cron's weekend counts). `None` for fewer than two slots.
fn longest_gap(
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

/// The median duration of the newest five backups (zero with none).
fn usual_duration(durations: impl DoubleEndedIterator<Item = Duration>) -> Duration {
    let mut recent: Vec<Duration> = durations.rev().take(5).collect();
    recent.sort();
    recent
        .get(recent.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::schedule::parse_cron;
    use chrono::TimeZone;

    #[test]
    fn periods_targets_and_usual_durations() {
        let from = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let h = |s: u64| Duration::from_secs(s * 3600);
        // (cron, longest gap)
        let cases = [
            ("0 2 * * *", h(24)),
            ("0 */6 * * *", h(6)),
            ("0 2 * * 1-5", h(72)), // Friday to Monday
        ];
        for (expr, want) in cases {
            let cron = parse_cron(expr).unwrap();
            assert_eq!(
                longest_gap(from, |t| next_run(&cron, t)),
                Some(want),
                "{expr}"
            );
        }
        assert!(covers("commerce", "commerce", "0"));
        assert!(covers("commerce/0", "commerce", "0"));
        assert!(!covers("commerce/1", "commerce", "0"));
        assert!(!covers("customer", "commerce", "0"));
        let m = |v: &[u64]| usual_duration(v.iter().map(|s| Duration::from_secs(*s)));
        assert_eq!(m(&[]), Duration::ZERO);
        assert_eq!(m(&[10, 500, 20]), Duration::from_secs(20));
        // Only the newest five count.
        assert_eq!(m(&[900, 900, 900, 1, 2, 3, 4, 5]), Duration::from_secs(3));
    }
}
