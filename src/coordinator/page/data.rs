//! [`from_view`]: the status page's [`PageData`] out of the coordinator's view of
//! the topology, and the tablet light ([`tablet_light`]).
//!
//! Pure (reads a [`TopoView`] it is given); part of [`super`].

use cairn_topo::{BackupRecord, BackupRecordState, DrillResult, Health, TabletType};
use chrono::{DateTime, Utc};

use super::timeline::MarkKind;
use super::{JobView, PageData, ScheduleView, ShardView, TabletView, TimelineMark};
use crate::coordinator::cache::TopoView;
use crate::coordinator::recoverability::{self, Light};

/// Replication lag above which a replica is amber.
pub const LAG_AMBER_SECONDS: u64 = 300;

/// Who this coordinator is, for the header.
#[derive(Debug, Clone)]
pub struct Who {
    pub coordinator_id: String,
    pub is_leader: bool,
    pub leader_id: Option<String>,
}

/// A tablet's light and a short phrase for it, from its type and Health
/// (`None`: the agent is gone).
pub fn tablet_light(tablet_type: TabletType, health: Option<&Health>) -> (Light, String) {
    let Some(h) = health else {
        return (Light::Red, "agent down".into());
    };
    if !h.mysqld_up {
        return (Light::Red, "mysqld down".into());
    }
    if let Some(e) = &h.replication_error {
        return (Light::Red, format!("replication failing: {e}"));
    }
    match tablet_type {
        TabletType::Primary if h.serving => (Light::Green, "serving".into()),
        TabletType::Primary => (Light::Amber, "not serving".into()),
        TabletType::Backup | TabletType::Restore => (
            Light::Green,
            match &h.busy_job {
                Some(j) => format!("running job {j}"),
                None => "running a job".into(),
            },
        ),
        TabletType::Drained => (Light::Amber, "drained".into()),
        _ if !h.replicating() => (Light::Amber, "replication stopped".into()),
        _ => match h.replication_lag_seconds {
            Some(l) if l > LAG_AMBER_SECONDS => (Light::Amber, format!("lag {l}s")),
            Some(l) => (Light::Green, format!("lag {l}s")),
            None => (Light::Green, "replicating".into()),
        },
    }
}

/// How a backup appears on the timeline.
pub fn mark_kind(b: &BackupRecord) -> MarkKind {
    if b.drill_result == Some(DrillResult::Failed) {
        MarkKind::DrillFailed
    } else if !b.complete || b.state == BackupRecordState::Unreadable {
        MarkKind::Bad
    } else if b.incremental {
        MarkKind::Incremental
    } else if b.drill_result == Some(DrillResult::Succeeded) {
        MarkKind::Verified
    } else {
        MarkKind::Full
    }
}

/// The page's data.
pub fn from_view(view: &TopoView, who: Who, now: DateTime<Utc>) -> PageData {
    let pictures = recoverability::from_view(view, now);
    let shards = pictures
        .into_iter()
        .map(|picture| {
            let key = (picture.keyspace.clone(), picture.shard.clone());
            let primary = view
                .shards
                .get(&key)
                .and_then(|s| s.value.primary_alias.as_ref())
                .map(|a| a.to_string());
            let tablets = view
                .shard_tablets(&key.0, &key.1)
                .into_iter()
                .map(|t| {
                    let (light, note) = tablet_light(t.tablet.value.tablet_type, t.health.as_ref());
                    TabletView {
                        alias: t.tablet.value.alias.to_string(),
                        tablet_type: t.tablet.value.tablet_type.to_string(),
                        light,
                        note,
                    }
                })
                .collect();
            let marks = view
                .backups
                .get(&key)
                .map(|m| {
                    m.values()
                        .map(|b| TimelineMark {
                            name: b.name.clone(),
                            at: b.backup_time,
                            kind: mark_kind(b),
                        })
                        .collect()
                })
                .unwrap_or_default();
            ShardView {
                picture,
                primary,
                tablets,
                marks,
            }
        })
        .collect();
    let jobs = view
        .jobs
        .values()
        .map(|j| &j.value)
        .filter(|j| !j.state.is_final())
        .map(|j| JobView {
            id: j.id.clone(),
            kind: upper(&j.kind),
            keyspace: j.keyspace.clone(),
            shard: j.shard.clone(),
            tablet: j.tablet_alias.to_string(),
            state: upper(&j.state),
            bytes_done: j.progress.bytes_done,
            bytes_total: j.progress.bytes_total,
            started_at: j.started_at,
        })
        .collect();
    let schedules = view
        .schedules
        .values()
        .map(|v| {
            let x = &v.value;
            ScheduleView {
                name: x.name.clone(),
                cron: x.cron.clone(),
                target: x.target.clone(),
                paused: x.paused,
                incremental: x.incremental,
                last_run: x.last_run,
                next_run: schedule_next_run(x),
            }
        })
        .collect();
    PageData {
        now,
        coordinator_id: who.coordinator_id,
        is_leader: who.is_leader,
        leader_id: who.leader_id,
        shards,
        jobs,
        schedules,
    }
}

/// The slot a schedule waits for (its stored `next_run` when it has none).
fn schedule_next_run(s: &cairn_topo::Schedule) -> Option<DateTime<Utc>> {
    crate::coordinator::schedule::usable_schedule(s)
        .ok()
        .and_then(|c| crate::coordinator::schedule::upcoming(s, &c))
        .or(s.next_run)
}

/// A record enum's upper-case name as etcd spells it.
fn upper<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{v:?}").to_ascii_uppercase())
}
