//! Coordinator scale benchmark: a synthetic topology of 10,000 tablets in 2,500
//! shards written straight into etcd (no mysqld), a real `cairn coordinator` (the
//! release binary) following it, and real `cairn tablet` agents waiting for a seed.
//! Real etcd on loopback, everything in temporary directories removed at the end
//! (also on error, timeout or Ctrl-C). Prints each figure as it is measured and a
//! table against the goals at the end.
//!
//! 1. Topology: keyspace `bench`, shards `s0000`… each with a Shard record naming
//!    its primary, 4 tablets per shard (1 PRIMARY + 3 REPLICA, valid `Tablet`
//!    records) and a `Health` per tablet (mysqld up, serving; replicas replicating
//!    with lag 0), the Health records on one lease kept alive here. Written with
//!    concurrent single puts: etcd-client is not a dependency of this package, so
//!    its transaction types cannot be named from an example.
//! 2. `cairn coordinator --stagger-window 0s --pending-timeout 1h`: time from spawn
//!    to its "topology loaded" log line (and the line's own `elapsed_ms`), and to
//!    `/api/v1/status` answering with every tablet; VmRSS/VmHWM after the load.
//!    The stagger window is 0 so the job creation is measured without the
//!    deliberate spreading; the long pending timeout keeps the supervisor from
//!    failing (and retrying) the jobs no agent takes during the later phases.
//! 3. `cairn schedule set` of a keyspace-wide schedule (6-field cron, a few seconds
//!    ahead); from the cron slot (a whole second) to the first job and to all jobs
//!    in etcd (a count-only get of `<root>/global/jobs/` every 10 ms), and the slot
//!    the coordinator logs. `--schedule-runs` times (default 3; the jobs and the
//!    schedule of all but the last run are deleted again); RSS again, and the size
//!    and time of one `/api/v1/status` answer.
//! 4. Health throughput: first a step without writes (what the 10 Hz sampling
//!    costs), then Health puts (as the agents write them: one put per record, on
//!    the lease, `WRITE_CONCURRENCY` in flight) at increasing paced rates for
//!    `--step-secs` each, then unpaced (etcd's own max write rate here, with the
//!    coordinator watching). Every 100 ms: etcd's revision, then the status
//!    endpoint's `revision`; the lag in revisions and in time (since the oldest
//!    write the coordinator has not applied). A step "keeps up" when the lag over
//!    its last second stays under 1 s and the coordinator is caught up within 1 s
//!    of the writes stopping. The CPU used by the coordinator, etcd and this
//!    process, and etcd's mean WAL fsync time (its /metrics), are shown per step.
//! 5. Seed notification: in a fresh etcd, `--seed-agents` real agents started with
//!    `--restore-from-backup --wait-for-backup-interval 1h`, one per shard; for each
//!    shard a complete backup (a MANIFEST naming one small file whose hash is wrong,
//!    so the restore that follows fails at once without starting mysqld) is written
//!    into the file storage, then its BackupRecord is put into topo; the latency is
//!    from just before that put to the agent's "seed backup found; restoring" log
//!    line (its RFC3339 timestamp). `--seed-rounds` rounds of fresh agents.
//!
//! All processes share the machine's cores: etcd, the coordinator, the agents and
//! this process (the writer and the pollers) compete for CPU, and the CPU each used
//! is printed with the throughput steps.
//!
//! `cargo build --release --bin cairn && cargo bench --bench bench_coordinator -- \
//!   [--shards 2500] [--rates 1000,2000,5000,10000] [--step-secs 5] \
//!   [--schedule-runs 3] [--seed-agents 10] [--seed-rounds 3] [--keep-logs DIR]`
//!
//! `--keep-logs DIR` copies the coordinator's and etcd's logs there before cleanup.
//! A smoke run in seconds: `--shards 10 --rates 100 --step-secs 1 --schedule-runs 1
//! --seed-agents 2 --seed-rounds 1`.
//!
//! Files: `topology` the synthetic records, `probe` what is read of etcd, the
//! coordinator and logs, `schedule`, `throughput` and `seed` the phases 3 to 5,
//! `report` the closing table; this file runs the phases in order.

