//! The chain check of `cairn verify`: from each complete full backup to the
//! newest known transaction, the incremental backups and the archived binlog
//! segments must hold every transaction, per GTID replication domain. Pure
//! functions with table tests: the caller lists storage, checks the objects and
//! passes what it found.
//!
//! The model: every piece of storage holds, per domain, a range of sequence
//! numbers — an incremental backup `(FromPosition, Position]`, a run of archived
//! segments `[first GTID, last GTID]` (segments are a continuous stream, so a run
//! ends where the next segment's first GTID is not the one after the run's last).
//! A chain from a full backup at position `p` reaches, per domain, as far as
//! good pieces overlap from `p` on; every hole up to the newest known position is
//! one problem naming the missing GTID range and the damaged pieces that held it.
//! Pieces whose objects failed the object check count as absent. A hole that
//! ends before a newer full backup's position is a WARNING (those points in time
//! cannot be restored, the later ones can), any other a FAILURE.
//!
//! Segments holding several domains name only their first and last GTID: the
//! first is checked for continuity, the last extends its domain's run (the bytes
//! between are checked by [`byte_holes`], which finds byte holes in each source
//! binlog file and files whose head segment is missing).
//!
//! May call: [`crate::backup::binlog_archive`] (segment names),
//! [`crate::mysql::gtid`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::{worst, Problem, Status};
use crate::backup::binlog_archive::{archive_dir, SegmentName};
use crate::backup::incremental::parse_position;
use crate::backup::manifest::Manifest;
use crate::mysql::gtid::{format_gtid_list, merge_gtid_lists, seq_of, Gtid};

/// A range of one domain's sequence numbers held by one piece of storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// What holds it, for operators (`incremental NAME`, `segments A..B`).
    pub label: String,
    /// The stored object to name in a problem about it, if one.
    pub object: Option<String>,
    pub domain: u32,
    /// First and last sequence number held (inclusive).
    pub lo: u64,
    pub hi: u64,
    /// Why it cannot be used (its object check failed); `None` when good.
    pub damaged: Option<String>,
}

/// A complete full backup a chain starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullPoint {
    pub name: String,
    pub position: Vec<Gtid>,
}

/// The verdict on one chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// The full backup it starts from.
    pub full: String,
    pub status: Status,
    /// How far it reaches without a hole (a GTID list).
    pub reaches: String,
    /// The newest known position it should reach.
    pub end: String,
    pub problems: Vec<Problem>,
}

/// The pieces of one incremental backup: `(from, pos]` per domain of `pos`.
pub fn incremental_pieces(
    name: &str,
    from: &[Gtid],
    pos: &[Gtid],
    damaged: Option<String>,
) -> Vec<Piece> {
    merge_gtid_lists(&[pos.to_vec()])
        .into_iter()
        .filter(|g| g.seq > seq_of(from, g.domain))
        .map(|g| Piece {
            label: format!("incremental {name}"),
            object: Some(name.to_string()),
            domain: g.domain,
            lo: seq_of(from, g.domain) + 1,
            hi: g.seq,
            damaged: damaged.clone(),
        })
        .collect()
}

/// The pieces the archive's segments hold: good segments in archive order
/// joined into runs per domain (a run breaks where a segment's first GTID is
/// not right after what the run holds), and one piece per damaged segment.
/// `segments` pairs each segment with why its object is damaged (`None`: good).
pub fn segment_pieces(
    keyspace: &str,
    shard: &str,
    segments: &[(SegmentName, Option<String>)],
) -> Vec<Piece> {
    let dir = archive_dir(keyspace, shard);
    let mut sorted: Vec<&(SegmentName, Option<String>)> = segments.iter().collect();
    sorted.sort_by_key(|(s, _)| s.number);
    // domain → (lo, hi, first segment number, last segment number)
    let mut runs: BTreeMap<u32, (u64, u64, u64, u64)> = BTreeMap::new();
    let mut out = Vec::new();
    let run_piece = |d: u32, (lo, hi, a, b): (u64, u64, u64, u64)| Piece {
        label: format!("segments {a:010}..{b:010}"),
        object: None,
        domain: d,
        lo,
        hi,
        damaged: None,
    };
    for (s, damaged) in sorted {
        let (Some(first), Some(last)) = (s.first_gtid, s.last_gtid) else {
            continue;
        };
        if let Some(why) = damaged {
            for (d, lo, hi) in segment_ranges(first, last) {
                out.push(Piece {
                    label: format!("segment {}", s.format()),
                    object: Some(format!("{dir}/{}", s.format())),
                    domain: d,
                    lo,
                    hi,
                    damaged: Some(why.clone()),
                });
            }
            continue;
        }
        match runs.get_mut(&first.domain) {
            Some(r) if first.seq <= r.1 + 1 => {
                r.1 = r.1.max(first.seq);
                r.3 = s.number;
            }
            Some(r) => {
                out.push(run_piece(first.domain, *r));
                *r = (first.seq, first.seq, s.number, s.number);
            }
            None => {
                runs.insert(first.domain, (first.seq, first.seq, s.number, s.number));
            }
        }
        let r = runs
            .entry(last.domain)
            .or_insert((last.seq, last.seq, s.number, s.number));
        r.1 = r.1.max(last.seq);
        r.3 = s.number;
    }
    out.extend(runs.into_iter().map(|(d, r)| run_piece(d, r)));
    out
}

