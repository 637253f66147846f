//! Point-in-time restores through the continuous archive, the deciding half:
//! which archived segments carry a restore from where its full backup (and
//! incrementals) left off to its target ([`plan_segments`]), and where the
//! archive has holes ([`archive_holes`], also the coordinator's gap check).
//! Pure: segment names in (they say each segment's source file, byte range,
//! first and last GTID and times), a plan or a one-line shortfall out.
//!
//! How segments are chosen:
//! - Each source binlog file (server_id, file index) is rebuilt as one local
//!   binlog: its head (the segment at offset 0: `Format_description`,
//!   `Gtid_list`) followed by the pieces holding the transactions to apply, in
//!   byte order. Pieces left out between them (transactions the full backup
//!   already holds) and the jump after a moved head make the event positions
//!   jump; `mariadb-binlog` reads such a file (checked on 10.11).
//! - Overlapping segments (a compacted segment stored next to the small ones
//!   it replaces) never put a byte in twice: a file is tiled from offset 0, at
//!   each offset taking the segment that covers it and reaches furthest, from
//!   that offset on (a slice of it). So no transaction is applied twice; the
//!   apply's `--start-position` and [`super::plan_apply`] skip anything the
//!   server already holds as a second guard.
//! - Files are applied in archive history order: by their first transaction's
//!   time, then its sequence number, then segment number. A wrong order could
//!   only fail (the apply checks every domain's sequence goes up by one).
//! - Leading pieces are skipped only when provably in the base position: the
//!   shard's history is one replication domain (then a segment whose last GTID
//!   the base holds is all in it). With several domains a name does not say
//!   what lies between its first and last GTID, so every piece of a file from
//!   its head on is fetched, and the apply skips what is there already.
//! - A hole before the target (bytes of a file no segment holds, a file's
//!   head missing, or, in one domain, sequence numbers no segment names) is a
//!   shortfall naming the missing GTIDs and the nearest reachable point.
//!
//! May call: [`crate::backup::binlog_archive`] (segment names),
//! [`crate::mysql::gtid`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::RestoreTarget;
use crate::backup::binlog_archive::SegmentName;
use crate::mysql::gtid::{merge_gtid_lists, position_has, Gtid};

/// Bytes `[from, segment.end)` of one stored segment (`from >= segment.start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPiece {
    pub segment: SegmentName,
    pub from: u64,
}

impl SegmentPiece {
    /// Whether the piece is the whole segment (so its name's first GTID and
    /// time are the piece's).
    pub fn is_whole(&self) -> bool {
        self.from == self.segment.start
    }
}

/// One source binlog file rebuilt from segments, in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    pub server_id: u32,
    pub file_index: u64,
    pub pieces: Vec<SegmentPiece>,
}

impl ArchivedFile {
    /// The local directory (under the restore's binlog directory) and file name.
    pub fn local_dir(&self) -> String {
        format!("_binlog-{}-{:06}", self.server_id, self.file_index)
    }

    /// The local file name.
    pub fn local_name(&self) -> String {
        format!("archived-bin.{:06}", self.file_index)
    }

    /// First and last GTID and time of the transactions the pieces name.
    fn span(&self) -> (Option<Gtid>, Option<Gtid>, Option<u32>, Option<u32>) {
        let tx: Vec<&SegmentName> = self
            .pieces
            .iter()
            .map(|p| &p.segment)
            .filter(|s| s.has_transactions())
            .collect();
        (
            tx.first().and_then(|s| s.first_gtid),
            tx.last().and_then(|s| s.last_gtid),
            tx.first().and_then(|s| s.first_ts),
            tx.last().and_then(|s| s.last_ts),
        )
    }

    /// One line for `--dry-run` and the job record.
    pub fn describe(&self) -> String {
        let (first, last, t0, t1) = self.span();
        let opt = |g: Option<Gtid>| g.map_or_else(|| "-".to_string(), |g| g.to_string());
        let ts = |t: Option<u32>| t.map_or_else(|| "-".to_string(), super::unix);
        let numbers: Vec<String> = self
            .pieces
            .iter()
            .map(|p| {
                if p.is_whole() {
                    p.segment.number.to_string()
                } else {
                    format!("{}@{}", p.segment.number, p.from)
                }
            })
            .collect();
        format!(
            "archive     server {} binlog {}: {} segment(s) [{}]  GTIDs {}..{}  events {}..{}",
            self.server_id,
            self.file_index,
            self.pieces.len(),
            numbers.join(","),
            opt(first),
            opt(last),
            ts(t0),
            ts(t1)
        )
    }
}

