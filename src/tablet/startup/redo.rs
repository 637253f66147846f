//! Redoing, at the agent's start, a restore to a point that was interrupted while
//! its binlogs were applied — a new tablet's (`cairn tablet --restore-from-backup
//! --restore-to-…`) or an in-place restore job's alike: the hold file
//! (`point_in_time_restore`, state `applying`) names the target, and the restore
//! is done again from the full backup (so no transaction is applied twice) over
//! the half-applied data. [`redo_point_in_time`] decides (pure);
//! [`Agent::redo_point_in_time_at_start`] runs it and gives the interrupted job
//! (if the hold names one) one truthful record: FAILED, saying the agent
//! restarted mid-apply and what the redo at start reached (or why it failed).
//!
//! Calls the agent's point-in-time room (`super::super::pitr`), `backup` (the
//! target's parser), `common` and `cairn-topo`.

use anyhow::Context;
use cairn_topo::{Job, JobKind, JobState, PointInTime, TabletAlias};
use chrono::Utc;

use super::super::agent::Agent;
use super::super::pitr::target_of;
use super::StartPlan;

/// The text an interrupted job's error starts with.
pub(in crate::tablet) const REDONE_AT_START: &str =
    "the tablet's agent restarted while the binlogs were applied; the restore was redone at start";

/// Which restore to a point must be redone at start, if any: the hold file says
/// its binlogs were being applied (`applying`: never finished; an unreadable hold
/// counts, it may be a torn write of one), the plan was only to start on the data
/// there (which is half-applied), and the tablet is not the shard's primary (a
/// primary is never restored over). The target is the hold's own — the
/// interrupted restore is finished, whether a new tablet's or an in-place job's;
/// `--restore-to-…` flags never overwrite existing data at start. An unreadable
/// hold names no target: the one the command line asks for again (`cairn tablet
/// --restore-from-backup --restore-to-…`, restarted) is redone; without one
/// nothing is, and the tablet stays held, DRAINED with replication stopped.
/// `hold`: the hold's state and target. Pure.
pub(in crate::tablet) fn redo_point_in_time(
    plan: &StartPlan,
    hold: Option<(&str, &str)>,
    restore_to: Option<&str>,
    is_primary: bool,
) -> Option<String> {
    let (state, held_target) = hold?;
    if *plan != StartPlan::InitAndStart || is_primary || state == "done" {
        return None;
    }
    if !held_target.is_empty() {
        return Some(held_target.to_string());
    }
    restore_to.map(str::to_string)
}

/// The interrupted job's record once the redo at start ended (`outcome`: where
/// it reached, or why it failed): FAILED (the job itself did not finish; its
/// caller saw it die), its error saying what happened at start, and on success
/// where the tablet now is. Only a RESTORE job of this tablet is touched; a
/// SUCCEEDED or CANCELLED one is left alone. `None`: leave the record. Pure.
pub(in crate::tablet) fn settle_interrupted_job(
    mut job: Job,
    me: &TabletAlias,
    full_backup: &str,
    outcome: Result<&str, &str>,
) -> Option<Job> {
    if job.kind != JobKind::Restore
        || job.tablet_alias != *me
        || matches!(job.state, JobState::Succeeded | JobState::Cancelled)
    {
        return None;
    }
    job.state = JobState::Failed;
    job.finished_at.get_or_insert_with(Utc::now);
    let from = if full_backup.is_empty() {
        String::new()
    } else {
        format!(" from the full backup {full_backup}")
    };
    match outcome {
        Ok(reached) => {
            job.error = Some(format!(
                "{REDONE_AT_START}{from}: the tablet is DRAINED with replication stopped at {reached}"
            ));
            job.point_in_time
                .get_or_insert_with(PointInTime::default)
                .restored_to = Some(reached.to_string());
        }
        Err(e) => {
            job.error = Some(format!(
                "{REDONE_AT_START}{from}, and the redo failed: {e} (the next start tries again)"
            ))
        }
    }
    Some(job)
}

