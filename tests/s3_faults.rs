//! Failures of the `s3` storage end cleanly, against a real S3 server (moto) behind
//! a fault-injecting proxy, real etcd and MariaDB: a connection cut mid-backup and
//! a storm of 503s fail the job with the reason, leave no MANIFEST and no
//! unfinished multipart upload, and the tablet serves on; a bucket that fills up
//! mid-backup fails it likewise, and `remove-backup` cleans what was left; a restore that cannot
//! read an object (a download cut mid-way, a deleted object) leaves the tablet as it
//! was, and one at start serves nothing until a later start completes it; bad flags are exit 2 and a wrong
//! bucket, endpoint or credentials exit 1, each one `error:` line.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use cairn::testkit::{
    processes_under, wait_for, Cluster, FaultProxy, MotoServer, ProxyMode, TabletProcess, AWS_ENV,
};
use cairn_topo::testkit::free_port;
use cairn_topo::{BackupMethod, BackupRecord, Topo};

const T: Duration = Duration::from_secs(120);
const BUCKET: &str = "cairn-faults";

async fn moto() -> MotoServer {
    let m = MotoServer::start().await.expect("moto");
    m.create_bucket(BUCKET).unwrap();
    m
}

/// A cluster storing backups in `m` through `endpoint`, one retry per request.
async fn s3_cluster(m: &MotoServer, endpoint: &str) -> Cluster {
    let mut c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    c.use_storage(m.flags(BUCKET, Some(endpoint), 1), AWS_ENV);
    c
}

/// A primary (uid) and a replica (uid+1, storing uncompressed files so InnoDB's
/// larger files go as multipart uploads) of `ks/0` with 2000 rows.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    shard_with(c, topo, uid, &["--compression-engine", "none"]).await
}

/// [`shard`] with these flags for the replica.
async fn shard_with(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    replica_flags: &[&str],
) -> (TabletProcess, TabletProcess) {
    let flags: Vec<String> = replica_flags.iter().map(|f| f.to_string()).collect();
    c.primary_and_replica(topo, ("ks", "0"), uid, &flags, 2000, T)
        .await
        .unwrap()
}

/// The newest job (JSON).
fn last_job(c: &Cluster) -> serde_json::Value {
    let jobs: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
    jobs.last().cloned().expect("a job")
}

