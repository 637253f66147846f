//! Archived binlog segments in backup storage: how a segment is named, encoded and
//! found again. A segment is one byte range `[start, end)` of one binlog file of
//! one source server, cut at a transaction boundary, stored as an immutable blob
//! under `_binlog/<keyspace>/<shard>/` through the same compression and age
//! encryption as backups (so it works on `file` and `s3` alike).
//!
//! The name says everything a restore needs to pick segments without reading them
//! (numbers in decimal, `x` for "none"):
//!
//! ```text
//! <number:010>.<server_id>.<file_index>.<start>.<end>.<first_ts>.<last_ts>.<first_gtid>.<last_gtid>.binlog[h][.zst|.lz4][.age]
//! 0000000042.101.3.4.1377.1764108000.1764108001.0-101-7.0-101-9.binlog.zst.age
//! ```
//!
//! `number` orders segments in archive order (a listing sorted by name is in
//! archive order); `server_id` and `file_index` name the source binlog file
//! (`mysql-bin.000003` → 3) whose bytes the segment holds; timestamps are the
//! first transaction's start and the last one's commit (Unix seconds); GTIDs are
//! the first and last transaction's. The bytes of one source file are its
//! segments concatenated in `start` order: the first segment of a file starts at
//! 0 (the file header, `Format_description` and `Gtid_list` events). When the
//! archive moves to a new primary mid-file, the new file's first segment is its
//! head `[0, h)` (no transactions), named `…binlogh…` (a moved head), and the next
//! one starts where the first transaction not yet archived starts: the bytes in
//! between were archived from the old primary. Concatenating a moved head with
//! the segments after it gives whole events whose positions (`log_pos`) jump;
//! `mariadb-binlog` 10.11 reads that as one file (restores rebuild files so,
//! see [`super::pitr::segments`]; `tests/pitr_restore.rs` restores across a
//! failover through a moved head). Each stored object is verified on read by zstd's content
//! checksum or lz4's, age's authentication, and the binlog events' CRC32.
//!
//! Pure naming and lookup ([`SegmentName`], [`resume_point`], [`file_segments`],
//! [`find_by_gtid`], [`find_by_time`], [`gaps`]) with table tests; thin IO
//! ([`store_segment`], [`list_segments`], [`read_segment`]).
//!
//! May call: [`super::storage`], [`super::encryption`], [`crate::mysql::gtid`].

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{bail, Context};
use cairn_topo::CompressionEngine;
use tokio::io::AsyncReadExt;

use super::encryption::{decrypt_all, Identities, Recipients};
use super::storage::{BackupStorage, BlobInfo, BlobWritten, StorageResult, BINLOG_DIR};
use crate::mysql::gtid::{parse_gtid_list, Gtid};

/// The blob directory of a shard's archived binlogs.
pub fn archive_dir(keyspace: &str, shard: &str) -> String {
    format!("{BINLOG_DIR}/{keyspace}/{shard}")
}

/// The index of a binlog file from its name (`mysql-bin.000003` → 3).
pub fn binlog_file_index(file: &str) -> Option<u64> {
    let (_, ext) = file.rsplit_once('.')?;
    if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ext.parse().ok()
}

/// One archived segment, as its name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    /// Archive order within the shard.
    pub number: u64,
    /// server_id of the source whose binlog file this is.
    pub server_id: u32,
    /// The source binlog file's index.
    pub file_index: u64,
    /// Byte range of the source file.
    pub start: u64,
    pub end: u64,
    /// First transaction's start, last transaction's commit (Unix seconds).
    pub first_ts: Option<u32>,
    pub last_ts: Option<u32>,
    /// First and last transaction's GTID.
    pub first_gtid: Option<Gtid>,
    pub last_gtid: Option<Gtid>,
    /// How the stored bytes are compressed.
    pub compression: CompressionEngine,
    /// Whether they are an age file.
    pub encrypted: bool,
    /// The head of a file whose next bytes, up to the next segment of the file,
    /// hold transactions archived from another primary (the archive moved here
    /// mid-file): no hole after it. Spelled `binlogh` in the name.
    pub moved_head: bool,
}

