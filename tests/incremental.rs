//! Incremental backups (`backup --incremental-from-pos`) against real etcd and
//! MariaDB, on `file` and on `s3` (moto) with age encryption: the stored binary
//! logs are read back through the verifying pipeline and cairn's binlog reader,
//! and must hold exactly the transactions written since the position; `auto`,
//! a backup name, nothing new (empty), purged binlogs, a position the server
//! never reached and malformed input. One tablet per test, a few rows.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn::backup::encryption::Identities;
use cairn::backup::manifest::Manifest;
use cairn::backup::pipeline::{restore_files, Progress, StoredBackup};
use cairn::backup::storage::{BackupStorage, FileStorage, S3Config, S3Storage};
use cairn::mysql::binlog::{summarize, BinlogSummary};
use cairn::mysql::gtid::{parse_gtid_list, position_contains, Gtid};
use cairn::testkit::{Cluster, MotoServer, TabletProcess, AWS_ENV};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(120);
const BUCKET: &str = "cairn-incr";

/// A healthy primary of `ks/0` (uid) with `app.t`.
async fn primary(c: &Cluster, uid: u32, extra: &[String]) -> TabletProcess {
    let topo = c.topo().await.unwrap();
    let mut spec = c.tablet(uid, "ks", "0").unwrap();
    spec.extra = extra.to_vec();
    let mut p = c.spawn_tablet(&spec).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &spec.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        .unwrap();
    p
}

fn binlog_pos(p: &TabletProcess) -> Vec<Gtid> {
    parse_gtid_list(p.sql("SELECT @@GLOBAL.gtid_binlog_pos").unwrap().trim()).unwrap()
}

/// Writes a transaction of two rows, a DDL (a standalone GTID) and single-row
/// transactions; returns the GTIDs they got, in order.
fn write(p: &TabletProcess, from_id: u32, rows: u32) -> Vec<Gtid> {
    let before = binlog_pos(p);
    p.sql(&format!(
        "BEGIN; INSERT INTO app.t VALUES ({from_id}, 'a'), ({}, 'b'); COMMIT; \
         CREATE TABLE IF NOT EXISTS app.u{from_id} (a INT)",
        from_id + 1
    ))
    .unwrap();
    for id in from_id + 2..from_id + 2 + rows {
        p.sql(&format!("INSERT INTO app.t VALUES ({id}, 'x')"))
            .unwrap();
    }
    let after = binlog_pos(p);
    let (b, a) = (before[0], after[0]);
    assert_eq!(
        a.seq - b.seq,
        u64::from(rows) + 2,
        "{before:?} -> {after:?}"
    );
    (b.seq + 1..=a.seq)
        .map(|seq| Gtid {
            domain: a.domain,
            server: a.server,
            seq,
        })
        .collect()
}

/// Runs `cairn backup ALIAS --incremental-from-pos FROM` (with `extra` flags).
fn incremental(c: &Cluster, p: &TabletProcess, from: &str) -> std::process::Output {
    c.cli(&[
        "backup",
        &p.spec.alias(),
        "--allow-primary",
        "--incremental-from-pos",
        from,
    ])
    .unwrap()
}