/// A backup of `r` fails: exit 1, the job FAILED with a reason containing `why`,
/// nothing of it in the bucket (no MANIFEST, no object, no unfinished upload),
/// and the tablet back to a replicating REPLICA.
async fn backup_fails_cleanly(c: &Cluster, m: &MotoServer, r: &TabletProcess, why: &[&str]) {
    let out = c.cli(&["backup", &r.spec.alias()]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{}", r.log_tail(30));
    let job = last_job(c);
    assert_eq!(job["state"], "FAILED", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    eprintln!("backup failed as expected: {error}");
    assert!(
        why.iter().any(|w| error.contains(w)),
        "{error}\n{}",
        r.log_tail(30)
    );
    let keys = m.keys(BUCKET, "ks/0/").unwrap();
    assert!(!keys.iter().any(|k| k.ends_with("/MANIFEST")), "{keys:?}");
    wait_for("the failed upload cleaned", T, || async {
        let clean = m.keys(BUCKET, "ks/0/")?.is_empty() && m.pending_uploads(BUCKET)?.is_empty();
        Ok(clean.then_some(()))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} {:?}",
            m.keys(BUCKET, "ks/0/"),
            m.pending_uploads(BUCKET)
        )
    });
    c.wait_replicating(&r.spec.alias(), T).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_connection_or_a_503_storm_fails_the_backup_cleanly() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let m = moto().await;
        let proxy = FaultProxy::start(m.port).unwrap();
        let c = s3_cluster(&m, &proxy.endpoint()).await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 200).await;

        // Every connection that carries more than 2 MiB is cut: each part upload
        // fails (and its one retry), small requests (the abort) pass.
        proxy.cut_connections_over(2 << 20);
        backup_fails_cleanly(&c, &m, &r, &["s3://", "upload"]).await;
        p.sql("INSERT INTO app.t VALUES (5001, 'after the cut')")
            .unwrap();
        r.wait_rows(2001, T).await.unwrap();

        // Every request answered 503 Slow Down.
        proxy.cut_connections_over(0);
        proxy.set_mode(ProxyMode::Cut);
        proxy.set_mode(ProxyMode::Unavailable);
        backup_fails_cleanly(&c, &m, &r, &["503", "Slow Down", "SlowDown"]).await;

        // The bucket fills up mid-backup (after 3 MiB): the job fails with the
        // reason and no MANIFEST; what could not be cleaned while the store refused
        // everything is removed with the backup once it accepts requests again.
        proxy.set_mode(ProxyMode::Pass);
        proxy.after(3 << 20, ProxyMode::Full);
        let out = c.cli(&["backup", &r.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let job = last_job(&c);
        assert_eq!(job["state"], "FAILED", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        eprintln!("backup failed as expected: {error}");
        assert!(error.contains("XMinioStorageFull"), "{error}");
        let left = m.keys(BUCKET, "ks/0/").unwrap();
        assert!(!left.iter().any(|k| k.ends_with("/MANIFEST")), "{left:?}");
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        proxy.set_mode(ProxyMode::Pass);
        let mut names: Vec<String> = left
            .iter()
            .chain(m.pending_uploads(BUCKET).unwrap().iter())
            .filter_map(|k| k.split('/').nth(2).map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        for name in &names {
            let mut args = vec!["remove-backup", "ks/0", name.as_str()];
            args.extend(c.storage_args());
            c.cli_ok(&args).unwrap();
        }
        assert!(m.keys(BUCKET, "ks/0/").unwrap().is_empty());
        assert!(m.pending_uploads(BUCKET).unwrap().is_empty());

        // The network heals: the next backup succeeds.
        proxy.set_mode(ProxyMode::Pass);
        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        assert!(m
            .keys(BUCKET, "ks/0/")
            .unwrap()
            .contains(&format!("ks/0/{name}/MANIFEST")));
    })
    .await
    .expect("test timed out");
}

/// What an in-place restore that failed must leave as it was: mysqld's pid (never
/// restarted), the rows, the GTID position, and no new entry in the tablet dir
/// (no staging copy, no kept old data, no marker).
#[derive(Debug, PartialEq)]
struct Served {
    mysqld_pid: Option<i32>,
    rows: String,
    gtid: String,
    entries: BTreeSet<String>,
}

fn served(t: &TabletProcess) -> Served {
    let entries = std::fs::read_dir(&t.spec.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    Served {
        mysqld_pid: t.mysqld_pid(),
        rows: t.sql("SELECT COUNT(*), MAX(id) FROM app.t").unwrap(),
        gtid: t.sql("SELECT @@gtid_current_pos").unwrap(),
        entries,
    }
}

/// A restore cut off from storage mid-download: in place, the job fails with
/// the reason and the tablet serves on exactly as it was; at start, the agent
/// exits without serving (no data directory, no mysqld) and keeps its marker,
/// and once storage answers again the next start completes the restore — what
/// the `file` storage does when it fails midway. A deleted object fails an
/// in-place restore the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_cannot_read_an_object_leaves_the_tablet_as_it_was() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let m = moto().await;
        let proxy = FaultProxy::start(m.port).unwrap();
        let c = s3_cluster(&m, &proxy.endpoint()).await;
        let topo = c.topo().await.unwrap();
        // Compressed (the default): a small backup, read in a few seconds.
        let (p, r) = shard_with(&c, &topo, 300, &[]).await;
        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        p.sql("INSERT INTO app.t VALUES (5001, 'newer than the backup')")
            .unwrap();
        r.wait_rows(2001, T).await.unwrap();

        // In place: every connection is cut once 256 KiB came back, and new ones
        // are refused (the retry too).
        let before = served(&r);
        proxy.cut_after_downloaded(256 << 10);
        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}\n{}", r.log_tail(30));
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: restore of"), "{stderr}");
        assert!(last.contains("the tablet keeps its data"), "{stderr}");
        assert_eq!(proxy.mode(), ProxyMode::Cut, "the download was never cut");
        let job = last_job(&c);
        assert_eq!(job["state"], "FAILED", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        eprintln!("restore failed as expected: {error}");
        assert!(
            error.contains(&format!("restoring backup {name}")),
            "{error}"
        );
        proxy.set_mode(ProxyMode::Pass);
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        assert_eq!(served(&r), before);

        // At start: a new replica seeding from the backup is cut off mid-download.
        let mut spec = c.tablet(302, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        proxy.cut_after_downloaded(256 << 10);
        let mut seed = c.spawn_tablet(&spec).unwrap();
        let st = seed.wait_exit(T).await.unwrap();
        assert!(!st.success(), "{}", seed.log_tail(30));
        assert_eq!(proxy.mode(), ProxyMode::Cut, "the download was never cut");
        let log = seed.log();
        assert!(log.contains(&format!("restoring backup {name}")), "{log}");
        // Nothing served, nothing half-restored: no data directory, no staging
        // copy, no process left for its dir; the marker names the backup to redo.
        assert!(!spec.dir.join("data").exists());
        assert!(!spec.dir.join("data.restore-staging").exists());
        assert!(spec.dir.join("restore_in_progress").is_file());
        assert!(processes_under(&spec.dir).is_empty());
        let tablets: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"]).unwrap()).unwrap();
        let t = tablets
            .iter()
            .find(|t| t["alias"] == spec.alias())
            .expect("the seed's record");
        assert_eq!(t["healthy"], false, "{t}");
        assert_ne!(t["type"], "RESTORE", "{t}");
        // Storage answers again: the next start (no flag needed) redoes the
        // restore and serves the backup's rows, then catches up.
        proxy.set_mode(ProxyMode::Pass);
        spec.extra = vec![];
        let mut seed = c.spawn_tablet(&spec).unwrap();
        seed.wait_healthy(&topo, T).await.unwrap();
        assert!(seed.log().contains("redoing"), "{}", seed.log_tail(30));
        assert!(!spec.dir.join("restore_in_progress").exists());
        seed.wait_rows(2001, T).await.unwrap();

        // A data object goes missing: an in-place restore fails the same way.
        m.delete(BUCKET, &format!("ks/0/{name}/0")).unwrap();
        let before = served(&r);
        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
        c.wait_replicating(&r.spec.alias(), T).await.unwrap();
        assert_eq!(served(&r), before);
        p.sql("INSERT INTO app.t VALUES (5002, 'still replicating')")
            .unwrap();
        r.wait_rows(2002, T).await.unwrap();
    })
    .await
    .expect("test timed out");
}

