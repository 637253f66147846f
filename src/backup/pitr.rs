//! Point-in-time restores, the deciding half: what a target is (a GTID position
//! or a second), which full backup and which chain of incremental backups reach
//! it ([`plan_chain`], Vitess's rules), continued through the continuous
//! archive's segments where the backups stop ([`plan_chain_with_archive`],
//! [`segments::plan_segments`]), and, once the chain's binlogs are
//! downloaded and read, exactly which transactions of which files to apply and
//! where that leaves the server ([`plan_apply`]). Pure: MANIFESTs and binlog
//! summaries in, a plan or a one-line reason out. The tablet agent does the IO.
//!
//! A time target `T` means "every transaction committed before `T`" (as
//! `mariadb-binlog --stop-datetime` stops at the first event at or after it):
//! the second `T` itself is excluded. One-second granularity, UTC only.
//!
//! May call: [`super::manifest`], [`super::binlog_archive`] (segment names),
//! [`crate::mysql::gtid`], [`crate::mysql::binlog`].

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use super::binlog_archive::SegmentName;
use super::manifest::{BackupMethod, Manifest};
use crate::mysql::binlog::BinlogSummary;
use crate::mysql::gtid::{
    format_gtid_list, merge_gtid_lists, parse_gtid_list, position_contains, position_has, seq_of,
    Gtid,
};

/// The prefix of MariaDB positions in flags and MANIFESTs.
const MARIADB_PREFIX: &str = "MariaDB/";

/// Where a point-in-time restore should end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Up to and including these GTIDs (`--restore-to-pos`).
    Position(Vec<Gtid>),
    /// Every transaction committed before this second (`--restore-to-timestamp`).
    Time(DateTime<Utc>),
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreTarget::Position(p) => write!(f, "{}", format_position(p)),
            RestoreTarget::Time(t) => write!(f, "{}", rfc3339(*t)),
        }
    }
}

/// `MariaDB/<list>` for a GTID list.
pub fn format_position(p: &[Gtid]) -> String {
    format!("{MARIADB_PREFIX}{}", format_gtid_list(p))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn unix(t: u32) -> String {
    DateTime::<Utc>::from_timestamp(i64::from(t), 0)
        .map(rfc3339)
        .unwrap_or_else(|| t.to_string())
}

/// Parses `--restore-to-pos MariaDB/<gtid-list>`: the prefix, at least one GTID,
/// one GTID per domain.
pub fn parse_restore_to_pos(s: &str) -> Result<Vec<Gtid>, String> {
    let Some(list) = s.strip_prefix(MARIADB_PREFIX) else {
        return Err(format!(
            "invalid position {s:?}: want MariaDB/<domain-server-sequence,...>, e.g. MariaDB/0-101-42"
        ));
    };
    let gtids = parse_gtid_list(list).map_err(|e| format!("invalid position {s:?}: {e:#}"))?;
    if gtids.is_empty() {
        return Err(format!("invalid position {s:?}: it names no GTID"));
    }
    let domains: BTreeSet<u32> = gtids.iter().map(|g| g.domain).collect();
    if domains.len() != gtids.len() {
        return Err(format!(
            "invalid position {s:?}: a replication domain appears twice"
        ));
    }
    Ok(gtids)
}

/// Parses a MANIFEST position (`MariaDB/<list>`, empty allowed).
fn parse_manifest_position(s: &str) -> Option<Vec<Gtid>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    parse_gtid_list(s.strip_prefix(MARIADB_PREFIX)?).ok()
}

/// Parses `--restore-to-timestamp YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole
/// seconds) and refuses a time after `now`.
pub fn parse_restore_to_timestamp(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let bad = || {
        format!(
            "invalid timestamp {s:?}: want YYYY-MM-DDTHH:MM:SSZ (UTC), e.g. 2026-11-25T14:03:00Z"
        )
    };
    if !shape_ok {
        return Err(bad());
    }
    let naive = NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").map_err(|_| bad())?;
    let t = Utc.from_utc_datetime(&naive);
    if t > now {
        return Err(format!(
            "timestamp {s} is in the future (now is {}): nothing is known about it yet",
            rfc3339(now)
        ));
    }
    Ok(t)
}

