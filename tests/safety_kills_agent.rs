//! kill -9 of the agent at each step of an xtrabackup backup (issue 8's fault
//! list), against real etcd and MariaDB: while mariabackup streams, after the
//! stream before the MANIFEST, after the MANIFEST before the job is finished and
//! catalogued. The restarted agent settles the job (FAILED, or SUCCEEDED with the
//! backup catalogued when it is complete), the tool does not outlive the agent,
//! the tablet serves and replicates with every row, an incomplete backup is never
//! catalogued or restored, a complete one seeds a tablet. A failpoint abort
//! (`CAIRN_FAILPOINT`) is as abrupt as `kill -9`.

mod kills;

use std::path::Path;
use std::time::Duration;

use cairn::testkit::{wait_for, TabletProcess};
use cairn_topo::JobState;
use kills::*;

/// Whether a backup tool runs against the tablet's mysqld (its socket is on the
/// tool's command line).
fn backup_tool_running(tablet_dir: &Path) -> bool {
    let socket = format!("--socket={}", tablet_dir.join("mysql.sock").display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let tool = args.first().is_some_and(|a| {
                let a = String::from_utf8_lossy(a);
                a.ends_with("mariabackup") || a.ends_with("mariadb-backup")
            });
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            tool && !stat.contains(") Z ") && args.contains(&socket.as_bytes())
        })
}

/// Waits for the agent to die at `failpoint`.
async fn wait_died_at(t: &mut TabletProcess, failpoint: &str) {
    let st = t
        .wait_exit(T)
        .await
        .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
    assert!(!st.success(), "{failpoint}: {st}");
    assert!(
        t.log().contains(&format!("failpoint {failpoint}")),
        "did not die at {failpoint}:\n{}",
        t.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_at_each_step_of_an_xtrabackup_backup() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, mut r) = shard(&c, &topo, 800).await;
        let spec = r.spec.clone();
        let alias = spec.alias();
        let mut want = 2000;
        let mut incomplete = Vec::new();
        let mut complete = None;
        for failpoint in [
            "xtrabackup-while-streaming",
            "xtrabackup-after-stream",
            "xtrabackup-after-manifest",
        ] {
            r.terminate(T).unwrap();
            drop(r);
            let mut armed = spec.clone();
            armed.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
            r = c.spawn_tablet(&armed).unwrap();
            r.wait_healthy(&topo, T).await.unwrap();
            wait_replicating(&c, &alias).await;
            // Backup names have one-second resolution: the previous step's backup
            // (left incomplete in storage) must not share this one's name.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let id = c
                .cli_ok(&[
                    "backup",
                    &alias,
                    "--backup-engine",
                    "xtrabackup",
                    "--no-wait",
                ])
                .unwrap()
                .trim()
                .to_string();
            wait_died_at(&mut r, failpoint).await;
            // (Not dropped: that would kill the mysqld a killed agent leaves running.)
            std::mem::forget(r);

            // What the operator sees while the agent is down: the job RUNNING and
            // naming its backup; the backup incomplete, or complete but not
            // catalogued; the tool gone with the agent.
            let left = job(&topo, &id).await;
            assert_eq!(left.state, JobState::Running, "{failpoint}: {left:?}");
            let name = left.backup_name.clone().expect("the job names its backup");
            let stored =
                listed(&c, &name).unwrap_or_else(|| panic!("{failpoint}: {name} not in storage"));
            let after_manifest = failpoint == "xtrabackup-after-manifest";
            assert_eq!(stored["complete"], after_manifest, "{failpoint}: {stored}");
            assert!(!records(&topo).await.contains(&name), "{failpoint}");
            wait_for("mariabackup to die with the agent", T, || async {
                Ok((!backup_tool_running(&spec.dir)).then_some(()))
            })
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: {e}"));

            // Restarted as it was, without the failpoint.
            r = c.spawn_tablet(&spec).unwrap();
            r.wait_healthy(&topo, T)
                .await
                .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
            wait_replicating(&c, &alias).await;
            let done = wait_for("the job to be settled", T, || async {
                Ok(Some(job(&topo, &id).await).filter(|j| j.state.is_final()))
            })
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: {e}\n{}", r.log_tail(20)));
            let why = done.error.clone().unwrap_or_default();
            if after_manifest {
                assert_eq!(done.state, JobState::Succeeded, "{failpoint}: {done:?}");
                assert!(records(&topo).await.contains(&name), "{failpoint}");
                assert_eq!(latest(&topo).await.as_deref(), Some(name.as_str()));
                complete = Some(name);
            } else {
                assert_eq!(done.state, JobState::Failed, "{failpoint}: {done:?}");
                assert!(
                    why.contains("restarted") && why.contains("incomplete"),
                    "{why}"
                );
                let stored = listed(&c, &name);
                assert!(
                    stored.as_ref().is_none_or(|b| b["complete"] == false),
                    "{failpoint}: {stored:?}"
                );
                assert!(!records(&topo).await.contains(&name), "{failpoint}");
                incomplete.push(name);
            }
            // Every row, and replication goes on.
            wait_rows(&r, want).await;
            assert_eq!(rows(&r), rows(&p), "{failpoint}");
            want += 1;
            p.sql(&format!(
                "INSERT INTO app.t VALUES ({}, 'later')",
                10_000 + want
            ))
            .unwrap();
            wait_rows(&r, want).await;
        }

        // The complete backup seeds a new tablet (every row, replicating); the
        // incomplete ones were never catalogued, so nothing restores them.
        let complete = complete.unwrap();
        let catalog = records(&topo).await;
        assert_eq!(catalog, [complete.clone()].into(), "{incomplete:?}");
        let mut seed_spec = c.tablet(802, "ks", "0").unwrap();
        seed_spec.extra = vec!["--restore-from-backup".into()];
        let mut seed = c.spawn_tablet(&seed_spec).unwrap();
        seed.wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", seed.log_tail(30)));
        assert!(seed.log().contains(&complete), "{}", seed.log_tail(30));
        wait_replicating(&c, &seed_spec.alias()).await;
        wait_rows(&seed, want).await;
        for name in &incomplete {
            assert!(!seed.log().contains(name.as_str()), "restored from {name}");
        }
    })
    .await
    .expect("test timed out");
}
