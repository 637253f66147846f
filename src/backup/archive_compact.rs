//! Compaction of archived binlog segments: runs of small adjacent segments of
//! one source binlog file, older than some age, are merged into one segment, so
//! that a day of 1-second segments is not 86,400 objects to list and read back.
//!
//! The merged segment is named like any other ([`SegmentName`]: the first
//! source's number, so archive order holds; the run's byte range, first and last
//! times and GTIDs), so `find_by_gtid`, `find_by_time` and `gaps` keep working.
//! It is written first (immutable), read back and checked byte for byte against
//! the sources, and only then are the sources removed, first to last. A reader
//! may therefore see both for a while (the same transactions in two segments):
//! `gaps` and the chain check of `cairn verify` treat a covering segment as
//! covering; a restore must use one segment per byte range —
//! [`covering_segments`] picks them. A segment covered by a bigger stored one
//! (a compaction interrupted before its removals) is removed on the next pass,
//! after the bigger one is checked.
//!
//! Run by the shard's ARCHIVE job on its tablet, the one writer of the shard's
//! `_binlog/` prefix. The newest segment of the archive is never merged (the
//! writer resumes from it). Encrypted segments are merged only where an identity
//! can decrypt them.
//!
//! Pure planning ([`plan_compaction`], [`covering_segments`]) with table tests;
//! thin IO ([`compact`]).
//!
//! May call: [`super::binlog_archive`], [`super::storage`], [`super::encryption`].

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use cairn_topo::CompressionEngine;

use super::binlog_archive::{
    archive_dir, encode_segment, list_segments, read_segment, SegmentName,
};
use super::encryption::{Identities, Recipients};
use super::storage::{BackupStorage, StorageError};

/// One merge: the sources (adjacent, in byte order) and the segment replacing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub sources: Vec<SegmentName>,
    pub merged: SegmentName,
}

/// What one compaction pass does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionPlan {
    pub merges: Vec<Merge>,
    /// Segments inside a bigger stored one, with that one: removed once it is
    /// checked.
    pub covered: Vec<(SegmentName, SegmentName)>,
}

/// How a pass chooses.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Unix seconds now.
    pub now: u32,
    /// Segments whose last transaction committed less than this long ago stay.
    pub min_age_secs: u32,
    /// A merged segment holds at most this many (original) bytes.
    pub max_bytes: u64,
    /// How the merged segments are stored.
    pub compression: CompressionEngine,
    pub encrypted: bool,
}

fn len(s: &SegmentName) -> u64 {
    s.end - s.start
}

/// The bigger segment of the same file holding all of `s`'s bytes, if any.
fn coverer<'a>(segments: &'a [SegmentName], s: &SegmentName) -> Option<&'a SegmentName> {
    segments
        .iter()
        .filter(|t| t.server_id == s.server_id && t.file_index == s.file_index)
        .filter(|t| t.start <= s.start && s.end <= t.end && len(t) > len(s))
        .max_by_key(|t| (len(t), t.number))
}

/// Plans a compaction pass. Pure.
pub fn plan_compaction(segments: &[SegmentName], p: &Policy) -> CompactionPlan {
    let mut plan = CompactionPlan::default();
    let newest = segments.iter().map(|s| s.number).max();
    let mut files: BTreeMap<(u32, u64), Vec<&SegmentName>> = BTreeMap::new();
    for s in segments {
        if let Some(t) = coverer(segments, s) {
            plan.covered.push((s.clone(), t.clone()));
            continue;
        }
        files
            .entry((s.server_id, s.file_index))
            .or_default()
            .push(s);
    }
    let old = |s: &SegmentName| {
        Some(s.number) != newest
            && !s.moved_head
            && s.last_ts
                .is_none_or(|t| u64::from(t) + u64::from(p.min_age_secs) <= u64::from(p.now))
    };
    for (_, mut segs) in files {
        segs.sort_by_key(|s| (s.start, s.number));
        let mut run: Vec<&SegmentName> = Vec::new();
        let mut flush = |run: &mut Vec<&SegmentName>| {
            if run.len() >= 2 {
                plan.merges.push(merge(run, p));
            }
            run.clear();
        };
        for s in segs {
            let joins = run.last().is_some_and(|l| l.end == s.start)
                && run.iter().map(|r| len(r)).sum::<u64>() + len(s) <= p.max_bytes;
            if !old(s) {
                flush(&mut run);
                continue;
            }
            if !joins {
                flush(&mut run);
            }
            run.push(s);
        }
        flush(&mut run);
    }
    plan
}