/// The moment a full backup's data stands for: a builtin backup's `BackupTime`
/// (mysqld stops right after it starts), an xtrabackup one's `FinishedTime` (the
/// copy is consistent at its end).
pub fn full_backup_time(m: &Manifest) -> DateTime<Utc> {
    match m.backup_method {
        BackupMethod::Builtin => m.backup_time,
        BackupMethod::Xtrabackup => m.finished_time,
    }
}

/// The backups a point-in-time restore uses, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainPlan {
    /// Where the restore ends.
    pub target: RestoreTarget,
    /// The full backup restored first.
    pub full: Manifest,
    /// The incremental backups applied on top of it, in order.
    pub incrementals: Vec<Manifest>,
    /// The position the chain's backups reach (the last one's `Position`).
    pub reaches: Vec<Gtid>,
    /// The archived binlog files applied after the incrementals, in order.
    pub archived: Vec<segments::ArchivedFile>,
}

/// A shard's continuous archive as a restore sees it: its segments (from the
/// storage listing) and when it last held everything the primary had written
/// (the archive record's `safe_at`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiveListing {
    pub segments: Vec<SegmentName>,
    pub safe_at: Option<DateTime<Utc>>,
}

impl ChainPlan {
    /// The chain as lines for operators (`--dry-run`, logs, the job record).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "full        {}  {}  {}  at {}",
            self.full.backup_name,
            self.full.backup_method,
            self.full.position,
            rfc3339(full_backup_time(&self.full))
        )];
        for m in &self.incrementals {
            let span = match &m.incremental.details {
                Some(d) => format!(
                    "  events {}..{}",
                    rfc3339(d.first_timestamp),
                    rfc3339(d.last_timestamp)
                ),
                None => String::new(),
            };
            lines.push(format!(
                "incremental {}  {} -> {}{span}",
                m.backup_name, m.incremental.from_position, m.position
            ));
        }
        lines.extend(self.archived.iter().map(segments::ArchivedFile::describe));
        lines.push(format!("target      {}", self.target));
        lines
    }
}

/// An incremental backup with its positions parsed.
struct Incremental<'a> {
    m: &'a Manifest,
    from: Vec<Gtid>,
    pos: Vec<Gtid>,
    purged: Vec<Gtid>,
}

/// Sum of sequence numbers: how far a position got, to prefer the incremental
/// that reaches furthest.
fn reach(p: &[Gtid]) -> u128 {
    p.iter().map(|g| u128::from(g.seq)).sum()
}

/// Whether the chain ending in `last` (an incremental) holds every transaction
/// committed before `t`: it was taken at or after `t` (its binlogs were flushed
/// after `t`), or it holds an event at or after `t`.
fn covers_time(last: &Manifest, t: DateTime<Utc>) -> bool {
    last.backup_time >= t
        || last
            .incremental
            .details
            .as_ref()
            .is_some_and(|d| d.last_timestamp >= t)
}

/// The GTID ranges of `to` missing from `from`, per domain (`0-101-43..0-101-57`).
fn missing_range(from: &[Gtid], to: &[Gtid]) -> String {
    let mut parts = Vec::new();
    for g in merge_gtid_lists(&[to.to_vec()]) {
        let have = seq_of(from, g.domain);
        if g.seq > have {
            parts.push(if g.seq == have + 1 {
                format!("{}-{}-{}", g.domain, g.server, g.seq)
            } else {
                format!(
                    "{}-*-{}..{}-{}-{}",
                    g.domain,
                    have + 1,
                    g.domain,
                    g.server,
                    g.seq
                )
            });
        }
    }
    parts.join(", ")
}

