//! `cairn drill KS/SHARD [--backup NAME] [--to-now] [--no-wait] [--json]`: a DRILL
//! job for the tablet [`select_drill_tablet`] picks, on the backup
//! [`choose_drill_backup`] picks; waits for it and prints the outcome with the
//! time of each stage (the agent's message) and what the backup's record now says.
//! `--to-now` marks the job with an empty `point_in_time` (no target of its
//! own): the agent also applies the chain of incrementals and archived binlog
//! segments up to the newest archived transaction, and records the chain and
//! where it got there (`point_in_time.plan`, `.restored_to`, in `--json`).
//!
//! Everything is refused before anything is written: an unknown shard, an
//! unknown, incremental or unreadable backup, no eligible tablet (each named
//! with why: busy, primary, not healthy, or "needs 2.1 GiB, has 800.0 MiB
//! free" when its Health reports less free disk than the drill needs), a busy
//! one.

use anyhow::{bail, Context};
use cairn_topo::{BackupRecord, Job, JobKind, JobState, PointInTime, Topo};
use serde_json::json;

use super::args::{DrillArgs, GlobalArgs};
use super::{connect_admin, jobs};
use crate::backup::drill::{choose_drill_backup, drill_room_for};
use crate::coordinator::select::{select_drill_tablet, with_pending_jobs, Choice};

pub async fn drill(g: &GlobalArgs, a: DrillArgs) -> anyhow::Result<()> {
    let topo = connect_admin(g).await?;
    run(&topo, a).await
}

async fn run(topo: &Topo, a: DrillArgs) -> anyhow::Result<()> {
    let ks = &a.keyspace_shard;
    if topo
        .get_shard(&ks.keyspace, &ks.shard)
        .await
        .context("reading the shard")?
        .is_none()
    {
        bail!("shard {ks} does not exist");
    }
    let records: Vec<BackupRecord> = topo
        .list_backup_records(&ks.keyspace, &ks.shard)
        .await
        .context("listing the shard's backups")?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let chosen = choose_drill_backup(&records, a.backup.as_deref())
        .map_err(|why| anyhow::anyhow!("cannot drill {ks}: {why}"))?;
    let (backup, need) = (chosen.name.clone(), drill_room_for(chosen));
    let tablets = topo
        .list_tablets(Some(&ks.keyspace), Some(&ks.shard))
        .await
        .context("listing tablets")?;
    if tablets.is_empty() {
        bail!("shard {ks} has no tablets");
    }
    // A tablet with a job written for it is busy (an ARCHIVE runs beside a drill).
    let written: Vec<Job> = topo
        .list_jobs()
        .await
        .context("listing jobs")?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let tablets = with_pending_jobs(tablets, &written);
    let alias = match select_drill_tablet(&tablets, a.max_lag.as_secs(), need) {
        Choice::Tablet(alias) => alias,
        Choice::None(reasons) => {
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            bail!(
                "no tablet of {ks} is eligible for a drill of backup {backup} (a spare or a \
                 healthy replica with the disk space, never the primary: {})",
                why.join("; ")
            );
        }
    };
    let mut job = Job::pending(JobKind::Drill, &ks.keyspace, &ks.shard, &alias);
    job.backup_name = Some(backup.clone());
    if a.to_now {
        job.point_in_time = Some(PointInTime::default());
    }
    job.pending_timeout_seconds = Some(a.pending_timeout.as_secs());
    jobs::submit(topo, &job).await?;
    if a.no_wait {
        println!("{}", job.id);
        return Ok(());
    }
    eprintln!(
        "drilling backup {backup}{} on {alias} (job {})",
        if a.to_now {
            " up to the newest archived transaction"
        } else {
            ""
        },
        job.id
    );
    let done = jobs::wait(topo, &job.id, a.pending_timeout).await?;
    let record = topo
        .get::<BackupRecord>(&topo.keys().backup(&ks.keyspace, &ks.shard, &backup))
        .await
        .ok()
        .flatten()
        .map(|v| v.value);
    if a.json {
        println!("{}", outcome_json(&done, record.as_ref()));
    }
    match done.state {
        JobState::Succeeded => {
            if !a.json {
                println!(
                    "{}",
                    done.message
                        .as_deref()
                        .unwrap_or("drill succeeded (no details)")
                );
            }
            Ok(())
        }
        state => bail!(
            "drill of backup {backup} on {alias} {}: {}",
            if state == JobState::Cancelled {
                "was cancelled"
            } else {
                "failed"
            },
            done.error.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// The `--json` outcome: the job and what the backup's record says after it.
fn outcome_json(done: &Job, record: Option<&BackupRecord>) -> serde_json::Value {
    json!({
        "job": done.id,
        "state": done.state,
        "backup_name": done.backup_name,
        "tablet_alias": done.tablet_alias.to_string(),
        "message": done.message,
        "error": done.error,
        "verified_at": record.and_then(|r| r.verified_at),
        "drill_seconds": record.and_then(|r| r.drill_seconds),
        "drill_result": record.and_then(|r| r.drill_result),
        "drill_error": record.and_then(|r| r.drill_error.clone()),
        "to_now": done.point_in_time.is_some(),
        "chain": done.point_in_time.as_ref().map(|p| p.plan.clone()),
        "restored_to": done.point_in_time.as_ref().and_then(|p| p.restored_to.clone()),
    })
}
