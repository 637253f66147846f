//! etcd does not grow with slots that do not run. A schedule whose shard has no
//! eligible tablet (only a PRIMARY, which scheduled backups never take) leaves no
//! job per slot: each slot is given up after its wait and counted on the schedule
//! record (`skipped_runs`, `last_skip_reason`, `last_skip_at`), one write of that
//! record per slot, and in the coordinator's metrics. A schedule below the
//! minimum period is refused by `schedule set` (exit 2, one line naming the flag)
//! and, stored anyway, by the coordinator: noted once, not run, not rewritten. A
//! backup's progress is written at most once per `--job-progress-interval`, its
//! final figures with its outcome.

use std::process::Output;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster};

const T: Duration = Duration::from_secs(120);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

fn schedule(c: &Cluster, name: &str) -> serde_json::Value {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["schedule", "list", "--json"]).unwrap()).unwrap();
    all.into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("schedule {name} not listed"))
}

/// How many times the schedule's key was written (etcd's per-key version).
async fn writes_of(c: &Cluster, name: &str) -> i64 {
    let topo = c.topo().await.unwrap();
    let key = topo.keys().schedule(name);
    let resp = topo
        .raw_client_for_tests()
        .get(key.as_str(), None)
        .await
        .unwrap();
    resp.kvs().first().map_or(0, |kv| kv.version())
}

