//! One bad schedule never stops the scheduler: a schedule record whose cron does
//! not parse, written straight into etcd beside a good schedule, is logged, counted
//! (`cairn_coordinator_pass_items_skipped_total{pass="scheduler"}`) and skipped;
//! the good schedule still produces its backup jobs.

use std::time::Duration;

use cairn::testkit::{wait_for, Cluster};

const T: Duration = Duration::from_secs(120);

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

/// The value of the scheduler pass's skipped counter in a Prometheus text body.
fn skipped_scheduler(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("cairn_coordinator_pass_items_skipped_total"))
        .filter(|l| l.contains("pass=\"scheduler\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_cron_record_does_not_stop_the_good_schedule() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let mut tablets = [
            c.spawn_tablet(&c.tablet(100, "ks", "0").unwrap()).unwrap(),
            c.spawn_tablet(&c.tablet(101, "ks", "0").unwrap()).unwrap(),
        ];
        for t in tablets.iter_mut() {
            t.wait_healthy(&topo, T).await.unwrap();
        }
        c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])
            .unwrap();

        // The good schedule is paused while the garbage one is written, so both
        // are in place before the first pass sees either.
        c.cli_ok(&[
            "schedule",
            "set",
            "every5s",
            "--cron",
            "*/5 * * * * *",
            "--target",
            "ks",
        ])
        .unwrap();
        c.cli_ok(&["schedule", "pause", "every5s"]).unwrap();
        let mut etcd = topo.raw_client_for_tests();
        let good_key = topo.keys().schedule("every5s");
        let resp = etcd.get(good_key.as_str(), None).await.unwrap();
        let raw = resp
            .kvs()
            .first()
            .expect("the good schedule record")
            .value();
        let mut bad: serde_json::Value = serde_json::from_slice(raw).unwrap();
        // Sorts before the good one: a pass that stopped at it would never reach it.
        bad["name"] = "aaa-garbage".into();
        bad["cron"] = "every now and then".into();
        bad["paused"] = false.into();
        etcd.put(
            topo.keys().schedule("aaa-garbage"),
            serde_json::to_vec(&bad).unwrap(),
            None,
        )
        .await
        .unwrap();
        c.cli_ok(&["schedule", "resume", "every5s"]).unwrap();

        let coord = c
            .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
            .unwrap();
        let job = wait_for("a job of the good schedule", T, || async {
            Ok(jobs(&c).into_iter().find(|j| j["schedule"] == "every5s"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        assert_eq!(job["tablet_alias"], tablets[1].spec.alias(), "{job}");
        wait_for("the good schedule's backup to succeed", T, || async {
            Ok(jobs(&c)
                .into_iter()
                .find(|j| j["schedule"] == "every5s" && j["state"] == "SUCCEEDED"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        assert!(
            jobs(&c).iter().all(|j| j["schedule"] != "aaa-garbage"),
            "the garbage schedule produced a job"
        );
        let (code, body) = coord.http_get("/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(skipped_scheduler(&body) >= 1, "not counted:\n{body}");
        assert!(
            coord.log().contains("aaa-garbage"),
            "the skipped schedule is not named in the log:\n{}",
            coord.log_tail(30)
        );
    })
    .await
    .expect("test timed out");
}
