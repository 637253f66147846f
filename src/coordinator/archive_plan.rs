//! Binlog archiving as pure decisions: which tablet of a shard runs its ARCHIVE
//! job ([`place_archive`]), what the leader does about each archived shard's
//! jobs ([`plan_archive`]), and a shard's loss window ([`loss_window`]).
//!
//! The rules:
//! - One ARCHIVE job per archived shard, on a live tablet: a serving replica
//!   (REPLICA, RDONLY, SPARE, EXPERIMENTAL, BACKUP) whose replication is not
//!   failing, least lag first, else the primary. The job streams from the primary
//!   whatever tablet runs it, and follows a new primary by itself.
//! - A job that fails (its tablet died: the supervisor fails it after the
//!   lost-health grace) is replaced on another live tablet, at most once per
//!   [`REPLACE_BACKOFF`] after the last one ended.
//! - A job whose shard is no longer archived is cancelled; so is every live job
//!   but the newest when there are several.
//! - The loss window is 0 while the primary's position is archived, else the
//!   time since everything the primary had was last archived (`safe_at`, or the
//!   archive's creation before that).
//!
//! May call: `cairn-topo`'s records, [`crate::mysql::gtid`]. Table-tested.

use std::time::Duration;

use cairn_topo::typed::TabletInfo;
use cairn_topo::{ArchiveRecord, Job, JobKind, JobState, TabletAlias, TabletType};
use chrono::{DateTime, Utc};

use crate::mysql::gtid::{parse_gtid_list, position_contains};

/// The wait after an ARCHIVE job ended before another is placed for its shard.
pub const REPLACE_BACKOFF: Duration = Duration::from_secs(3);

/// The tablet to run a shard's ARCHIVE job, from its tablets with health, or
/// `None` when no tablet of the shard is alive.
pub fn place_archive(tablets: &[TabletInfo], primary: Option<&TabletAlias>) -> Option<TabletAlias> {
    let alive = |t: &&TabletInfo| t.health.is_some();
    let mut replicas: Vec<&TabletInfo> = tablets
        .iter()
        .filter(alive)
        .filter(|t| Some(&t.tablet.value.alias) != primary)
        .filter(|t| {
            let ty = t.tablet.value.tablet_type;
            ty.is_replica_type() || ty == TabletType::Backup
        })
        .filter(|t| {
            t.health
                .as_ref()
                .is_some_and(|h| h.mysqld_up && !h.replication_failing())
        })
        .collect();
    replicas.sort_by_key(|t| {
        let lag = t
            .health
            .as_ref()
            .and_then(|h| h.replication_lag_seconds)
            .unwrap_or(u64::MAX);
        (lag, t.tablet.value.alias.clone())
    });
    if let Some(t) = replicas.first() {
        return Some(t.tablet.value.alias.clone());
    }
    tablets
        .iter()
        .filter(alive)
        .find(|t| Some(&t.tablet.value.alias) == primary)
        .map(|t| t.tablet.value.alias.clone())
}

/// What the leader does for one shard's archiving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveAction {
    /// Write a PENDING ARCHIVE job for this tablet.
    Create(TabletAlias),
    /// Cancel this job (the reason goes into its record).
    Cancel { job_id: String, reason: String },
}

/// The actions for one shard: `record` is its archive setting (`None`: not
/// archived), `jobs` every ARCHIVE job of the shard, `place` the tablet
/// [`place_archive`] chose.
pub fn plan_archive(
    record: Option<&ArchiveRecord>,
    jobs: &[&Job],
    place: Option<&TabletAlias>,
    now: DateTime<Utc>,
) -> Vec<ArchiveAction> {
    let mut live: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|j| j.kind == JobKind::Archive && !j.state.is_final())
        .collect();
    live.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut out = Vec::new();
    if record.is_none() {
        for j in live {
            out.push(ArchiveAction::Cancel {
                job_id: j.id.clone(),
                reason: "the shard's archive was removed".into(),
            });
        }
        return out;
    }
    if let Some((newest, older)) = live.split_last() {
        for j in older {
            out.push(ArchiveAction::Cancel {
                job_id: j.id.clone(),
                reason: format!("the shard has a newer archive job {}", newest.id),
            });
        }
        return out;
    }
    let last_end = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Archive)
        .filter_map(|j| j.finished_at)
        .max();
    let backoff = chrono::Duration::from_std(REPLACE_BACKOFF).unwrap_or_default();
    if last_end.is_some_and(|t| now < t + backoff) {
        return out;
    }
    if let Some(t) = place {
        out.push(ArchiveAction::Create(t.clone()));
    }
    out
}

/// The shard's loss window: `None` while the archive has never recorded a state.
/// `primary_position` is the primary's Health position (`MariaDB/0-101-42`).
pub fn loss_window(
    record: &ArchiveRecord,
    primary_position: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let st = &record.state;
    st.updated_at?;
    let archived = parse_gtid_list(&st.position).unwrap_or_default();
    let primary = primary_position
        .map(|p| p.strip_prefix("MariaDB/").unwrap_or(p))
        .and_then(|p| parse_gtid_list(p).ok());
    if primary.is_some_and(|p| position_contains(&archived, &p)) {
        return Some(Duration::ZERO);
    }
    let since = st.safe_at.unwrap_or(record.created_at);
    Some((now - since).to_std().unwrap_or(Duration::ZERO))
}

/// Whether a job state counts as running for the status page.
pub fn is_live(j: &Job) -> bool {
    j.kind == JobKind::Archive && matches!(j.state, JobState::Pending | JobState::Running)
}

#[cfg(test)]
#[path = "archive_plan_tests.rs"]
mod tests;
