//! The ARCHIVE job's compaction step: every so often, while it archives, the
//! job merges its shard's old small segments into bigger ones
//! ([`crate::backup::archive_compact`]) — it is the one writer of the shard's
//! `_binlog/` prefix, so no other writer races it. Segments stay as written for
//! `CAIRN_ARCHIVE_COMPACT_AFTER` (a duration, default one hour) before they may
//! be merged. A failed pass is logged and tried again later; archiving goes on.
//!
//! Calls `backup` (archive_compact) and `common`.

use std::time::Duration;

use chrono::Utc;

use super::super::agent::Agent;
use super::MAX_SEGMENT;
use crate::backup::archive_compact::{compact, Policy, Target};

/// The variable setting how old segments are before they are merged.
pub(super) const COMPACT_AFTER_VAR: &str = "CAIRN_ARCHIVE_COMPACT_AFTER";
/// Its default.
const COMPACT_AFTER: Duration = Duration::from_secs(3600);

/// How old a segment must be to be merged, and how often a pass runs (half
/// that, between 1 s and 10 min).
pub(super) fn compaction_timing() -> (Duration, Duration) {
    let after = std::env::var(COMPACT_AFTER_VAR)
        .ok()
        .and_then(|v| crate::common::duration::parse_duration(&v).ok())
        .unwrap_or(COMPACT_AFTER);
    let every = (after / 2).clamp(Duration::from_secs(1), Duration::from_secs(600));
    (after, every)
}

impl Agent {
    /// One compaction pass over this shard's archive; errors are logged.
    pub(super) async fn compact_archive(&self, after: Duration) {
        let Ok(storage) = self.storage() else { return };
        let target = Target {
            storage,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            recipients: self.cfg.backup.encryption.clone(),
            identities: self.cfg.backup.identities.clone(),
        };
        let policy = Policy {
            now: u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX),
            min_age_secs: u32::try_from(after.as_secs()).unwrap_or(u32::MAX),
            max_bytes: MAX_SEGMENT,
            compression: self.cfg.backup.compression.engine(),
            encrypted: false,
        };
        match compact(&target, policy).await {
            Ok(done) if done.removed > 0 => {
                tracing::info!(
                    merged = done.merged,
                    removed = done.removed,
                    "archive compaction pass"
                );
                // Said in the record: the coordinator lists in full again.
                let key = self
                    .topo
                    .keys()
                    .archive(&self.cfg.keyspace, &self.cfg.shard);
                let r = self
                    .topo
                    .update_with::<cairn_topo::ArchiveRecord, _>(&key, |cur| {
                        Ok(cur.map(|mut r| {
                            r.state.compacted_at = Some(Utc::now());
                            r
                        }))
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot record the compaction in the archive record");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "archive compaction failed; trying again later")
            }
        }
    }
}
