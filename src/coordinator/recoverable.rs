//! A shard's recoverability as a pure decision (issue 10, item 5): the window a
//! point-in-time restore can reach — from the oldest complete full backup's
//! moment to the newest archived transaction's commit (or the newest backup's
//! moment when nothing is archived after it) — and the archive's gaps:
//! bytes or GTIDs no segment holds ([`archive_holes`]), and, when the history is
//! one replication domain, transactions between the oldest full backup and the
//! archive's first segment that no incremental backup holds either. Gaps the
//! oldest full backup or an incremental backup covers are no gaps. Binlogs
//! purged on the primary before they were archived are a gap the moment the
//! primary's Health says its oldest binlog starts past what the archive (and
//! the backups) hold, in any domain ([`purged_gaps`]); once the archive goes on
//! past them they also show as a GTID gap between segments.
//!
//! May call: [`crate::backup::pitr`] (segment holes, a full backup's moment),
//! [`crate::mysql::gtid`], `cairn-topo`'s records. Table-tested.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use cairn_topo::{BackupMethod, BackupRecord, BackupRecordState};
use chrono::{DateTime, Utc};

use crate::backup::binlog_archive::SegmentName;
use crate::backup::pitr::segments::{archive_holes, ArchiveHole};
use crate::mysql::gtid::{parse_gtid_list, seq_of, Gtid};

/// What `/api/v1/status`, the metrics and `get-shard` say about a shard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recoverability {
    /// The oldest complete full backup's moment (`None`: no full backup).
    pub recoverable_from: Option<DateTime<Utc>>,
    /// The newest point reachable: the newest archived transaction's commit,
    /// else the newest backup's.
    pub recoverable_to: Option<DateTime<Utc>>,
    /// Every gap, oldest first.
    pub gaps: Vec<Gap>,
}

/// One gap: the GTIDs missing, and one line saying where (the record the
/// coordinator keeps on the shard's archive record).
pub type Gap = cairn_topo::ArchiveGap;

impl Recoverability {
    /// `recoverable_to − recoverable_from`, seconds.
    pub fn window_seconds(&self) -> Option<f64> {
        let (a, b) = (self.recoverable_from?, self.recoverable_to?);
        Some(((b - a).num_milliseconds().max(0) as f64) / 1000.0)
    }
}

/// A full backup's moment: a builtin backup's start (mysqld stopped), an
/// xtrabackup one's end (consistent there).
fn full_time(r: &BackupRecord) -> DateTime<Utc> {
    match r.engine {
        BackupMethod::Builtin => r.backup_time,
        BackupMethod::Xtrabackup => r.finished_time.unwrap_or(r.backup_time),
    }
}

fn parse_pos(s: &str) -> Vec<Gtid> {
    parse_gtid_list(s.strip_prefix("MariaDB/").unwrap_or(s)).unwrap_or_default()
}

fn ts(t: u32) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(i64::from(t), 0)
}

/// What a window is built from: the complete, readable backups, the oldest
/// full one among them, and each incremental's (from, to) positions.
struct Usable<'a> {
    /// Complete and readable.
    all: Vec<&'a BackupRecord>,
    /// The oldest full backup of `all` by its moment.
    oldest_full: Option<&'a BackupRecord>,
    /// (from, to) of each incremental of `all`.
    incs: Vec<(Vec<Gtid>, Vec<Gtid>)>,
}

fn usable<'a>(backups: &[&'a BackupRecord]) -> Usable<'a> {
    let all: Vec<&BackupRecord> = backups
        .iter()
        .copied()
        .filter(|b| b.complete && b.state == BackupRecordState::Complete)
        .collect();
    let oldest_full = all
        .iter()
        .copied()
        .filter(|b| !b.incremental)
        .min_by_key(|b| (full_time(b), b.name.clone()));
    let incs = all
        .iter()
        .filter(|b| b.incremental)
        .map(|b| {
            (
                parse_pos(b.from_position.as_deref().unwrap_or("")),
                parse_pos(&b.position),
            )
        })
        .collect();
    Usable {
        all,
        oldest_full,
        incs,
    }
}