/// The ranges a segment's name tells: one when its first and last GTID share a
/// domain, else only the two GTIDs themselves.
fn segment_ranges(first: Gtid, last: Gtid) -> Vec<(u32, u64, u64)> {
    if first.domain == last.domain {
        vec![(
            first.domain,
            first.seq.min(last.seq),
            first.seq.max(last.seq),
        )]
    } else {
        vec![
            (first.domain, first.seq, first.seq),
            (last.domain, last.seq, last.seq),
        ]
    }
}

/// `0-*-5` or `0-*-5..0-*-9`.
fn gtid_range(domain: u32, a: u64, b: u64) -> String {
    if a == b {
        format!("{domain}-*-{a}")
    } else {
        format!("{domain}-*-{a}..{domain}-*-{b}")
    }
}

/// Checks the chain from `full` to `end`: per domain of `end`, every sequence
/// number after the full backup's is held by a good piece. `newer_full` is the
/// next full backup's position (a hole that ends within it is a WARNING). Pure.
pub fn check_chain(
    full: &FullPoint,
    newer_full: Option<&FullPoint>,
    pieces: &[Piece],
    end: &[Gtid],
) -> ChainReport {
    let mut problems = Vec::new();
    let mut reaches = Vec::new();
    for want in merge_gtid_lists(&[end.to_vec()]) {
        let d = want.domain;
        let start = seq_of(&full.position, d);
        let mut good: Vec<&Piece> = pieces
            .iter()
            .filter(|p| p.domain == d && p.damaged.is_none() && p.hi > start)
            .collect();
        good.sort_by_key(|p| (p.lo, p.hi));
        let mut reach = start;
        let mut holes = Vec::new();
        for p in good {
            if p.lo > reach + 1 {
                holes.push((reach + 1, p.lo - 1));
            }
            reach = reach.max(p.hi);
        }
        if reach < want.seq {
            holes.push((reach + 1, want.seq));
        }
        let reached = holes.first().map_or(want.seq, |h| h.0 - 1);
        if reached > 0 {
            reaches.push(format!("{d}-*-{reached}"));
        }
        for (a, b) in holes {
            problems.push(hole_problem(d, a, b, full, newer_full, pieces));
        }
    }
    ChainReport {
        full: full.name.clone(),
        status: worst(&problems),
        reaches: reaches.join(","),
        end: format_gtid_list(&merge_gtid_lists(&[end.to_vec()])),
        problems,
    }
}

/// One line for a hole `[a, b]` in domain `d`, naming the damaged pieces that
/// held part of it.
fn hole_problem(
    d: u32,
    a: u64,
    b: u64,
    full: &FullPoint,
    newer_full: Option<&FullPoint>,
    pieces: &[Piece],
) -> Problem {
    let damaged: Vec<&Piece> = pieces
        .iter()
        .filter(|p| p.domain == d && p.damaged.is_some() && p.lo <= b && p.hi >= a)
        .collect();
    let mut message = format!(
        "chain from {}: GTIDs {} are in no good incremental backup or archived segment",
        full.name,
        gtid_range(d, a, b)
    );
    for p in &damaged {
        message.push_str(&format!(
            "; {} held {} but is damaged: {}",
            p.label,
            gtid_range(d, p.lo, p.hi),
            p.damaged.as_deref().unwrap_or_default()
        ));
    }
    let status = match newer_full {
        Some(n) if seq_of(&n.position, d) >= b => {
            message.push_str(&format!(
                " (points in time there cannot be restored; full backup {} restores what follows)",
                n.name
            ));
            Status::Warning
        }
        _ => Status::Failure,
    };
    Problem {
        status,
        object: damaged.first().and_then(|p| p.object.clone()),
        message,
    }
}

/// Checks every chain: one per full backup, oldest first. `fulls` in any order.
pub fn check_chains(fulls: &[FullPoint], pieces: &[Piece], end: &[Gtid]) -> Vec<ChainReport> {
    let mut sorted: Vec<&FullPoint> = fulls.iter().collect();
    sorted.sort_by_key(|f| {
        (
            f.position.iter().map(|g| u128::from(g.seq)).sum::<u128>(),
            f.name.clone(),
        )
    });
    sorted
        .iter()
        .enumerate()
        .map(|(i, f)| check_chain(f, sorted.get(i + 1).copied(), pieces, end))
        .collect()
}