impl SegmentName {
    /// The blob name.
    pub fn format(&self) -> String {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "x".to_string(), T::to_string)
        }
        let mut s = format!(
            "{:010}.{}.{}.{}.{}.{}.{}.{}.{}.{}",
            self.number,
            self.server_id,
            self.file_index,
            self.start,
            self.end,
            opt(&self.first_ts),
            opt(&self.last_ts),
            opt(&self.first_gtid),
            opt(&self.last_gtid),
            if self.moved_head { "binlogh" } else { "binlog" },
        );
        match self.compression {
            CompressionEngine::Zstd => s.push_str(".zst"),
            CompressionEngine::Lz4 => s.push_str(".lz4"),
            CompressionEngine::None => {}
        }
        if self.encrypted {
            s.push_str(".age");
        }
        s
    }

    /// Parses a blob name; `Err` says why it is not a segment's.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = name.split('.').collect();
        let moved_head = match parts.get(9) {
            Some(&"binlog") if parts.len() >= 10 => false,
            Some(&"binlogh") if parts.len() >= 10 => true,
            _ => bail!("{name:?} is not a binlog segment name"),
        };
        let (compression, encrypted) = match &parts[10..] {
            [] => (CompressionEngine::None, false),
            ["zst"] => (CompressionEngine::Zstd, false),
            ["lz4"] => (CompressionEngine::Lz4, false),
            ["age"] => (CompressionEngine::None, true),
            ["zst", "age"] => (CompressionEngine::Zstd, true),
            ["lz4", "age"] => (CompressionEngine::Lz4, true),
            _ => bail!("{name:?}: unknown segment suffix"),
        };
        let num = |i: usize| -> anyhow::Result<u64> {
            parts[i]
                .parse()
                .with_context(|| format!("{name:?}: field {} is not a number", i + 1))
        };
        let ts = |i: usize| -> anyhow::Result<Option<u32>> {
            match parts[i] {
                "x" => Ok(None),
                t => Ok(Some(t.parse().with_context(|| {
                    format!("{name:?}: field {} is not a time", i + 1)
                })?)),
            }
        };
        let gtid = |i: usize| -> anyhow::Result<Option<Gtid>> {
            match parts[i] {
                "x" => Ok(None),
                g => match parse_gtid_list(g)?.as_slice() {
                    [one] => Ok(Some(*one)),
                    _ => bail!("{name:?}: field {} is not one GTID", i + 1),
                },
            }
        };
        let out = Self {
            number: num(0)?,
            server_id: u32::try_from(num(1)?).context("server_id out of range")?,
            file_index: num(2)?,
            start: num(3)?,
            end: num(4)?,
            first_ts: ts(5)?,
            last_ts: ts(6)?,
            first_gtid: gtid(7)?,
            last_gtid: gtid(8)?,
            compression,
            encrypted,
            moved_head,
        };
        if out.moved_head && (out.start != 0 || out.has_transactions()) {
            bail!("{name:?}: a moved head starts at 0 and holds no transaction");
        }
        if out.end < out.start {
            bail!("{name:?}: ends before it starts");
        }
        Ok(out)
    }

    /// Whether the segment holds the source file's head (magic, format
    /// description, GTID list).
    pub fn is_file_head(&self) -> bool {
        self.start == 0
    }

    /// Whether the segment holds at least one transaction.
    pub fn has_transactions(&self) -> bool {
        self.first_gtid.is_some()
    }
}

/// Where a new archiving run starts, from the segments already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// Number of the next segment.
    pub next_number: u64,
    /// The source file the archive ends in and the offset its archived part ends at
    /// (`None` when nothing of that source is stored).
    pub file: Option<(u32, u64, u64)>,
}