/// The shard's window and gaps from its backup records, archived segment
/// names, and the archive record's position (`archived`, the newest archived
/// GTID per domain as the archiving agent recorded it, read before the
/// segments were listed: segments it names but storage lacks are a gap). Pure.
pub fn recoverability(
    backups: &[&BackupRecord],
    segments: &[SegmentName],
    archived: &[Gtid],
) -> Recoverability {
    let Usable {
        all,
        oldest_full,
        incs,
    } = usable(backups);
    let covered = oldest_full
        .map(|b| parse_pos(&b.position))
        .unwrap_or_default();
    let bridged = |h: &ArchiveHole| match (h.after, h.before) {
        (Some(a), Some(b)) if a.domain == b.domain => incs
            .iter()
            .any(|(from, to)| seq_of(from, a.domain) <= a.seq && seq_of(to, a.domain) + 1 >= b.seq),
        _ => false,
    };
    let mut gaps: Vec<Gap> = archive_holes(segments, &covered)
        .into_iter()
        .filter(|h| !bridged(h))
        .map(|h| Gap {
            missing_gtids: h.missing_gtids(),
            detail: h.describe(),
        })
        .collect();
    // Between the oldest full backup and the archive's first transaction.
    let first = segments
        .iter()
        .filter_map(|s| Some((s.first_gtid?, s)))
        .min_by_key(|(g, _)| (g.domain, g.seq));
    let domains: std::collections::BTreeSet<u32> = segments
        .iter()
        .flat_map(|s| [s.first_gtid, s.last_gtid])
        .flatten()
        .chain(covered.iter().copied())
        .map(|g| g.domain)
        .collect();
    if let (Some((g, s)), Some(base), 1) = (first, covered.first(), domains.len()) {
        let mut reach = seq_of(&covered, g.domain);
        // Incrementals carry the base forward.
        loop {
            let next = incs
                .iter()
                .filter(|(from, _)| seq_of(from, g.domain) <= reach)
                .map(|(_, to)| seq_of(to, g.domain))
                .max()
                .filter(|&to| to > reach);
            match next {
                Some(to) => reach = to,
                None => break,
            }
        }
        if g.seq > reach + 1 {
            let h = ArchiveHole {
                server_id: s.server_id,
                file_index: s.file_index,
                from: 0,
                to: Some(s.start),
                after: Some(Gtid {
                    seq: reach,
                    ..*base
                }),
                before: Some(g),
                after_ts: None,
            };
            let name = oldest_full.map_or("", |b| b.name.as_str());
            gaps.insert(
                0,
                Gap {
                    missing_gtids: h.missing_gtids(),
                    detail: format!(
                        "GTIDs {} are in no backup and no archived segment: the oldest full \
                         backup {name} (and its incrementals) reach {}, the archive starts at {g}",
                        h.missing_gtids(),
                        h.after.map(|a| a.to_string()).unwrap_or_default()
                    ),
                },
            );
        }
    }
    // The newest segments gone: the record says more was archived.
    if let (Some(d), 1) = (domains.first(), domains.len()) {
        let stored = segments
            .iter()
            .filter_map(|s| s.last_gtid)
            .filter(|g| g.domain == *d)
            .max_by_key(|g| g.seq);
        let recorded = archived.iter().find(|g| g.domain == *d);
        if let (Some(have), Some(want)) = (stored, recorded) {
            if want.seq > have.seq {
                let h = ArchiveHole {
                    server_id: 0,
                    file_index: 0,
                    from: 0,
                    to: None,
                    after: Some(have),
                    before: Some(Gtid {
                        seq: want.seq + 1,
                        ..*want
                    }),
                    after_ts: None,
                };
                gaps.push(Gap {
                    missing_gtids: h.missing_gtids(),
                    detail: format!(
                        "the archive record says {want} is archived but the newest stored \
                         segment ends at {have}: GTIDs {} are missing",
                        h.missing_gtids()
                    ),
                });
            }
        }
    }
    let archived_to = segments.iter().filter_map(|s| s.last_ts).max().and_then(ts);
    let backed_up_to = all
        .iter()
        .map(|b| {
            if b.incremental {
                b.last_timestamp.unwrap_or(b.backup_time)
            } else {
                full_time(b)
            }
        })
        .max();
    Recoverability {
        recoverable_from: oldest_full.map(full_time),
        recoverable_to: archived_to
            .max(backed_up_to)
            .filter(|_| oldest_full.is_some()),
        gaps,
    }
}

