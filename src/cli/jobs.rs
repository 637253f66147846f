//! Jobs from the CLI's side: write a job for a tablet, wait for its outcome with a
//! progress bar, fail it if no agent takes it in time; and `cairn jobs`.
//!
//! The same job records are written by the coordinator; agents take them by CAS. A
//! submit whose write reported an error reads the job back and recognises its own
//! ([`is_our_submission`]) rather than failing a job that was written.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::{Job, JobKind, JobState, TabletAlias, Topo, TopoError, Versioned};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::args::JobsArgs;
use super::output::{opt, print_rows};

/// Refuses a second job on a tablet that already has one going.
pub async fn refuse_if_busy(topo: &Topo, alias: &TabletAlias) -> anyhow::Result<()> {
    let jobs = topo.list_jobs().await.context("listing jobs")?;
    if let Some(j) = jobs
        .iter()
        .find(|j| &j.value.tablet_alias == alias && !j.value.state.is_final())
    {
        bail!(
            "tablet {alias} is already running {} job {} ({}); wait for it to finish",
            kind_name(j.value.kind),
            j.value.id,
            state_name(j.value.state)
        );
    }
    Ok(())
}

fn kind_name(k: JobKind) -> &'static str {
    match k {
        JobKind::Backup => "backup",
        JobKind::Restore => "restore",
        JobKind::Archive => "archive",
        JobKind::Drill => "drill",
    }
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Pending => "PENDING",
        JobState::Running => "RUNNING",
        JobState::Succeeded => "SUCCEEDED",
        JobState::Failed => "FAILED",
        JobState::Cancelled => "CANCELLED",
    }
}

/// Whether the job found at `ours`'s key, read back after its create reported an
/// error, is the one this submit wrote (the write landed and its answer was lost;
/// the retry then found the key taken, by itself). The key is the job id this
/// submit generated (time and a random suffix), so a job there with the same
/// identity is ours, in whatever state it has reached since. Pure.
pub fn is_our_submission(ours: &Job, found: Option<&Job>) -> bool {
    found.is_some_and(|j| {
        j.id == ours.id
            && j.created_at == ours.created_at
            && j.kind == ours.kind
            && j.tablet_alias == ours.tablet_alias
            && j.keyspace == ours.keyspace
            && j.shard == ours.shard
    })
}

/// Writes the job (create-if-absent). A create that reports an error may have
/// been applied: the job is read back, and if it is ours the submit carries on.
pub async fn submit(topo: &Topo, job: &Job) -> anyhow::Result<()> {
    let key = topo.keys().job(&job.id);
    let Err(e) = topo.create(&key, job, None).await else {
        return Ok(());
    };
    match topo.get::<Job>(&key).await {
        Ok(found) if is_our_submission(job, found.as_ref().map(|v| &v.value)) => {
            tracing::warn!(job = %job.id, error = %e, "writing the job reported an error, but it was written: carrying on");
            Ok(())
        }
        Ok(_) => Err(anyhow::Error::new(e).context(format!("writing job {}", job.id))),
        Err(read) => Err(anyhow::Error::new(e).context(format!(
            "writing job {} (reading it back failed too: {read}; `cairn jobs` shows whether it was written)",
            job.id
        ))),
    }
}

/// Fails a job still PENDING (by CAS, so an agent that just took it wins).
async fn fail_pending(topo: &Topo, id: &str, reason: &str) -> Result<bool, TopoError> {
    let key = topo.keys().job(id);
    let mut failed = false;
    topo.update_with::<Job, _>(&key, |cur| {
        let Some(mut j) = cur else { return Ok(None) };
        if j.state != JobState::Pending {
            return Ok(None);
        }
        j.state = JobState::Failed;
        j.error = Some(reason.to_string());
        j.finished_at = Some(Utc::now());
        failed = true;
        Ok(Some(j))
    })
    .await?;
    Ok(failed)
}

/// Waits for the job to reach a final state, showing progress on stderr (a bar on a
/// terminal). A job no agent takes within `pending_timeout` is failed here.
pub async fn wait(topo: &Topo, id: &str, pending_timeout: Duration) -> anyhow::Result<Job> {
    let key = topo.keys().job(id);
    let started = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        Some(b)
    } else {
        None
    };
    let mut last_state = None;
    let mut watch = topo.watch(&key, false, 0);
    loop {
        let job: Option<Versioned<Job>> = topo
            .get(&key)
            .await
            .with_context(|| format!("reading job {id}"))?;
        let Some(job) = job else {
            bail!("job {id} disappeared")
        };
        let j = &job.value;
        if last_state != Some(j.state) {
            last_state = Some(j.state);
            match &bar {
                Some(b) => b.set_message(format!("{} {}", j.tablet_alias, state_name(j.state))),
                None => eprintln!("job {id}: {} on {}", state_name(j.state), j.tablet_alias),
            }
        }
        if let Some(b) = &bar {
            b.set_length(j.progress.bytes_total);
            b.set_position(j.progress.bytes_done);
        }
        if j.state.is_final() {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(job.value);
        }
        if j.state == JobState::Pending && started.elapsed() > pending_timeout {
            let reason = format!(
                "tablet {} did not take the job within {pending_timeout:?}: is its agent running?",
                j.tablet_alias
            );
            if fail_pending(topo, id, &reason).await? {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                bail!("{reason}");
            }
        }
        // Wake on a change of the job, or every second to check the deadline.
        let _ = tokio::time::timeout(Duration::from_secs(1), watch.next()).await;
    }
}