fn ok_name(out: &std::process::Output, p: &TabletProcess) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The stored binlogs of backup `name`, read back through the verifying
/// pipeline (hashes, decryption, decompression) and summarised by cairn's
/// reader, in file order.
async fn read_back(
    storage: &dyn BackupStorage,
    name: &str,
    ids: Option<&Identities>,
) -> (Manifest, Vec<BinlogSummary>) {
    let m = storage.read_manifest("ks", "0", name).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("binlogs");
    let from = StoredBackup {
        storage,
        keyspace: "ks",
        shard: "0",
        name,
        manifest: &m,
        identities: ids,
    };
    restore_files(
        from,
        &dest,
        2,
        Arc::new(Progress::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let summaries = m
        .file_entries
        .iter()
        .map(|e| {
            assert_eq!(e.base, "Binlog", "{e:?}");
            let bytes = std::fs::read(dest.join(&e.name)).unwrap();
            assert_eq!(bytes.len() as u64, e.size);
            summarize(&bytes[..]).unwrap()
        })
        .collect();
    (m, summaries)
}

/// Checks what an incremental backup from `start` holds: closed files whose
/// `Gtid_list`s chain, starting at its `FromPosition` (contained in `start`),
/// and exactly the `want` transactions after `start`; returns its MANIFEST.
async fn check_holds(
    storage: &dyn BackupStorage,
    name: &str,
    ids: Option<&Identities>,
    start: &[Gtid],
    want: &[Gtid],
) -> Manifest {
    let (m, files) = read_back(storage, name, ids).await;
    assert!(m.is_incremental());
    let pos = |s: &str| parse_gtid_list(s.strip_prefix("MariaDB/").unwrap()).unwrap();
    let from = pos(&m.incremental.from_position);
    assert!(position_contains(start, &from), "{from:?} ⊄ {start:?}");
    assert_eq!(files[0].gtid_list, from);
    let mut after: Vec<Gtid> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        assert!(f.closed && f.has_gtid_list, "file {i}: {f:?}");
        assert_eq!(f.complete_len, f.read_len, "file {i}");
        if let Some(next) = files.get(i + 1) {
            assert_eq!(next.gtid_list, f.end_position(), "file {i} chains");
        }
        after.extend(
            f.transactions
                .iter()
                .map(|t| t.gtid)
                .filter(|g| !position_contains(start, &[*g])),
        );
    }
    assert_eq!(after, want, "transactions after {start:?}");
    let end = files.last().unwrap().end_position();
    assert!(position_contains(&pos(&m.position), &end));
    let d = m.incremental.details.as_ref().unwrap();
    assert!(d.first_timestamp <= d.last_timestamp, "{d:?}");
    assert!(m
        .file_entries
        .iter()
        .any(|e| e.name == d.last_timestamp_binlog));
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_backups_on_file_storage() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    let p = primary(&c, 700, &[]).await;
    let alias = p.spec.alias();
    let storage = FileStorage::new(c.backup_root());

    // Malformed input: exit 2, no job written.
    for bad in ["MariaDB/0-1", "0-1-5", "MySQL56/x:1-5", "a b"] {
        let out = incremental(&c, &p, bad);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
    let out = c
        .cli(&[
            "backup",
            &alias,
            "--incremental-from-pos",
            "auto",
            "--backup-engine",
            "builtin",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let jobs: Vec<Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
    // `auto` with no backup yet: a clear error.
    let out = incremental(&c, &p, "auto");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("take a full backup first"),
        "{}",
        stderr(&out)
    );

    let full = ok_name(&c.cli(&["backup", &alias, "--allow-primary"]).unwrap(), &p);
    let full_pos = binlog_pos(&p);
    let written = write(&p, 1, 3);

    // auto: from the full backup's position.
    let i1 = ok_name(&incremental(&c, &p, "auto"), &p);
    let m1 = check_holds(&storage, &i1, None, &full_pos, &written).await;
    assert_eq!(m1.incremental.from_backup, full);
    assert_eq!(
        m1.position,
        format!(
            "MariaDB/{}",
            cairn::mysql::gtid::format_gtid_list(&binlog_pos(&p))
        )
    );
    assert!(!m1.purged_position.is_empty());
    let json = String::from_utf8(m1.to_json().unwrap()).unwrap();
    assert!(json.contains("\"Incremental\": true"), "{json}");

    // Listed as incremental; the shard's latest backup is still the full one.
    let root = c.backup_root().display().to_string();
    let listed: Vec<Value> = serde_json::from_str(
        &c.cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["incremental"], false);
    assert_eq!(listed[1]["name"], i1.as_str());
    assert_eq!(listed[1]["incremental"], true);
    assert_eq!(
        listed[1]["from_position"],
        m1.incremental.from_position.as_str()
    );
    assert!(listed[1]["first_timestamp"].is_string(), "{listed:?}");
    assert!(listed[1]["last_timestamp"].is_string(), "{listed:?}");
    let shard: Value =
        serde_json::from_str(&c.cli_ok(&["get-shard", "ks/0", "--json"]).unwrap()).unwrap();
    assert_eq!(shard["latest_backup"], full.as_str(), "{shard}");

    // Nothing new: succeeds, says so, stores nothing.
    let out = incremental(&c, &p, "auto");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("nothing to back up"),
        "{}",
        stderr(&out)
    );
    assert_eq!(storage.list_backups("ks", "0").await.unwrap().len(), 2);

    // From a backup's name: the full backup again, with one more transaction.
    let more = write(&p, 100, 1);
    let i2 = ok_name(&incremental(&c, &p, &full), &p);
    let want: Vec<Gtid> = written.iter().chain(&more).copied().collect();
    let m2 = check_holds(&storage, &i2, None, &full_pos, &want).await;
    assert_eq!(m2.incremental.from_backup, full);

    // A position the server never reached.
    let out = incremental(&c, &p, "MariaDB/0-700-999999");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in this server's history"),
        "{}",
        stderr(&out)
    );

    // Purged: the binlogs after i2's position are gone.
    write(&p, 200, 1);
    let active = p.sql("FLUSH BINARY LOGS; SHOW MASTER STATUS").unwrap();
    let active = active.split_whitespace().next().unwrap().to_string();
    // MariaDB keeps a file until its binlog checkpoint is written: retry.
    cairn::testkit::wait_for("binlogs purged", T, || async {
        p.sql(&format!("PURGE BINARY LOGS TO '{active}'"))?;
        let left = p.sql("SHOW BINARY LOGS")?;
        Ok((left.lines().count() == 1).then_some(()))
    })
    .await
    .unwrap();
    let out = incremental(&c, &p, &i2);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("purged") && e.contains("domain 0 sequence"),
        "{e}"
    );
    assert_eq!(storage.list_backups("ks", "0").await.unwrap().len(), 3);
}

fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("key.txt");
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (path, public)
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_backups_on_s3_encrypted() {
    let m = MotoServer::start().await.expect("moto");
    m.create_bucket(BUCKET).unwrap();
    let mut c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    let mut flags = m.flags(BUCKET, None, 2);
    flags.extend(["--s3-backup-storage-root".into(), "incr".into()]);
    c.use_storage(flags, AWS_ENV);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let p = primary(&c, 710, &["--backup-encryption-recipient".into(), public]).await;
    let start = binlog_pos(&p);
    let written = write(&p, 1, 2);
    let from = format!("MariaDB/{}", cairn::mysql::gtid::format_gtid_list(&start));
    let name = ok_name(&incremental(&c, &p, &from), &p);

    for (k, v) in AWS_ENV {
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let storage = S3Storage::open(S3Config {
        root: "incr".into(),
        endpoint: Some(m.endpoint()),
        force_path_style: true,
        retries: Some(1),
        ..S3Config::new(BUCKET)
    })
    .unwrap();
    let ids = Identities::parse(&std::fs::read_to_string(&key).unwrap(), "key.txt").unwrap();
    let manifest = check_holds(&storage, &name, Some(&ids), &start, &written).await;
    assert_eq!(manifest.encryption.as_deref(), Some("age"));
    assert!(manifest.incremental.from_backup.is_empty());
    // Every stored binlog is an age file; without the identity nothing reads.
    for e in &manifest.file_entries {
        let (code, body) = m
            .get(BUCKET, &format!("incr/ks/0/{name}/{}", e.stored_name))
            .unwrap();
        assert_eq!(code, 200);
        assert!(body.starts_with("age-encryption.org/v1"), "{}", &body[..40]);
    }
    let mut args = vec!["list-backups", "ks/0", "--json"];
    args.extend(c.storage_args());
    let listed: Vec<Value> = serde_json::from_str(&c.cli_ok(&args).unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["incremental"], true);
    assert_eq!(listed[0]["encryption"], "age");
}

/// Succeeded BACKUP jobs of `schedule` that stored a backup, oldest first.
fn scheduled_backups(c: &Cluster, schedule: &str) -> Vec<Value> {
    let jobs: Vec<Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
    let mut v: Vec<Value> = jobs
        .into_iter()
        .filter(|j| {
            j["kind"] == "BACKUP"
                && j["state"] == "SUCCEEDED"
                && j["schedule"] == schedule
                && j["backup_name"].is_string()
        })
        .collect();
    v.sort_by_key(|j| j["backup_name"].as_str().unwrap_or_default().to_string());
    v
}

/// Waits until `schedule` has stored `n` backups; returns the newest job.
async fn wait_scheduled(c: &Cluster, schedule: &str, n: usize) -> Value {
    cairn::testkit::wait_for(
        &format!("{n} backup(s) of schedule {schedule}"),
        T,
        || async {
            let v = scheduled_backups(c, schedule);
            Ok((v.len() >= n).then(|| v[v.len() - 1].clone()))
        },
    )
    .await
    .unwrap()
}

/// Waits until no BACKUP job is pending or running (a paused schedule's last
/// run has ended).
async fn wait_idle(c: &Cluster) {
    cairn::testkit::wait_for("no backup job in flight", T, || async {
        let jobs: Vec<Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"])?)?;
        Ok((!jobs.iter().any(|j| {
            j["kind"] == "BACKUP" && (j["state"] == "PENDING" || j["state"] == "RUNNING")
        }))
        .then_some(()))
    })
    .await
    .unwrap();
}

/// Backup records in etcd by name.
async fn records(c: &Cluster) -> std::collections::BTreeMap<String, cairn_topo::BackupRecord> {
    let topo = c.topo().await.unwrap();
    topo.list_backup_records("ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.value.name.clone(), r.value))
        .collect()
}

/// Scheduled incrementals through a real coordinator (issue 10 item 2): a
/// schedule of full backups, then `schedule set --incremental`: each run takes
/// an incremental on the healthy replica from the newest backup; retention
/// (`--keep-count 1` on both) keeps every incremental a kept full backup needs,
/// and once a newer full backup holds them all and the older one is gone, the
/// next incremental run's retention removes them.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_incrementals_chain_and_retention_keeps_what_a_full_needs() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let mut p = c.spawn_tablet(&c.tablet(800, "ks", "0").unwrap()).unwrap();
        let mut r = c.spawn_tablet(&c.tablet(801, "ks", "0").unwrap()).unwrap();
        p.wait_healthy(&topo, T).await.unwrap();
        r.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
            .unwrap();
        p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
            .unwrap();
        let mut id = 0;
        let mut write = |p: &TabletProcess| {
            for _ in 0..3 {
                id += 1;
                p.sql(&format!("INSERT INTO app.t VALUES ({id}, 'x')"))
                    .unwrap();
            }
        };
        write(&p);
        let coord = c.spawn_coordinator("c1", &[]).unwrap();
        coord.wait_leader(T).await.unwrap();
        let set = |name: &str, incremental: bool| {
            let mut args = vec![
                "schedule",
                "set",
                name,
                "--cron",
                "*/3 * * * * *",
                "--target",
                "ks/0",
                "--keep-count",
                "1",
            ];
            if incremental {
                args.push("--incremental");
            }
            c.cli_ok(&args).unwrap();
        };

        // A full backup first, by its own schedule, which then pauses.
        set("full", false);
        wait_scheduled(&c, "full", 1).await;
        c.cli_ok(&["schedule", "pause", "full"]).unwrap();
        wait_idle(&c).await;
        let fulls: Vec<String> = records(&c)
            .await
            .into_values()
            .filter(|b| b.complete && !b.incremental)
            .map(|b| b.name)
            .collect();
        let full1 = fulls.last().unwrap().clone();

        // Incrementals: each on the replica, chained from the newest backup.
        write(&p);
        set("inc", true);
        let j1 = wait_scheduled(&c, "inc", 1).await;
        assert_eq!(j1["tablet_alias"], r.spec.alias(), "{j1}");
        write(&p);
        let j2 = wait_scheduled(&c, "inc", 2).await;
        let recs = records(&c).await;
        let (n1, n2) = (
            j1["backup_name"].as_str().unwrap(),
            j2["backup_name"].as_str().unwrap(),
        );
        let (i1, i2, f1) = (&recs[n1], &recs[n2], &recs[&full1]);
        assert!(i1.incremental && i2.incremental, "{i1:?} {i2:?}");
        assert_eq!(i1.from_position.as_deref(), Some(f1.position.as_str()));
        assert_eq!(i2.from_position.as_deref(), Some(i1.position.as_str()));
        assert_eq!(i2.tablet_alias, r.spec.alias());
        // Retention ran after each (keep 1) and kept the chain the full needs.
        let root = c.backup_root().display().to_string();
        let out = c
            .cli_ok(&[
                "schedule",
                "prune",
                "inc",
                "--dry-run",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap();
        assert!(!out.contains(n1) && !out.contains(n2), "{out}");
        assert!(recs.contains_key(&full1));
        let v = c
            .cli(&["verify", "ks/0", "--file-backup-storage-root", &root])
            .unwrap();
        let text = String::from_utf8_lossy(&v.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("OK") && l.contains(&format!("chain from {full1}"))),
            "{text}"
        );

        // A newer full backup holds both; the old one goes (keep 1); the next
        // incremental run's retention then removes the two it supersedes, and
        // keeps the new incremental, which the new full backup needs.
        c.cli_ok(&["schedule", "pause", "inc"]).unwrap();
        wait_idle(&c).await;
        let done_full = scheduled_backups(&c, "full").len();
        c.cli_ok(&["schedule", "resume", "full"]).unwrap();
        wait_scheduled(&c, "full", done_full + 1).await;
        c.cli_ok(&["schedule", "pause", "full"]).unwrap();
        wait_idle(&c).await;
        cairn::testkit::wait_for("the old full backup pruned", T, || async {
            Ok((!records(&c).await.contains_key(&full1)).then_some(()))
        })
        .await
        .unwrap();
        write(&p);
        let done_inc = scheduled_backups(&c, "inc").len();
        c.cli_ok(&["schedule", "resume", "inc"]).unwrap();
        let j3 = wait_scheduled(&c, "inc", done_inc + 1).await;
        let n3 = j3["backup_name"].as_str().unwrap().to_string();
        cairn::testkit::wait_for("superseded incrementals pruned", T, || async {
            let recs = records(&c).await;
            Ok((!recs.contains_key(n1) && !recs.contains_key(n2)).then_some(recs))
        })
        .await
        .unwrap();
        c.cli_ok(&["schedule", "pause", "inc"]).unwrap();
        let recs = records(&c).await;
        assert!(recs.contains_key(&n3), "{:?}", recs.keys());
        let newest_full = recs
            .values()
            .filter(|b| b.complete && !b.incremental)
            .map(|b| b.position.clone())
            .next_back()
            .unwrap();
        assert_eq!(
            recs[&n3].from_position.as_deref(),
            Some(newest_full.as_str())
        );
        assert!(!c.backup_root().join("ks/0").join(n1).exists());
        assert!(c.backup_root().join("ks/0").join(&n3).exists());
        drop(coord);
    })
    .await
    .expect("test timed out");
}
