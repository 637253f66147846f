//! What ties a job to the agent's etcd lease, so a tablet cut off from etcd never
//! runs a job beside its retry, and a write whose answer was lost is read back
//! rather than guessed.
//!
//! - A job is *claimed* (PENDING → RUNNING) under the lease the agent holds then.
//!   A claim whose write returned an error may still have been applied (the
//!   answer was lost, the unary retry then reports a lost race): the agent re-reads
//!   the job and [`claim_is_ours`] decides from the record alone.
//! - While the job runs, [`JobRun`] carries its cancellation: it is stopped when
//!   the lease is lost ([`lease_lost`]: etcd said so, or no keepalive was answered
//!   for a whole TTL, or it was re-granted under another id), when the job record
//!   is made final by someone else (the coordinator failed it), or when the agent
//!   stops. The stop reason becomes the job's error.
//! - Immediately before an irreversible step (the swap of an in-place restore), the
//!   agent checks it still holds the job ([`swap_refusal`], then a compare-only
//!   transaction in etcd); a job reported FAILED is never swapped in afterwards.
//! - A PENDING job older than its pending timeout is never started late
//!   ([`stale_pending_reason`]).
//! - Jobs of this tablet RUNNING under another lease and not being run are orphans
//!   ([`is_orphan`]), failed at start and after a lease is re-granted.
//!
//! Pure decisions with table tests, the small lease watcher and the check before
//! the swap. [`JobRun`] itself lives with the agent's shared state. Calls
//! `cairn-topo`.

use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::{Job, JobState, LeaseState, TabletAlias};
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::agent::{Agent, JobRun};

/// Why a job the previous agent left RUNNING is failed (at the next start).
pub(super) const AGENT_RESTARTED: &str = "the tablet's agent restarted while running the job";

/// Why a job stopped because its agent lost the lease.
pub(super) const LEASE_LOST: &str =
    "the tablet's agent lost its etcd lease while running the job (cut off from etcd for \
     longer than its health TTL); the job was stopped so that a retry elsewhere never runs \
     beside it";

/// Whether a job record read back after a claim whose write failed shows the claim
/// applied: RUNNING, under the lease and with the start time this claim wrote. A
/// job since made final, or claimed by another agent, is not ours to run. Pure.
pub(super) fn claim_is_ours(taken: &Job, found: Option<&Job>) -> bool {
    found.is_some_and(|j| {
        j.id == taken.id
            && j.state == JobState::Running
            && j.owner_lease.is_some()
            && j.owner_lease == taken.owner_lease
            && j.started_at == taken.started_at
    })
}

/// Whether the lease a job was claimed under is lost: not alive now, or replaced
/// by a re-grant (another id). Pure.
pub(super) fn lease_lost(claimed: LeaseState, now: LeaseState) -> bool {
    !claimed.alive || !now.alive || now.id != claimed.id
}