/// Chooses the full backup and the chain of incrementals that reach `target`
/// (Vitess's rules): the newest full backup at or before the target (its
/// `Position` contained in a position target; its [`full_backup_time`] before a
/// time target), then incrementals each of which starts within what is already
/// there (`FromPosition ⊆ base`), adds at least one GTID, and whose
/// `Position ∪ PurgedPosition ⊇ base`, preferring the one that reaches furthest,
/// until the target is reached. Backups whose MANIFEST cannot be restored, or
/// whose positions are not MariaDB GTID lists, are not used. Errors are one line:
/// what is missing and the nearest point that can be reached. Pure.
pub fn plan_chain(manifests: &[Manifest], target: &RestoreTarget) -> Result<ChainPlan, String> {
    plan_chain_with_archive(manifests, &ArchiveListing::default(), target)
}

/// [`plan_chain`], continued through the archive: where no incremental goes
/// on, the archived segments that hold the transactions from there to the
/// target ([`segments::plan_segments`]: no gap, no transaction twice). A hole,
/// or a target beyond the newest archived transaction, is a one-line error
/// with the nearest reachable point. Pure.
pub fn plan_chain_with_archive(
    manifests: &[Manifest],
    archive: &ArchiveListing,
    target: &RestoreTarget,
) -> Result<ChainPlan, String> {
    let mut fulls: Vec<(&Manifest, Vec<Gtid>)> = manifests
        .iter()
        .filter(|m| !m.is_incremental() && m.check_restorable().is_ok())
        .filter_map(|m| Some((m, parse_manifest_position(&m.position)?)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    fulls.sort_by(|a, b| {
        (full_backup_time(a.0), &a.0.backup_name).cmp(&(full_backup_time(b.0), &b.0.backup_name))
    });
    let incs: Vec<Incremental> = manifests
        .iter()
        .filter(|m| m.is_incremental() && m.check_restorable().is_ok())
        .filter_map(|m| {
            Some(Incremental {
                m,
                from: parse_manifest_position(&m.incremental.from_position)?,
                pos: parse_manifest_position(&m.position)?,
                purged: parse_manifest_position(&m.purged_position)?,
            })
        })
        .collect();
    let Some(oldest) = fulls.first() else {
        return Err("the shard has no complete full backup to start from".into());
    };
    if let RestoreTarget::Position(t) = target {
        let known: BTreeSet<u32> = fulls
            .iter()
            .flat_map(|(_, p)| p.iter())
            .chain(incs.iter().flat_map(|i| i.pos.iter()))
            .chain(
                archive
                    .segments
                    .iter()
                    .flat_map(|s| [s.first_gtid, s.last_gtid])
                    .flatten()
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .map(|g| g.domain)
            .collect();
        if let Some(d) = t.iter().map(|g| g.domain).find(|d| !known.contains(d)) {
            return Err(format!(
                "target {target} names replication domain {d}, which no backup of this shard \
                 has: is it a position of another shard's history?"
            ));
        }
    }
    let fits = |m: &Manifest, p: &[Gtid]| match target {
        RestoreTarget::Position(t) => position_contains(t, p),
        RestoreTarget::Time(t) => full_backup_time(m) < *t,
    };
    let Some((full, full_pos)) = fulls.iter().rev().find(|(m, p)| fits(m, p)) else {
        return Err(format!(
            "target {target} is before the oldest full backup, {} ({} at {}): nothing to restore it from",
            oldest.0.backup_name,
            oldest.0.position,
            rfc3339(full_backup_time(oldest.0))
        ));
    };
    let mut base = full_pos.clone();
    let mut chain: Vec<&Incremental> = Vec::new();
    let mut reached_time = full_backup_time(full);
    let mut archived = Vec::new();
    loop {
        let done = match target {
            RestoreTarget::Position(t) => position_contains(&base, t),
            RestoreTarget::Time(t) => chain.last().is_some_and(|l| covers_time(l.m, *t)),
        };
        if done {
            break;
        }
        let next = incs
            .iter()
            .filter(|i| !chain.iter().any(|c| c.m.backup_name == i.m.backup_name))
            .filter(|i| position_contains(&base, &i.from))
            .filter(|i| !position_contains(&base, &i.pos))
            .filter(|i| {
                position_contains(&merge_gtid_lists(&[i.pos.clone(), i.purged.clone()]), &base)
            })
            .max_by(|a, b| {
                (reach(&a.pos), a.m.backup_time, &a.m.backup_name).cmp(&(
                    reach(&b.pos),
                    b.m.backup_time,
                    &b.m.backup_name,
                ))
            });
        let Some(next) = next else {
            if !archive.segments.is_empty() {
                match segments::plan_segments(&archive.segments, &base, archive.safe_at, target) {
                    Ok(files) => {
                        archived = files;
                        break;
                    }
                    Err(s) => {
                        let at = s
                            .reached_at
                            .and_then(|t| DateTime::<Utc>::from_timestamp(i64::from(t), 0))
                            .unwrap_or(reached_time);
                        return Err(format!(
                            "cannot reach {target}: {}; the nearest reachable point is {} ({}), \
                             reachable with --restore-to-pos {}",
                            s.hole,
                            format_position(&s.reaches),
                            rfc3339(at),
                            format_position(&s.reaches)
                        ));
                    }
                }
            }
            // The nearest incremental that starts beyond what is reachable says
            // where the hole ends.
            let resumes = incs
                .iter()
                .filter(|i| !position_contains(&base, &i.from))
                .min_by_key(|i| reach(&i.from));
            let hole = match (resumes, target) {
                (Some(i), _) => format!(
                    "GTIDs {} are in no backup (the next one, {}, starts at {})",
                    missing_range(&base, &i.from),
                    i.m.backup_name,
                    i.m.incremental.from_position
                ),
                (None, RestoreTarget::Position(t)) => {
                    format!("GTIDs {} are in no backup", missing_range(&base, t))
                }
                (None, RestoreTarget::Time(_)) => format!(
                    "no backup holds the transactions after {}",
                    format_position(&base)
                ),
            };
            return Err(format!(
                "cannot reach {target}: {hole}; the nearest reachable point is {} ({}), \
                 reachable with --restore-to-pos {}",
                format_position(&base),
                rfc3339(reached_time),
                format_position(&base)
            ));
        };
        base = merge_gtid_lists(&[base.clone(), next.pos.clone()]);
        reached_time = next
            .m
            .incremental
            .details
            .as_ref()
            .map(|d| d.last_timestamp)
            .unwrap_or(next.m.backup_time);
        chain.push(next);
    }
    Ok(ChainPlan {
        target: target.clone(),
        full: (*full).clone(),
        incrementals: chain.iter().map(|i| i.m.clone()).collect(),
        reaches: base,
        archived,
    })
}

/// One incremental backup's binlog files as downloaded and read, in file order.
#[derive(Debug, Clone)]
pub struct DownloadedIncremental {
    /// The backup's name.
    pub backup: String,
    /// Each file's name and what it holds, sorted by name.
    pub files: Vec<(String, BinlogSummary)>,
}

/// One `mariadb-binlog | mariadb` run: these files of one backup, from `start`
/// (exclusive) to `stop` (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStep {
    /// The incremental backup the files belong to.
    pub backup: String,
    /// The files, in order.
    pub files: Vec<String>,
    /// `--start-position`: the GTID state before the step.
    pub start: Vec<Gtid>,
    /// `--stop-position`: the last GTID to apply in each domain the step advances.
    pub stop: Vec<Gtid>,
    /// How many transactions the step applies.
    pub transactions: usize,
}

/// Everything to apply on top of the full backup, and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyPlan {
    /// The runs, in order.
    pub steps: Vec<ApplyStep>,
    /// The position the server holds once every step ran.
    pub applied_to: Vec<Gtid>,
    /// Commit time (Unix seconds) of the last transaction applied, if any.
    pub last_commit: Option<u32>,
}

/// Decides which transactions of the downloaded binlogs to apply on a server
/// restored to `full_pos`: in file order, every transaction not already there,
/// up to the target (a position: up to and including its GTIDs; a time: every
/// transaction committed before it). Refuses, with the reason: a position
/// target whose GTIDs are not in these binlogs exactly (another shard's history,
/// or a hole), a time target the full backup already overshoots (it holds a
/// transaction committed at or after it), and binlogs that skip transactions (a
/// file whose `Gtid_list` is ahead of what is applied). Pure.
pub fn plan_apply(
    full_pos: &[Gtid],
    incs: &[DownloadedIncremental],
    target: &RestoreTarget,
) -> Result<ApplyPlan, String> {
    let mut base = full_pos.to_vec();
    let mut steps = Vec::new();
    let mut last_commit = None;
    let mut done = matches!(target, RestoreTarget::Position(t) if position_contains(&base, t));
    for inc in incs {
        if done {
            break;
        }
        let start = base.clone();
        let mut first_file: Option<usize> = None;
        let mut last_file = 0;
        let mut count = 0;
        'files: for (i, (name, sum)) in inc.files.iter().enumerate() {
            for tx in &sum.transactions {
                if position_has(&base, tx.gtid) {
                    if let RestoreTarget::Time(t) = target {
                        if position_has(full_pos, tx.gtid)
                            && i64::from(tx.committed) >= t.timestamp()
                        {
                            return Err(format!(
                                "the full backup already holds transaction {} committed at {}, \
                                 not before the target {target}: restore to a later time, or \
                                 from an older full backup",
                                tx.gtid,
                                unix(tx.committed)
                            ));
                        }
                    }
                    continue;
                }
                match target {
                    RestoreTarget::Time(t) if i64::from(tx.committed) >= t.timestamp() => {
                        done = true;
                        break 'files;
                    }
                    RestoreTarget::Position(t) if !position_has(t, tx.gtid) => continue,
                    _ => {}
                }
                if first_file.is_none() {
                    if !position_contains(&base, &sum.gtid_list) {
                        return Err(format!(
                            "binlog {name} of backup {} starts at {} but only {} is applied: \
                             GTIDs {} are missing",
                            inc.backup,
                            format_position(&sum.gtid_list),
                            format_position(&base),
                            missing_range(&base, &sum.gtid_list)
                        ));
                    }
                    first_file = Some(i);
                }
                if let Some(prev) = base.iter().find(|g| g.domain == tx.gtid.domain) {
                    if tx.gtid.seq != prev.seq + 1 {
                        return Err(format!(
                            "binlog {name} of backup {} jumps from {prev} to {}: GTIDs {} are missing",
                            inc.backup,
                            tx.gtid,
                            missing_range(&base, &[tx.gtid])
                        ));
                    }
                }
                base = merge_gtid_lists(&[base.clone(), vec![tx.gtid]]);
                last_file = i;
                count += 1;
                last_commit = Some(tx.committed);
                if let RestoreTarget::Position(t) = target {
                    if position_contains(&base, t) {
                        done = true;
                        break 'files;
                    }
                }
            }
        }
        if let Some(first) = first_file {
            let stop: Vec<Gtid> = base
                .iter()
                .filter(|g| !position_has(&start, **g))
                .copied()
                .collect();
            steps.push(ApplyStep {
                backup: inc.backup.clone(),
                files: inc.files[first..=last_file]
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect(),
                start,
                stop,
                transactions: count,
            });
        }
    }
    if let RestoreTarget::Position(t) = target {
        for g in t {
            let there = base.iter().find(|b| b.domain == g.domain);
            if there != Some(g) {
                let have = there
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "nothing".into());
                return Err(format!(
                    "target GTID {g} is not in this shard's history: its backups reach {have} \
                     in domain {} (is it another shard's position?)",
                    g.domain
                ));
            }
        }
    }
    Ok(ApplyPlan {
        steps,
        applied_to: base,
        last_commit,
    })
}

#[path = "pitr/segments.rs"]
pub mod segments;

#[cfg(test)]
#[path = "pitr/tests.rs"]
mod tests;