/// Transactions purged on the primary before they were archived: in each
/// domain of `primary_oldest` (the position before the primary's oldest binlog,
/// from its Health: every transaction at or before it is purged there), those
/// after what is held elsewhere — the archive (`archived`, its record's
/// position, and the stored `segments`' newest GTIDs), the oldest complete full
/// backup, and incrementals chained from either — up to the primary's oldest:
/// they exist nowhere. None while the archive (or a backup) reaches the
/// primary's oldest binlog, and none without a complete full backup (nothing
/// is recoverable then, and a primary's long-purged history, in a domain no
/// longer written, would otherwise look missing for ever). Pure.
pub fn purged_gaps(
    backups: &[&BackupRecord],
    segments: &[SegmentName],
    archived: &[Gtid],
    primary_oldest: &[Gtid],
) -> Vec<Gap> {
    let Usable {
        oldest_full, incs, ..
    } = usable(backups);
    let Some(oldest_full) = oldest_full.map(|b| parse_pos(&b.position)) else {
        return Vec::new();
    };
    let mut purged: BTreeMap<u32, Gtid> = BTreeMap::new();
    for g in primary_oldest {
        let e = purged.entry(g.domain).or_insert(*g);
        if g.seq > e.seq {
            *e = *g;
        }
    }
    let mut gaps = Vec::new();
    for (d, oldest) in purged {
        let stored = segments
            .iter()
            .filter_map(|s| s.last_gtid)
            .filter(|g| g.domain == d)
            .map(|g| g.seq)
            .max()
            .unwrap_or(0);
        let archive = seq_of(archived, d).max(stored);
        let mut held = archive.max(seq_of(&oldest_full, d));
        // Incrementals carry it forward.
        while let Some(to) = incs
            .iter()
            .filter(|(from, _)| seq_of(from, d) <= held)
            .map(|(_, to)| seq_of(to, d))
            .filter(|&to| to > held)
            .max()
        {
            held = to;
        }
        if held >= oldest.seq {
            continue;
        }
        let missing = if held + 1 == oldest.seq {
            format!("{d}-*-{}", oldest.seq)
        } else {
            format!("{d}-*-{}..{d}-*-{}", held + 1, oldest.seq)
        };
        let archive_at = if archive == 0 {
            format!("nothing of domain {d}")
        } else {
            format!("up to {d}-*-{archive}")
        };
        gaps.push(Gap {
            detail: format!(
                "GTIDs {missing} were purged on the primary before they were archived: its \
                 oldest binlog starts after {oldest}, the archive holds {archive_at}, and no \
                 backup holds them"
            ),
            missing_gtids: missing,
        });
    }
    gaps
}

type ShardKey = (String, String);

/// One archived shard's segments as the pass last listed them.
#[derive(Debug, Clone)]
pub struct Listed {
    /// When it was listed (in full, or only what was new).
    pub at: Instant,
    /// When it was last listed in full: segments deleted from storage, and
    /// compacted ones (named by their first source's number), are seen then.
    pub full_at: Instant,
    /// The archive record's `compacted_at` when it was last listed in full.
    pub compacted_at: Option<DateTime<Utc>>,
    pub segments: Vec<SegmentName>,
}

/// How the next listing of an archived shard's segments is done.
#[derive(Debug, Clone, PartialEq)]
pub enum NextList {
    /// Every segment (the first time, then every `full_every`).
    Full,
    /// Only the segments stored after this one (the newest listed).
    After(SegmentName),
}

/// The next listing after `prev` at `now`: in full the first time, when the
/// last full one is `full_every` old, after a compaction (the archive record's
/// `compacted_at` differs from the one seen at the last full listing), or when
/// nothing was listed yet; else only what is newer than the newest segment
/// listed. Pure.
pub fn next_list(
    prev: Option<&Listed>,
    now: Instant,
    full_every: Duration,
    compacted_at: Option<DateTime<Utc>>,
) -> NextList {
    let Some(p) = prev else {
        return NextList::Full;
    };
    if now.saturating_duration_since(p.full_at) >= full_every || p.compacted_at != compacted_at {
        return NextList::Full;
    }
    p.segments
        .iter()
        .max_by(|a, b| {
            a.number
                .cmp(&b.number)
                .then_with(|| a.format().cmp(&b.format()))
        })
        .map_or(NextList::Full, |s| NextList::After(s.clone()))
}

/// The segments known after an incremental listing: the earlier ones, and the
/// new ones not among them, in archive order. Pure.
pub fn merge_listing(prev: &[SegmentName], new: Vec<SegmentName>) -> Vec<SegmentName> {
    let mut out = prev.to_vec();
    for s in new {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.number);
    out
}

/// What the pass keeps between runs: each archived shard's last listing, and
/// each shard's recoverability for the status endpoint.
#[derive(Default)]
pub struct RecoverabilityMemo {
    pub(super) listed: HashMap<ShardKey, Listed>,
    /// The latest result per shard.
    pub results: BTreeMap<ShardKey, Recoverability>,
}

#[cfg(test)]
#[path = "recoverable_tests.rs"]
mod tests;