/// Bytes of a source file that no segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHole {
    pub server_id: u32,
    pub file_index: u64,
    /// Missing bytes `[from, to)`; `to` is `None` when the rest of the shard's
    /// history is missing (sequence numbers no segment names).
    pub from: u64,
    pub to: Option<u64>,
    /// The last archived transaction before the hole and the first after it.
    pub after: Option<Gtid>,
    pub before: Option<Gtid>,
    /// Commit time of `after`.
    pub after_ts: Option<u32>,
}

impl ArchiveHole {
    /// The missing GTIDs, as a range (`0-101-43..0-101-57`) or what is known.
    pub fn missing_gtids(&self) -> String {
        match (self.after, self.before) {
            (Some(a), Some(b)) if a.domain == b.domain && b.seq == a.seq + 1 => {
                "none (only the file's head, which a restore of it needs)".into()
            }
            (Some(a), Some(b)) if a.domain == b.domain && b.seq == a.seq + 2 => {
                format!("{}-*-{}", b.domain, a.seq + 1)
            }
            (Some(a), Some(b)) if a.domain == b.domain && b.seq > a.seq + 1 => {
                format!("{}-*-{}..{}-*-{}", a.domain, a.seq + 1, b.domain, b.seq - 1)
            }
            (Some(a), Some(b)) => format!("those between {a} and {b}"),
            (Some(a), None) => format!("those after {a}"),
            (None, Some(b)) => format!("those before {b}"),
            (None, None) => "unknown ones".into(),
        }
    }

    /// One line for operators.
    pub fn describe(&self) -> String {
        let bytes = match self.to {
            Some(to) if self.from == 0 => format!("the head (bytes 0..{to})"),
            Some(to) => format!("bytes {}..{to}", self.from),
            None => "the segments after it".into(),
        };
        format!(
            "{bytes} of binlog {} of server {} are in no segment: GTIDs {} are missing",
            self.file_index,
            self.server_id,
            self.missing_gtids()
        )
    }
}

/// One item of a file tiled from offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tile {
    Piece(SegmentPiece),
    Hole { from: u64, to: u64 },
}

/// Tiles one file's segments (any order, overlaps allowed) from offset 0: at
/// each offset the covering segment reaching furthest (then the lowest
/// number), a hole up to the next segment when none covers it, except right
/// after a moved head. One sweep over the segments sorted by start. Pure.
fn tile_file(segs: &[&SegmentName]) -> Vec<Tile> {
    let rank = |s: &SegmentName| (s.end, std::cmp::Reverse(s.number));
    let mut v: Vec<&SegmentName> = segs.to_vec();
    v.sort_by_key(|s| (s.start, s.number));
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut after_moved_head = false;
    let mut i = 0;
    // Of the segments starting at or before `at`, the one reaching furthest.
    let mut best: Option<&SegmentName> = None;
    loop {
        while let Some(s) = v.get(i).filter(|s| s.start <= at) {
            if best.is_none_or(|b| rank(s) > rank(b)) {
                best = Some(*s);
            }
            i += 1;
        }
        if let Some(s) = best.filter(|b| b.end > at) {
            out.push(Tile::Piece(SegmentPiece {
                segment: s.clone(),
                from: at,
            }));
            after_moved_head = s.moved_head;
            at = s.end;
            continue;
        }
        let Some(next) = v.get(i) else {
            return out;
        };
        if !after_moved_head {
            out.push(Tile::Hole {
                from: at,
                to: next.start,
            });
        }
        after_moved_head = false;
        at = next.start;
    }
}

/// A file of the archive, tiled, with its order key.
struct Tiled {
    server_id: u32,
    file_index: u64,
    tiles: Vec<Tile>,
    key: (u32, u64, u64),
}

/// Every source file of the archive tiled, in history order.
fn tiled_files(segments: &[SegmentName]) -> Vec<Tiled> {
    let mut files: BTreeMap<(u32, u64), Vec<&SegmentName>> = BTreeMap::new();
    for s in segments {
        files
            .entry((s.server_id, s.file_index))
            .or_default()
            .push(s);
    }
    let mut out: Vec<Tiled> = files
        .into_iter()
        .map(|((sid, idx), mut segs)| {
            segs.sort_by_key(|s| (s.start, s.number));
            let first_tx = segs.iter().find(|s| s.has_transactions());
            let key = (
                first_tx.and_then(|s| s.first_ts).unwrap_or(u32::MAX),
                first_tx
                    .and_then(|s| s.first_gtid)
                    .map_or(u64::MAX, |g| g.seq),
                segs.iter().map(|s| s.number).min().unwrap_or(u64::MAX),
            );
            Tiled {
                server_id: sid,
                file_index: idx,
                tiles: tile_file(&segs),
                key,
            }
        })
        .collect();
    out.sort_by_key(|t| t.key);
    out
}