/// One row of `jobs --json`.
#[derive(Debug, Serialize)]
struct JobRow {
    id: String,
    kind: JobKind,
    keyspace: String,
    shard: String,
    tablet_alias: String,
    state: JobState,
    backup_name: Option<String>,
    error: Option<String>,
    created_at: chrono::DateTime<Utc>,
    started_at: Option<chrono::DateTime<Utc>>,
    finished_at: Option<chrono::DateTime<Utc>>,
    attempt: u32,
    schedule: Option<String>,
    scheduled_for: Option<chrono::DateTime<Utc>>,
    retry_of: Option<String>,
    bytes_done: u64,
    bytes_total: u64,
    /// A backup job's start when incremental (`auto`, a position or a backup).
    incremental_from_pos: Option<String>,
    /// What a succeeded job says beyond its backup (why nothing was stored).
    message: Option<String>,
}

pub async fn list(topo: &Topo, a: JobsArgs) -> anyhow::Result<()> {
    let jobs = topo.list_jobs().await.context("listing jobs")?;
    let rows: Vec<JobRow> = jobs
        .into_iter()
        .map(|j| j.value)
        .filter(|j| a.keyspace.as_ref().is_none_or(|k| &j.keyspace == k))
        .filter(|j| a.shard.as_ref().is_none_or(|s| &j.shard == s))
        .map(|j| JobRow {
            tablet_alias: j.tablet_alias.to_string(),
            bytes_done: j.progress.bytes_done,
            bytes_total: j.progress.bytes_total,
            id: j.id,
            kind: j.kind,
            keyspace: j.keyspace,
            shard: j.shard,
            state: j.state,
            backup_name: j.backup_name,
            error: j.error,
            incremental_from_pos: j.incremental_from_pos,
            message: j.message,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            attempt: j.attempt,
            schedule: j.schedule,
            scheduled_for: j.scheduled_for,
            retry_of: j.retry_of,
        })
        .collect();
    print_rows(
        a.json,
        &[
            "ID", "KIND", "SHARD", "TABLET", "STATE", "ATTEMPT", "BACKUP", "ERROR",
        ],
        &rows,
        |r| {
            vec![
                r.id.clone(),
                kind_name(r.kind).to_string(),
                format!("{}/{}", r.keyspace, r.shard),
                r.tablet_alias.clone(),
                state_name(r.state).to_string(),
                r.attempt.to_string(),
                opt(&r.backup_name),
                opt(&r.error),
            ]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submit_recognises_its_own_job() {
        let alias: TabletAlias = "zone1-101".parse().unwrap();
        let ours = Job::pending(JobKind::Backup, "ks", "0", &alias);
        let with = |f: &dyn Fn(&mut Job)| {
            let mut j = ours.clone();
            f(&mut j);
            j
        };
        // (what, found at the key, ours)
        let cases: Vec<(&str, Option<Job>, bool)> = vec![
            ("written as sent", Some(ours.clone()), true),
            (
                "written, already taken by the agent",
                Some(with(&|j| {
                    j.state = JobState::Running;
                    j.owner_lease = Some(7);
                })),
                true,
            ),
            (
                "written, already finished",
                Some(with(&|j| j.state = JobState::Succeeded)),
                true,
            ),
            ("nothing there", None, false),
            (
                "another submit's job (created at another time)",
                Some(with(&|j| {
                    j.created_at = ours.created_at - chrono::Duration::milliseconds(1)
                })),
                false,
            ),
            (
                "another tablet",
                Some(with(&|j| j.tablet_alias = "zone1-102".parse().unwrap())),
                false,
            ),
            (
                "another kind",
                Some(with(&|j| j.kind = JobKind::Restore)),
                false,
            ),
            (
                "another shard",
                Some(with(&|j| j.shard = "80-".into())),
                false,
            ),
            ("another id", Some(with(&|j| j.id = "x".into())), false),
        ];
        for (what, found, want) in cases {
            assert_eq!(is_our_submission(&ours, found.as_ref()), want, "{what}");
        }
        // The record as read back from etcd (JSON) still matches.
        let round: Job = serde_json::from_str(&serde_json::to_string(&ours).unwrap()).unwrap();
        assert!(is_our_submission(&ours, Some(&round)));
    }
}
