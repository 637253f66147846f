//! The binlog archive record of a shard (`<root>/global/archives/<ks>/<shard>`):
//! the operator's setting (`cairn archive set`) and the archive's state as the
//! archiving agent last wrote it, in one small record per shard. Segments are
//! never listed here (they live in backup storage under `_binlog/<ks>/<shard>/`);
//! the state says where the archive ends, so an agent resumes there and the
//! coordinator reports the loss window. Pure data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names::TabletAlias;

/// A shard's archive: setting and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub keyspace: String,
    pub shard: String,
    /// How often what arrived is stored as a segment (`--interval`), milliseconds.
    pub interval_ms: u64,
    pub created_at: DateTime<Utc>,
    /// When the setting last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// What is archived, as the archiving agent last recorded it.
    #[serde(default)]
    pub state: ArchiveState,
    /// Gaps the leading coordinator found in the archive (segments missing from
    /// storage, GTIDs that no segment and no backup holds), oldest first; empty
    /// when there are none. Written by the coordinator only when they change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<ArchiveGap>,
}

/// One gap in a shard's point-in-time history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveGap {
    /// The missing GTIDs (`0-*-43..0-*-57`), or what is known of them.
    pub missing_gtids: String,
    /// One line: where the hole is.
    pub detail: String,
}

/// Where a shard's archive stands. Written by the archiving agent after each
/// stored segment (a compare-and-swap on the record, so a setting changed
/// meanwhile is kept).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveState {
    /// The tablet whose agent archives now (or last did).
    #[serde(default)]
    pub tablet: Option<TabletAlias>,
    /// Its ARCHIVE job.
    #[serde(default)]
    pub job_id: Option<String>,
    /// The primary whose binlog is streamed.
    #[serde(default)]
    pub source: Option<TabletAlias>,
    /// That primary's server_id (segments name it).
    #[serde(default)]
    pub source_server_id: Option<u32>,
    /// The source binlog file the archive ends in, and the byte offset where its
    /// archived part ends (the next segment starts there).
    #[serde(default)]
    pub binlog_file: Option<String>,
    #[serde(default)]
    pub binlog_offset: u64,
    /// The newest archived GTID per domain (`0-101-42,1-102-7`); empty before the
    /// first transaction.
    #[serde(default)]
    pub position: String,
    /// Commit time of the oldest and newest archived transaction: the archived
    /// window.
    #[serde(default)]
    pub first_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_timestamp: Option<DateTime<Utc>>,
    /// Everything the primary had sent by this moment is archived: the loss
    /// window is measured from here while the primary has newer transactions.
    #[serde(default)]
    pub safe_at: Option<DateTime<Utc>>,
    /// Number of the next segment (segment names start with it: archive order).
    #[serde(default)]
    pub next_segment: u64,
    /// Segments stored and their stored bytes, in all.
    #[serde(default)]
    pub segments: u64,
    #[serde(default)]
    pub stored_bytes: u64,
    /// The last problem the archiving agent met (cleared when a segment is stored).
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// When a compaction pass last removed segments (merged into bigger
    /// ones): a reader that lists only new segments lists in full again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_setting_parses_without_state() {
        let r: ArchiveRecord = serde_json::from_str(
            r#"{"keyspace":"ks","shard":"0","interval_ms":5000,
            "created_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(r.state, ArchiveState::default());
        assert_eq!(r.interval_ms, 5000);
        let back: ArchiveRecord =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
