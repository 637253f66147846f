//! Restores that always end well (issue 8, items 3, 5 and 13), against real etcd and
//! MariaDB: the agent is killed (failpoints) at every step of an in-place restore and
//! of a restore at start, restarted WITHOUT `--restore-from-backup`, and must serve
//! either its old data or the restored data at the right GTID position (rows counted,
//! replication checked), never an empty data dir; a tablet with a restore job in
//! progress cannot become primary; a backup of another shard is refused unless
//! `--allow-other-shard`.

use std::path::Path;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess, TabletSpec};
use cairn_topo::Topo;

const T: Duration = Duration::from_secs(120);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1) of `ks/0` with 2000 rows in `app.t`.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    let specs = [
        c.tablet(uid, "ks", "0").unwrap(),
        c.tablet(uid + 1, "ks", "0").unwrap(),
    ];
    let mut p = c.spawn_tablet(&specs[0]).unwrap();
    let mut r = c.spawn_tablet(&specs[1]).unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &specs[0].alias()])
        .unwrap();
    p.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO app.t SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_2000",
    )
    .unwrap();
    r.wait_rows(2000, T).await.unwrap();
    c.wait_replicating(&specs[1].alias(), T).await.unwrap();
    (p, r)
}

/// Kills the mysqld a dead agent left behind (checking the pid really is that
/// tablet's mysqld), as a machine crash would.
fn kill_orphan_mysqld(t: &TabletProcess) {
    let Some(pid) = t.mysqld_pid() else { return };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let dir = t.spec.dir.display().to_string();
    if String::from_utf8_lossy(&cmdline).contains(&dir) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Nothing of a restore is left in the tablet dir.
fn assert_clean(spec: &TabletSpec, log: &str) {
    for left in [
        "restore_in_progress",
        "data.before-restore",
        "data.restore-staging",
    ] {
        assert!(
            !spec.dir.join(left).exists(),
            "{left} left behind in {}\n{log}",
            spec.dir.display()
        );
    }
}

/// Waits for the agent to die at `failpoint`; `machine_crash`: its mysqld dies too
/// (otherwise it is left running, as after a `kill -9` of the agent alone).
async fn wait_died_at(t: &mut TabletProcess, failpoint: &str, machine_crash: bool) {
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
    if machine_crash {
        kill_orphan_mysqld(t);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_restore_killed_at_every_step_is_recovered_without_flags() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, mut r) = shard(&c, &topo, 700).await;
        let alias = r.spec.alias();
        let name = c.cli_ok(&["backup", &alias]).unwrap().trim().to_string();
        assert!(!name.is_empty());
        c.wait_replicating(&alias, T).await.unwrap();
        let spec = r.spec.clone();
        let mut want = 2000;
        for failpoint in [
            "restore-before-first-rename",
            "restore-after-first-rename",
            "restore-after-second-rename",
            "restore-after-swap-before-position",
            "restore-after-position",
            "restore-before-old-data-removed",
        ] {
            // A row newer than the backup: the old data has it; restored data gets it
            // only by replicating from the backup's position.
            want += 1;
            p.sql(&format!(
                "INSERT INTO app.t VALUES ({}, 'after the backup')",
                10_000 + want
            ))
            .unwrap();
            r.wait_rows(want, T).await.unwrap();
            // Restart the agent armed with the failpoint, then restore in place.
            r.terminate(T).unwrap();
            drop(r);
            let mut armed = spec.clone();
            armed.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
            r = c.spawn_tablet(&armed).unwrap();
            r.wait_healthy(&topo, T).await.unwrap();
            c.wait_replicating(&alias, T).await.unwrap();
            c.cli_ok(&["restore-from-backup", &alias, "--no-wait"])
                .unwrap();
            let stops_before = r.log().matches("stopping the mysqld left running").count();
            wait_died_at(&mut r, failpoint, false).await;

            // Restarted without --restore-from-backup and without the failpoint. (Not
            // dropped: dropping a TabletProcess kills its mysqld, which a killed agent
            // leaves running.)
            std::mem::forget(r);
            r = c.spawn_tablet(&spec).unwrap();
            r.wait_healthy(&topo, T)
                .await
                .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
            c.wait_replicating(&alias, T).await.unwrap();
            r.wait_rows(want, T).await.unwrap();
            assert_eq!(r.rows().unwrap(), p.rows().unwrap(), "{failpoint}");
            assert_clean(&spec, &r.log_tail(30));
            // Killed while mysqld ran on the restored data: that mysqld was stopped
            // before the data under it moved.
            if matches!(
                failpoint,
                "restore-after-swap-before-position" | "restore-after-position"
            ) {
                let stops = r.log().matches("stopping the mysqld left running").count();
                assert_eq!(stops, stops_before + 1, "{failpoint}: {}", r.log_tail(30));
            }
            // And it keeps replicating: a new row arrives.
            want += 1;
            p.sql(&format!(
                "INSERT INTO app.t VALUES ({}, 'later')",
                10_000 + want
            ))
            .unwrap();
            r.wait_rows(want, T).await.unwrap();
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_at_start_killed_at_every_step_is_finished_without_flags() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 720).await;
        c.cli_ok(&["backup", &r.spec.alias()]).unwrap();
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        p.sql("INSERT INTO app.t VALUES (20001, 'after the backup')")
            .unwrap();
        for (i, failpoint) in [
            "restore-at-start-before-rename",
            "restore-at-start-after-rename",
            "restore-at-start-before-position",
            "restore-at-start-after-position",
        ]
        .into_iter()
        .enumerate()
        {
            let mut spec = c.tablet(730 + i as u32, "ks", "0").unwrap();
            spec.extra = vec!["--restore-from-backup".into()];
            spec.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
            let mut t = c.spawn_tablet(&spec).unwrap();
            let machine_crash = i % 2 == 0;
            wait_died_at(&mut t, failpoint, machine_crash).await;
            // Restarted WITHOUT --restore-from-backup: the restore is finished, not an
            // empty data dir initialised.
            spec.extra = vec![];
            spec.env = vec![];
            if machine_crash {
                drop(t);
            } else {
                std::mem::forget(t);
            }
            let mut t = c.spawn_tablet(&spec).unwrap();
            t.wait_healthy(&topo, T)
                .await
                .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
            if failpoint != "restore-at-start-after-position" {
                assert!(
                    t.log().contains("interrupted; redoing"),
                    "{failpoint}: {}",
                    t.log_tail(30)
                );
            }
            c.wait_replicating(&spec.alias(), T).await.unwrap();
            // 2000 rows from the backup, the newer one only by replicating from the
            // backup's position.
            t.wait_rows(2001, T).await.unwrap();
            assert_clean(&spec, &t.log_tail(30));
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restoring_tablet_cannot_become_primary_and_other_shards_backups_are_refused() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 740).await;
        let alias = r.spec.alias();
        // xtrabackup: its restores landed 0755 before.
        let name = c
            .cli_ok(&["backup", &alias, "--backup-engine", "xtrabackup"])
            .unwrap()
            .trim()
            .to_string();
        c.wait_replicating(&alias, T).await.unwrap();

        // A restore job in progress on the replica: init-shard-primary refuses it.
        let tablet_alias: cairn_topo::TabletAlias = alias.parse().unwrap();
        let job = serde_json::json!({
            "id": "restore-in-progress",
            "kind": "RESTORE",
            "keyspace": "ks",
            "shard": "0",
            "tablet_alias": serde_json::to_value(&tablet_alias).unwrap(),
            "state": "RUNNING",
            "created_at": chrono::Utc::now(),
        });
        topo.put(&topo.keys().job("restore-in-progress"), &job, None)
            .await
            .unwrap();
        let out = c.cli(&["init-shard-primary", "ks/0", &alias]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in progress"), "{err}");
        let shard = topo.get_shard("ks", "0").await.unwrap().unwrap();
        assert_eq!(
            shard.value.primary_alias.map(|a| a.to_string()),
            Some(p.spec.alias())
        );
        topo.delete(&topo.keys().job("restore-in-progress"), None)
            .await
            .unwrap();

        // The primary is never restored over, in place or at start.
        let out = c.cli(&["restore-from-backup", &p.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(p.rows().unwrap(), 2000);

        // The shard's backup copied under another shard: refused before anything is
        // touched, then restored with --allow-other-shard.
        let from = c.backup_root().join("ks").join("0").join(&name);
        let to = c.backup_root().join("ks").join("1").join(&name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
        let mut spec = c.tablet(750, "ks", "1").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut t = c.spawn_tablet(&spec).unwrap();
        let st = t.wait_exit(T).await.unwrap();
        assert_eq!(st.code(), Some(1), "{}", t.log_tail(20));
        assert!(
            t.log().contains("--allow-other-shard"),
            "{}",
            t.log_tail(20)
        );
        assert!(!spec.dir.join("restore_in_progress").exists());
        assert!(!spec.dir.join("data").join("app").exists());
        spec.extra.push("--allow-other-shard".into());
        drop(t);
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        t.wait_rows(2000, T).await.unwrap();
        // Restored data directories are owner-only, whatever the engine.
        use std::os::unix::fs::PermissionsExt;
        for d in ["data", "data/app", "data/mysql"] {
            let mode = std::fs::metadata(spec.dir.join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{d} mode {mode:o}");
        }

        // The primary lost its data and restarts with --restore-from-backup: refused
        // (the Shard record names it primary), nothing initialised.
        let mut p = p;
        p.terminate(T).unwrap();
        let mut pspec = p.spec.clone();
        drop(p);
        std::fs::rename(pspec.dir.join("data"), pspec.dir.join("data.lost")).unwrap();
        pspec.extra = vec!["--restore-from-backup".into()];
        let mut pt = c.spawn_tablet(&pspec).unwrap();
        let st = pt.wait_exit(T).await.unwrap();
        assert_eq!(st.code(), Some(1), "{}", pt.log_tail(20));
        assert!(
            pt.log().contains("never restored over"),
            "{}",
            pt.log_tail(20)
        );
        assert!(!pspec.dir.join("data").exists());
    })
    .await
    .expect("test timed out");
}

// --- kill -9 of the agent during a restore to a point (issue 10) ---

/// The tablet's type as get-tablets shows it.
fn tablet_type(c: &Cluster, alias: &str) -> Option<String> {
    let out = c.cli_ok(&["get-tablets", "--json"]).ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
    rows.iter()
        .find(|r| r["alias"] == alias)
        .and_then(|r| r["type"].as_str().map(String::from))
}

/// Waits until the tablet is registered DRAINED and `also` holds; fails if
/// it exits.
async fn wait_drained(c: &Cluster, t: &mut TabletProcess, also: impl Fn(&TabletProcess) -> bool) {
    let alias = t.spec.alias();
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(st) = t.try_exit() {
            panic!("{alias} exited ({st}):\n{}", t.log_tail(40));
        }
        if tablet_type(c, &alias).as_deref() == Some("DRAINED") && also(t) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{alias} not DRAINED:\n{}",
            t.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A new tablet restoring to a position through two incrementals is killed
/// (abort, as abrupt as kill -9; its mysqld left running) after the first
/// incremental's binlogs were applied. It never serves the half-applied data;
/// restarted with the same command line it restores again from the full backup
/// and ends DRAINED, replication stopped, with exactly the target's rows (a
/// transaction applied twice would fail on the primary key).
#[tokio::test(flavor = "multi_thread")]
async fn restore_to_a_point_killed_while_applying_is_redone_by_the_same_command_line() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 760).await;
        let ralias = r.spec.alias();
        c.cli_ok(&["backup", &ralias]).unwrap();
        let mut id = 3000;
        for _ in 0..2 {
            for _ in 0..3 {
                id += 1;
                p.sql(&format!("INSERT INTO app.t VALUES ({id}, 'inc')"))
                    .unwrap();
            }
            r.wait_rows(id - 1000, T).await.unwrap();
            let name = c
                .cli_ok(&["backup", &ralias, "--incremental-from-pos", "auto"])
                .unwrap();
            assert!(!name.trim().is_empty());
        }
        let target = format!(
            "MariaDB/{}",
            p.sql("SELECT @@gtid_binlog_pos").unwrap().trim()
        );
        // After the target, and in no backup: never restored.
        p.sql("INSERT INTO app.t VALUES (9999, 'after')").unwrap();

        let failpoint = "pitr-after-apply-step";
        let mut spec = c.tablet(770, "ks", "0").unwrap();
        spec.extra = vec![
            "--restore-from-backup".into(),
            "--restore-to-pos".into(),
            target.clone(),
        ];
        spec.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
        let mut t = c.spawn_tablet(&spec).unwrap();
        wait_died_at(&mut t, failpoint, false).await;
        // Killed half way: the first incremental applied, not the second; held.
        assert_eq!(t.rows().unwrap(), 2003, "{}", t.log_tail(30));
        let hold = std::fs::read_to_string(spec.dir.join("point_in_time_restore")).unwrap();
        assert!(hold.contains("applying"), "{hold}");
        let alias = spec.alias();
        assert_ne!(tablet_type(&c, &alias).as_deref(), Some("REPLICA"));

        // The same command line, without the failpoint. (Not dropped: dropping
        // kills its mysqld, which a killed agent leaves running.)
        std::mem::forget(t);
        spec.env = vec![];
        let t0 = std::time::Instant::now();
        let mut t = c.spawn_tablet(&spec).unwrap();
        wait_drained(&c, &mut t, |t| {
            t.log().contains("point-in-time restore done")
        })
        .await;
        println!("redone in {:?}", t0.elapsed());
        let log = t.log();
        assert!(
            log.contains("interrupted while its binlogs were applied; redoing it"),
            "{}",
            t.log_tail(40)
        );
        assert_eq!(t.rows().unwrap(), 2006);
        assert_eq!(t.sql("SELECT MAX(id) FROM app.t").unwrap().trim(), "3006");
        let pos = t.sql("SELECT @@gtid_slave_pos").unwrap();
        assert_eq!(format!("MariaDB/{}", pos.trim()), target);
        let st = t.sql("SHOW SLAVE STATUS\\G").unwrap();
        assert!(!st.contains(": Yes"), "replicates:\n{st}");
        let hold = std::fs::read_to_string(spec.dir.join("point_in_time_restore")).unwrap();
        assert!(hold.contains("done"), "{hold}");
        assert!(!spec.dir.join("pitr-binlogs").exists());
        assert_clean(&spec, &t.log_tail(30));
        // Restarted once more, it stays held on the restored data.
        let redone = t.log().matches("redoing").count();
        t.terminate(T).unwrap();
        drop(t);
        let mut t = c.spawn_tablet(&spec).unwrap();
        wait_drained(&c, &mut t, |t| t.sql("SELECT COUNT(*) FROM app.t").is_ok()).await;
        assert_eq!(t.rows().unwrap(), 2006);
        assert_eq!(
            t.log().matches("redoing").count(),
            redone,
            "{}",
            t.log_tail(30)
        );
        drop(r);
    })
    .await
    .expect("test timed out");
}

/// The tablet's row in get-tablets --json.
fn tablet_row(c: &Cluster, alias: &str) -> serde_json::Value {
    let out = c.cli_ok(&["get-tablets", "--json"]).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter()
        .find(|r| r["alias"] == alias)
        .unwrap_or_default()
}

/// An in-place restore job to a position (full backup and two incrementals) on a
/// running replica, whose agent is killed (abort; its mysqld left running) after
/// the first incremental's binlogs were applied. Restarted with its ordinary
/// command line (no restore flags), the agent redoes the restore from the full
/// backup to the hold file's target: DRAINED, replication stopped, exactly the
/// target's rows (none after, none missing; a transaction applied twice would
/// fail on the primary key), never RESTORE; the job says what happened. Then an
/// unreadable hold keeps the tablet held, with a clear last_error.
#[tokio::test(flavor = "multi_thread")]
async fn inplace_restore_to_a_point_killed_while_applying_is_redone_at_the_next_start() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let t0 = std::time::Instant::now();
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, mut r) = shard(&c, &topo, 780).await;
        let alias = r.spec.alias();
        c.cli_ok(&["backup", &alias]).unwrap();
        let mut id = 3000;
        for _ in 0..2 {
            for _ in 0..3 {
                id += 1;
                p.sql(&format!("INSERT INTO app.t VALUES ({id}, 'inc')"))
                    .unwrap();
            }
            r.wait_rows(id - 1000, T).await.unwrap();
            c.cli_ok(&["backup", &alias, "--incremental-from-pos", "auto"])
                .unwrap();
        }
        let target = format!(
            "MariaDB/{}",
            p.sql("SELECT @@gtid_binlog_pos").unwrap().trim()
        );
        p.sql("INSERT INTO app.t VALUES (9999, 'after')").unwrap();
        r.wait_rows(2007, T).await.unwrap();

        // The replica's agent, armed, restores in place and dies mid-apply.
        let failpoint = "pitr-after-apply-step";
        let spec = r.spec.clone();
        r.terminate(T).unwrap();
        drop(r);
        let mut armed = spec.clone();
        armed.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
        let mut r = c.spawn_tablet(&armed).unwrap();
        r.wait_healthy(&topo, T).await.unwrap();
        c.wait_replicating(&alias, T).await.unwrap();
        c.cli_ok(&[
            "restore-from-backup",
            &alias,
            "--restore-to-pos",
            &target,
            "--no-wait",
        ])
        .unwrap();
        wait_died_at(&mut r, failpoint, false).await;
        assert_eq!(r.rows().unwrap(), 2003, "{}", r.log_tail(30));
        let hold = std::fs::read_to_string(spec.dir.join("point_in_time_restore")).unwrap();
        assert!(
            hold.contains("applying") && hold.contains("\"job\""),
            "{hold}"
        );

        // Its ordinary command line, no failpoint. (Not dropped: that would kill
        // the mysqld a killed agent leaves running.)
        std::mem::forget(r);
        let redo = std::time::Instant::now();
        let mut r = c.spawn_tablet(&spec).unwrap();
        wait_drained(&c, &mut r, |t| {
            t.log().contains("point-in-time restore done")
        })
        .await;
        println!("redone in {:?}", redo.elapsed());
        let log = r.log();
        assert!(
            log.contains("interrupted while its binlogs were applied; redoing it"),
            "{}",
            r.log_tail(40)
        );
        assert!(!log.contains("Duplicate entry"), "{}", r.log_tail(40));
        assert_eq!(r.rows().unwrap(), 2006);
        assert_eq!(r.sql("SELECT MAX(id) FROM app.t").unwrap().trim(), "3006");
        let pos = r.sql("SELECT @@gtid_slave_pos").unwrap();
        assert_eq!(format!("MariaDB/{}", pos.trim()), target);
        let st = r.sql("SHOW SLAVE STATUS\\G").unwrap();
        assert!(!st.contains(": Yes"), "replicates:\n{st}");
        let hold = std::fs::read_to_string(spec.dir.join("point_in_time_restore")).unwrap();
        assert!(hold.contains("\"done\""), "{hold}");
        assert!(!spec.dir.join("pitr-binlogs").exists());
        assert_clean(&spec, &r.log_tail(30));
        // One truthful record: the job failed (its agent died), saying it was
        // redone at start and where the tablet is now.
        let job = wait_for("the job records the redo", T, || async {
            Ok(topo
                .list_jobs()
                .await?
                .into_iter()
                .map(|j| j.value)
                .find(|j| j.kind == cairn_topo::JobKind::Restore)
                .filter(|j| j.state == cairn_topo::JobState::Failed)
                .filter(|j| {
                    j.error
                        .as_deref()
                        .is_some_and(|e| e.contains("the restore was redone at start"))
                }))
        })
        .await
        .unwrap();
        let reached = job.point_in_time.and_then(|p| p.restored_to);
        assert!(
            reached.as_deref().is_some_and(|t| t.starts_with(&target)),
            "{reached:?} {:?}",
            job.error
        );
        println!("the job says: {}", job.error.unwrap_or_default());
        // Stays DRAINED a while (the reconcile keeps it held), then: an
        // unreadable hold is never redone nor replicated from; it says why.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(tablet_type(&c, &alias).as_deref(), Some("DRAINED"));
        let redone = r.log().matches("redoing").count();
        r.terminate(T).unwrap();
        drop(r);
        std::fs::write(spec.dir.join("point_in_time_restore"), b"{\"tar").unwrap();
        let mut r = c.spawn_tablet(&spec).unwrap();
        wait_drained(&c, &mut r, |_| {
            tablet_row(&c, &alias)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("hold file is unreadable"))
        })
        .await;
        assert_eq!(r.rows().unwrap(), 2006);
        assert_eq!(
            r.log().matches("redoing").count(),
            redone,
            "{}",
            r.log_tail(30)
        );
        let st = r.sql("SHOW SLAVE STATUS\\G").unwrap();
        assert!(!st.contains(": Yes"), "replicates:\n{st}");
        println!("inplace redo test took {:?}", t0.elapsed());
        drop(p);
    })
    .await
    .expect("test timed out");
}