impl Agent {
    /// Redoes the interrupted restore to `target` (the hold's text) from the full
    /// backup, then settles the interrupted job `job` if the hold names one.
    pub(in crate::tablet) async fn redo_point_in_time_at_start(
        &self,
        target: &str,
        job: Option<&str>,
    ) -> anyhow::Result<()> {
        let (pos, ts) = if target.starts_with("MariaDB/") {
            (Some(target), None)
        } else {
            (None, Some(target))
        };
        let parsed = target_of(pos, ts, Utc::now())
            .with_context(|| format!("the hold file's target {target:?}"))?;
        let done = self.restore_point_in_time_at_start(&parsed, job).await;
        if let Some(id) = job {
            let held = super::super::pitr::read_hold(&self.cfg.tablet_dir);
            let full = held.as_ref().map(|h| h.full_backup.as_str()).unwrap_or("");
            let reached = held.as_ref().and_then(|h| h.restored_to.clone());
            let err = done.as_ref().err().map(|e| format!("{e:#}"));
            let outcome = match (&err, &reached) {
                (Some(e), _) => Err(e.as_str()),
                (None, Some(r)) => Ok(r.as_str()),
                (None, None) => Ok(target),
            };
            let key = self.topo.keys().job(id);
            let me = self.cfg.alias.clone();
            let r = self
                .topo
                .update_with::<Job, _>(&key, |cur| {
                    Ok(cur.and_then(|j| settle_interrupted_job(j, &me, full, outcome)))
                })
                .await;
            match r {
                Ok(_) => {
                    tracing::warn!(job = %id, ok = done.is_ok(), "recorded the redo at start in the interrupted point-in-time restore job")
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot record the redo at start in the interrupted job")
                }
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_point_in_time_restore_is_redone_to_the_held_target() {
        use StartPlan::*;
        let t = "MariaDB/0-1-9";
        let other = "MariaDB/0-1-5";
        let s = |x: &str| Some(x.to_string());
        // (plan so far, hold (state, target), --restore-to-… given, primary, redo)
        let cases = [
            // A new tablet's restore at start, restarted with the same command line.
            (InitAndStart, Some(("applying", t)), Some(t), false, s(t)),
            // An in-place job's, restarted with its ordinary command line.
            (
                InitAndStart,
                Some(("applying", other)),
                None,
                false,
                s(other),
            ),
            // Flags naming another target do not overwrite data at start: the
            // interrupted restore is finished.
            (
                InitAndStart,
                Some(("applying", other)),
                Some(t),
                false,
                s(other),
            ),
            // An unreadable hold names no target: the command line's, else held.
            (
                InitAndStart,
                Some(("unreadable (EOF)", "")),
                Some(t),
                false,
                s(t),
            ),
            (
                InitAndStart,
                Some(("unreadable (EOF)", "")),
                None,
                false,
                None,
            ),
            (InitAndStart, Some(("done", t)), Some(t), false, None),
            (InitAndStart, Some(("done", t)), None, false, None),
            (InitAndStart, None, Some(t), false, None),
            (InitAndStart, None, None, false, None),
            // Never on the primary.
            (InitAndStart, Some(("applying", t)), Some(t), true, None),
            (InitAndStart, Some(("applying", other)), None, true, None),
            // An interrupted full restore is redone as it is already.
            (
                Redo("b1".into()),
                Some(("applying", t)),
                Some(t),
                false,
                None,
            ),
            (Redo("b1".into()), Some(("applying", t)), None, false, None),
            (RestoreFirst, None, Some(t), false, None),
        ];
        for (plan, hold, given, primary, want) in cases {
            assert_eq!(
                redo_point_in_time(&plan, hold, given, primary),
                want,
                "{plan:?} {hold:?} {given:?} {primary}"
            );
        }
    }

    fn job(kind: JobKind, state: JobState, alias: &str) -> Job {
        let v = serde_json::json!({
            "id": "j1", "kind": kind, "keyspace": "ks", "shard": "0",
            "tablet_alias": alias, "state": state,
            "created_at": "2026-11-25T14:00:00Z",
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_interrupted_job_gets_one_truthful_record() {
        let me: TabletAlias = "zone1-0000000100".parse().unwrap();
        let mine = "zone1-0000000100";
        for state in [JobState::Running, JobState::Failed] {
            let j = settle_interrupted_job(
                job(JobKind::Restore, state, mine),
                &me,
                "b1",
                Ok("MariaDB/0-1-9"),
            )
            .unwrap();
            assert_eq!(j.state, JobState::Failed);
            let e = j.error.unwrap();
            assert!(e.starts_with(REDONE_AT_START), "{e}");
            assert!(e.contains("b1") && e.contains("MariaDB/0-1-9"), "{e}");
            assert_eq!(
                j.point_in_time.unwrap().restored_to.as_deref(),
                Some("MariaDB/0-1-9")
            );
            assert!(j.finished_at.is_some());
            let j = settle_interrupted_job(
                job(JobKind::Restore, state, mine),
                &me,
                "b1",
                Err("storage unreachable"),
            )
            .unwrap();
            assert_eq!(j.state, JobState::Failed);
            assert!(j
                .error
                .unwrap()
                .contains("redo failed: storage unreachable"));
            assert!(j.point_in_time.is_none());
        }
        for (kind, state, alias) in [
            (JobKind::Restore, JobState::Succeeded, mine),
            (JobKind::Restore, JobState::Cancelled, mine),
            (JobKind::Backup, JobState::Running, mine),
            (JobKind::Restore, JobState::Running, "zone1-0000000101"),
        ] {
            assert!(
                settle_interrupted_job(job(kind, state, alias), &me, "b1", Ok("x")).is_none(),
                "{kind:?} {state:?} {alias}"
            );
        }
    }
}