/// Where to resume: the next segment number is one past the highest stored; the
/// archived part of a source (`server_id`) ends at the end of its newest file's
/// last segment. Storage is the truth: a segment stored by an agent killed before
/// it recorded it in etcd counts, so nothing is stored twice. Pure.
pub fn resume_point(segments: &[SegmentName], server_id: u32) -> ResumePoint {
    let next_number = segments.iter().map(|s| s.number + 1).max().unwrap_or(0);
    let file = segments
        .iter()
        .filter(|s| s.server_id == server_id)
        .max_by_key(|s| (s.file_index, s.end))
        .map(|s| (s.server_id, s.file_index, s.end));
    ResumePoint { next_number, file }
}

/// The segments holding bytes of one source file, in byte order: concatenated,
/// they are a valid binlog for `mariadb-binlog` (see the module doc). Pure.
pub fn file_segments(
    segments: &[SegmentName],
    server_id: u32,
    file_index: u64,
) -> Vec<&SegmentName> {
    let mut v: Vec<&SegmentName> = segments
        .iter()
        .filter(|s| s.server_id == server_id && s.file_index == file_index)
        .collect();
    v.sort_by_key(|s| (s.start, s.number));
    v
}

/// The segment holding the transaction `gtid` (same domain, its sequence number
/// within the segment's first and last). Pure.
pub fn find_by_gtid(segments: &[SegmentName], gtid: Gtid) -> Option<&SegmentName> {
    segments.iter().find(|s| match (s.first_gtid, s.last_gtid) {
        (Some(a), Some(b)) => {
            a.domain == gtid.domain
                && b.domain == gtid.domain
                && (a.seq..=b.seq).contains(&gtid.seq)
        }
        _ => false,
    })
}

/// The first segment (archive order) holding a transaction committed after `ts`
/// (Unix seconds): a restore to `ts` applies segments before it whole and this one
/// up to `ts`. `None`: everything archived committed at or before `ts`. Pure.
pub fn find_by_time(segments: &[SegmentName], ts: u32) -> Option<&SegmentName> {
    let mut v: Vec<&SegmentName> = segments.iter().collect();
    v.sort_by_key(|s| s.number);
    v.into_iter()
        .find(|s| s.last_ts.is_some_and(|last| last > ts))
}

/// A hole in the archive: bytes of a source file that no segment holds, between
/// two consecutive segments of that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub server_id: u32,
    pub file_index: u64,
    /// Archived up to here…
    pub from: u64,
    /// …and again from here.
    pub to: u64,
}

/// Holes between consecutive segments of each source file. A moved head
/// followed by a segment starting later is no hole (the archive moved to a new
/// primary there; the bytes between were archived from the old one). Pure.
pub fn gaps(segments: &[SegmentName]) -> Vec<Gap> {
    let mut files: Vec<(u32, u64)> = segments
        .iter()
        .map(|s| (s.server_id, s.file_index))
        .collect();
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for (sid, idx) in files {
        let segs = file_segments(segments, sid, idx);
        for pair in segs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.start > a.end && !a.moved_head {
                out.push(Gap {
                    server_id: sid,
                    file_index: idx,
                    from: a.end,
                    to: b.start,
                });
            }
        }
    }
    out
}

/// Compresses then (with recipients) encrypts a segment's bytes: what is stored.
pub fn encode_segment(
    bytes: &[u8],
    compression: CompressionEngine,
    recipients: Option<&Arc<Recipients>>,
) -> std::io::Result<Vec<u8>> {
    let compressed = match compression {
        CompressionEngine::None => bytes.to_vec(),
        CompressionEngine::Zstd => {
            let mut enc = zstd::Encoder::new(Vec::new(), 1)?;
            enc.include_checksum(true)?;
            enc.write_all(bytes)?;
            enc.finish()?
        }
        CompressionEngine::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(bytes)?;
            enc.finish().map_err(std::io::Error::other)?
        }
    };
    match recipients {
        None => Ok(compressed),
        Some(r) => {
            let mut w = r.encrypt(Vec::new())?;
            w.write_all(&compressed)?;
            w.finish()
        }
    }
}

