//! `cairn drill KS/SHARD [--backup NAME] [--to-now] [--no-wait] [--json]`: a DRILL
//! job for the tablet [`select_drill_tablet`] picks, on the backup
//! [`choose_drill_backup`] picks; waits for it and prints the outcome with the
//! time of each stage (the agent's message) and what the backup's record now says.
//!
//! Everything is refused before anything is written: `--to-now` (not supported
//! yet), an unknown shard, an unknown, incremental or unreadable backup, no
//! eligible tablet, a busy one.

use anyhow::{bail, Context};
use cairn_topo::{BackupRecord, Job, JobKind, JobState, Topo};
use serde_json::json;

use super::args::{DrillArgs, GlobalArgs};
use super::{connect_admin, jobs, UsageError};
use crate::backup::drill::choose_drill_backup;
use crate::coordinator::select::{select_drill_tablet, Choice};

pub async fn drill(g: &GlobalArgs, a: DrillArgs) -> anyhow::Result<()> {
    if a.to_now {
        return Err(UsageError(
            "drill --to-now (applying the archived chain up to the newest transaction) is not \
             supported yet; drill the full backup without it"
                .into(),
        )
        .into());
    }
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
    let backup = choose_drill_backup(&records, a.backup.as_deref())
        .map_err(|why| anyhow::anyhow!("cannot drill {ks}: {why}"))?
        .name
        .clone();
    let tablets = topo
        .list_tablets(Some(&ks.keyspace), Some(&ks.shard))
        .await
        .context("listing tablets")?;
    if tablets.is_empty() {
        bail!("shard {ks} has no tablets");
    }
    let alias = match select_drill_tablet(&tablets, a.max_lag.as_secs()) {
        Choice::Tablet(alias) => alias,
        Choice::None(reasons) => {
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            bail!(
                "no tablet of {ks} is eligible for a drill (a spare or a healthy replica, \
                 never the primary: {})",
                why.join("; ")
            );
        }
    };
    jobs::refuse_if_busy(topo, &alias).await?;
    let mut job = Job::pending(JobKind::Drill, &ks.keyspace, &ks.shard, &alias);
    job.backup_name = Some(backup.clone());
    job.pending_timeout_seconds = Some(a.pending_timeout.as_secs());
    jobs::submit(topo, &job).await?;
    if a.no_wait {
        println!("{}", job.id);
        return Ok(());
    }
    eprintln!("drilling backup {backup} on {alias} (job {})", job.id);
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
    })
}
