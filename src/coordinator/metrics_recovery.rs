//! The recoverability gauges of `/metrics` ([`RecoveryMetrics`]), per shard from
//! [`ShardPicture`]s: the age of the newest complete and of the newest verified
//! backup, the age the schedule allows, the last drill's duration and success, the
//! shard's light; and the age of the oldest running job of each kind (stuck jobs).
//! A shard's series disappears when the value does (no stale ages).
//!
//! Part of [`super`] (the metrics); may call [`super::super::recoverability`].

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use cairn_topo::{DrillResult, Job, JobKind, JobState};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ShardLabels;
use crate::coordinator::recoverability::ShardPicture;

type F64Gauge = Gauge<f64, AtomicU64>;
type ShardGauges = Family<ShardLabels, F64Gauge>;

/// Labels of the per-kind job series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `BACKUP`, `RESTORE`, … (never `ARCHIVE`: archive jobs run for good).
    pub kind: String,
}

/// The names of the per-shard gauges (without the `cairn_coordinator_` prefix), in
/// the order of the fields below.
pub const SHARD_GAUGES: [&str; 6] = [
    "newest_backup_age_seconds",
    "newest_verified_backup_age_seconds",
    "backup_max_age_seconds",
    "last_drill_seconds",
    "last_drill_success",
    "shard_health",
];

/// The gauges; see the module doc.
#[derive(Default)]
pub struct RecoveryMetrics {
    newest_backup_age: ShardGauges,
    newest_verified_age: ShardGauges,
    backup_max_age: ShardGauges,
    last_drill_seconds: ShardGauges,
    last_drill_success: ShardGauges,
    shard_health: ShardGauges,
    oldest_running_job: Family<KindLabels, F64Gauge>,
    /// The label sets each shard family was last given, by family index.
    present: Mutex<BTreeMap<usize, HashSet<ShardLabels>>>,
}

impl RecoveryMetrics {
    fn families(&self) -> [&ShardGauges; 6] {
        [
            &self.newest_backup_age,
            &self.newest_verified_age,
            &self.backup_max_age,
            &self.last_drill_seconds,
            &self.last_drill_success,
            &self.shard_health,
        ]
    }

    /// Adds the gauges to the coordinator's registry.
    pub fn register(&self, r: &mut Registry) {
        let help = [
            "Age of the shard's newest complete full backup",
            "Age of the shard's newest backup whose restore drill succeeded",
            "How old the shard's newest backup may be: its schedule's period plus the usual \
             backup duration (only for shards an active schedule covers)",
            "Measured recovery time of the shard's last restore drill",
            "1 when the shard's last restore drill succeeded, 0 when it failed",
            "The shard's state on the status page: 0 green, 1 amber, 2 red",
        ];
        for ((name, help), family) in SHARD_GAUGES.iter().zip(help).zip(self.families()) {
            r.register(*name, help, family.clone());
        }
        r.register(
            "oldest_running_job_seconds",
            "Seconds since the oldest RUNNING job of each kind started (0 with none; \
             ARCHIVE jobs run for good and are left out)",
            self.oldest_running_job.clone(),
        );
    }

    /// Sets every gauge from the pictures and the oldest running job of each kind
    /// ([`oldest_running`]), removing the series of shards (or values) that are gone.
    pub fn set(&self, pictures: &[ShardPicture], oldest: BTreeMap<String, f64>) {
        let mut values: [Vec<(ShardLabels, f64)>; 6] = Default::default();
        for p in pictures {
            let labels = ShardLabels {
                keyspace: p.keyspace.clone(),
                shard: p.shard.clone(),
            };
            let drill = p.last_drill.as_ref();
            let each = [
                p.newest_backup_age_seconds,
                p.newest_verified_backup_age_seconds,
                p.backup_max_age_seconds,
                drill.and_then(|d| d.seconds),
                drill.map(|d| f64::from(u8::from(d.result == DrillResult::Succeeded))),
                Some(p.health.value() as f64),
            ];
            for (i, v) in each.into_iter().enumerate() {
                if let Some(v) = v {
                    values[i].push((labels.clone(), v));
                }
            }
        }
        let mut present = crate::common::lock(&self.present);
        for (i, (family, vals)) in self.families().into_iter().zip(values).enumerate() {
            let now_present: HashSet<ShardLabels> = vals.iter().map(|(l, _)| l.clone()).collect();
            for (labels, v) in vals {
                family.get_or_create(&labels).set(v);
            }
            let before = present.entry(i).or_default();
            for gone in before.difference(&now_present) {
                family.remove(gone);
            }
            *before = now_present;
        }
        drop(present);
        for (kind, secs) in oldest {
            self.oldest_running_job
                .get_or_create(&KindLabels { kind })
                .set(secs);
        }
    }
}

/// Seconds since the oldest RUNNING job of each kind started; BACKUP, RESTORE and DRILL
/// are always there (0 with none running), ARCHIVE never. Pure.
pub fn oldest_running(jobs: &[&Job], now: DateTime<Utc>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = ["BACKUP", "RESTORE", "DRILL"]
        .iter()
        .map(|k| (k.to_string(), 0.0))
        .collect();
    for j in jobs {
        if j.state != JobState::Running || j.kind == JobKind::Archive {
            continue;
        }
        let since = j.started_at.unwrap_or(j.created_at);
        let secs = (now - since).num_milliseconds().max(0) as f64 / 1000.0;
        let kind = serde_json::to_value(j.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| format!("{:?}", j.kind).to_ascii_uppercase());
        let e = out.entry(kind).or_insert(0.0);
        *e = e.max(secs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_topo::TabletAlias;

    #[test]
    fn oldest_running_job_per_kind() {
        let now = Utc::now();
        let alias: TabletAlias = "zone1-101".parse().unwrap();
        let job = |kind, state, mins: i64| {
            let mut j = Job::pending(kind, "ks", "0", &alias);
            j.state = state;
            j.started_at = Some(now - chrono::Duration::minutes(mins));
            j
        };
        let jobs = [
            job(JobKind::Backup, JobState::Running, 5),
            job(JobKind::Backup, JobState::Running, 90),
            job(JobKind::Backup, JobState::Succeeded, 600),
            job(JobKind::Backup, JobState::Pending, 700),
            job(JobKind::Archive, JobState::Running, 10_000),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let got = oldest_running(&refs, now);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got["BACKUP"], 5400.0);
        assert_eq!(got["RESTORE"], 0.0);
        assert_eq!(got["DRILL"], 0.0);
    }

    #[test]
    fn series_of_gone_shards_are_removed() {
        use crate::coordinator::recoverability::{picture, SchedulePeriod};
        let m = RecoveryMetrics::default();
        let sched = SchedulePeriod {
            name: "s".into(),
            target: "ks".into(),
            period: std::time::Duration::from_secs(3600),
        };
        let now = Utc::now();
        let a = picture("ks", "a", &[], Some(&sched), None, now);
        let b = picture("ks", "b", &[], Some(&sched), None, now);
        m.set(&[a.clone(), b], BTreeMap::new());
        let mut r = Registry::default();
        m.register(&mut r);
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s
        };
        let before = text(&r);
        assert!(before.contains("shard=\"b\""), "{before}");
        assert!(before.contains("backup_max_age_seconds{"), "{before}");
        assert!(!before.contains("newest_backup_age_seconds{"), "{before}");
        m.set(&[a], BTreeMap::new());
        let after = text(&r);
        assert!(!after.contains("shard=\"b\""), "{after}");
        assert!(after.contains("shard=\"a\""), "{after}");
    }
}