/// The original bytes of a stored segment: decrypted (with `identities`) and
/// decompressed as its name says, every check of both formats applied.
pub fn decode_segment(
    name: &SegmentName,
    stored: &[u8],
    identities: Option<&Identities>,
) -> anyhow::Result<Vec<u8>> {
    let plain = if name.encrypted {
        let ids = identities.context(
            "the segment is encrypted and no identity was given (--backup-encryption-identity-file)",
        )?;
        decrypt_all(ids, stored).map_err(|e| anyhow::anyhow!("decrypting the segment: {e}"))?
    } else {
        stored.to_vec()
    };
    let mut out = Vec::new();
    match name.compression {
        CompressionEngine::None => out = plain,
        CompressionEngine::Zstd => {
            zstd::Decoder::new(&plain[..])?
                .read_to_end(&mut out)
                .context("decompressing the segment (zstd)")?;
        }
        CompressionEngine::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(&plain[..])
                .read_to_end(&mut out)
                .context("decompressing the segment (lz4)")?;
        }
    }
    let want = name.end - name.start;
    if out.len() as u64 != want {
        bail!(
            "segment {} holds {} bytes, its name says {want}",
            name.format(),
            out.len()
        );
    }
    Ok(out)
}

/// Stores one encoded segment (never overwritten: `AlreadyExists` if present).
pub async fn store_segment(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    name: &SegmentName,
    stored: &[u8],
) -> StorageResult<BlobWritten> {
    let dir = archive_dir(keyspace, shard);
    storage
        .put_blob(&dir, &name.format(), Box::new(stored))
        .await
}

/// The shard's segments in archive order with their stored sizes; blobs whose
/// names are not segments' are skipped.
pub async fn list_segments(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
) -> StorageResult<Vec<(SegmentName, u64)>> {
    let dir = archive_dir(keyspace, shard);
    Ok(segments_of(storage.list_blobs(&dir).await?))
}

/// [`list_segments`] of the segments whose names sort after `after`'s (names
/// start with the zero-padded archive number, so: stored after it, in archive
/// order). A compacted segment keeps its first source's number and is not
/// among them: a full [`list_segments`] now and then sees it, and deletions.
pub async fn list_segments_after(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    after: &SegmentName,
) -> StorageResult<Vec<(SegmentName, u64)>> {
    let dir = archive_dir(keyspace, shard);
    Ok(segments_of(
        storage.list_blobs_after(&dir, &after.format()).await?,
    ))
}

/// The segments among `blobs` (other names skipped) with their sizes, in
/// archive order.
fn segments_of(blobs: Vec<BlobInfo>) -> Vec<(SegmentName, u64)> {
    let mut v: Vec<(SegmentName, u64)> = blobs
        .into_iter()
        .filter_map(|b| Some((SegmentName::parse(&b.name).ok()?, b.size_bytes)))
        .collect();
    v.sort_by_key(|(s, _)| s.number);
    v
}

/// Reads a segment back and decodes it.
pub async fn read_segment(
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
    name: &SegmentName,
    identities: Option<&Identities>,
) -> anyhow::Result<Vec<u8>> {
    let dir = archive_dir(keyspace, shard);
    let mut r = storage.open_blob(&dir, &name.format()).await?;
    let mut stored = Vec::new();
    r.read_to_end(&mut stored)
        .await
        .with_context(|| format!("reading {dir}/{}", name.format()))?;
    decode_segment(name, &stored, identities)
}

#[path = "binlog_archive/cut.rs"]
pub mod cut;

#[cfg(test)]
#[path = "binlog_archive/tests.rs"]
mod tests;
