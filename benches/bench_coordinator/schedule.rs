//! Phase 3, a keyspace-wide schedule: set a few seconds ahead, then from the cron
//! slot to the first and to every shard's job in etcd, and what the coordinator
//! logged.

use std::cell::Cell;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn::testkit::{Cluster, CoordinatorProcess, Wait, WaitError};
use cairn_topo::{Job, JobState, Topo};
use chrono::{DateTime, Timelike, Utc};

use super::probe::{count_keys, delete_prefix, log_line, status};
use super::topology::tablet_of;
use super::{JOB_POLL, KS, WAIT};
use crate::common::ms_between;

/// One keyspace-wide schedule run, measured.
pub struct SchedRun {
    pub cron: String,
    /// From the cron slot (a whole second) to the first job in etcd.
    pub first_ms: f64,
    /// From the cron slot to every shard's job in etcd.
    pub all_ms: f64,
    /// The slot the coordinator logged, relative to the cron slot.
    pub coord_slot_ms: Option<f64>,
    /// When the coordinator logged "schedule run started", from the cron slot.
    pub logged_ms: Option<f64>,
    /// Jobs by state.
    pub states: String,
}

/// Sets a keyspace-wide schedule `name` firing a few seconds ahead and measures
/// until every shard's job is in etcd; with `clear`, deletes the schedule and all
/// jobs afterwards and waits until the coordinator saw that.
pub async fn schedule_run(
    c: &Cluster,
    topo: &Topo,
    coord: &CoordinatorProcess,
    shards: usize,
    name: &str,
    clear: bool,
) -> anyhow::Result<SchedRun> {
    let now = Utc::now();
    let slot = DateTime::from_timestamp(now.timestamp() + 3, 0).context("slot time")?;
    let cron = format!("{} {} {} * * *", slot.second(), slot.minute(), slot.hour());
    c.cli_ok(&["schedule", "set", name, "--cron", &cron, "--target", KS])?;
    if Utc::now() >= slot {
        bail!("`schedule set` returned after the slot {slot}; cannot measure");
    }
    let jobs_prefix = topo.keys().jobs_prefix();
    let first_job = Cell::new(None);
    let last_count = Cell::new(0);
    let waited = Wait::new(format!("all {shards} jobs"), WAIT)
        .every(JOB_POLL)
        .fail_fast()
        .until(|| async {
            let n = count_keys(topo, &jobs_prefix).await?;
            let at = Utc::now();
            last_count.set(n);
            if n > 0 && first_job.get().is_none() {
                first_job.set(Some(at));
            }
            Ok((n as usize >= shards).then_some(at))
        })
        .await;
    let all_jobs = match waited {
        Ok(at) => at,
        Err(e) if e.is::<WaitError>() => bail!(
            "only {} of {shards} jobs after {WAIT:?}:\n{}",
            last_count.get(),
            coord.log_tail(20)
        ),
        Err(e) => return Err(e),
    };
    let first_job = first_job.get();
    let (kvs, _) = topo.list_raw(&jobs_prefix).await?;
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for (_, v, _) in &kvs {
        let j: Job = serde_json::from_slice(v)?;
        let tag = match (j.state, tablet_of(j.tablet_alias.uid.max(1)).1) {
            (JobState::Pending, false) => "PENDING on a replica".to_string(),
            (JobState::Pending, true) => "PENDING on a PRIMARY (wrong)".to_string(),
            (s, _) => format!("{s:?}"),
        };
        *states.entry(tag).or_default() += 1;
    }
    let needle = format!("schedule run started schedule={name} ");
    let logged = Wait::new("the run log line", Duration::from_secs(10))
        .every(Duration::from_millis(20))
        .until(|| async { Ok(log_line(&coord.log(), &needle)) })
        .await
        .ok();
    let coord_slot = logged.as_ref().and_then(|(_, l)| {
        let at = l.find("slot=")? + "slot=".len();
        let end = l[at..].find(" UTC")? + at;
        chrono::NaiveDateTime::parse_from_str(&l[at..end], "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    });
    if clear {
        delete_prefix(topo, &jobs_prefix).await?;
        c.cli_ok(&["schedule", "remove", name])?;
        Wait::new("the coordinator to see the jobs deleted", WAIT)
            .every(Duration::from_millis(50))
            .until(|| async { Ok(status(coord.port).await.ok().filter(|s| s.jobs.is_empty())) })
            .await?;
    }
    Ok(SchedRun {
        cron,
        first_ms: ms_between(slot, first_job.unwrap_or(all_jobs)),
        all_ms: ms_between(slot, all_jobs),
        coord_slot_ms: coord_slot.map(|t| ms_between(slot, t)),
        logged_ms: logged.map(|(t, _)| ms_between(slot, t)),
        states: states
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}
