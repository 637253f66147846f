//! Jobs an agent must not run, against real etcd and MariaDB: a PENDING job older
//! than the pending timeout it carries is failed with its reason, never started late.

use std::time::Duration;

use cairn::testkit::{wait_for, Cluster};
use cairn_topo::{Job, JobKind, JobState, TabletAlias};

const T: Duration = Duration::from_secs(90);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// Backups of `stale/0` in storage.
fn stored_backups(c: &Cluster) -> Vec<String> {
    match std::fs::read_dir(c.backup_root().join("stale").join("0")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_job_older_than_its_timeout_is_failed_not_run() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(301, "stale", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        let alias: TabletAlias = spec.alias().parse().unwrap();

        // A backup job created an hour ago with a one-minute pending timeout (as if
        // written while the agent was down and nobody failed it since).
        let mut old = Job::pending(JobKind::Backup, "stale", "0", &alias);
        old.created_at = chrono::Utc::now() - chrono::Duration::hours(1);
        old.pending_timeout_seconds = Some(60);
        let key = topo.keys().job(&old.id);
        topo.create(&key, &old, None).await.unwrap();

        let failed = wait_for("the stale job to be failed", T, || async {
            let j = topo.get::<Job>(&key).await?.map(|v| v.value);
            Ok(j.filter(|j| j.state.is_final()))
        })
        .await
        .unwrap();
        assert_eq!(
            failed.state,
            JobState::Failed,
            "{failed:?}\n{}",
            t.log_tail(20)
        );
        let why = failed.error.clone().unwrap_or_default();
        assert!(
            why.contains("longer than its pending timeout of 60s"),
            "{why}"
        );
        assert_eq!(failed.started_at, None, "the stale job was started");
        assert_eq!(failed.owner_lease, None, "the stale job was taken");
        assert_eq!(failed.backup_name, None);
        assert!(stored_backups(&c).is_empty(), "{:?}", stored_backups(&c));

        // The same job, fresh, runs: the agent does take jobs (so the refusal above
        // is the age check, not an idle agent).
        let mut fresh = Job::pending(JobKind::Backup, "stale", "0", &alias);
        fresh.pending_timeout_seconds = Some(60);
        let fresh_key = topo.keys().job(&fresh.id);
        topo.create(&fresh_key, &fresh, None).await.unwrap();
        let done = wait_for("the fresh job to finish", T, || async {
            let j = topo.get::<Job>(&fresh_key).await?.map(|v| v.value);
            Ok(j.filter(|j| j.state.is_final()))
        })
        .await
        .unwrap();
        assert_eq!(
            done.state,
            JobState::Succeeded,
            "{done:?}\n{}",
            t.log_tail(20)
        );
        assert_eq!(stored_backups(&c).len(), 1, "{:?}", stored_backups(&c));

        // The stale job stays failed, never run late.
        let again = topo.get::<Job>(&key).await.unwrap().unwrap().value;
        assert_eq!(again.state, JobState::Failed);
        assert_eq!(again.started_at, None);
    })
    .await
    .expect("test timed out");
}