fn merge(run: &[&SegmentName], p: &Policy) -> Merge {
    let (first, last) = (run[0], run[run.len() - 1]);
    Merge {
        sources: run.iter().map(|s| (*s).clone()).collect(),
        merged: SegmentName {
            number: first.number,
            server_id: first.server_id,
            file_index: first.file_index,
            start: first.start,
            end: last.end,
            first_ts: run.iter().find_map(|s| s.first_ts),
            last_ts: run.iter().filter_map(|s| s.last_ts).max(),
            first_gtid: run.iter().find_map(|s| s.first_gtid),
            last_gtid: run.iter().rev().find_map(|s| s.last_gtid),
            compression: p.compression,
            encrypted: p.encrypted,
            moved_head: false,
        },
    }
}

/// One segment per byte range, for a reader that concatenates or applies
/// segments while a compaction may be half done: every segment inside a bigger
/// one is left out (the bigger one holds the same bytes). In archive order. Pure.
pub fn covering_segments(segments: &[SegmentName]) -> Vec<&SegmentName> {
    let mut v: Vec<&SegmentName> = segments
        .iter()
        .filter(|s| coverer(segments, s).is_none())
        .collect();
    // Two segments with the same range (never written by one archiver): one.
    v.sort_by_key(|s| (s.number, s.start));
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert((s.server_id, s.file_index, s.start, s.end)));
    v
}

/// What a compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub merged: usize,
    pub removed: usize,
}

/// Where compaction reads and writes.
pub struct Target<'a> {
    pub storage: &'a dyn BackupStorage,
    pub keyspace: &'a str,
    pub shard: &'a str,
    pub recipients: Option<Arc<Recipients>>,
    pub identities: Option<Arc<Identities>>,
}

/// One compaction pass over a shard's archive (see the module doc). Segments
/// that cannot be decrypted here are left as they are.
pub async fn compact(t: &Target<'_>, policy: Policy) -> anyhow::Result<Compacted> {
    let storage = t.storage;
    let dir = archive_dir(t.keyspace, t.shard);
    let listed: Vec<SegmentName> = list_segments(storage, t.keyspace, t.shard)
        .await
        .context("listing the archived segments")?
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| !s.encrypted || t.identities.is_some())
        .collect();
    let plan = plan_compaction(
        &listed,
        &Policy {
            encrypted: t.recipients.is_some(),
            ..policy
        },
    );
    let ids = t.identities.as_deref();
    let mut done = Compacted::default();
    // Leftovers of an interrupted pass: removed once their coverer reads back.
    let mut checked: Vec<String> = Vec::new();
    for (small, big) in &plan.covered {
        let name = big.format();
        if !checked.contains(&name) {
            read_segment(storage, t.keyspace, t.shard, big, ids)
                .await
                .with_context(|| format!("checking {dir}/{name} before removing what it covers"))?;
            checked.push(name);
        }
        remove(storage, &dir, small).await?;
        done.removed += 1;
    }
    for m in &plan.merges {
        let mut bytes = Vec::with_capacity(len(&m.merged) as usize);
        for s in &m.sources {
            bytes.extend(read_segment(storage, t.keyspace, t.shard, s, ids).await?);
        }
        if bytes.len() as u64 != len(&m.merged) {
            bail!(
                "the segments to merge into {} do not add up",
                m.merged.format()
            );
        }
        let (compression, recipients) = (m.merged.compression, t.recipients.clone());
        let plain = Arc::new(bytes);
        let input = plain.clone();
        let stored = tokio::task::spawn_blocking(move || {
            encode_segment(&input, compression, recipients.as_ref())
        })
        .await
        .map_err(|e| anyhow::anyhow!("encoding a merged segment: {e}"))?
        .context("encoding a merged segment")?;
        let name = m.merged.format();
        match storage.put_blob(&dir, &name, Box::new(&stored[..])).await {
            Ok(_) | Err(StorageError::AlreadyExists(_)) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("storing {dir}/{name}"))),
        }
        let back = read_segment(storage, t.keyspace, t.shard, &m.merged, ids)
            .await
            .with_context(|| format!("reading back {dir}/{name}"))?;
        if back != *plain {
            bail!("{dir}/{name} does not read back as the segments it merges; they are kept");
        }
        done.merged += 1;
        for s in &m.sources {
            remove(storage, &dir, s).await?;
            done.removed += 1;
        }
        tracing::info!(merged = %name, sources = m.sources.len(), "archived segments compacted");
    }
    Ok(done)
}

async fn remove(storage: &dyn BackupStorage, dir: &str, s: &SegmentName) -> anyhow::Result<()> {
    match storage.remove_blob(dir, &s.format()).await {
        Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {dir}/{}", s.format()))),
    }
}

#[cfg(test)]
#[path = "archive_compact_tests.rs"]
mod tests;