#[path = "../common/mod.rs"]
mod common;
mod probe;
mod report;
mod schedule;
mod seed;
mod throughput;
mod topology;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cairn::testkit::{cairn_binary, Cluster, CoordinatorProcess, Wait};
use chrono::Utc;
use clap::Parser;

use common::{child_pid, cores, loadavg, memory_mib, ms, ms_between, say};
use probe::{log_field, log_line, status, status_cost};
use report::{report, Figures};
use schedule::schedule_run;
use seed::seed_round;
use throughput::throughput_step;
use topology::{alias, tablet_of, write_topology};

const KS: &str = "bench";
const CELL: &str = "zone1";
const TABLETS_PER_SHARD: usize = 4;
/// Puts in flight while writing the topology and in the Health writer.
const WRITE_CONCURRENCY: usize = 64;
/// TTL of the lease the synthetic Health records live on.
const HEALTH_LEASE_TTL: i64 = 60;
/// How often the coordinator's revision is sampled in the throughput steps.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often the job count is polled after the slot.
const JOB_POLL: Duration = Duration::from_millis(10);
/// The whole benchmark is stopped (and cleaned up) past this.
const TOTAL_LIMIT: Duration = Duration::from_secs(290);
/// Longest wait for any one thing to happen.
const WAIT: Duration = Duration::from_secs(60);
const SCHEDULE: &str = "bench-all";