/// Why the swap of an in-place restore must not happen, if it must not: the job
/// was stopped here, or its record (read just now) is gone, final or no longer
/// under `lease`. Pure.
pub(super) fn swap_refusal(job: Option<&Job>, lease: i64, stopped: bool) -> Option<String> {
    if stopped {
        return Some("the job was stopped before the swap".into());
    }
    let Some(j) = job else {
        return Some("the job record is gone".into());
    };
    if j.state != JobState::Running {
        return Some(format!(
            "the job is {:?} in etcd{}",
            j.state,
            j.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if j.owner_lease != Some(lease) {
        return Some(format!(
            "the job is held under lease {:x}, not this agent's {lease:x}",
            j.owner_lease.unwrap_or(0)
        ));
    }
    None
}

/// Whether `job` is an orphan of tablet `me`: RUNNING there under a lease other
/// than `lease` (a previous agent, or this one before its lease was lost), and not
/// the job this agent is running (`busy`), which finishes itself. Pure.
pub(super) fn is_orphan(job: &Job, me: &TabletAlias, lease: i64, busy: Option<&str>) -> bool {
    job.tablet_alias == *me
        && job.state == JobState::Running
        && job.owner_lease != Some(lease)
        && busy != Some(job.id.as_str())
}

/// Follows the lease and stops `run` as soon as the lease it was claimed under is
/// lost; ends when the job ends (its token is cancelled) or the lease handle goes
/// away. Checks the current state first, so a lease lost before the watch began is
/// seen at once.
pub(super) async fn watch_lease(run: JobRun, mut rx: watch::Receiver<LeaseState>) {
    loop {
        let now = *rx.borrow_and_update();
        if lease_lost(run.claimed, now) {
            tracing::warn!(job = %run.id, lease = run.claimed.id, "lease lost: stopping the job");
            run.stop(LEASE_LOST);
            return;
        }
        tokio::select! {
            _ = run.cancel.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The longest pause between attempts to read or write a job while etcd does not
/// answer.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);

/// Why a PENDING job is too old to start, if it is: pending for longer than the
/// `pending_timeout_seconds` it carries. Whoever created it has given up on it (or is
/// about to fail it as not taken); run now, it would back up or restore at a moment
/// nobody asked for. A job without a timeout is never too old here.
pub(super) fn stale_pending_reason(job: &Job, now: DateTime<Utc>) -> Option<String> {
    let limit = job.pending_timeout_seconds?;
    let pending_for = now.signed_duration_since(job.created_at).num_seconds();
    (pending_for > 0 && pending_for as u64 > limit).then(|| {
        format!(
            "not started: the job was PENDING for {pending_for}s, longer than its pending \
             timeout of {limit}s (the tablet's agent was not running when it was created); \
             an agent does not run a job that late"
        )
    })
}

impl Agent {
    /// Reads a job back after a write that reported an error, retrying until etcd
    /// answers; `None` when the agent stops first.
    pub(super) async fn read_job_back(&self, key: &str) -> Option<Option<Job>> {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.topo.get::<Job>(key).await {
                Ok(found) => return Some(found.map(|v| v.value)),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "cannot read the job back; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return None,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Immediately before the swap of an in-place restore: refuses unless the job
    /// is still RUNNING under the lease it was claimed with ([`swap_refusal`] on
    /// the record read now) and, in one compare-only transaction, the record is
    /// unchanged since that read and this tablet's Health still hangs on that
    /// lease. Whatever marks the job FAILED afterwards is ordered after this check.
    /// A record changed between the read and the check (a last progress write) is
    /// read again, a few times.
    pub(super) async fn check_still_held(&self, run: &JobRun) -> anyhow::Result<()> {
        let key = self.topo.keys().job(&run.id);
        let health = self.topo.keys().health(&self.cfg.alias);
        for _ in 0..SWAP_CHECKS {
            let job = self
                .topo
                .get::<Job>(&key)
                .await
                .context("reading the job before the swap")?;
            if let Some(why) = swap_refusal(
                job.as_ref().map(|v| &v.value),
                run.claimed.id,
                run.stopped(),
            ) {
                bail!("swap refused: {why}; the tablet keeps its data");
            }
            let version = job.map_or(0, |v| v.version);
            if self
                .topo
                .holds(&key, version, &health, run.claimed.id)
                .await
                .context("checking the job and the lease before the swap")?
            {
                return Ok(());
            }
        }
        bail!(
            "swap refused: the job kept changing, or this tablet's Health is no longer on \
             lease {:x} as etcd sees it; the tablet keeps its data",
            run.claimed.id
        )
    }
}

/// Reads of the job before a swap is refused because the record keeps changing.
const SWAP_CHECKS: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_topo::JobKind;
    use tokio_util::sync::CancellationToken;

    fn alias(s: &str) -> TabletAlias {
        s.parse().unwrap()
    }

    fn taken() -> Job {
        let mut j = Job::pending(JobKind::Backup, "ks", "0", &alias("zone1-101"));
        j.state = JobState::Running;
        j.owner_lease = Some(7);
        j.started_at = Some(Utc::now());
        j
    }

    #[test]
    fn a_claim_read_back_is_ours_only_when_the_record_says_so() {
        let t = taken();
        let with = |f: &dyn Fn(&mut Job)| {
            let mut j = t.clone();
            f(&mut j);
            j
        };
        let earlier = t.started_at.map(|s| s - chrono::Duration::seconds(1));
        // (what, record found, ours)
        let cases: Vec<(&str, Option<Job>, bool)> = vec![
            ("applied: exactly what we wrote", Some(t.clone()), true),
            (
                "applied, progress published since",
                Some(with(&|j| j.progress.bytes_done = 10)),
                true,
            ),
            (
                "not applied: still pending",
                Some(with(&|j| {
                    j.state = JobState::Pending;
                    j.owner_lease = None;
                    j.started_at = None;
                })),
                false,
            ),
            ("gone", None, false),
            (
                "another agent's lease",
                Some(with(&|j| j.owner_lease = Some(8))),
                false,
            ),
            (
                "no lease recorded",
                Some(with(&|j| j.owner_lease = None)),
                false,
            ),
            (
                "same lease, another start (not this claim)",
                Some(with(&|j| j.started_at = earlier)),
                false,
            ),
            (
                "applied, then failed by the coordinator",
                Some(with(&|j| j.state = JobState::Failed)),
                false,
            ),
            (
                "applied, then cancelled",
                Some(with(&|j| j.state = JobState::Cancelled)),
                false,
            ),
            ("another job", Some(with(&|j| j.id = "other".into())), false),
        ];
        for (what, found, want) in cases {
            assert_eq!(claim_is_ours(&t, found.as_ref()), want, "{what}");
        }
    }

    #[test]
    fn a_lease_is_lost_when_dead_or_replaced() {
        let st = |id, generation, alive| LeaseState {
            id,
            generation,
            alive,
        };
        // (claimed under, now, lost)
        let cases = [
            (st(7, 0, true), st(7, 0, true), false),
            (st(7, 0, true), st(7, 0, false), true),
            (st(7, 0, true), st(9, 1, true), true),
            (st(7, 0, true), st(9, 1, false), true),
            (st(7, 0, false), st(7, 0, false), true),
            // Claimed during a loss, before the re-grant: never a live claim.
            (st(7, 0, false), st(9, 1, true), true),
        ];
        for (claimed, now, want) in cases {
            assert_eq!(lease_lost(claimed, now), want, "{claimed:?} -> {now:?}");
        }
    }

    #[test]
    fn the_swap_needs_the_job_running_under_our_lease() {
        let t = taken();
        let mut failed = t.clone();
        failed.state = JobState::Failed;
        failed.error = Some("tablet lost its health".into());
        let mut other = t.clone();
        other.owner_lease = Some(8);
        // (what, job, lease, stopped here, refusal contains)
        type Row<'a> = (&'a str, Option<&'a Job>, i64, bool, Option<&'a str>);
        let cases: Vec<Row> = vec![
            ("held", Some(&t), 7, false, None),
            ("stopped here", Some(&t), 7, true, Some("stopped")),
            ("reported FAILED", Some(&failed), 7, false, Some("Failed")),
            (
                "reported FAILED, stopped",
                Some(&failed),
                7,
                true,
                Some("stopped"),
            ),
            ("another lease", Some(&other), 7, false, Some("lease 8")),
            ("our lease re-granted", Some(&t), 9, false, Some("lease 7")),
            ("gone", None, 7, false, Some("gone")),
        ];
        for (what, job, lease, stopped, want) in cases {
            let got = swap_refusal(job, lease, stopped);
            match want {
                None => assert_eq!(got, None, "{what}"),
                Some(frag) => {
                    let why = got.unwrap_or_else(|| panic!("{what}: not refused"));
                    assert!(why.contains(frag), "{what}: {why}");
                }
            }
        }
        let why = swap_refusal(Some(&failed), 7, false).unwrap();
        assert!(why.contains("tablet lost its health"), "{why}");
    }

    #[test]
    fn orphans_are_running_jobs_of_this_tablet_under_another_lease() {
        let me = alias("zone1-101");
        let t = taken(); // running under lease 7 on zone1-101
        let with = |f: &dyn Fn(&mut Job)| {
            let mut j = t.clone();
            f(&mut j);
            j
        };
        // (what, job, current lease, busy job, orphan)
        let cases: Vec<(&str, Job, i64, Option<&str>, bool)> = vec![
            ("our current lease", t.clone(), 7, None, false),
            ("an older lease", t.clone(), 9, None, true),
            (
                "an older lease, but we run it",
                t.clone(),
                9,
                Some(t.id.as_str()),
                false,
            ),
            (
                "an older lease, we run another",
                t.clone(),
                9,
                Some("other"),
                true,
            ),
            (
                "no lease recorded",
                with(&|j| j.owner_lease = None),
                9,
                None,
                true,
            ),
            (
                "pending",
                with(&|j| j.state = JobState::Pending),
                9,
                None,
                false,
            ),
            (
                "final",
                with(&|j| j.state = JobState::Failed),
                9,
                None,
                false,
            ),
            (
                "another tablet's",
                with(&|j| j.tablet_alias = alias("zone1-102")),
                9,
                None,
                false,
            ),
        ];
        for (what, job, lease, busy, want) in cases {
            assert_eq!(is_orphan(&job, &me, lease, busy), want, "{what}");
        }
    }

    #[tokio::test]
    async fn the_watch_stops_the_job_when_the_lease_is_lost() {
        let st = |id, generation, alive| LeaseState {
            id,
            generation,
            alive,
        };
        let (tx, rx) = watch::channel(st(7, 0, true));
        let parent = CancellationToken::new();
        let run = JobRun::new("j", st(7, 0, true), &parent);
        let w = tokio::spawn(watch_lease(run.clone(), rx));
        tokio::task::yield_now().await;
        assert!(!run.stopped());
        tx.send_modify(|s| s.alive = false);
        tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        assert!(run.stopped());
        assert_eq!(run.stop_reason().as_deref(), Some(LEASE_LOST));
        // A later stop keeps the first reason; the agent's shutdown is no reason.
        run.stop("other");
        assert_eq!(run.stop_reason().as_deref(), Some(LEASE_LOST));
        let run2 = JobRun::new("k", st(7, 0, true), &parent);
        parent.cancel();
        assert!(run2.stopped());
        assert_eq!(run2.stop_reason(), None);
    }
}

#[cfg(test)]
mod stale_tests {
    use chrono::Duration;

    use super::*;
    use cairn_topo::JobKind;

    #[test]
    fn a_pending_job_older_than_its_timeout_is_not_started() {
        let alias = "zone1-101".parse().unwrap();
        let now = Utc::now();
        let cases = [
            (None, 10_000, false),
            (Some(60), 0, false),
            (Some(60), 59, false),
            (Some(60), 60, false),
            (Some(60), 61, true),
            (Some(0), 1, true),
            (Some(60), -30, false), // created "in the future" (clock skew)
            (Some(86_400), 3_600, false),
        ];
        for (timeout, age, stale) in cases {
            let mut j = Job::pending(JobKind::Backup, "ks", "0", &alias);
            j.pending_timeout_seconds = timeout;
            j.created_at = now - Duration::seconds(age);
            let got = stale_pending_reason(&j, now);
            assert_eq!(
                got.is_some(),
                stale,
                "timeout {timeout:?} age {age}s: {got:?}"
            );
            if let Some(why) = got {
                assert!(why.contains(&format!("PENDING for {age}s")), "{why}");
                assert!(why.contains("pending timeout"), "{why}");
            }
        }
    }
}
