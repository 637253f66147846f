//! The recoverability pass of the leader loop (issue 10, item 5): for every
//! shard with backups or an archive, its recoverable window and its archive's
//! gaps ([`recoverable::recoverability`] and, from the primary's Health,
//! binlogs it purged before they were archived: [`recoverable::purged_gaps`];
//! pure), kept for `/api/v1/status`, set
//! as the gauges `archive_gap` and `recoverable_window_seconds`, and, when an
//! archived shard's gaps change, written to its archive record (fenced) for
//! `get-shard`. Each archived shard's segments are listed from storage at most
//! every [`LIST_EVERY`], after its archive record's position is read, so a
//! segment stored after the read cannot look missing: only the segments newer
//! than the newest one known (`list_blobs_after`: on S3 a listing that starts
//! there), added to the memo of earlier ones, and in full every
//! [`FULL_LIST_EVERY`] (`CAIRN_COORDINATOR_FULL_LIST_EVERY`), which sees
//! segments deleted from storage and compacted ones; an archived shard's
//! result is computed again only when it was listed (a day of 1-second
//! segments is 86,400 names to tile).
//!
//! May call: the pure rule ([`super::recoverable`]), `backup` (segment
//! listing), `cairn-topo` (fenced writes), [`super::shared`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_topo::{ArchiveRecord, BackupRecord, Fence};

use super::metrics::ShardLabels;
use super::recoverable::{merge_listing, next_list, purged_gaps, recoverability, Listed, NextList};
use super::shared::Shared;
use crate::backup::binlog_archive::{list_segments, list_segments_after, SegmentName};
use crate::mysql::gtid::{parse_gtid_list, Gtid};

/// How often an archived shard's segments are listed from storage.
pub const LIST_EVERY: Duration = Duration::from_secs(3);
/// How often they are listed in full (otherwise only what is new): deleted
/// and compacted segments are seen then. A minute keeps a deleted segment's
/// gap a minute from the metric at most, for a few LIST pages per shard: the
/// ARCHIVE job compacts segments older than an hour, so a shard holds about
/// 3,600 small segments plus the compacted ones, not 86,400 a day.
pub const FULL_LIST_EVERY: Duration = Duration::from_secs(60);
/// Variable: another [`FULL_LIST_EVERY`] (a duration, e.g. `5s`; tests).
pub const FULL_LIST_EVERY_VAR: &str = "CAIRN_COORDINATOR_FULL_LIST_EVERY";

fn full_list_every() -> Duration {
    std::env::var(FULL_LIST_EVERY_VAR)
        .ok()
        .and_then(|v| crate::common::duration::parse_duration(&v).ok())
        .unwrap_or(FULL_LIST_EVERY)
}

type ShardKey = (String, String);
type ByShard<T> = BTreeMap<ShardKey, T>;