/// A coordinator over a synthetic topology: load, memory, job creation, Health
/// throughput, seed latency.
#[derive(Parser, Debug)]
#[command(name = "bench_coordinator", bin_name = "bench_coordinator")]
struct Opts {
    /// Shards of the synthetic topology (4 tablets each), 1..=9999.
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u16).range(1..=9999))]
    shards: u16,
    /// Paced Health put rates per second, one step each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000",
          value_parser = clap::value_parser!(u64).range(1..))]
    rates: Vec<u64>,
    /// Seconds per throughput step.
    #[arg(long = "step-secs", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    step_secs: u64,
    /// Agents waiting for a seed per round.
    #[arg(long, default_value_t = 10)]
    seed_agents: usize,
    /// Rounds of fresh agents.
    #[arg(long, default_value_t = 3)]
    seed_rounds: usize,
    /// Runs of the keyspace-wide schedule.
    #[arg(long, default_value_t = 3, value_parser = common::at_least_one)]
    schedule_runs: usize,
    /// Copy the coordinator's and etcd's logs here before cleanup.
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let bin = cairn_binary()?;
    let age = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or("?".into(), |d| format!("{:.0} min", d.as_secs_f64() / 60.0));
    let shards = usize::from(o.shards);
    let step = Duration::from_secs(o.step_secs);
    let tablets = shards * TABLETS_PER_SHARD;
    say(format!(
        "bench_coordinator: {} shards, {tablets} tablets; {} cores; load average {}; cairn binary built {age} ago",
        shards,
        cores(),
        loadavg()
    ));

    // 1. The topology.
    let c = Cluster::start(bin.clone()).await?;
    let topo = c.topo().await?;
    let lease = Arc::new(topo.lease(HEALTH_LEASE_TTL).await?);
    let t = Instant::now();
    let records = write_topology(&topo, lease.id(), shards).await?;
    let write_secs = t.elapsed().as_secs_f64();
    say(format!(
        "[1] wrote {records} records ({} keyspace, {} shards, {tablets} tablets, {tablets} health) in {:.2} s = {:.0} puts/s ({WRITE_CONCURRENCY} in flight, no watcher)",
        1, shards, write_secs, records as f64 / write_secs
    ));

    // 2. The coordinator loads it.
    let spawn_wall = Utc::now();
    let spawned = Instant::now();
    let coord: CoordinatorProcess = c.spawn_coordinator(
        "bench",
        &["--stagger-window", "0s", "--pending-timeout", "1h"],
    )?;
    let port = coord.port;
    let pid = Wait::new("the coordinator's pid", Duration::from_secs(5))
        .every(Duration::from_millis(5))
        .until(|| async { Ok(child_pid("coordinator", "--id", "bench")) })
        .await?;
    let want = tablets as u64;
    Wait::new("status with every tablet", WAIT)
        .every(Duration::from_millis(10))
        .until(|| async { Ok(status(port).await.ok().filter(|s| s.tablets == want)) })
        .await
        .with_context(|| coord.log_tail(20))?;
    let spawn_to_status_ms = ms(spawned.elapsed());
    let loaded = log_line(&coord.log(), "topology loaded");
    let load_log_ms = loaded
        .as_ref()
        .and_then(|(_, l)| log_field(l, "elapsed_ms"));
    let spawn_to_loaded_ms = loaded.as_ref().map(|(t, _)| ms_between(spawn_wall, *t));
    Wait::new("leadership", WAIT)
        .every(Duration::from_millis(20))
        .until(|| async { Ok(status(port).await.ok().filter(|s| s.is_leader)) })
        .await?;
    let mem_loaded = memory_mib(pid);
    say(format!(
        "[2] coordinator: topology loaded in {} ms (its log), {} ms after spawn; status with {tablets} tablets {:.0} ms after spawn; RSS {} MiB, peak {} MiB",
        load_log_ms.map_or("?".into(), |v| v.to_string()),
        spawn_to_loaded_ms.map_or("?".into(), |v| format!("{v:.0}")),
        spawn_to_status_ms,
        mem_loaded.map_or("?".into(), |m| format!("{:.1}", m.0)),
        mem_loaded.map_or("?".into(), |m| format!("{:.1}", m.1)),
    ));

    // 3. A keyspace-wide schedule fires (a few times; the jobs of all but the
    // last run are deleted again, the last run's stay for the next phase).
    let mut sched_runs = Vec::new();
    for i in 1..=o.schedule_runs {
        let last = i == o.schedule_runs;
        let r = schedule_run(&c, &topo, &coord, shards, &format!("{SCHEDULE}-{i}"), !last)
            .await
            .with_context(|| format!("schedule run {i}"))?;
        say(format!(
            "[3] run {i}: cron `{}`: first job +{:.0} ms, all {} jobs +{:.0} ms after the slot ({}); the coordinator's slot +{} ms, \"schedule run started\" logged +{} ms",
            r.cron,
            r.first_ms,
            shards,
            r.all_ms,
            r.states,
            r.coord_slot_ms.map_or("?".into(), |v| format!("{v:.0}")),
            r.logged_ms.map_or("?".into(), |v| format!("{v:.0}")),
        ));
        sched_runs.push(r);
    }
    let mem_jobs = memory_mib(pid);
    let (status_kib, status_ms) = status_cost(port, 20).await?;
    say(format!(
        "[3] coordinator with {} jobs: RSS {} MiB, peak {} MiB; /api/v1/status answers {status_kib:.0} KiB in {status_ms:.1} ms (median of 20)",
        shards,
        mem_jobs.map_or("?".into(), |m| format!("{:.1}", m.0)),
        mem_jobs.map_or("?".into(), |m| format!("{:.1}", m.1)),
    ));

    // 4. Health throughput.
    let keys: Arc<Vec<(String, bool)>> = Arc::new(
        (1..=tablets as u32)
            .map(|u| (topo.keys().health(&alias(u)), tablet_of(u).1))
            .collect(),
    );
    let seq = Arc::new(AtomicU64::new(1));
    let mut steps = Vec::new();
    say(format!(
        "[4] Health updates, {} s per step, {WRITE_CONCURRENCY} puts in flight, sampled every {} ms (the {} pending jobs stay in the cache):",
        step.as_secs(),
        SAMPLE_EVERY.as_millis(),
        shards
    ));
    say(format!(
        "    {:>8} {:>9} {:>9} {:>9} {:>14} {:>16} {:>10} {:>9}  {:>22} {:>9}  {}",
        "target",
        "written",
        "writes/s",
        "applied/s",
        "lag rev p50/max",
        "lag ms p50/max",
        "last 1s ms",
        "catch-up",
        "CPU% coord/etcd/bench",
        "fsync ms",
        "keeps up"
    ));
    // First no writes at all: what the sampling itself costs the coordinator.
    let rates: Vec<Option<u64>> = [Some(0)]
        .into_iter()
        .chain(o.rates.iter().map(|r| Some(*r)))
        .chain([None])
        .collect();
    for rate in rates {
        let s = throughput_step(
            &topo,
            port,
            (pid, c.etcd.pid()),
            keys.clone(),
            lease.clone(),
            rate,
            step,
            seq.clone(),
        )
        .await?;
        say(format!(
            "    {:>8} {:>9} {:>9.0} {:>9.0} {:>14} {:>16} {:>10.0} {:>9}  {:>22} {:>9}  {}",
            s.label,
            s.writes,
            s.achieved,
            s.applied,
            format!("{:.0}/{:.0}", s.lag_rev_p50, s.lag_rev_max),
            format!("{:.0}/{:.0}", s.lag_ms_p50, s.lag_ms_max),
            s.lag_ms_last_second,
            s.catch_up_ms
                .map_or(">20 s".into(), |v| format!("{v:.0} ms")),
            format!("{:.0}/{:.0}/{:.0}", s.cpu_coord, s.cpu_etcd, s.cpu_bench),
            s.fsync_ms.map_or("?".into(), |v| format!("{v:.2}")),
            if s.keeps_up { "yes" } else { "no" }
        ));
        steps.push(s);
    }
    if let Some((rss, hwm)) = memory_mib(pid) {
        say(format!(
            "    coordinator RSS after the steps {rss:.1} MiB, peak {hwm:.1} MiB"
        ));
    }
    let tail: String = coord
        .log()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    if !tail.is_empty() {
        say(format!("    coordinator warnings (first 5):\n{tail}"));
    }
    if let Some(dir) = &o.keep_logs {
        std::fs::create_dir_all(dir)?;
        std::fs::copy(&coord.log_path, dir.join("coordinator.log"))?;
        std::fs::copy(c.etcd.log_path(), dir.join("etcd.log"))?;
        say(format!(
            "    coordinator and etcd logs copied to {}",
            dir.display()
        ));
    }
    drop(coord);
    drop(lease);
    drop(topo);
    drop(c);

    // 5. Seed notification latency.
    let c = Cluster::start(bin).await?;
    let topo = c.topo().await?;
    let mut seed = Vec::new();
    for round in 0..o.seed_rounds {
        let lat = seed_round(&c, &topo, round, o.seed_agents)
            .await
            .with_context(|| format!("seed round {}", round + 1))?;
        say(format!(
            "[5] seed round {}: {} agents, ms from BackupRecord put to \"seed backup found; restoring\": {}",
            round + 1,
            lat.len(),
            lat.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(" ")
        ));
        seed.extend(lat);
    }
    drop(topo);
    drop(c);

    report(
        &Figures {
            records,
            write_secs,
            load_log_ms,
            spawn_to_loaded_ms,
            spawn_to_status_ms,
            mem_loaded,
            sched_runs,
            mem_jobs,
            steps,
            seed,
        },
        tablets,
        shards,
    );
    say(format!("load average at the end: {}", loadavg()));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_coordinator") {
        return Ok(());
    }
    let o = Opts::parse();
    // Dropping `run` (timeout, Ctrl-C) drops the clusters, coordinator and agents,
    // which kills their processes and removes their directories.
    tokio::select! {
        r = tokio::time::timeout(TOTAL_LIMIT, run(o)) => {
            r.map_err(|_| anyhow!("benchmark exceeded {TOTAL_LIMIT:?}; stopped and cleaned up"))?
        }
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
    }
}