/// The one replication domain of a history, if it has exactly one.
fn single_domain(segments: &[SegmentName], also: &[Gtid]) -> Option<u32> {
    let domains: BTreeSet<u32> = segments
        .iter()
        .flat_map(|s| [s.first_gtid, s.last_gtid])
        .flatten()
        .chain(also.iter().copied())
        .map(|g| g.domain)
        .collect();
    match domains.len() {
        1 => domains.first().copied(),
        _ => None,
    }
}

/// A hole between two tiles of a file, with its neighbouring transactions.
fn hole_between(t: &Tiled, i: usize, from: u64, to: u64) -> ArchiveHole {
    let after = t.tiles[..i].iter().rev().find_map(|x| match x {
        Tile::Piece(p) if p.segment.has_transactions() => Some(&p.segment),
        _ => None,
    });
    let before = t.tiles[i + 1..].iter().find_map(|x| match x {
        Tile::Piece(p) if p.segment.has_transactions() => Some(&p.segment),
        _ => None,
    });
    ArchiveHole {
        server_id: t.server_id,
        file_index: t.file_index,
        from,
        to: Some(to),
        after: after.and_then(|s| s.last_gtid),
        before: before.and_then(|s| s.first_gtid),
        after_ts: after.and_then(|s| s.last_ts),
    }
}

/// Every hole in a shard's archive: bytes of a file between segments (a moved
/// head's jump excepted), a file whose head is missing, and, when the history
/// is one replication domain, sequence numbers between segments that no
/// segment names (a whole file, or a file's last segment, missing). Holes
/// wholly within `covered` (the oldest full backup's position: nothing there is
/// ever needed) are left out, when the history is one domain. Pure.
pub fn archive_holes(segments: &[SegmentName], covered: &[Gtid]) -> Vec<ArchiveHole> {
    let files = tiled_files(segments);
    let domain = single_domain(segments, &[]);
    let mut out = Vec::new();
    for t in &files {
        for (i, tile) in t.tiles.iter().enumerate() {
            if let Tile::Hole { from, to } = tile {
                out.push(hole_between(t, i, *from, *to));
            }
        }
    }
    if let Some(d) = domain {
        // Sequence number ranges the segments name, merged; what lies between
        // two ranges is missing.
        let mut ranges: Vec<(u64, u64, &SegmentName)> = segments
            .iter()
            .filter_map(|s| Some((s.first_gtid?.seq, s.last_gtid?.seq, s)))
            .collect();
        ranges.sort_by_key(|r| (r.0, r.1));
        let mut reach: Option<(u64, &SegmentName)> = None;
        for (a, b, s) in ranges {
            if let Some((r, prev)) = reach {
                // A file's missing head: the transactions before it say what
                // it held.
                if let Some(h) = out
                    .iter_mut()
                    .find(|h| h.after.is_none() && h.before == s.first_gtid)
                {
                    h.after = prev.last_gtid;
                    h.after_ts = prev.last_ts;
                } else if a > r + 1 && !out.iter().any(|h| h.after == prev.last_gtid) {
                    out.push(ArchiveHole {
                        server_id: prev.server_id,
                        file_index: prev.file_index,
                        from: prev.end,
                        to: None,
                        after: prev.last_gtid,
                        before: s.first_gtid,
                        after_ts: prev.last_ts,
                    });
                }
            }
            if reach.is_none_or(|(r, _)| b > r) {
                reach = Some((b, s));
            }
        }
        out.retain(|h| {
            let head_needed = h.from == 0
                && files
                    .iter()
                    .find(|t| t.server_id == h.server_id && t.file_index == h.file_index)
                    .and_then(|t| {
                        t.tiles.iter().rev().find_map(|x| match x {
                            Tile::Piece(p) => p.segment.last_gtid,
                            _ => None,
                        })
                    })
                    .is_some_and(|g| !position_has(covered, g));
            let before_covered = h
                .before
                .is_some_and(|g| g.domain == d && position_has(covered, g));
            head_needed || !before_covered
        });
    }
    out
}

/// Why the archive cannot carry a restore to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// What is missing, one clause.
    pub hole: String,
    /// The furthest point the archive reaches without the hole (merged with
    /// the base), and the commit time of its last transaction.
    pub reaches: Vec<Gtid>,
    pub reached_at: Option<u32>,
}

