//! The recoverability picture end to end, on one real etcd and one coordinator:
//! records written straight into etcd (a fresh verified shard, a stale one, one
//! whose last drill failed, one no schedule covers); the election held by the
//! test, so the coordinator stands by and changes nothing (no reconciler removes
//! the records, which have no backup in storage). Checked: `/api/v1/status` and
//! `/metrics` per shard, every metric the shipped alert rules and Grafana
//! dashboard name is one the coordinator exports, the page `/` as headless
//! Chromium renders it (its DOM, then a screenshot), and `cairn status`.
//!
//! `CAIRN_UPDATE_SCREENSHOT=1` copies the screenshot to `docs/status-page.png`.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn::testkit::{processes_under, wait_for, Cluster};
use cairn_topo::{
    ArchiveRecord, ArchiveState, BackupMethod, BackupRecord, DrillResult, Health, Job, JobKind,
    JobState, Schedule, Shard, Tablet, TabletAlias, TabletType, Topo,
};
use chrono::{DateTime, Utc};

/// Metrics the alert rules and the dashboard use that another branch adds (the
/// archive gap and the recoverable window), accepted until it is merged.
fn backup(ks: &str, shard: &str, name: &str, at: DateTime<Utc>) -> BackupRecord {
    BackupRecord {
        finished_time: Some(at + chrono::Duration::minutes(2)),
        size_bytes: 1 << 20,
        schedule: Some("nightly".into()),
        ..BackupRecord::full(
            name,
            ks,
            shard,
            "zone1-0000000101",
            BackupMethod::Builtin,
            at,
            "MariaDB/0-101-42",
        )
    }
}

fn tablet(uid: u32, ks: &str, shard: &str, t: TabletType) -> Tablet {
    Tablet {
        alias: TabletAlias {
            cell: "zone1".into(),
            uid,
        },
        hostname: "localhost".into(),
        mysql_host: "127.0.0.1".into(),
        mysql_port: 3306,
        port: 15000,
        keyspace: ks.into(),
        shard: shard.into(),
        tablet_type: t,
        base_type: t,
        flavor: "MariaDB".into(),
        tablet_dir: String::new(),
        started_at: Utc::now(),
    }
}

/// The fleet: commerce/{fresh,stale,drillfail} under a nightly schedule,
/// customer/0 under none; a primary and a dead replica on commerce/fresh; a
/// running backup at half way.
async fn write_fleet(topo: &Topo) {
    let now = Utc::now();
    let k = topo.keys().clone();
    let h = |n: i64| now - chrono::Duration::hours(n);
    for (ks, shard) in [
        ("commerce", "fresh"),
        ("commerce", "stale"),
        ("commerce", "drillfail"),
        ("customer", "0"),
    ] {
        let primary = (shard == "fresh").then(|| TabletAlias {
            cell: "zone1".into(),
            uid: 101,
        });
        let rec = Shard {
            keyspace: ks.into(),
            name: shard.into(),
            primary_alias: primary,
            primary_term_start_time: None,
            latest_backup: None,
            latest_backup_time: None,
            created_at: h(24 * 10),
        };
        topo.put(&k.shard(ks, shard), &rec, None).await.unwrap();
    }
    let mut fresh = backup("commerce", "fresh", "2026-fresh", h(1));
    fresh.drill_result = Some(DrillResult::Succeeded);
    fresh.drill_seconds = Some(95.0);
    fresh.verified_at = Some(now);
    let stale = backup("commerce", "stale", "2026-stale", h(24 * 5));
    let mut failed = backup("commerce", "drillfail", "2026-drillfail", h(2));
    failed.drill_result = Some(DrillResult::Failed);
    failed.drill_error =
        Some("CHECK TABLE t1: corrupt (read from s3://AKIAEXAMPLE:hunter2@minio:9000/b)".into());
    let unscheduled = backup("customer", "0", "2026-customer", h(3));
    for b in [fresh, stale, failed, unscheduled] {
        topo.put(&k.backup(&b.keyspace, &b.shard, &b.name), &b, None)
            .await
            .unwrap();
    }
    let sched = Schedule {
        name: "nightly".into(),
        cron: "0 2 * * *".into(),
        target: "commerce".into(),
        keep_count: None,
        keep_for_seconds: None,
        backup_engine: None,
        paused: false,
        last_run: None,
        next_run: None,
        created_at: h(24 * 10),
        skipped_runs: 0,
        last_skip_reason: None,
        last_skip_at: None,
        incremental: false,
        drill_cron: None,
        drill_to_now: false,
        drill_last_run: None,
        drill_next_run: None,
    };
    topo.put(&k.schedule("nightly"), &sched, None)
        .await
        .unwrap();
    let primary = tablet(101, "commerce", "fresh", TabletType::Primary);
    let replica = tablet(102, "commerce", "fresh", TabletType::Replica);
    topo.put(&k.tablet(&primary.alias), &primary, None)
        .await
        .unwrap();
    topo.put(&k.tablet(&replica.alias), &replica, None)
        .await
        .unwrap();
    let health = Health {
        mysqld_up: true,
        serving: true,
        gtid_position: Some("MariaDB/0-101-42".into()),
        updated_at: Some(now),
        ..Health::default()
    };
    topo.put(&k.health(&primary.alias), &health, None)
        .await
        .unwrap();
    let mut job = Job::pending(JobKind::Backup, "commerce", "fresh", &replica.alias);
    job.state = JobState::Running;
    job.started_at = Some(now - chrono::Duration::minutes(3));
    job.progress.bytes_done = 512 << 20;
    job.progress.bytes_total = 1024 << 20;
    topo.put(&k.job(&job.id), &job, None).await.unwrap();
    for state in [JobState::Succeeded, JobState::Failed] {
        let mut done = Job::pending(JobKind::Backup, "commerce", "stale", &replica.alias);
        done.state = state;
        done.started_at = Some(h(30));
        done.finished_at = Some(h(29));
        topo.put(&k.job(&done.id), &done, None).await.unwrap();
    }
    // commerce/fresh is archived up to 30 s ago; its primary has more since.
    let archive = ArchiveRecord {
        keyspace: "commerce".into(),
        shard: "fresh".into(),
        interval_ms: 1000,
        created_at: h(48),
        updated_at: None,
        state: ArchiveState {
            position: "0-101-40".into(),
            safe_at: Some(now - chrono::Duration::seconds(30)),
            updated_at: Some(now),
            ..ArchiveState::default()
        },
        gaps: Vec::new(),
    };
    topo.put(&k.archive("commerce", "fresh"), &archive, None)
        .await
        .unwrap();
}

