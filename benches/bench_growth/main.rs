//! etcd growth benchmark: what one shard (a primary and a replica, real mariadbd)
//! and a coordinator write to etcd, at the default settings, counted key by key and
//! turned into writes, new keys and bytes per shard per day.
//!
//! Every event under the topology root is counted through a watch from a known
//! revision (`tally`): puts, new keys, deletes and the bytes of key and value, by
//! class of key (Health, Tablet, job, backup record, Shard, schedule, election).
//! The phases:
//! 1. Idle for `--idle-secs` (default 120): the background writes (Health of both
//!    tablets at the default `--health-interval 2s`, the coordinator's election),
//!    as a rate per second.
//! 2. Scheduled backups: a schedule `0 * * * * *` (every minute, so the bench
//!    does not wait an hour; the cadence does not change what one run writes) on
//!    the shard with `--keep-count 2`, until `--runs` backups succeeded; what the
//!    window wrote less the idle rate over it, per run: the job (created, taken,
//!    progress, finished), the backup record, the Shard's latest backup, the
//!    schedule's `last_run`, the tablet's BACKUP type and back, retention.
//! 3. Skipped slots: a schedule every 10 s on a shard that has no tablet, for
//!    `--skip-secs` (default 60): what one slot that cannot run writes (each slot
//!    closes with one update of the schedule record, so slots = schedule puts).
//!
//! The report multiplies: the idle rate by a day, a run by `--runs-per-day`
//! (default 24: an hourly schedule), and adds the deletes that come later (the job
//! after the job history, the backup record by retention). A backup that runs
//! longer than the bench's small one writes more progress: the report adds
//! `--backup-minutes` (default 10) of progress at one put per
//! `--progress-every-secs` (default 10, the tablet's `--job-progress-interval`).
//!
//! `cargo build --release --bin cairn && cargo bench --bench bench_growth -- \
//!   [--idle-secs 120] [--runs 3] [--skip-secs 60] [--runs-per-day 24] \
//!   [--backup-minutes 10] [--progress-every-secs 10]`
//! (or `scripts/bench.sh --only growth`). `CAIRN_BIN` picks another binary, e.g.
//! an older build to compare with.

#[path = "../common/mod.rs"]
mod common;
mod report;
mod tally;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cairn::testkit::{cairn_binary, http_get, wait_for, Cluster};
use clap::Parser;

use common::{loadavg, say};
use report::{report, Figures};
use tally::{total, Counter, Tally};

/// The whole benchmark is stopped (and cleaned up) past this.
const TOTAL_LIMIT: Duration = Duration::from_secs(1800);
/// Longest wait for any one thing.
const WAIT: Duration = Duration::from_secs(180);
/// Settling time after the start, before counting.
const SETTLE: Duration = Duration::from_secs(10);

/// etcd writes of one shard and a coordinator, per day at the default settings.
#[derive(Parser, Debug)]
#[command(name = "bench_growth", bin_name = "bench_growth")]
struct Opts {
    /// Seconds of the idle phase.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(10..))]
    idle_secs: u64,
    /// Scheduled backups to run (one a minute).
    #[arg(long, default_value_t = 3, value_parser = common::at_least_one)]
    runs: usize,
    /// Seconds of the skipped-slot phase (a slot every 10 s).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(20..))]
    skip_secs: u64,
    /// Scheduled runs per day the report assumes (24: hourly).
    #[arg(long, default_value_t = 24)]
    runs_per_day: u64,
    /// Length of a real backup, for the progress writes the report adds.
    #[arg(long, default_value_t = 10)]
    backup_minutes: u64,
    /// One progress put per this many seconds of backup (the tablet's
    /// --job-progress-interval).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    progress_every_secs: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The jobs of schedule `name`, from `cairn jobs --json`.
fn jobs_of(c: &Cluster, name: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let all: Vec<serde_json::Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"])?)?;
    Ok(all.into_iter().filter(|j| j["schedule"] == name).collect())
}

/// etcd's database size in bytes, from its /metrics.
async fn etcd_db_size(endpoint: &str) -> Option<u64> {
    let port: u16 = endpoint.rsplit_once(':')?.1.parse().ok()?;
    let body = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .ok()?
        .ok()?
        .1;
    body.lines()
        .find(|l| {
            l.starts_with("etcd_mvcc_db_total_size_in_bytes ")
                || l.starts_with("etcd_debugging_mvcc_db_total_size_in_bytes ")
        })?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|v| v as u64)
}

/// `t` less `rate` (per second) over `secs` for every class in `rate`.
fn less_background(t: &Tally, rate: &Tally, secs: f64) -> Tally {
    let mut out = t.clone();
    for (class, r) in rate {
        if let Some(c) = out.get_mut(class) {
            *c = c.minus(&r.scaled(secs));
        }
    }
    out.retain(|_, c| c.puts >= 0.05 || c.deletes >= 0.05);
    out
}

