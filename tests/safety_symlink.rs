//! Data a data directory only points to, against real etcd, MariaDB and
//! mariabackup: a database directory symlinked to another disk and an InnoDB
//! table created with `DATA DIRECTORY` are never silently left out of a backup.
//! The builtin engine refuses both before mysqld is touched (the job FAILED
//! naming the path and where it points, the replica serving and replicating, no
//! MANIFEST); the xtrabackup engine backs the symlinked database up (restored as
//! a plain directory on a new tablet, every row there) and refuses the
//! `DATA DIRECTORY` table, whose restore would open the source's own file.

use std::path::Path;
use std::time::Duration;

use cairn::testkit::{Cluster, TabletProcess};
use cairn_topo::Topo;

const T: Duration = Duration::from_secs(180);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and one replica (uid + 1) of `ks/0`, with 500 rows.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    let mut p = c.spawn_tablet(&c.tablet(uid, "ks", "0").unwrap()).unwrap();
    let mut r = c
        .spawn_tablet(&c.tablet(uid + 1, "ks", "0").unwrap())
        .unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_500")
        .unwrap();
    r.wait_rows(500, T).await.unwrap();
    (p, r)
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

/// Every MANIFEST under `dir`, recursively.
fn manifests(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(manifests(&p));
            } else if p.file_name().is_some_and(|n| n == "MANIFEST") {
                out.push(p);
            }
        }
    }
    out
}

/// Runs a backup of `t` that must be refused; returns the CLI's error. Checks
/// what a refusal must leave: mysqld never stopped (same pid), no new MANIFEST,
/// the job FAILED with the same reason, the replica serving and replicating.
async fn refused_backup(c: &Cluster, p: &TabletProcess, t: &TabletProcess, engine: &str) -> String {
    let pid = t.mysqld_pid().expect("mysqld pid");
    let before = manifests(&c.backup_root()).len();
    let out = c
        .cli(&["backup", &t.spec.alias(), "--backup-engine", engine])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", t.log_tail(20));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(t.mysqld_pid(), Some(pid), "mysqld was restarted: {err}");
    assert!(unsafe { libc::kill(pid, 0) } == 0, "mysqld is gone");
    assert_eq!(manifests(&c.backup_root()).len(), before, "{err}");
    let job = jobs(c)
        .into_iter()
        .max_by_key(|j| j["created_at"].to_string())
        .unwrap();
    assert_eq!(job["state"], "FAILED", "{job}");
    let reason = job["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(&reason), "{err}\n{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    c.wait_replicating(&t.spec.alias(), T).await.unwrap();
    let n: u64 = p
        .sql("SELECT COUNT(*) FROM app.t")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    p.sql(&format!(
        "INSERT INTO app.t VALUES ({}, 'after a refused backup')",
        10_000 + n
    ))
    .unwrap();
    t.wait_rows(n + 1, T).await.unwrap();
    reason
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinked_databases_and_data_directory_tables_are_never_skipped() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 100).await;
        let data = r.spec.dir.join("data");

        // A database directory on "another disk", written on the replica only.
        let elsewhere = c.dir.path().join("other-disk");
        std::fs::create_dir_all(elsewhere.join("linked")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("linked"), data.join("linked")).unwrap();
        r.sql("SET SESSION sql_log_bin = 0; CREATE TABLE linked.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO linked.t SELECT seq FROM app.seq_1_to_300")
            .unwrap();
        assert!(elsewhere.join("linked/t.ibd").is_file());

        // builtin: refused before mysqld is stopped, naming the link and its target.
        let reason = refused_backup(&c, &p, &r, "builtin").await;
        let want = format!(
            "{} is a symbolic link to {}",
            data.join("linked").display(),
            elsewhere.join("linked").display()
        );
        assert!(reason.contains(&want), "{reason}");
        assert!(reason.contains("--backup-engine xtrabackup"), "{reason}");

        // xtrabackup follows it: the backup succeeds, and a tablet seeded from it
        // has the database as a plain directory with every row.
        let out = c
            .cli(&["backup", &r.spec.alias(), "--backup-engine", "xtrabackup"])
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            r.log_tail(30)
        );
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut spec = c.tablet(102, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut seeded = c.spawn_tablet(&spec).unwrap();
        seeded
            .wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(seeded.log().contains(&name), "{}", seeded.log_tail(30));
        seeded
            .wait_value("SELECT COUNT(*) FROM linked.t", "300", T)
            .await
            .unwrap();
        let restored = seeded.spec.dir.join("data/linked");
        let meta = std::fs::symlink_metadata(&restored).unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink(), "{meta:?}");
        let total: u64 = p.sql("SELECT COUNT(*) FROM app.t").unwrap().trim().parse().unwrap();
        seeded.wait_rows(total, T).await.unwrap();

        // An InnoDB table with DATA DIRECTORY (an .isl file in the data dir),
        // again on the replica only: refused by both engines.
        let isl_dir = c.dir.path().join("isl-disk");
        std::fs::create_dir_all(&isl_dir).unwrap();
        r.sql(&format!(
            "SET SESSION sql_log_bin = 0; CREATE TABLE app.remote (id INT PRIMARY KEY) ENGINE=InnoDB DATA DIRECTORY='{}'; INSERT INTO app.remote VALUES (1), (2)",
            isl_dir.display()
        ))
        .unwrap();
        assert!(data.join("app/remote.isl").is_file());
        assert!(isl_dir.join("app/remote.ibd").is_file());
        let tablespace = isl_dir.join("app/remote.ibd").display().to_string();
        for engine in ["builtin", "xtrabackup"] {
            let reason = refused_backup(&c, &p, &r, engine).await;
            assert!(
                reason.contains("table app.remote was created with DATA DIRECTORY"),
                "{engine}: {reason}"
            );
            assert!(reason.contains(&tablespace), "{engine}: {reason}");
            assert!(
                reason.contains(&data.join("app/remote.isl").display().to_string()),
                "{engine}: {reason}"
            );
        }
        // The one complete backup is the xtrabackup one; the Shard names it.
        assert_eq!(manifests(&c.backup_root()).len(), 1);
        let shard = topo.get_shard("ks", "0").await.unwrap().unwrap();
        assert_eq!(shard.value.latest_backup.as_deref(), Some(name.as_str()));
        assert_eq!(r.sql("SELECT COUNT(*) FROM app.remote").unwrap().trim(), "2");
    })
    .await
    .expect("test timed out");
}