/// Metric names a Prometheus text body declares (`# TYPE`), with the suffixes
/// their samples carry (`_total`, `_bucket`, `_sum`, `_count`).
fn exported_names(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in body.lines() {
        let mut w = l.split_whitespace();
        if (w.next(), w.next()) != (Some("#"), Some("TYPE")) {
            continue;
        }
        let (Some(name), Some(kind)) = (w.next(), w.next()) else {
            continue;
        };
        out.insert(name.to_string());
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {}
        }
    }
    out
}

/// Every `cairn_coordinator_…` name in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("cairn_coordinator_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The sample value of `name{…keyspace,shard…}` in a Prometheus text body.
fn sample(body: &str, name: &str, ks: &str, shard: &str) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            l.contains(&format!("keyspace=\"{ks}\"")) && l.contains(&format!("shard=\"{shard}\""))
        })
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
}

/// Runs headless Chromium with `args` on `url`, in a process group of its own
/// killed if it takes over a minute; its stdout. No process is left behind.
fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("run chromium (installed by scripts/setup.sh)");
    let pid = child.id() as i32;
    let started = Instant::now();
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    loop {
        if let Some(st) = child.try_wait().expect("wait chromium") {
            assert!(st.success(), "chromium {args:?}: {st}");
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            // SAFETY: kill(2) of the process group of our own child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium {args:?} took over a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; whatever chromium left in its group goes with it.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    reader.join().expect("reader")
}

#[tokio::test(flavor = "multi_thread")]
async fn status_api_metrics_page_and_cli_show_each_shards_recoverability() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();

        // Nothing yet, no leader: `cairn status` says so and succeeds.
        let out = c.cli(&["status"]).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("no coordinator leader"), "{stdout}");

        write_fleet(&topo).await;
        // The test holds the election: the coordinator stands by.
        let lease = topo.lease(30).await.unwrap();
        let _leadership = topo
            .campaign(&topo.keys().election(), "test-holder", lease.id())
            .await
            .unwrap();
        let coord = c.spawn_coordinator("c1", &[]).unwrap();
        let status = wait_for(
            "the coordinator to see the fleet",
            Duration::from_secs(60),
            || async {
                Ok(coord.status().ok().filter(|s| {
                    s["leader_id"] == "test-holder"
                        && s["shards"].as_array().is_some_and(|a| a.len() == 4)
                        && s["jobs"].as_array().is_some_and(|a| a.len() == 1)
                }))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(20)));
        assert_eq!(status["is_leader"], false);
        let shard = |name: &str| -> serde_json::Value {
            status["shards"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| {
                    format!(
                        "{}/{}",
                        s["keyspace"].as_str().unwrap(),
                        s["shard"].as_str().unwrap()
                    ) == name
                })
                .cloned()
                .unwrap_or_else(|| panic!("{name} not in {status}"))
        };
        let fresh = shard("commerce/fresh");
        assert_eq!(fresh["health"], "green", "{fresh}");
        assert_eq!(fresh["newest_backup"], "2026-fresh");
        assert_eq!(fresh["newest_verified_backup"], "2026-fresh");
        assert_eq!(fresh["last_drill_success"], true);
        assert_eq!(fresh["last_drill_seconds"], 95.0);
        let age = fresh["newest_backup_age_seconds"].as_f64().unwrap();
        assert!((3500.0..4000.0).contains(&age), "{fresh}");
        let max = fresh["backup_max_age_seconds"].as_f64().unwrap();
        assert!(max >= 86400.0 + 120.0, "{fresh}");
        let loss = fresh["loss_window_seconds"].as_f64().unwrap();
        assert!((25.0..300.0).contains(&loss), "{fresh}");
        assert_eq!(shard("commerce/stale")["health"], "red");
        let failed = shard("commerce/drillfail");
        assert_eq!(failed["health"], "red");
        assert_eq!(failed["last_drill_success"], false);
        assert!(
            failed["reasons"][0].as_str().unwrap().contains("corrupt"),
            "{failed}"
        );
        let unscheduled = shard("customer/0");
        assert_eq!(unscheduled["health"], "amber");
        assert!(unscheduled["backup_max_age_seconds"].is_null());

        // /metrics: the same per shard, and every name the alert rules and the
        // dashboard use is exported.
        let (code, body) = coord.http_get("/metrics").unwrap();
        assert_eq!(code, 200);
        let m = |name: &str, ks: &str, s: &str| sample(&body, name, ks, s);
        assert_eq!(
            m("cairn_coordinator_shard_health", "commerce", "stale"),
            Some(2.0)
        );
        assert_eq!(
            m("cairn_coordinator_shard_health", "commerce", "fresh"),
            Some(0.0)
        );
        assert_eq!(
            m("cairn_coordinator_shard_health", "customer", "0"),
            Some(1.0)
        );
        assert_eq!(
            m(
                "cairn_coordinator_last_drill_success",
                "commerce",
                "drillfail"
            ),
            Some(0.0)
        );
        assert_eq!(
            m("cairn_coordinator_last_drill_seconds", "commerce", "fresh"),
            Some(95.0)
        );
        assert!(
            m(
                "cairn_coordinator_newest_backup_age_seconds",
                "commerce",
                "stale"
            )
            .unwrap()
                > 4.0 * 86400.0
        );
        assert!(m(
            "cairn_coordinator_newest_verified_backup_age_seconds",
            "commerce",
            "stale"
        )
        .is_none());
        assert!(m("cairn_coordinator_backup_max_age_seconds", "customer", "0").is_none());
        assert!(
            body.contains("cairn_coordinator_oldest_running_job_seconds{kind=\"BACKUP\"}"),
            "{body}"
        );
        let mut exported = exported_names(&body);

        // The page, as a real browser renders it.
        let url = format!("http://127.0.0.1:{}/", coord.port);
        let profile = tempfile::tempdir().unwrap();
        let dom = chromium(profile.path(), &["--dump-dom"], &url);
        for s in [
            "commerce/fresh",
            "commerce/stale",
            "commerce/drillfail",
            "customer/0",
        ] {
            assert!(
                dom.contains(&format!("data-shard=\"{s}\"")),
                "{s} missing:\n{dom}"
            );
        }
        assert!(
            dom.contains("data-shard=\"commerce/stale\" data-health=\"red\""),
            "{dom}"
        );
        assert!(
            dom.contains("data-shard=\"commerce/fresh\" data-health=\"green\""),
            "{dom}"
        );
        assert!(
            dom.contains("data-shard=\"customer/0\" data-health=\"amber\""),
            "{dom}"
        );
        assert!(dom.contains("standby; leader test-holder"), "{dom}");
        // No secret: the password in the drill's error is hidden, and where the
        // backups are stored is not shown.
        assert!(
            dom.contains("corrupt (read from s3://***@minio:9000/b)"),
            "{dom}"
        );
        assert!(
            !dom.contains("hunter2") && !dom.contains("AKIAEXAMPLE"),
            "{dom}"
        );
        let storage = c.backup_root().display().to_string();
        assert!(!dom.contains(&storage), "{dom}");
        assert!(
            dom.contains("zone1-0000000101") && dom.contains("agent down"),
            "{dom}"
        );
        assert!(dom.contains("50%"), "job progress:\n{dom}");
        assert!(
            dom.contains("nightly") && dom.contains("<svg class=\"timeline\""),
            "{dom}"
        );
        let shot = profile.path().join("status-page.png");
        chromium(
            profile.path(),
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1280,900",
                "--hide-scrollbars",
            ],
            &url,
        );
        let png = std::fs::read(&shot).expect("the screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{} bytes",
            png.len()
        );
        // And as a phone shows it (kept in target/ for a look, not in the README).
        let phone = profile.path().join("status-page-phone.png");
        chromium(
            profile.path(),
            &[
                &format!("--screenshot={}", phone.display()),
                "--window-size=390,844",
                "--hide-scrollbars",
            ],
            &url,
        );
        assert!(std::fs::read(&phone)
            .expect("the phone screenshot")
            .starts_with(b"\x89PNG"));
        if std::env::var_os("CAIRN_UPDATE_SCREENSHOT").is_some() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            std::fs::write(root.join("docs/status-page.png"), &png).unwrap();
            std::fs::copy(&phone, root.join("target/status-page-phone.png")).unwrap();
        }
        assert!(
            processes_under(profile.path()).is_empty(),
            "chromium left processes"
        );

        // `cairn status`: a line per shard, exit 1 for the red ones.
        let out = c.cli(&["status"]).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert_eq!(
            stderr.trim(),
            "error: 2 shard(s) red: commerce/drillfail, commerce/stale"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 5, "{stdout}");
        assert!(lines[0].starts_with("SHARD") && lines[0].contains("LOSS WINDOW"));
        assert!(
            lines.iter().any(|l| l.starts_with("commerce/fresh")
                && l.contains("green")
                && l.contains("ok in 1m35s")),
            "{stdout}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("commerce/drillfail") && l.contains("FAILED")),
            "{stdout}"
        );
        assert!(!stdout.contains("no coordinator leader"), "{stdout}");
        let out = c.cli(&["status", "--json"]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let healths: Vec<(String, String)> = list
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}/{}",
                        s["keyspace"].as_str().unwrap(),
                        s["shard"].as_str().unwrap()
                    ),
                    s["health"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            healths,
            [
                ("commerce/drillfail".to_string(), "red".to_string()),
                ("commerce/fresh".into(), "green".into()),
                ("commerce/stale".into(), "red".into()),
                ("customer/0".into(), "amber".into()),
            ]
        );
        // The coordinator leads once the test lets go of the election: then the
        // leader's own series (the loss window of the archive pass, the backup
        // counters of the job supervisor, the archive gap and recoverable window
        // of the recoverability pass) are exported too.
        let _ = lease.revoke().await;
        coord.wait_leader(Duration::from_secs(60)).await.unwrap();
        let wanted = [
            "cairn_coordinator_archive_loss_window_seconds{",
            "cairn_coordinator_backups_succeeded_total{",
            "cairn_coordinator_backups_failed_total{",
            // The recoverability pass's series (commerce/fresh is archived).
            "cairn_coordinator_archive_gap{",
            "cairn_coordinator_recoverable_window_seconds{",
        ];
        let body = wait_for("the leader's series", Duration::from_secs(60), || async {
            let (_, b) = coord.http_get("/metrics")?;
            Ok(wanted.iter().all(|w| b.contains(w)).then_some(b))
        })
        .await
        .unwrap();
        exported.extend(exported_names(&body));
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for file in ["prometheus/alerts.yml", "grafana/cairn.json"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            if file.ends_with(".json") {
                let dash: serde_json::Value =
                    serde_json::from_str(&text).expect("the dashboard parses");
                let exprs: Vec<String> = dash["panels"]
                    .as_array()
                    .expect("panels")
                    .iter()
                    .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
                    .map(|t| t["expr"].as_str().map(str::to_owned).expect("an expr"))
                    .collect();
                assert!(exprs.len() >= 10, "{exprs:?}");
                for e in &exprs {
                    assert!(
                        !names_in(e).is_empty(),
                        "a query naming no cairn metric: {e}"
                    );
                }
            }
            let used = names_in(&text);
            assert!(used.len() >= 8, "{file}: {used:?}");
            for name in used {
                assert!(
                    exported.contains(&name),
                    "{file} uses {name}, which the coordinator does not export"
                );
            }
        }

        drop(coord);
    })
    .await
    .expect("the test took over 5 minutes");
}