/// The archived files that carry a restore from `base` (what the full backup
/// and incrementals hold) to `target`. `safe_at`: the archive held everything
/// the primary had written by then (the archive record's `safe_at`), so a time
/// target up to it is reached even when no transaction was committed after it.
/// An empty list: the base already is the target (nothing archived to apply).
/// Pure.
pub fn plan_segments(
    segments: &[SegmentName],
    base: &[Gtid],
    safe_at: Option<DateTime<Utc>>,
    target: &RestoreTarget,
) -> Result<Vec<ArchivedFile>, Shortfall> {
    let target_pos: &[Gtid] = match target {
        RestoreTarget::Position(t) => t,
        RestoreTarget::Time(_) => &[],
    };
    let one = single_domain(segments, &[base, target_pos].concat());
    let in_base =
        |s: &SegmentName| one.is_some() && s.last_gtid.is_some_and(|g| position_has(base, g));
    let reached_target = |reach: &[Gtid], s: &SegmentName| match target {
        RestoreTarget::Position(t) => t.iter().all(|g| position_has(reach, *g)),
        RestoreTarget::Time(t) => s.last_ts.is_some_and(|ts| i64::from(ts) >= t.timestamp()),
    };
    let mut reach = base.to_vec();
    let mut reached_at: Option<u32> = None;
    let mut out: Vec<ArchivedFile> = Vec::new();
    let short = |hole: String, reach: &[Gtid], at: Option<u32>| Shortfall {
        hole,
        reaches: reach.to_vec(),
        reached_at: at,
    };
    if matches!(target, RestoreTarget::Position(t) if t.iter().all(|g| position_has(base, *g))) {
        return Ok(out);
    }
    for t in tiled_files(segments) {
        let needed = t.tiles.iter().position(|x| match x {
            Tile::Piece(p) => p.segment.has_transactions() && !in_base(&p.segment),
            Tile::Hole { .. } => false,
        });
        let Some(k) = needed else { continue };
        let mut file = ArchivedFile {
            server_id: t.server_id,
            file_index: t.file_index,
            pieces: Vec::new(),
        };
        match t.tiles.first() {
            Some(Tile::Piece(head)) if head.segment.is_file_head() => {
                if k > 0 {
                    file.pieces.push(head.clone());
                }
            }
            _ => {
                let (from, to) = match t.tiles.first() {
                    Some(Tile::Hole { from, to }) => (*from, *to),
                    _ => (0, 0),
                };
                let mut h = hole_between(&t, 0, from, to);
                if h.after.is_none() {
                    h.after = one.and_then(|d| reach.iter().find(|g| g.domain == d).copied());
                }
                return Err(short(h.describe(), &reach, reached_at));
            }
        }
        let mut done = false;
        for (i, tile) in t.tiles.iter().enumerate().skip(k) {
            match tile {
                Tile::Hole { from, to } => {
                    let h = hole_between(&t, i, *from, *to);
                    return Err(short(h.describe(), &reach, reached_at));
                }
                Tile::Piece(p) => {
                    let s = &p.segment;
                    if let (Some(d), Some(first), true) = (one, s.first_gtid, p.is_whole()) {
                        let have = crate::mysql::gtid::seq_of(&reach, d);
                        if first.seq > have + 1 {
                            let h = ArchiveHole {
                                server_id: t.server_id,
                                file_index: t.file_index,
                                from: s.start,
                                to: None,
                                after: reach.iter().find(|g| g.domain == d).copied(),
                                before: Some(first),
                                after_ts: reached_at,
                            };
                            return Err(short(
                                format!(
                                    "GTIDs {} are in no backup and no archived segment \
                                     (the archive goes on at {first}, binlog {} of server {})",
                                    h.missing_gtids(),
                                    t.file_index,
                                    t.server_id
                                ),
                                &reach,
                                reached_at,
                            ));
                        }
                    }
                    file.pieces.push(p.clone());
                    if let Some(g) = s.last_gtid {
                        reach = merge_gtid_lists(&[reach.clone(), vec![g]]);
                        reached_at = s.last_ts.or(reached_at);
                    }
                    if reached_target(&reach, s) {
                        done = true;
                        break;
                    }
                }
            }
        }
        out.push(file);
        if done {
            return Ok(out);
        }
    }
    match (target, safe_at) {
        (RestoreTarget::Time(t), Some(safe)) if safe >= *t => return Ok(out),
        // Several domains: the names do not show every GTID a segment holds;
        // the apply finds out exactly whether the target is there.
        (RestoreTarget::Position(_), _) if one.is_none() => return Ok(out),
        _ => {}
    }
    let newest = match (reached_at, safe_at) {
        (_, Some(s)) => format!(
            "the archive holds transactions up to {} and was known complete at {}",
            super::format_position(&reach),
            super::rfc3339(s)
        ),
        (Some(at), None) => format!(
            "the newest archived transaction ({}) committed at {}",
            super::format_position(&reach),
            super::unix(at)
        ),
        (None, None) => "the archive holds nothing after the backups".into(),
    };
    Err(short(
        format!("{target} is beyond what is archived: {newest}"),
        &reach,
        reached_at,
    ))
}

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
