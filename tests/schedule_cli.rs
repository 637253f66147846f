//! `cairn schedule …` and `cairn topo snapshot` against a real etcd with the real
//! binary, and the coordinator's snapshot-to-storage path against a real etcd:
//! round trips through topo, refusal of bad input before anything is written,
//! and snapshots that etcd's own tools accept and restore.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::coordinator::etcd_snapshot::{prune_snapshots, save_to_storage, Sidecar, TOPO_DIR};
use cairn::testkit::{Cluster, Wait};
use cairn_topo::testkit::free_port;
use cairn_topo::{Schedule, Tablet, TabletType, Topo, TopoConfig};
use chrono::{DateTime, Timelike, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(120);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// Runs the binary with explicit arguments (no cluster flags added).
fn cairn_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running cairn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn schedules(c: &Cluster) -> Vec<Value> {
    let out = c.cli_ok(&["schedule", "list", "--json"]).unwrap();
    serde_json::from_str(&out).unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// Asserts exit code `code` with one `error:` line on stderr; returns stderr.
fn assert_fails(out: &Output, code: i32, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: stderr {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_set_list_pause_resume_remove() {
    tokio::time::timeout(T, async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let before = Utc::now();

        let out = c
            .cli_ok(&[
                "schedule",
                "set",
                "nightly",
                "--cron",
                "0 2 * * *",
                "--target",
                "commerce",
                "--keep-count",
                "7",
                "--keep-for",
                "168h",
            ])
            .unwrap();
        assert!(out.contains("schedule nightly created"), "{out}");
        c.cli_ok(&[
            "schedule",
            "set",
            "shard-hourly",
            "--cron",
            "30 0 * * * *",
            "--target",
            "commerce/-80",
            "--backup-engine",
            "xtrabackup",
        ])
        .unwrap();

        let rows = schedules(&c);
        assert_eq!(rows.len(), 2, "{rows:?}");
        for r in &rows {
            for k in [
                "name",
                "cron",
                "target",
                "keep_count",
                "keep_for",
                "paused",
                "last_run",
                "next_run",
            ] {
                assert!(r.get(k).is_some(), "{k} missing in {r}");
            }
        }
        let n = &rows[0];
        assert_eq!(n["name"], "nightly");
        assert_eq!(n["cron"], "0 2 * * *");
        assert_eq!(n["target"], "commerce");
        assert_eq!(n["keep_count"], 7);
        assert_eq!(n["keep_for"], "168h");
        assert_eq!(n["keep_for_seconds"], 604800);
        assert_eq!(n["paused"], false);
        assert!(n["last_run"].is_null());
        let next = time(&n["next_run"]);
        assert!(
            next > before && (next.hour(), next.minute(), next.second()) == (2, 0, 0),
            "{next}"
        );
        let h = &rows[1];
        assert_eq!(h["target"], "commerce/-80");
        assert_eq!(h["backup_engine"], "xtrabackup");
        assert!(h["keep_count"].is_null() && h["keep_for"].is_null());
        let next = time(&h["next_run"]);
        assert_eq!((next.minute(), next.second()), (0, 30), "{next}");

        // The record in etcd is the contract's JSON.
        let key = topo.keys().schedule("nightly");
        let mut s = topo.get::<Schedule>(&key).await.unwrap().unwrap();
        assert_eq!(s.value.keep_for_seconds, Some(604800));
        // As if the coordinator had run it once.
        let last: DateTime<Utc> = "2026-01-01T02:00:00Z".parse().unwrap();
        s.value.last_run = Some(last);
        topo.update(&key, &s.value, s.version).await.unwrap();

        // Replacing keeps last_run and created_at; other settings are replaced;
        // the next run is in the future (the stale slot is not made up).
        let out = c
            .cli_ok(&[
                "schedule",
                "set",
                "nightly",
                "--cron",
                "0 3 * * *",
                "--target",
                "commerce",
            ])
            .unwrap();
        assert!(out.contains("schedule nightly replaced"), "{out}");
        let n = schedules(&c)
            .into_iter()
            .find(|r| r["name"] == "nightly")
            .unwrap();
        assert_eq!(n["cron"], "0 3 * * *");
        assert_eq!(time(&n["last_run"]), last);
        assert!(n["keep_count"].is_null());
        let next = time(&n["next_run"]);
        assert!(next > before && next.hour() == 3, "{next}");
        let after = topo.get::<Schedule>(&key).await.unwrap().unwrap().value;
        assert_eq!(after.created_at, s.value.created_at);

        // Pause: no next run; pausing again is fine.
        let out = c.cli_ok(&["schedule", "pause", "nightly"]).unwrap();
        assert!(out.contains("paused"), "{out}");
        let n = schedules(&c)
            .into_iter()
            .find(|r| r["name"] == "nightly")
            .unwrap();
        assert_eq!(n["paused"], true);
        assert!(n["next_run"].is_null());
        let out = c.cli_ok(&["schedule", "pause", "nightly"]).unwrap();
        assert!(out.contains("already paused"), "{out}");
        // A replaced paused schedule stays paused.
        c.cli_ok(&[
            "schedule",
            "set",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--target",
            "commerce",
        ])
        .unwrap();
        assert!(
            topo.get::<Schedule>(&key)
                .await
                .unwrap()
                .unwrap()
                .value
                .paused
        );

        // Resume: the next slot after now.
        c.cli_ok(&["schedule", "resume", "nightly"]).unwrap();
        let n = schedules(&c)
            .into_iter()
            .find(|r| r["name"] == "nightly")
            .unwrap();
        assert_eq!(n["paused"], false);
        assert!(time(&n["next_run"]) > before);

        // The human table.
        let table = c.cli_ok(&["schedule", "list"]).unwrap();
        let header = table.lines().next().unwrap();
        for col in [
            "NAME",
            "CRON",
            "TARGET",
            "KEEP_COUNT",
            "KEEP_FOR",
            "PAUSED",
            "LAST_RUN",
            "NEXT_RUN",
        ] {
            assert!(header.contains(col), "{table}");
        }
        assert!(
            table.contains("shard-hourly") && table.contains("commerce/-80"),
            "{table}"
        );

        // Remove; unknown names fail with exit 1.
        let out = c.cli_ok(&["schedule", "remove", "nightly"]).unwrap();
        assert!(out.contains("removed"), "{out}");
        assert_eq!(schedules(&c).len(), 1);
        assert!(topo.get::<Schedule>(&key).await.unwrap().is_none());
        for cmd in ["remove", "pause", "resume"] {
            let out = c.cli(&["schedule", cmd, "nightly"]).unwrap();
            let err = assert_fails(&out, 1, cmd);
            assert!(err.contains("schedule nightly not found"), "{err}");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_are_refused_before_anything_is_written() {
    tokio::time::timeout(T, async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&["--cron", "* * * *", "--target", "commerce"], "4 fields"),
            (&["--cron", "garbage", "--target", "commerce"], "1 fields"),
            (
                &["--cron", "0 0 2 * * * *", "--target", "commerce"],
                "7 fields",
            ),
            (
                &["--cron", "61 * * * *", "--target", "commerce"],
                "invalid cron",
            ),
            (
                &["--cron", "x y z w v", "--target", "commerce"],
                "invalid cron",
            ),
            (
                &["--cron", "0 2 * * *", "--target", "a/b/c"],
                "invalid target",
            ),
            (
                &["--cron", "0 2 * * *", "--target", "com merce"],
                "invalid target",
            ),
            (&["--cron", "0 2 * * *", "--target", ""], "invalid target"),
            (
                &["--cron", "0 2 * * *", "--target", "ks", "--keep-count", "0"],
                "keep-count",
            ),
            (
                &["--cron", "0 2 * * *", "--target", "ks", "--keep-for", "5"],
                "duration",
            ),
        ];
        for (extra, needle) in cases {
            let mut args = vec!["schedule", "set", "nightly"];
            args.extend_from_slice(extra);
            let out = c.cli(&args).unwrap();
            let err = assert_fails(&out, 2, &format!("{extra:?}"));
            assert!(err.contains(needle), "{extra:?}: {err}");
            assert!(out.stdout.is_empty(), "{extra:?}");
        }
        let out = c
            .cli(&[
                "schedule",
                "set",
                "../x",
                "--cron",
                "0 2 * * *",
                "--target",
                "ks",
            ])
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        // Nothing at all was written under the root.
        let (kvs, _) = topo.list_raw(&topo.keys().all()).await.unwrap();
        assert!(
            kvs.is_empty(),
            "{:?}",
            kvs.iter().map(|k| &k.0).collect::<Vec<_>>()
        );
        // Input is checked before etcd is contacted: bad input is exit 2 even
        // with no etcd to talk to.
        let out = cairn_raw(&[
            "schedule",
            "set",
            "x",
            "--cron",
            "* * * *",
            "--target",
            "ks",
            "--topo-server",
            "127.0.0.1:1",
        ]);
        assert_fails(&out, 2, "unreachable etcd");
    })
    .await
    .expect("test timed out");
}

/// Puts a tablet record (no health) so `get-tablets` has something to show.
async fn put_tablet(topo: &Topo, uid: u32) {
    let alias: cairn_topo::TabletAlias = format!("zone1-{uid}").parse().unwrap();
    topo.ensure_keyspace_shard("commerce", "0").await.unwrap();
    let t = Tablet {
        alias: alias.clone(),
        hostname: "localhost".into(),
        mysql_host: "127.0.0.1".into(),
        mysql_port: 17000,
        port: 15000,
        keyspace: "commerce".into(),
        shard: "0".into(),
        tablet_type: TabletType::Replica,
        base_type: TabletType::Replica,
        flavor: "MariaDB".into(),
        tablet_dir: String::new(),
        started_at: Utc::now(),
    };
    topo.put(&topo.keys().tablet(&alias), &t, None)
        .await
        .unwrap();
}

/// `etcdctl snapshot status FILE -w json`.
fn etcdctl_status(file: &Path) -> Value {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status"])
        .arg(file)
        .args(["-w", "json"])
        .output()
        .expect("running etcdctl");
    assert!(
        out.status.success(),
        "etcdctl snapshot status: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An etcd started on a data dir restored from a snapshot with `etcdctl snapshot
/// restore`, on free ports; killed on drop.
struct RestoredEtcd {
    /// The etcd process.
    child: Child,
    /// Client endpoint `127.0.0.1:PORT`.
    endpoint: String,
    /// Holds the restored data dir and the log.
    _dir: tempfile::TempDir,
}

impl RestoredEtcd {
    async fn start(snapshot: &Path) -> RestoredEtcd {
        let dir = tempfile::tempdir().unwrap();
        for attempt in 0..5 {
            let client = free_port().unwrap();
            let peer = loop {
                let p = free_port().unwrap();
                if p != client {
                    break p;
                }
            };
            let data = dir.path().join(format!("data-{attempt}"));
            let peer_url = format!("http://127.0.0.1:{peer}");
            let client_url = format!("http://127.0.0.1:{client}");
            let cluster = format!("restored={peer_url}");
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(snapshot)
                .arg("--data-dir")
                .arg(&data)
                .args(["--name", "restored", "--initial-cluster", &cluster])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .output()
                .expect("running etcdctl snapshot restore");
            assert!(
                out.status.success(),
                "etcdctl snapshot restore: {}",
                text(&out.stderr)
            );
            let log_path = dir.path().join(format!("etcd-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new("etcd")
                .args(["--name", "restored", "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &cluster])
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawning etcd");
            let endpoint = format!("127.0.0.1:{client}");
            let cfg = TopoConfig {
                endpoints: vec![endpoint.clone()],
                request_timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_secs(1),
                ..TopoConfig::default()
            };
            // Some(true): answering; Some(false): the process exited.
            let up = Wait::new("the restored etcd to answer", Duration::from_secs(30))
                .every(Duration::from_millis(100))
                .until(|| {
                    let exited = matches!(child.try_wait(), Ok(Some(_)));
                    let cfg = &cfg;
                    async move {
                        if exited {
                            return Ok(Some(false));
                        }
                        Ok(Topo::connect(cfg, Some(Duration::from_secs(1)))
                            .await
                            .is_ok()
                            .then_some(true))
                    }
                })
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "restored etcd did not answer ({e}): {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    )
                });
            if up {
                return RestoredEtcd {
                    child,
                    endpoint,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                log.contains("address already in use"),
                "restored etcd exited: {log}"
            );
        }
        panic!("no free ports for the restored etcd after 5 attempts");
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--topo-server", &self.endpoint, "--topo-root", "/cairn"]);
        let out = cairn_raw(&all);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for RestoredEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `FILE revision=R size_bytes=N sha256=HEX`.
fn parse_snapshot_line(line: &str) -> (i64, u64, String) {
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
            .to_string()
    };
    (
        field("revision=").parse().unwrap(),
        field("size_bytes=").parse().unwrap(),
        field("sha256="),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn topo_snapshot_is_verified_and_restores_into_a_fresh_etcd() {
    tokio::time::timeout(T, async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        c.cli_ok(&[
            "schedule",
            "set",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--target",
            "commerce",
        ])
        .unwrap();
        put_tablet(&topo, 101).await;
        let (_, store_rev) = topo.list_raw(&topo.keys().all()).await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd.db");
        let out = c
            .cli_ok(&["topo", "snapshot", file.to_str().unwrap()])
            .unwrap();
        let (revision, size, sha) = parse_snapshot_line(out.trim());
        assert_eq!(revision, store_rev, "{out}");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
        // etcd's trailer: the last 32 bytes are the sha256 of the rest.
        let (db, trailer) = bytes.split_at(bytes.len() - 32);
        assert_eq!(Sha256::digest(db).as_slice(), trailer);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing else was left in the directory (no temporary file).
        let entries: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries, vec![file.clone()]);

        // etcd's own tools agree.
        let st = etcdctl_status(&file);
        assert_eq!(st["revision"].as_i64(), Some(revision), "{st}");
        assert_eq!(st["totalSize"].as_u64().map(|s| s + 32), Some(size), "{st}");

        // Restored into a fresh etcd, the keys are back.
        let restored = RestoredEtcd::start(&file).await;
        let rows: Vec<Value> =
            serde_json::from_str(&restored.cli_ok(&["schedule", "list", "--json"])).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["name"], "nightly");
        let tablets: Vec<Value> =
            serde_json::from_str(&restored.cli_ok(&["get-tablets", "--json"])).unwrap();
        assert_eq!(tablets.len(), 1, "{tablets:?}");
        assert_eq!(tablets[0]["alias"], "zone1-0000000101");

        // Failures leave nothing behind: a missing directory, and a path that is
        // a directory (the rename fails after the stream was saved).
        let missing = dir.path().join("no/such/dir/etcd.db");
        let out = c
            .cli(&["topo", "snapshot", missing.to_str().unwrap()])
            .unwrap();
        assert_fails(&out, 1, "missing directory");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let out = c.cli(&["topo", "snapshot", sub.to_str().unwrap()]).unwrap();
        assert_fails(&out, 1, "path is a directory");
        assert!(sub.is_dir());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["etcd.db", "sub"]);
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_in_storage_have_sidecars_and_are_pruned() {
    tokio::time::timeout(T, async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        put_tablet(&topo, 101).await;
        let root = c.backup_root();
        let storage = FileStorage::new(&root);
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut names = Vec::new();
        for i in 0..3 {
            let at = t0 + chrono::Duration::hours(i);
            let (name, info) = save_to_storage(&topo, &storage, at, None).await.unwrap();
            assert_eq!(name, format!("etcd-2026-01-01.{:02}0000.db", i));
            let path = root.join(TOPO_DIR).join(&name);
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), info.sha256);
            let sidecar: Sidecar = serde_json::from_slice(
                &std::fs::read(root.join(TOPO_DIR).join(format!("{name}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(
                (
                    sidecar.revision,
                    sidecar.size_bytes,
                    sidecar.sha256.as_str(),
                    sidecar.taken_at
                ),
                (info.revision, info.size_bytes, info.sha256.as_str(), at)
            );
            let st = etcdctl_status(&path);
            assert_eq!(st["revision"].as_i64(), Some(info.revision), "{st}");
            names.push(name);
            // A write between snapshots moves the revision on.
            put_tablet(&topo, 102 + i as u32).await;
        }
        // The same second twice: refused, the first one kept intact.
        assert!(save_to_storage(&topo, &storage, t0, None).await.is_err());
        let removed = prune_snapshots(&storage, 2).await.unwrap();
        assert_eq!(
            removed,
            vec![names[0].clone(), format!("{}.json", names[0])]
        );
        let left: Vec<String> = storage
            .list_blobs(TOPO_DIR)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(
            left,
            vec![
                names[1].clone(),
                format!("{}.json", names[1]),
                names[2].clone(),
                format!("{}.json", names[2])
            ]
        );
    })
    .await
    .expect("test timed out");
}
