//! The object check of a shard's archived binlog segments, for `cairn verify`:
//! each segment listed under `_binlog/<keyspace>/<shard>/` is read back, several
//! at once. Segments record no hash of their own; what their name and format
//! allow is checked, without a decryption key: an unencrypted segment is
//! decompressed (zstd's or lz4's content checksum) and must hold exactly the
//! byte range its name says; an encrypted one must be a non-empty age file
//! (its content is authenticated only when it is decrypted, by a restore or a
//! drill). A segment missing from storage shows as a hole in the chain check
//! ([`super::chain`]). Reads storage only.
//!
//! May call: [`crate::backup::binlog_archive`] (listing, decoding),
//! [`crate::backup::storage`].

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::{Problem, Status};
use crate::backup::binlog_archive::{archive_dir, decode_segment, list_segments, SegmentName};
use crate::backup::storage::BackupStorage;

/// How an age file starts.
const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";

/// What the segment check found.
#[derive(Debug, Default)]
pub struct SegmentsChecked {
    /// Every listed segment with why its object is damaged (`None`: good), in
    /// archive order.
    pub segments: Vec<(SegmentName, Option<String>)>,
    /// One FAILURE per damaged segment (or the listing's error).
    pub problems: Vec<Problem>,
    /// Stored bytes read.
    pub bytes: u64,
}

/// The verdict on one segment's stored bytes: `None` when good. Pure.
pub fn judge_segment(name: &SegmentName, stored: &[u8]) -> Option<String> {
    if name.encrypted {
        if stored.len() <= AGE_HEADER.len() || !stored.starts_with(AGE_HEADER) {
            return Some(format!(
                "not an age file ({} bytes; its name says it is encrypted)",
                stored.len()
            ));
        }
        return None;
    }
    decode_segment(name, stored, None)
        .err()
        .map(|e| format!("{e:#}"))
}

/// Lists the shard's segments and checks each one's object, `concurrency` at a
/// time.
pub async fn check_segments(
    storage: Arc<dyn BackupStorage>,
    keyspace: &str,
    shard: &str,
    concurrency: usize,
) -> SegmentsChecked {
    let dir = archive_dir(keyspace, shard);
    let listed = match list_segments(storage.as_ref(), keyspace, shard).await {
        Ok(l) => l,
        Err(e) => {
            return SegmentsChecked {
                problems: vec![Problem {
                    status: Status::Failure,
                    object: None,
                    message: format!("archive {dir}: cannot be listed: {e}"),
                }],
                ..Default::default()
            }
        }
    };
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for (name, _) in listed {
        let (storage, limit, dir) = (storage.clone(), limit.clone(), dir.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let read = async {
                let mut r = storage.open_blob(&dir, &name.format()).await?;
                let mut stored = Vec::new();
                r.read_to_end(&mut stored).await?;
                Ok::<_, anyhow::Error>(stored)
            }
            .await;
            let (bytes, damaged) = match read {
                Err(e) => (0, Some(format!("cannot be read: {e:#}"))),
                Ok(stored) => {
                    let n = stored.len() as u64;
                    let name = name.clone();
                    let verdict =
                        tokio::task::spawn_blocking(move || judge_segment(&name, &stored)).await;
                    (
                        n,
                        verdict.unwrap_or_else(|e| Some(format!("check stopped: {e}"))),
                    )
                }
            };
            (name, bytes, damaged)
        }));
    }
    let mut out = SegmentsChecked::default();
    for task in tasks {
        match task.await {
            Ok((name, bytes, damaged)) => {
                out.bytes += bytes;
                if let Some(why) = &damaged {
                    out.problems.push(Problem {
                        status: Status::Failure,
                        object: Some(format!("{dir}/{}", name.format())),
                        message: format!("segment {}: {why}", name.format()),
                    });
                }
                out.segments.push((name, damaged));
            }
            Err(e) => out.problems.push(Problem {
                status: Status::Failure,
                object: None,
                message: format!("archive {dir}: a check stopped: {e}"),
            }),
        }
    }
    out
}