/// The sum of a counter's series in a Prometheus text body.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn assert_one_line_usage_error(out: &Output, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_with_no_eligible_tablet_leave_no_record_only_the_counter() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let mut primary = c.spawn_tablet(&c.tablet(100, "ks", "0").unwrap()).unwrap();
        primary.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &primary.spec.alias()])
            .unwrap();

        // A slot every 4 s: each shard waits 2 s (half the period) after its
        // stagger delay (under 2 s) for a tablet, then is given up.
        c.cli_ok(&[
            "schedule",
            "set",
            "often",
            "--cron",
            "*/4 * * * * *",
            "--target",
            "ks/0",
        ])
        .unwrap();
        let writes_before = writes_of(&c, "often").await;
        let coord = c.spawn_coordinator("c1", &[]).unwrap();
        coord.wait_leader(T).await.unwrap();
        let s = wait_for("four slots given up", T, || async {
            let s = schedule(&c, "often");
            Ok((s["skipped_runs"].as_u64().unwrap_or(0) >= 4).then_some(s))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));

        // Not one job for any of the slots.
        assert_eq!(jobs(&c), Vec::<serde_json::Value>::new());
        let (raw, _) = topo
            .list_raw(&format!("{}global/jobs/", topo.keys().all()))
            .await
            .unwrap();
        assert!(raw.is_empty(), "job keys in etcd: {raw:?}");

        // The schedule says why, and when.
        let reason = s["last_skip_reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("ks/0: no eligible tablet (")
                && reason.contains(&primary.spec.alias()),
            "{s}"
        );
        assert!(s["last_skip_at"].is_string(), "{s}");
        assert!(s["last_run"].is_string(), "{s}");

        // One write of the schedule record per slot settled, no more.
        let skipped = schedule(&c, "often")["skipped_runs"].as_u64().unwrap();
        let writes = writes_of(&c, "often").await - writes_before;
        assert!(
            writes as u64 <= skipped + 1,
            "{writes} writes of the schedule for {skipped} slots"
        );

        // The metric counts the same shards; the text listing shows the count.
        let (code, body) = coord.http_get("/metrics").unwrap();
        assert_eq!(code, 200);
        let counted = counter(&body, "cairn_coordinator_scheduled_runs_skipped_total");
        assert!(counted >= 4, "{body}");
        let table = c.cli_ok(&["schedule", "list"]).unwrap();
        let header = table.lines().next().unwrap_or_default();
        for col in ["SKIPPED", "LAST_SKIP_AT", "LAST_SKIP_REASON"] {
            assert!(header.contains(col), "{table}");
        }
        assert!(table.contains("no eligible tablet"), "{table}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_below_the_minimum_period_is_refused_and_never_run() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let set = |extra: &[&str]| {
            let mut args = vec![
                "schedule",
                "set",
                "fast",
                "--cron",
                "*/2 * * * * *",
                "--target",
                "ks/0",
            ];
            args.extend_from_slice(extra);
            c.cli(&args).unwrap()
        };
        // schedule set refuses it at the default minimum and at a given one.
        for (extra, min) in [
            (&["--min-schedule-period", "5m"][..], "5m"),
            (&["--min-schedule-period", "1m"][..], "1m"),
        ] {
            let err = assert_one_line_usage_error(&set(extra), "set below the minimum");
            assert!(
                err.contains("fires 2s apart")
                    && err.contains(&format!("--min-schedule-period {min}")),
                "{err}"
            );
        }
        let topo = c.topo().await.unwrap();
        assert!(topo.list_schedules().await.unwrap().is_empty());

        // Stored with a lower minimum (1s here), it is refused by a coordinator
        // whose minimum is higher: noted once on the record, never run.
        let out = set(&["--min-schedule-period", "1s"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let writes_before = writes_of(&c, "fast").await;
        let coord = c
            .spawn_coordinator("c1", &["--min-schedule-period", "1h"])
            .unwrap();
        coord.wait_leader(T).await.unwrap();
        let s = wait_for("the refusal noted on the schedule", T, || async {
            let s = schedule(&c, "fast");
            Ok(s["last_skip_reason"].is_string().then_some(s))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        let reason = s["last_skip_reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("fires 2s apart") && reason.contains("--min-schedule-period 1h"),
            "{s}"
        );
        assert_eq!(s["skipped_runs"], 1, "{s}");

        // Several slots later: still not run, not rewritten, logged once.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(jobs(&c), Vec::<serde_json::Value>::new());
        let s = schedule(&c, "fast");
        assert_eq!(s["skipped_runs"], 1, "{s}");
        assert_eq!(s["last_run"], serde_json::Value::Null, "{s}");
        assert_eq!(writes_of(&c, "fast").await - writes_before, 1);
        let log = coord.log();
        assert_eq!(
            log.matches("refusing a schedule").count(),
            1,
            "{}",
            coord.log_tail(30)
        );
        let (_, body) = coord.http_get("/metrics").unwrap();
        assert!(
            counter(&body, "cairn_coordinator_pass_items_skipped_total") >= 1,
            "{body}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_writes_its_progress_at_the_interval_and_its_final_figures_at_the_end() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let mut primary = c.spawn_tablet(&c.tablet(100, "ks", "0").unwrap()).unwrap();
        // Storage at 512 KiB/s: the backup of 6 MiB of random bytes takes seconds.
        let mut spec = c.tablet(101, "ks", "0").unwrap();
        spec.env = vec![("CAIRN_FAULT_STORAGE_BYTES_PER_SEC".into(), "524288".into())];
        let mut replica = c.spawn_tablet(&spec).unwrap();
        primary.wait_healthy(&topo, T).await.unwrap();
        replica.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &primary.spec.alias()])
            .unwrap();
        primary
            .sql(
                "CREATE DATABASE g; CREATE TABLE g.t (id INT PRIMARY KEY, b BLOB); \
                 USE g; INSERT INTO t SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_6000",
            )
            .unwrap();
        wait_for("the rows on the replica", T, || async {
            Ok(replica
                .sql("SELECT COUNT(*) FROM g.t")
                .ok()
                .filter(|n| n.trim() == "6000")
                .map(|_| ()))
        })
        .await
        .unwrap();

        let out = c
            .cli_ok(&["backup", &replica.spec.alias(), "--json"])
            .unwrap();
        let done: serde_json::Value = serde_json::from_str(&out).unwrap();
        let id = done["job"].as_str().unwrap().to_string();
        let key = topo.keys().job(&id);
        let job = topo
            .get::<cairn_topo::Job>(&key)
            .await
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(job.state, cairn_topo::JobState::Succeeded);
        let ran = (job.finished_at.unwrap() - job.started_at.unwrap()).num_milliseconds();
        assert!(ran >= 5_000, "the backup took {ran} ms: too short to tell");
        // The final figures are in the record, written with the outcome.
        assert!(job.progress.bytes_done > 6_000_000, "{:?}", job.progress);
        assert_eq!(job.progress.bytes_done, job.progress.bytes_total);
        // Created, taken, finished; progress at most once per 10 s (the default),
        // the first as soon as bytes move.
        let writes = topo
            .raw_client_for_tests()
            .get(key.as_str(), None)
            .await
            .unwrap()
            .kvs()
            .first()
            .unwrap()
            .version();
        let progress_writes = writes - 3;
        let allowed = ran / 10_000 + 1;
        assert!(
            (0..=allowed).contains(&progress_writes),
            "{progress_writes} progress writes in {ran} ms"
        );
    })
    .await
    .expect("test timed out");
}