/// `cairn ARGS` with the cluster's etcd, the dummy AWS credentials and the log
/// level an operator gets by default: (exit code, stderr).
fn cairn(c: &Cluster, args: &[String]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .args(c.global_args())
        .envs(AWS_ENV.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// etcd's revision: unchanged when nothing was written.
async fn etcd_revision(topo: &Topo) -> i64 {
    topo.list_with_revision::<serde_json::Value>("/")
        .await
        .unwrap()
        .1
}

/// Bad input to the commands that read or write storage, and to the backup and
/// restore commands: each a single `error:` line naming the flag, bucket or
/// endpoint, exit 2 for a bad flag and 1 for a failure at run time, and nothing
/// written to etcd or to storage (the bucket, the file root). Then, with no
/// storage configured at all, `list-backups` lists the catalog from etcd.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_writes_nothing_and_without_storage_list_backups_reads_etcd() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let m = moto().await;
        let strict = MotoServer::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
            .await
            .unwrap();
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .unwrap();
        let topo = c.topo().await.unwrap();
        let ep = m.endpoint();
        let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
        let root = c.backup_root().display().to_string();
        let name = "2026-11-24.053419.zone1-0000000101";
        let s3 = |bucket: &str, endpoint: &str| -> Vec<String> {
            vec![
                "--backup-storage-implementation=s3".into(),
                format!("--s3-backup-storage-bucket={bucket}"),
                format!("--s3-backup-aws-endpoint={endpoint}"),
                "--s3-backup-aws-retries=0".into(),
            ]
        };
        let cmd = |words: &[&str], flags: Vec<String>| -> Vec<String> {
            words.iter().map(|w| w.to_string()).chain(flags).collect()
        };
        let list = |flags: Vec<String>| cmd(&["list-backups", "ks/0"], flags);
        let remove = |flags: Vec<String>| cmd(&["remove-backup", "ks/0", name], flags);
        let mut sse = s3(BUCKET, &ep);
        sse.push("--s3-backup-server-side-encryption=aes".into());
        let mut no_sse_impl = vec!["--file-backup-storage-root".to_string(), root.clone()];
        no_sse_impl.push("--s3-backup-server-side-encryption=AES256".into());
        // (command line, exit code, what the one line names)
        let cases: Vec<(Vec<String>, i32, Vec<&str>)> = vec![
            // Flags: exit 2, naming the flag.
            (
                list(vec!["--backup-storage-implementation=s3".into()]),
                2,
                vec!["--s3-backup-storage-bucket"],
            ),
            (list(s3("b", &ep)), 2, vec!["--s3-backup-storage-bucket"]),
            (
                list(s3("bkt", "ftp://x")),
                2,
                vec!["--s3-backup-aws-endpoint"],
            ),
            (list(sse), 2, vec!["--s3-backup-server-side-encryption"]),
            (
                list(no_sse_impl),
                2,
                vec!["--s3-backup-server-side-encryption", "s3"],
            ),
            (
                list(vec![
                    "--limit=0".into(),
                    "--file-backup-storage-root".into(),
                    root.clone(),
                ]),
                2,
                vec!["--limit"],
            ),
            (cmd(&["list-backups", "_topo/0"], vec![]), 2, vec!["_topo"]),
            (
                remove(vec![]),
                2,
                vec!["--file-backup-storage-root", "--s3-backup-storage-bucket"],
            ),
            (
                cmd(
                    &["remove-backup", "ks/0", "../x"],
                    vec!["--file-backup-storage-root".into(), root.clone()],
                ),
                2,
                vec!["../x"],
            ),
            (
                cmd(&["schedule", "prune", "nightly", "--dry-run"], vec![]),
                2,
                vec!["--file-backup-storage-root"],
            ),
            (
                cmd(&["schedule", "prune", "nightly"], s3("", &ep)),
                2,
                vec!["--s3-backup-storage-bucket"],
            ),
            (
                cmd(&["backup", "zone1-101", "--concurrency", "0"], vec![]),
                2,
                vec!["--concurrency"],
            ),
            (cmd(&["backup", "zone1-x"], vec![]), 2, vec!["zone1-x"]),
            (
                cmd(
                    &[
                        "restore-from-backup",
                        "zone1-101",
                        "--backup-timestamp",
                        "yesterday",
                    ],
                    vec![],
                ),
                2,
                vec!["--backup-timestamp"],
            ),
            // At run time: exit 1, saying what and where.
            (
                list(s3("no-such-bucket", &ep)),
                1,
                vec!["s3://no-such-bucket", "NoSuchBucket"],
            ),
            (
                remove(s3("no-such-bucket", &ep)),
                1,
                vec!["s3://no-such-bucket", "NoSuchBucket"],
            ),
            (
                list(s3(BUCKET, &dead)),
                1,
                vec![&dead[7..], "Connection refused"],
            ),
            (
                list(s3(BUCKET, &strict.endpoint())),
                1,
                vec!["InvalidAccessKeyId"],
            ),
            (
                cmd(&["backup", "zone1-101"], vec![]),
                1,
                vec!["zone1-0000000101", "not registered"],
            ),
            (
                cmd(&["restore-from-backup", "zone1-101"], vec![]),
                1,
                vec!["zone1-0000000101", "not registered"],
            ),
        ];
        // A catalogued backup: a removal that cannot reach storage keeps its record.
        let record = BackupRecord {
            size_bytes: 1,
            ..BackupRecord::full(
                name,
                "ks",
                "0",
                "zone1-0000000101",
                BackupMethod::Builtin,
                chrono::Utc::now(),
                "MariaDB/0-101-1",
            )
        };
        topo.put(&topo.keys().backup("ks", "0", name), &record, None)
            .await
            .unwrap();
        for (args, code, want) in cases {
            let rev = etcd_revision(&topo).await;
            let (got, err) = cairn(&c, &args);
            eprintln!("{args:?}: exit {got:?}: {err}");
            assert_eq!(got, Some(code), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("error: "), "{args:?}: {err}");
            for w in &want {
                assert!(err.contains(w), "{args:?}: {err}");
            }
            assert!(!err.contains("testing"), "a credential in {err}");
            assert_eq!(etcd_revision(&topo).await, rev, "{args:?} wrote to etcd");
            assert!(m.keys(BUCKET, "").unwrap().is_empty(), "{args:?}");
            assert!(!c.backup_root().exists(), "{args:?} wrote to the file root");
        }

        // No storage configured at all: list-backups lists the catalog in etcd,
        // in the usual columns and JSON, and says on stderr that storage was not
        // consulted; the commands that need storage refuse (above).
        for args in [vec!["--json"], vec![]] {
            let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
                .args(["list-backups", "ks/0"])
                .args(&args)
                .args(c.global_args())
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert!(out.status.success(), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("storage was not consulted"), "{stderr}");
            assert!(stderr.contains("--file-backup-storage-root"), "{stderr}");
            if args.is_empty() {
                assert!(stdout.starts_with("NAME"), "{stdout}");
                assert!(stdout.contains(name), "{stdout}");
                continue;
            }
            let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
            assert_eq!(rows.len(), 1, "{stdout}");
            let row = &rows[0];
            assert_eq!(row["name"], name, "{row}");
            assert_eq!(
                (&row["keyspace"], &row["shard"], &row["tablet_alias"]),
                (&"ks".into(), &"0".into(), &"zone1-0000000101".into())
            );
            assert_eq!(row["engine"], "builtin", "{row}");
            assert_eq!(row["position"], "MariaDB/0-101-1", "{row}");
            assert_eq!(
                (&row["complete"], &row["state"]),
                (&true.into(), &"complete".into())
            );
            assert_eq!(row["in_topo"], true, "{row}");
        }
        // The catalog of a shard without records: an empty list, same note.
        let (code, err) = cairn(&c, &cmd(&["list-backups", "ks/1", "--json"], vec![]));
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("storage was not consulted"), "{err}");
    })
    .await
    .expect("test timed out");
}