/// A hole in the bytes of one source binlog file: `[from, to)` is in no
/// segment; `before`/`after` are the segments around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteHole {
    pub server_id: u32,
    pub file_index: u64,
    pub from: u64,
    pub to: u64,
    pub before: Option<String>,
    pub after: String,
}

/// Byte holes of each source file. Overlapping segments (a compacted segment
/// beside the small ones it replaces) cover what either covers; a moved head
/// followed by a later segment is no hole (the bytes between were archived from
/// the previous primary); a file's first segment must start at 0 (every
/// archiving session starts a file at its head). Pure.
pub fn byte_holes(segments: &[SegmentName]) -> Vec<ByteHole> {
    let mut files: BTreeMap<(u32, u64), Vec<&SegmentName>> = BTreeMap::new();
    for s in segments {
        files
            .entry((s.server_id, s.file_index))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for ((server_id, file_index), mut segs) in files {
        segs.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end), s.number));
        let mut covered = 0u64;
        let mut moved_head = false;
        let mut before: Option<&SegmentName> = None;
        for s in segs {
            if s.start > covered && !moved_head {
                out.push(ByteHole {
                    server_id,
                    file_index,
                    from: covered,
                    to: s.start,
                    before: before.map(SegmentName::format),
                    after: s.format(),
                });
            }
            if s.end > covered || before.is_none() {
                covered = covered.max(s.end);
                moved_head = s.moved_head;
                before = Some(s);
            }
        }
    }
    out
}

/// The archive's byte holes as problems: FAILURE each, naming the file, the
/// byte range and the segments around it. Pure.
pub fn archive_structure(keyspace: &str, shard: &str, segments: &[SegmentName]) -> Vec<Problem> {
    let dir = archive_dir(keyspace, shard);
    byte_holes(segments)
        .into_iter()
        .map(|h| Problem {
            status: Status::Failure,
            object: Some(format!("{dir}/{}", h.after)),
            message: match &h.before {
                Some(b) => format!(
                    "archive {dir}: bytes {}..{} of binlog file {} of server {} are in no segment (between {b} and {})",
                    h.from, h.to, h.file_index, h.server_id, h.after
                ),
                None => format!(
                    "archive {dir}: the head of binlog file {} of server {} (bytes 0..{}) is in no segment (the first is {})",
                    h.file_index, h.server_id, h.to, h.after
                ),
            },
        })
        .collect()
}

/// A listed backup as the chain check sees it: its MANIFEST and why its
/// objects failed the object check (`None`: they are good).
pub struct CheckedBackup<'a> {
    pub manifest: &'a Manifest,
    pub damaged: Option<String>,
}

/// A MANIFEST position (`MariaDB/<gtids>`, or empty) as GTIDs; `None` when it
/// is not one.
fn manifest_position(s: &str) -> Option<Vec<Gtid>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    parse_position(s).ok()
}

/// Every chain of a shard, from what storage holds: the complete backups
/// (fulls start chains, incrementals are pieces), the archive's segments (each
/// with why its object is damaged) and the position the archive record says is
/// archived (empty when unknown). The newest known position is the highest of
/// the incrementals', the segments' and the archive record's (full backups do
/// not count: a shard with full backups only has no chain to check). Returns
/// the chains and the archive's byte holes. Pure.
pub fn shard_chains(
    keyspace: &str,
    shard: &str,
    backups: &[CheckedBackup],
    segments: &[(SegmentName, Option<String>)],
    archived: &[Gtid],
) -> (Vec<ChainReport>, Vec<Problem>) {
    let mut fulls = Vec::new();
    let mut pieces = Vec::new();
    let mut ends = vec![archived.to_vec()];
    for b in backups {
        let m = b.manifest;
        let Some(pos) = manifest_position(&m.position) else {
            continue;
        };
        if !m.is_incremental() {
            if b.damaged.is_none() && !pos.is_empty() {
                fulls.push(FullPoint {
                    name: m.backup_name.clone(),
                    position: pos,
                });
            }
            continue;
        }
        ends.push(pos.clone());
        if let Some(from) = manifest_position(&m.incremental.from_position) {
            pieces.extend(incremental_pieces(
                &m.backup_name,
                &from,
                &pos,
                b.damaged.clone(),
            ));
        }
    }
    ends.extend(
        segments
            .iter()
            .flat_map(|(s, _)| [s.first_gtid, s.last_gtid])
            .flatten()
            .map(|g| vec![g]),
    );
    pieces.extend(segment_pieces(keyspace, shard, segments));
    let end = merge_gtid_lists(&ends);
    let names: Vec<SegmentName> = segments.iter().map(|(s, _)| s.clone()).collect();
    (
        check_chains(&fulls, &pieces, &end),
        archive_structure(keyspace, shard, &names),
    )
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