/// Every count of `t` divided by `n`.
fn per(t: &Tally, n: f64) -> Tally {
    t.iter().map(|(k, c)| (*k, c.scaled(1.0 / n))).collect()
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let bin = cairn_binary()?;
    say(format!(
        "bench_growth: one shard (primary + replica) and a coordinator; binary {}; load average {}",
        bin.display(),
        loadavg()
    ));
    let c = Cluster::start(bin).await?;
    let topo = c.topo().await?;
    let defaults = ["--health-interval", "2s", "--health-ttl", "10s"];
    let mut tablets = Vec::new();
    for uid in [100, 101] {
        let mut spec = c.tablet(uid, "ks", "0")?;
        spec.extra = defaults.iter().map(|s| s.to_string()).collect();
        tablets.push(c.spawn_tablet(&spec)?);
    }
    for t in tablets.iter_mut() {
        t.wait_healthy(&topo, WAIT).await?;
    }
    c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])?;
    tablets[0].sql("CREATE DATABASE IF NOT EXISTS growth; CREATE TABLE IF NOT EXISTS growth.t (id INT PRIMARY KEY, v TEXT); INSERT INTO growth.t VALUES (1, REPEAT('x', 1000))")?;
    let coord = c.spawn_coordinator("growth", &[])?;
    coord.wait_leader(WAIT).await?;
    tokio::time::sleep(SETTLE).await;
    let db_start = etcd_db_size(&c.etcd.endpoint()).await;
    let counter = Counter::start(&topo).await?;

    // 1. Idle.
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.idle_secs)).await;
    let idle_secs = t.elapsed().as_secs_f64();
    let idle = counter.take();
    let rate = per(&idle, idle_secs);
    say(format!(
        "[1] idle {idle_secs:.0} s: {} puts, {} bytes",
        total(&idle).puts,
        total(&idle).bytes
    ));

    // 2. Scheduled backups, one a minute.
    c.cli_ok(&[
        "schedule",
        "set",
        "growth",
        "--cron",
        "0 * * * * *",
        "--target",
        "ks/0",
        "--keep-count",
        "2",
    ])?;
    counter.take(); // the `schedule set` itself is not part of a run
    let t = Instant::now();
    let runs = o.runs;
    wait_for(
        &format!("{runs} scheduled backups"),
        WAIT + Duration::from_secs(70 * runs as u64),
        || async {
            let done = jobs_of(&c, "growth")?
                .iter()
                .filter(|j| j["state"] == "SUCCEEDED")
                .count();
            if let Some(j) = jobs_of(&c, "growth")?
                .iter()
                .find(|j| j["state"] == "FAILED")
            {
                bail!("a scheduled backup failed: {j}");
            }
            Ok((done >= runs).then_some(()))
        },
    )
    .await
    .with_context(|| coord.log_tail(20))?;
    // The tablet returns to service, the latest backup moves, retention runs.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let run_secs = t.elapsed().as_secs_f64();
    let window = counter.take();
    c.cli_ok(&["schedule", "remove", "growth"])?;
    let run_cost = per(&less_background(&window, &rate, run_secs), runs as f64);
    say(format!(
        "[2] {runs} scheduled backups in {run_secs:.0} s: {} puts in the window",
        total(&window).puts
    ));

    // 3. Slots that cannot run: a shard without tablets.
    c.cli_ok(&[
        "schedule",
        "set",
        "skipper",
        "--cron",
        "*/10 * * * * *",
        "--target",
        "ks/absent",
    ])?;
    counter.take();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.skip_secs)).await;
    let skip_secs = t.elapsed().as_secs_f64();
    let skipped = counter.take();
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["schedule", "list", "--json"])?)?;
    if let Some(s) = list.iter().find(|s| s["name"] == "skipper") {
        say(format!(
            "    the schedule says: skipped_runs {}, last_skip_reason {}",
            s["skipped_runs"], s["last_skip_reason"]
        ));
    }
    c.cli_ok(&["schedule", "remove", "skipper"])?;
    let slots = skipped.get("schedule").map_or(0.0, |c| c.puts);
    if slots < 1.0 {
        bail!("no slot of the skipping schedule closed in {skip_secs:.0} s");
    }
    let skip_cost = per(&less_background(&skipped, &rate, skip_secs), slots);
    say(format!(
        "[3] {slots} slots that could not run in {skip_secs:.0} s: {} puts in the window",
        total(&skipped).puts
    ));
    let db_end = etcd_db_size(&c.etcd.endpoint()).await;
    drop(counter);

    report(&Figures {
        rate,
        run_cost,
        skip_cost,
        runs_per_day: o.runs_per_day,
        extra_progress_puts: (o.backup_minutes * 60) as f64 / o.progress_every_secs as f64,
        backup_minutes: o.backup_minutes,
        progress_every_secs: o.progress_every_secs,
        db_start,
        db_end,
    });
    say(format!("load average at the end: {}", loadavg()));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_growth") {
        return Ok(());
    }
    let o = Opts::parse();
    // Dropping `run` drops the cluster, which kills its processes and removes
    // its directories.
    tokio::select! {
        r = tokio::time::timeout(TOTAL_LIMIT, run(o)) => {
            r.map_err(|_| anyhow!("benchmark exceeded {TOTAL_LIMIT:?}; stopped and cleaned up"))?
        }
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
    }
}
