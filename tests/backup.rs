//! Backups and restores against real etcd, MariaDB and mariabackup: each engine,
//! seeding new tablets, waiting for a seed, failures that must lose nothing, and the
//! backup admin commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess, TabletSpec};
use cairn_topo::{TabletAlias, TabletType, Topo};

const T: Duration = Duration::from_secs(120);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1) of `ks/0` with a table and some rows.
async fn shard(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    replica_env: &[(&str, &str)],
) -> (TabletProcess, TabletProcess) {
    let mut specs = [
        c.tablet(uid, "ks", "0").unwrap(),
        c.tablet(uid + 1, "ks", "0").unwrap(),
    ];
    specs[1].env = replica_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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

fn list_backups(c: &Cluster, extra: &[&str]) -> Vec<serde_json::Value> {
    let root = c.backup_root().display().to_string();
    let mut args = vec![
        "list-backups",
        "ks/0",
        "--json",
        "--file-backup-storage-root",
        &root,
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&c.cli_ok(&args).unwrap()).unwrap()
}

fn backup_dir(c: &Cluster, name: &str) -> PathBuf {
    c.backup_root().join("ks").join("0").join(name)
}

/// Seeds a new tablet from the shard's backups and checks it caught up.
async fn seed_tablet(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    extra: &[&str],
    rows: u64,
) -> TabletProcess {
    let mut spec: TabletSpec = c.tablet(uid, "ks", "0").unwrap();
    spec.extra = ["--restore-from-backup"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    let mut t = c.spawn_tablet(&spec).unwrap();
    t.wait_healthy(topo, T).await.unwrap();
    t.wait_rows(rows, T).await.unwrap();
    t
}

async fn backup_then_seed(engine: &str, restoring_flag_engine: &str) {
    let c = cluster().await;
    let topo = c.topo().await.unwrap();
    let (p, r) = shard(&c, &topo, 100, &[]).await;
    let out = c
        .cli(&["backup", &r.spec.alias(), "--backup-engine", engine])
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.log_tail(30)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(name.ends_with(&r.spec.alias()), "{name}");

    // The backed-up replica is a replicating REPLICA again.
    c.wait_replicating(&r.spec.alias(), T).await.unwrap();
    p.sql("INSERT INTO app.t VALUES (5001, 'after the backup')")
        .unwrap();
    r.wait_rows(2001, T).await.unwrap();

    let listed = list_backups(&c, &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(listed[0]["engine"], engine);
    assert_eq!(listed[0]["complete"], true);
    for key in [
        "name",
        "keyspace",
        "shard",
        "tablet_alias",
        "engine",
        "backup_time",
        "finished_time",
        "position",
        "size_bytes",
        "complete",
    ] {
        assert!(listed[0].get(key).is_some(), "missing {key}");
    }
    assert!(listed[0]["position"]
        .as_str()
        .unwrap()
        .starts_with("MariaDB/0-100-"));
    let shard = topo.get_shard("ks", "0").await.unwrap().unwrap();
    assert_eq!(shard.value.latest_backup.as_deref(), Some(name.as_str()));
    let record = topo.list_backup_records("ks", "0").await.unwrap();
    assert_eq!(record.len(), 1);

    // A new tablet restores it (with the other engine as its own default: the
    // MANIFEST decides) and catches up with rows written after the backup.
    let seeded = seed_tablet(
        &c,
        &topo,
        110,
        &["--backup-engine-implementation", restoring_flag_engine],
        2001,
    )
    .await;
    assert!(
        seeded.log().contains(&format!("backup={name}")) || seeded.log().contains(&name),
        "{}",
        seeded.log_tail(30)
    );
    p.sql("INSERT INTO app.t VALUES (5002, 'later still')")
        .unwrap();
    seeded.wait_rows(2002, T).await.unwrap();
    c.wait_replicating(&seeded.spec.alias(), T).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn builtin_backup_of_a_replica_seeds_a_new_tablet() {
    tokio::time::timeout(
        Duration::from_secs(300),
        backup_then_seed("builtin", "xtrabackup"),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn xtrabackup_backup_of_a_replica_seeds_a_new_tablet() {
    tokio::time::timeout(
        Duration::from_secs(300),
        backup_then_seed("xtrabackup", "builtin"),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_needs_allow_primary_and_list_remove_validate() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 200, &[]).await;
        let out = c.cli(&["backup", &p.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--allow-primary"), "{err}");
        // A job for a tablet whose agent is down fails after the pending timeout.
        let mut gone_spec = c.tablet(209, "ks", "0").unwrap();
        gone_spec.extra = vec![];
        let mut gone = c.spawn_tablet(&gone_spec).unwrap();
        gone.wait_healthy(&topo, T).await.unwrap();
        gone.kill9();
        let out = c
            .cli(&["backup", &gone_spec.alias(), "--pending-timeout", "2s"])
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("did not take the job"), "{err}");
        let jobs: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        assert!(jobs.iter().all(|j| j["state"] == "FAILED"), "{jobs:?}");
        drop(gone);
        assert!(
            list_backups(&c, &[]).is_empty(),
            "a refused backup wrote something"
        );

        let first = c
            .cli_ok(&[
                "backup",
                &p.spec.alias(),
                "--allow-primary",
                "--backup-engine",
                "xtrabackup",
            ])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await; // names have one-second resolution
        let second = c.cli_ok(&["backup", &r.spec.alias()]).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let third = c
            .cli_ok(&["backup-shard", "ks/0"])
            .unwrap_or_else(|e| panic!("{e}\n{}", r.log_tail(40)));
        let names: Vec<String> = [first, second, third]
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        // The primary is PRIMARY and writable again.
        assert_eq!(p.sql("SELECT @@read_only").unwrap().trim(), "0");
        let info = topo
            .get_tablet_info(&p.spec.alias().parse::<TabletAlias>().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.tablet.value.tablet_type, TabletType::Primary);
        // backup-shard picked the replica, never the primary.
        assert!(names[2].ends_with(&r.spec.alias()), "{names:?}");

        let listed: Vec<String> = list_backups(&c, &[])
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, names, "oldest first");
        let limited: Vec<String> = list_backups(&c, &["--limit", "2"])
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            limited,
            names[1..].to_vec(),
            "--limit keeps the newest, still oldest first"
        );

        let root = c.backup_root().display().to_string();
        let out = c
            .cli(&[
                "remove-backup",
                "ks/0",
                "2020-01-01.000000.zone1-0000000001",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
        for bad in ["..", "a/b", ""] {
            let out = c
                .cli(&[
                    "remove-backup",
                    "ks/0",
                    bad,
                    "--file-backup-storage-root",
                    &root,
                ])
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{bad:?}");
        }
        c.cli_ok(&[
            "remove-backup",
            "ks/0",
            &names[2],
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap();
        assert!(!backup_dir(&c, &names[2]).exists());
        let listed = list_backups(&c, &[]);
        assert_eq!(listed.len(), 2);
        let shard = topo.get_shard("ks", "0").await.unwrap().unwrap();
        assert_eq!(
            shard.value.latest_backup.as_deref(),
            Some(names[1].as_str())
        );
        assert_eq!(topo.list_backup_records("ks", "0").await.unwrap().len(), 2);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_failure_mid_backup_leaves_the_replica_serving() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // The replica's storage fails after 200 KiB.
        let (p, r) = shard(
            &c,
            &topo,
            300,
            &[("CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES", "204800")],
        )
        .await;
        let spec_r = r.spec.clone();

        let out = c.cli(&["backup", &spec_r.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("fail"), "{err}");
        assert!(
            list_backups(&c, &[]).iter().all(|b| b["complete"] == false),
            "no complete backup may be listed"
        );
        assert!(topo
            .list_backup_records("ks", "0")
            .await
            .unwrap()
            .is_empty());
        // Back to REPLICA, mysqld up, replicating.
        c.wait_replicating(&spec_r.alias(), T).await.unwrap();
        p.sql("INSERT INTO app.t VALUES (9001, 'x')").unwrap();
        r.wait_rows(2001, T).await.unwrap();
        let jobs: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["state"], "FAILED");
        assert!(jobs[0]["error"].as_str().unwrap().contains("fail"));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_builtin_backup_comes_back_and_the_backup_is_incomplete() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // A slow storage (100 KiB/s) so the copy is still going when the agent dies.
        let (_p, mut r) = shard(
            &c,
            &topo,
            400,
            &[("CAIRN_FAULT_STORAGE_BYTES_PER_SEC", "102400")],
        )
        .await;
        let spec_r = r.spec.clone();
        let out = c.cli(&["backup", &spec_r.alias(), "--no-wait"]).unwrap();
        assert!(out.status.success());
        // A second backup of a tablet that is already backing up is refused.
        let out = c.cli(&["backup", &spec_r.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already running"), "{err}");
        let alias: TabletAlias = spec_r.alias().parse().unwrap();
        wait_for("the replica in BACKUP with mysqld down", T, || async {
            let info = topo.get_tablet_info(&alias).await?.unwrap();
            let down = r
                .mysqld_pid()
                .is_none_or(|pid| unsafe { libc::kill(pid, 0) } != 0);
            Ok((info.tablet.value.tablet_type == TabletType::Backup && down).then_some(()))
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.kill9();
        let listed = list_backups(&c, &[]);
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0]["complete"], false,
            "a killed backup must not be complete"
        );

        let mut r = c.spawn_tablet(&spec_r).unwrap();
        r.wait_healthy(&topo, T).await.unwrap();
        c.wait_replicating(&spec_r.alias(), T).await.unwrap();
        let jobs: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        assert_eq!(jobs[0]["state"], "FAILED", "{jobs:?}");
        // Starting empty is refused while only an incomplete backup exists.
        let mut spec = c.tablet(402, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut t = c.spawn_tablet(&spec).unwrap();
        let st = t.wait_exit(T).await.unwrap();
        assert_eq!(st.code(), Some(1));
        assert!(t.log().contains("none is complete"), "{}", t.log_tail(10));
    })
    .await
    .expect("test timed out");
}

/// Flips one byte in the middle of the largest stored file of a backup.
fn corrupt_largest_file(dir: &Path) {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "MANIFEST")
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    files.sort();
    let (len, path) = files.pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(len / 2) as usize] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_backup_is_refused_and_the_tablet_keeps_its_data() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 500, &[]).await;
        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        corrupt_largest_file(&backup_dir(&c, &name));
        p.sql("INSERT INTO app.t VALUES (7001, 'newer than the backup')")
            .unwrap();
        r.wait_rows(2001, T).await.unwrap();

        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mismatch"), "{err}");
        // Still serving its own (newer) data, as a replicating REPLICA.
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        r.wait_rows(2001, T).await.unwrap();

        // A new tablet refuses the corrupt seed too, and leaves the marker so the next
        // start redoes the restore.
        let mut spec = c.tablet(510, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut t = c.spawn_tablet(&spec).unwrap();
        let st = t.wait_exit(T).await.unwrap();
        assert_eq!(st.code(), Some(1));
        assert!(t.log().contains("mismatch"), "{}", t.log_tail(10));
        assert!(spec.dir.join("restore_in_progress").exists());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_restore_and_kill_during_restore_is_redone() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 600, &[]).await;
        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        p.sql("INSERT INTO app.t VALUES (8001, 'after')").unwrap();
        r.wait_rows(2001, T).await.unwrap();
        let out = c.cli_ok(&["restore-from-backup", &r.spec.alias()]).unwrap();
        assert!(out.contains(&name), "{out}");
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        r.wait_rows(2001, T).await.unwrap();
        let out = c.cli(&["restore-from-backup", &p.spec.alias()]).unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "a primary must not be restored in place"
        );

        // kill -9 while a new tablet restores: the next start redoes it.
        let mut spec = c.tablet(610, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut t = c.spawn_tablet(&spec).unwrap();
        let marker = spec.dir.join("restore_in_progress");
        wait_for("the restore to begin", T, || async {
            Ok(marker.exists().then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(20)));
        t.kill9();
        if let Some(pid) = t.mysqld_pid() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert!(marker.exists());
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        assert!(
            t.log().contains("interrupted; redoing"),
            "{}",
            t.log_tail(20)
        );
        t.wait_rows(2001, T).await.unwrap();
        assert!(!marker.exists());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_tablets_restore_within_a_second_of_a_seed_backup() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // The first tablet of a new shard starts empty: no backup exists.
        let mut p_spec = c.tablet(700, "ks", "0").unwrap();
        p_spec.extra = vec!["--restore-from-backup".into()];
        let mut p = c.spawn_tablet(&p_spec).unwrap();
        p.wait_healthy(&topo, T).await.unwrap();
        assert!(p.log().contains("starting empty"), "{}", p.log_tail(10));
        let r_spec = c.tablet(701, "ks", "0").unwrap();
        let mut r = c.spawn_tablet(&r_spec).unwrap();
        r.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &p_spec.alias()]).unwrap();
        p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, 'x' FROM app.seq_1_to_100").unwrap();
        r.wait_rows(100, T).await.unwrap();

        let mut waiting = Vec::new();
        for uid in [710, 711] {
            let mut spec = c.tablet(uid, "ks", "0").unwrap();
            spec.extra = vec!["--restore-from-backup".into(), "--wait-for-backup-interval".into(), "1h".into()];
            waiting.push(c.spawn_tablet(&spec).unwrap());
        }
        for w in &waiting {
            wait_for("the tablet to wait", T, || async { Ok(w.log().contains("waiting for a backup").then_some(())) })
                .await
                .unwrap();
            let info = topo.get_tablet_info(&w.spec.alias().parse().unwrap()).await.unwrap().unwrap();
            assert_eq!(info.tablet.value.tablet_type, TabletType::Restore);
        }
        let name = c.cli_ok(&["backup", &r_spec.alias()]).unwrap().trim().to_string();
        let record = topo.list_backup_records("ks", "0").await.unwrap();
        assert_eq!(record[0].value.name, name);
        for w in waiting.iter_mut() {
            w.wait_healthy(&topo, T).await.unwrap();
            w.wait_rows(100, T).await.unwrap();
        }
        // How long after the record landed did each start restoring? (log timestamps)
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        let finished: chrono::DateTime<chrono::Utc> = jobs[0]["finished_at"].as_str().unwrap().parse().unwrap();
        for w in &waiting {
            let log = w.log();
            let line = log.lines().find(|l| l.contains("seed backup found")).expect("seed line");
            let ts: chrono::DateTime<chrono::Utc> = line.split_whitespace().next().unwrap().parse().unwrap();
            let delay = ts - finished;
            assert!(delay < chrono::Duration::seconds(1), "{} started restoring {delay} after the backup finished", w.spec.alias());
        }
    })
    .await
    .expect("test timed out");
}
