//! Failures of the `s3` storage end cleanly, against a real S3 server (moto) behind
//! a fault-injecting proxy, real etcd and MariaDB: a connection cut mid-backup and
//! a storm of 503s fail the job with the reason, leave no MANIFEST and no
//! unfinished multipart upload, and the tablet serves on; a bucket that fills up
//! mid-backup fails it likewise, and `remove-backup` cleans what was left; a restore that cannot
//! read an object leaves the tablet as it was; bad flags are exit 2 and a wrong
//! bucket, endpoint or credentials exit 1, each one `error:` line.

use std::process::Command;
use std::time::Duration;

use cairn::testkit::{
    wait_for, Cluster, FaultProxy, MotoServer, ProxyMode, TabletProcess, AWS_ENV,
};
use cairn_topo::testkit::free_port;
use cairn_topo::Topo;

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
    let p_spec = c.tablet(uid, "ks", "0").unwrap();
    let mut r_spec = c.tablet(uid + 1, "ks", "0").unwrap();
    r_spec.extra = vec!["--compression-engine".into(), "none".into()];
    let mut p = c.spawn_tablet(&p_spec).unwrap();
    let mut r = c.spawn_tablet(&r_spec).unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p_spec.alias()])
        .unwrap();
    p.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO app.t SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_2000",
    )
    .unwrap();
    wait_rows(&r, 2000).await;
    wait_replicating(c, &r.spec.alias()).await;
    (p, r)
}

async fn wait_rows(t: &TabletProcess, n: u64) {
    t.wait_value("SELECT COUNT(*) FROM app.t", &n.to_string(), T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
}

async fn wait_replicating(c: &Cluster, alias: &str) {
    wait_for(&format!("{alias} healthy REPLICA"), T, || async {
        let out = c.cli_ok(&["get-tablets", "--json"])?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(rows
            .iter()
            .find(|r| r["alias"] == alias && r["type"] == "REPLICA" && r["healthy"] == true)
            .map(|_| ()))
    })
    .await
    .unwrap();
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
    wait_replicating(c, &r.spec.alias()).await;
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
        wait_rows(&r, 2001).await;

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
        wait_replicating(&c, &r.spec.alias()).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_cannot_read_an_object_leaves_the_tablet_as_it_was() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let m = moto().await;
        let c = s3_cluster(&m, &m.endpoint()).await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 300).await;
        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        wait_replicating(&c, &r.spec.alias()).await;
        p.sql("INSERT INTO app.t VALUES (5001, 'newer than the backup')")
            .unwrap();
        wait_rows(&r, 2001).await;
        // One data object goes missing.
        m.delete(BUCKET, &format!("ks/0/{name}/0")).unwrap();

        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
        // Still serving its own, newer data as a replicating REPLICA.
        wait_replicating(&c, &r.spec.alias()).await;
        wait_rows(&r, 2001).await;
        p.sql("INSERT INTO app.t VALUES (5002, 'still replicating')")
            .unwrap();
        wait_rows(&r, 2002).await;
    })
    .await
    .expect("test timed out");
}

/// `cairn list-backups ks/0 ARGS` with the cluster's etcd and the dummy AWS
/// credentials: (exit code, stderr).
fn list_backups(c: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["list-backups", "ks/0"])
        .args(args)
        .args(c.global_args())
        .envs(AWS_ENV.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_bucket_endpoint_and_credentials_are_one_line_errors() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let m = moto().await;
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .unwrap();
        let ep = m.endpoint();
        let s3 = |bucket: &str, endpoint: &str| -> Vec<String> {
            vec![
                "--backup-storage-implementation=s3".into(),
                format!("--s3-backup-storage-bucket={bucket}"),
                format!("--s3-backup-aws-endpoint={endpoint}"),
                "--s3-backup-aws-retries=0".into(),
            ]
        };
        let check = |args: Vec<String>, code: i32, want: &[&str]| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (got, err) = list_backups(&c, &a);
            eprintln!("{args:?}: exit {got:?}: {err}");
            assert_eq!(got, Some(code), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("error: "), "{args:?}: {err}");
            for w in want {
                assert!(err.contains(w), "{args:?}: {err}");
            }
            assert!(!err.contains("testing"), "a credential in {err}");
        };
        // Flags: exit 2, naming the flag.
        check(
            vec!["--backup-storage-implementation=s3".into()],
            2,
            &["--s3-backup-storage-bucket"],
        );
        check(s3("b", &ep), 2, &["--s3-backup-storage-bucket"]);
        check(s3("bkt", "ftp://x"), 2, &["--s3-backup-aws-endpoint"]);
        let mut sse = s3(BUCKET, &ep);
        sse.push("--s3-backup-server-side-encryption=aes".into());
        check(sse, 2, &["--s3-backup-server-side-encryption"]);

        // At run time: exit 1, saying what and where.
        check(
            s3("no-such-bucket", &ep),
            1,
            &["s3://no-such-bucket", "NoSuchBucket"],
        );
        let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
        check(s3(BUCKET, &dead), 1, &[&dead[7..], "Connection refused"]);
        let strict = MotoServer::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
            .await
            .unwrap();
        check(s3(BUCKET, &strict.endpoint()), 1, &["InvalidAccessKeyId"]);
    })
    .await
    .expect("test timed out");
}