/// One pass.
pub(super) async fn recoverable_pass(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
    // The records first, then the listings (see the module doc).
    let (backups, archives, purged): (
        ByShard<Vec<BackupRecord>>,
        ByShard<ArchiveRecord>,
        ByShard<Vec<Gtid>>,
    ) = {
        let s = shared.cache.inner.read().await;
        // Each archived shard's primary's oldest binlog position (its Health).
        let purged = s
            .archives
            .keys()
            .filter_map(|k| {
                let primary = s.shards.get(k)?.value.primary_alias.as_ref()?;
                let pos = s
                    .health
                    .get(&primary.to_string())?
                    .binlog_oldest_position
                    .as_deref()?;
                let list = parse_gtid_list(pos.strip_prefix("MariaDB/").unwrap_or(pos)).ok()?;
                Some((k.clone(), list))
            })
            .collect();
        (
            s.backups
                .iter()
                .map(|(k, m)| (k.clone(), m.values().cloned().collect()))
                .collect(),
            s.archives
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            purged,
        )
    };
    let full_every = full_list_every();
    let due: Vec<(ShardKey, NextList, Option<chrono::DateTime<chrono::Utc>>)> = {
        let mut memo = crate::common::lock(&shared.recoverability);
        memo.listed.retain(|k, _| archives.contains_key(k));
        let now = Instant::now();
        archives
            .iter()
            .filter(|(k, _)| {
                memo.listed
                    .get(*k)
                    .is_none_or(|l| l.at.elapsed() >= LIST_EVERY)
            })
            .map(|(k, a)| {
                let next = next_list(memo.listed.get(k), now, full_every, a.state.compacted_at);
                (k.clone(), next, a.state.compacted_at)
            })
            .collect()
    };
    let mut listed_now = BTreeSet::new();
    for (key, how, compacted_at) in due {
        let st = shared.storage.as_ref();
        let listing = match &how {
            NextList::Full => list_segments(st, &key.0, &key.1).await,
            NextList::After(s) => list_segments_after(st, &key.0, &key.1, s).await,
        };
        match listing {
            Ok(v) => {
                let segs: Vec<SegmentName> = v.into_iter().map(|(s, _)| s).collect();
                let now = Instant::now();
                let mut memo = crate::common::lock(&shared.recoverability);
                let entry = match (how, memo.listed.get(&key)) {
                    (NextList::After(_), Some(prev)) => Listed {
                        at: now,
                        full_at: prev.full_at,
                        compacted_at: prev.compacted_at,
                        segments: merge_listing(&prev.segments, segs),
                    },
                    _ => Listed {
                        at: now,
                        full_at: now,
                        compacted_at,
                        segments: segs,
                    },
                };
                memo.listed.insert(key.clone(), entry);
                listed_now.insert(key);
            }
            Err(e) => {
                shared.metrics.count_skipped("recoverability");
                tracing::warn!(shard = %format!("{}/{}", key.0, key.1), error = %e,
                    "cannot list the shard's archived segments; its gaps are not checked this time");
            }
        }
    }
    let shards: BTreeSet<ShardKey> = backups.keys().chain(archives.keys()).cloned().collect();
    let mut results = BTreeMap::new();
    let mut writes = Vec::new();
    {
        let memo = crate::common::lock(&shared.recoverability);
        for key in shards {
            if archives.contains_key(&key) && !listed_now.contains(&key) {
                if let Some(r) = memo.results.get(&key) {
                    results.insert(key, r.clone());
                    continue;
                }
            }
            let records: Vec<&BackupRecord> = backups.get(&key).into_iter().flatten().collect();
            let archive = archives.get(&key);
            let Some(segments) = (match archive {
                Some(_) => memo.listed.get(&key).map(|l| l.segments.as_slice()),
                None => Some(&[][..]),
            }) else {
                // Archived but never listed yet: nothing to say yet.
                continue;
            };
            let position = archive
                .map(|a| parse_gtid_list(&a.state.position).unwrap_or_default())
                .unwrap_or_default();
            let mut r = recoverability(&records, segments, &position);
            if let Some(oldest) = purged.get(&key) {
                r.gaps
                    .extend(purged_gaps(&records, segments, &position, oldest));
            }
            if let Some(a) = archive {
                if a.gaps != r.gaps {
                    writes.push((key.clone(), r.gaps.clone()));
                }
            }
            results.insert(key, r);
        }
    }
    let gap = &shared.metrics.archive_gap;
    let window = &shared.metrics.recoverable_window_seconds;
    gap.clear();
    window.clear();
    for (key, r) in &results {
        let labels = ShardLabels {
            keyspace: key.0.clone(),
            shard: key.1.clone(),
        };
        if archives.contains_key(key) {
            gap.get_or_create(&labels)
                .set(i64::from(!r.gaps.is_empty()));
        }
        if let Some(w) = r.window_seconds() {
            window.get_or_create(&labels).set(w);
        }
    }
    crate::common::lock(&shared.recoverability).results = results;
    for ((ks, shard), gaps) in writes {
        for g in &gaps {
            tracing::warn!(keyspace = %ks, %shard, missing = %g.missing_gtids, "archive gap: {}", g.detail);
        }
        if gaps.is_empty() {
            tracing::info!(keyspace = %ks, %shard, "the archive has no gap any more");
        }
        let key = shared.topo.keys().archive(&ks, &shard);
        let Some(mut cur) = shared.topo.get::<ArchiveRecord>(&key).await? else {
            continue;
        };
        cur.value.gaps = gaps;
        // A record changed meanwhile (the agent's state) is retried next pass.
        match shared
            .topo
            .fenced(fence)
            .update(&key, &cur.value, cur.version)
            .await
        {
            Ok(_) | Err(cairn_topo::TopoError::BadVersion(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
