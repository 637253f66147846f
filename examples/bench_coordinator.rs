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
//! `cargo build --release --bin cairn && cargo run --release --example bench_coordinator -- \
//!   [--shards 2500] [--rates 1000,2000,5000,10000] [--step-secs 5] \
//!   [--schedule-runs 3] [--seed-agents 10] [--seed-rounds 3] [--keep-logs DIR]`
//!
//! `--keep-logs DIR` copies the coordinator's and etcd's logs there before cleanup.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cairn::backup::manifest::{
    backup_name, base, BackupMethod, CompressionEngine, FileEntry, Manifest, FORMAT_VERSION,
    HASH_ALGORITHM_SHA256,
};
use cairn::backup::storage::{BackupStorage, FileStorage};
use cairn::testkit::{cairn_binary, http_get, Cluster, CoordinatorProcess, TabletProcess};
use cairn_topo::{
    BackupRecord, Health, Job, JobState, Keyspace, Shard, Tablet, TabletAlias, TabletType, Topo,
};
use chrono::{DateTime, Timelike, Utc};
use futures::StreamExt;
use serde::Deserialize;

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

struct Opts {
    shards: usize,
    rates: Vec<u64>,
    step: Duration,
    seed_agents: usize,
    seed_rounds: usize,
    schedule_runs: usize,
    keep_logs: Option<std::path::PathBuf>,
}

const USAGE: &str = "usage: bench_coordinator [--shards N] [--rates R1,R2,…] [--step-secs S] \
                     [--seed-agents N] [--seed-rounds N] [--schedule-runs N] [--keep-logs DIR]";

fn parse_args() -> anyhow::Result<Option<Opts>> {
    let mut o = Opts {
        shards: 2500,
        rates: vec![1000, 2000, 5000, 10000],
        step: Duration::from_secs(5),
        seed_agents: 10,
        seed_rounds: 3,
        schedule_runs: 3,
        keep_logs: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--shards" => o.shards = val()?.parse().context("--shards")?,
            "--rates" => {
                o.rates = val()?
                    .split(',')
                    .map(|r| r.trim().parse::<u64>().context("--rates"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--step-secs" => o.step = Duration::from_secs(val()?.parse().context("--step-secs")?),
            "--seed-agents" => o.seed_agents = val()?.parse().context("--seed-agents")?,
            "--seed-rounds" => o.seed_rounds = val()?.parse().context("--seed-rounds")?,
            "--schedule-runs" => o.schedule_runs = val()?.parse().context("--schedule-runs")?,
            "--keep-logs" => o.keep_logs = Some(val()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument {other:?} ({USAGE})"),
        }
    }
    if o.shards == 0 || o.shards > 9999 {
        bail!("--shards must be 1..=9999");
    }
    if o.schedule_runs == 0 {
        bail!("--schedule-runs must be at least 1");
    }
    if o.rates.contains(&0) || o.step.is_zero() {
        bail!("--rates and --step-secs must be positive");
    }
    Ok(Some(o))
}

// ---------------------------------------------------------------------------
// Small helpers

/// `T::default()` for an option type of etcd-client, fixed by `_fix` (never
/// called): that crate is not a dependency of this package, so its types cannot be
/// named here, but their methods can be called.
fn default_for<T: Default>(_fix: impl FnOnce(T)) -> T {
    T::default()
}

/// Number of keys under `prefix`: a count-only range, no keys or values travel.
async fn count_keys(topo: &Topo, prefix: &str) -> anyhow::Result<i64> {
    let mut c = topo.raw_client_for_tests();
    let opts = default_for(|o| {
        let mut c = c.clone();
        drop(c.get("", Some(o)));
    })
    .with_prefix()
    .with_count_only();
    Ok(c.get(prefix, Some(opts)).await?.count())
}

/// Deletes every key under `prefix` in one request.
async fn delete_prefix(topo: &Topo, prefix: &str) -> anyhow::Result<()> {
    let mut c = topo.raw_client_for_tests();
    let opts = default_for(|o| {
        let mut c = c.clone();
        drop(c.delete("", Some(o)));
    })
    .with_prefix();
    c.delete(prefix, Some(opts)).await?;
    Ok(())
}

/// etcd's current revision.
async fn etcd_revision(topo: &Topo) -> anyhow::Result<i64> {
    let probe = format!("{}bench-probe", topo.keys().all());
    Ok(topo.get_raw(&probe).await?.1)
}

/// etcd's WAL fsyncs so far: (count, total seconds), from its /metrics.
async fn etcd_fsyncs(endpoint: &str) -> Option<(f64, f64)> {
    let port: u16 = endpoint.rsplit_once(':')?.1.parse().ok()?;
    let body = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .ok()?
        .ok()?
        .1;
    let get = |name: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((
        get("etcd_disk_wal_fsync_duration_seconds_count ")?,
        get("etcd_disk_wal_fsync_duration_seconds_sum ")?,
    ))
}

/// What this benchmark reads of `/api/v1/status`.
#[derive(Debug, Deserialize)]
struct Status {
    tablets: u64,
    revision: i64,
    is_leader: bool,
    /// Jobs not yet finished.
    jobs: Vec<serde::de::IgnoredAny>,
}

/// `/api/v1/status` of the coordinator (blocking HTTP, off the runtime).
async fn status(port: u16) -> anyhow::Result<Status> {
    tokio::task::spawn_blocking(move || {
        let (code, body) = http_get(port, "/api/v1/status")?;
        if code != 200 {
            bail!("status endpoint answered {code}");
        }
        Ok(serde_json::from_str::<Status>(&body)?)
    })
    .await?
}

/// Size of one `/api/v1/status` answer (KiB) and the median time of `n` calls (ms).
async fn status_cost(port: u16, n: usize) -> anyhow::Result<(f64, f64)> {
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..n {
            let t = Instant::now();
            let (_, body) = http_get(port, "/api/v1/status")?;
            times.push(ms(t.elapsed()));
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        Ok((size as f64 / 1024.0, pct(&times, 50.0)))
    })
    .await?
}

/// (VmRSS, VmHWM) in MiB from /proc/PID/status.
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| -> Option<f64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

/// The pid of our child `cairn coordinator --id ID` (the testkit does not expose
/// it): found in /proc by parent pid and command line.
fn coordinator_pid(id: &str) -> Option<u32> {
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_it = args.iter().any(|a| *a == b"coordinator")
            && args
                .windows(2)
                .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
        if is_it {
            return Some(pid);
        }
    }
    None
}

/// The first log line containing `needle`: its RFC3339 timestamp and the line.
fn log_line(log: &str, needle: &str) -> Option<(DateTime<Utc>, String)> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let ts = line.split_whitespace().next()?;
    let t = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some((t, line.to_string()))
}

/// `name=VALUE` of a log line, as a number.
fn log_field(line: &str, name: &str) -> Option<u64> {
    let pat = format!("{name}=");
    let at = line.find(&pat)? + pat.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn say(s: impl AsRef<str>) {
    println!("{}", s.as_ref());
    let _ = std::io::stdout().flush();
}

async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(poll).await;
    }
}

// ---------------------------------------------------------------------------
// The synthetic topology

fn shard_name(i: usize) -> String {
    format!("s{i:04}")
}

/// Tablet uid (1-based) `u` is tablet `(u-1) % 4` of shard `(u-1) / 4`; the
/// first of each shard is its primary.
fn tablet_of(u: u32) -> (usize, bool) {
    let i = (u - 1) as usize;
    (i / TABLETS_PER_SHARD, i % TABLETS_PER_SHARD == 0)
}

fn alias(u: u32) -> TabletAlias {
    TabletAlias {
        cell: CELL.into(),
        uid: u,
    }
}

fn health(primary: bool, seq: u64) -> Health {
    Health {
        mysqld_up: true,
        replication_io_running: !primary,
        replication_sql_running: !primary,
        replication_lag_seconds: (!primary).then_some(0),
        gtid_position: Some(format!("MariaDB/0-1-{}", 1000 + seq)),
        serving: true,
        busy_job: None,
        last_error: None,
        restoring_backup: None,
        updated_at: Some(Utc::now()),
        ..Health::default()
    }
}

/// Every record of the topology as (key, JSON, on the Health lease).
fn topology_records(
    topo: &Topo,
    shards: usize,
) -> anyhow::Result<Vec<(String, serde_json::Value, bool)>> {
    let k = topo.keys();
    let now = Utc::now();
    let mut out = Vec::with_capacity(1 + shards * (1 + 2 * TABLETS_PER_SHARD));
    out.push((
        k.keyspace(KS),
        serde_json::to_value(Keyspace {
            name: KS.into(),
            created_at: now,
        })?,
        false,
    ));
    for s in 0..shards {
        let name = shard_name(s);
        let first = (s * TABLETS_PER_SHARD + 1) as u32;
        out.push((
            k.shard(KS, &name),
            serde_json::to_value(Shard {
                keyspace: KS.into(),
                name: name.clone(),
                primary_alias: Some(alias(first)),
                primary_term_start_time: Some(now),
                latest_backup: None,
                latest_backup_time: None,
                created_at: now,
            })?,
            false,
        ));
        for u in first..first + TABLETS_PER_SHARD as u32 {
            let primary = u == first;
            let ty = if primary {
                TabletType::Primary
            } else {
                TabletType::Replica
            };
            let a = alias(u);
            out.push((
                k.tablet(&a),
                serde_json::to_value(Tablet {
                    alias: a.clone(),
                    hostname: format!("bench-host-{u}"),
                    mysql_host: format!("bench-host-{u}"),
                    mysql_port: 3306,
                    port: 15000,
                    keyspace: KS.into(),
                    shard: name.clone(),
                    tablet_type: ty,
                    base_type: ty,
                    flavor: "MariaDB".into(),
                    tablet_dir: format!("tablet-{u}"),
                    started_at: now,
                })?,
                false,
            ));
            out.push((
                k.health(&a),
                serde_json::to_value(health(primary, 0))?,
                true,
            ));
        }
    }
    Ok(out)
}

/// Writes every record with `WRITE_CONCURRENCY` puts in flight; returns the count.
async fn write_topology(topo: &Topo, lease: i64, shards: usize) -> anyhow::Result<usize> {
    let records = topology_records(topo, shards)?;
    let n = records.len();
    let results: Vec<_> = futures::stream::iter(records)
        .map(|(key, value, leased)| {
            let topo = topo.clone();
            async move {
                topo.put(&key, &value, leased.then_some(lease))
                    .await
                    .with_context(|| format!("writing {key}"))
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Health throughput

/// One sample of the coordinator's progress.
struct Sample {
    /// When the status request was sent.
    at: Instant,
    /// etcd's revision just before.
    etcd_rev: i64,
    /// The revision the coordinator's cache is current to.
    coord_rev: i64,
}

/// Figures of one throughput step.
struct Step {
    label: String,
    target: Option<u64>,
    writes: u64,
    achieved: f64,
    applied: f64,
    lag_rev_p50: f64,
    lag_rev_max: f64,
    lag_ms_p50: f64,
    lag_ms_max: f64,
    lag_ms_last_second: f64,
    catch_up_ms: Option<f64>,
    cpu_coord: f64,
    cpu_etcd: f64,
    cpu_bench: f64,
    /// Mean duration of etcd's WAL fsyncs during the step.
    fsync_ms: Option<f64>,
    keeps_up: bool,
}

/// Health puts on every tablet in turn: at `rate` per second, or as fast as
/// `WRITE_CONCURRENCY` puts in flight go when `None`, until `end`. Records the
/// revision and completion time of each write.
#[allow(clippy::too_many_arguments)]
fn spawn_writers(
    topo: &Topo,
    keys: Arc<Vec<(String, bool)>>,
    lease: Arc<cairn_topo::LeaseHandle>,
    rate: Option<u64>,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    seq: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<(i64, Instant)>>>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let next = Arc::new(AtomicU64::new(0));
    (0..WRITE_CONCURRENCY)
        .map(|_| {
            let (topo, keys, lease, next, seq, log) = (
                topo.clone(),
                keys.clone(),
                lease.clone(),
                next.clone(),
                seq.clone(),
                log.clone(),
            );
            tokio::spawn(async move {
                if rate == Some(0) {
                    return Ok(());
                }
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / r as f64);
                        if due >= end {
                            return Ok(());
                        }
                        tokio::time::sleep_until(due).await;
                    }
                    // Behind the pace (etcd or CPU saturated): stop at the end anyway.
                    if tokio::time::Instant::now() >= end {
                        return Ok(());
                    }
                    let s = seq.fetch_add(1, Ordering::Relaxed);
                    let (key, primary) = &keys[(s % keys.len() as u64) as usize];
                    let rev = topo
                        .put(key, &health(*primary, s), Some(lease.id()))
                        .await
                        .with_context(|| format!("Health put of {key}"))?;
                    if let Ok(mut l) = log.lock() {
                        l.push((rev, Instant::now()));
                    }
                }
            })
        })
        .collect()
}

async fn sample(topo: &Topo, port: u16) -> anyhow::Result<Sample> {
    let etcd_rev = etcd_revision(topo).await?;
    let at = Instant::now();
    let coord_rev = status(port).await?.revision;
    Ok(Sample {
        at,
        etcd_rev,
        coord_rev,
    })
}

/// Lag of a sample in time: since the completion of the oldest write the
/// coordinator had not applied (0 when caught up). `writes` is sorted by revision.
fn time_lag_ms(s: &Sample, writes: &[(i64, Instant)]) -> f64 {
    if s.coord_rev >= s.etcd_rev {
        return 0.0;
    }
    let i = writes.partition_point(|(r, _)| *r <= s.coord_rev);
    match writes.get(i) {
        Some((_, t)) => ms(s.at.saturating_duration_since(*t)),
        None => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
async fn throughput_step(
    topo: &Topo,
    port: u16,
    pids: (u32, Option<u32>),
    keys: Arc<Vec<(String, bool)>>,
    lease: Arc<cairn_topo::LeaseHandle>,
    rate: Option<u64>,
    dur: Duration,
    seq: Arc<AtomicU64>,
) -> anyhow::Result<Step> {
    let (coord_pid, etcd_pid) = pids;
    let me = std::process::id();
    let cpu0 = (
        cpu_seconds(coord_pid).unwrap_or(0.0),
        etcd_pid.and_then(cpu_seconds).unwrap_or(0.0),
        cpu_seconds(me).unwrap_or(0.0),
    );
    let fs0 = etcd_fsyncs(topo.endpoints()).await;
    let log = Arc::new(Mutex::new(Vec::<(i64, Instant)>::new()));
    let t0 = Instant::now();
    let start = tokio::time::Instant::now();
    let end = start + dur;
    let writers = spawn_writers(topo, keys, lease, rate, start, end, seq, log.clone());
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        samples.push(sample(topo, port).await?);
    }
    for w in writers {
        w.await??;
    }
    let writes_end = Instant::now();
    let cpu1 = (
        cpu_seconds(coord_pid).unwrap_or(0.0),
        etcd_pid.and_then(cpu_seconds).unwrap_or(0.0),
        cpu_seconds(me).unwrap_or(0.0),
    );
    let wall = t0.elapsed().as_secs_f64();
    let fsync_ms = match (fs0, etcd_fsyncs(topo.endpoints()).await) {
        (Some(a), Some(b)) if b.0 > a.0 => Some((b.1 - a.1) / (b.0 - a.0) * 1000.0),
        _ => None,
    };
    // Catch up: until the coordinator reports the last revision written.
    let final_rev = etcd_revision(topo).await?;
    let mut catch_up_ms = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let s = sample(topo, port).await?;
        let done = s.coord_rev >= final_rev;
        let at = s.at;
        samples.push(s);
        if done {
            catch_up_ms = Some(ms(at.saturating_duration_since(writes_end)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut writes = std::mem::take(&mut *log.lock().map_err(|_| anyhow!("poisoned"))?);
    writes.sort_unstable_by_key(|(r, _)| *r);
    let n = writes.len() as u64;
    let last_write = writes.iter().map(|(_, t)| *t).max().unwrap_or(t0);
    let achieved = n as f64 / last_write.duration_since(t0).as_secs_f64().max(1e-3);
    let during: Vec<&Sample> = samples.iter().filter(|s| s.at <= writes_end).collect();
    let applied = match (during.first(), during.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            (b.coord_rev - a.coord_rev) as f64 / b.at.duration_since(a.at).as_secs_f64()
        }
        _ => f64::NAN,
    };
    let mut lag_rev: Vec<f64> = during
        .iter()
        .map(|s| (s.etcd_rev - s.coord_rev).max(0) as f64)
        .collect();
    let mut lag_ms: Vec<f64> = during.iter().map(|s| time_lag_ms(s, &writes)).collect();
    let last_second = writes_end - Duration::from_secs(1);
    let lag_ms_last_second = during
        .iter()
        .filter(|s| s.at >= last_second)
        .map(|s| time_lag_ms(s, &writes))
        .fold(0.0, f64::max);
    lag_rev.sort_by(f64::total_cmp);
    lag_ms.sort_by(f64::total_cmp);
    let keeps_up = lag_ms_last_second < 1000.0 && catch_up_ms.is_some_and(|c| c < 1000.0);
    Ok(Step {
        label: match rate {
            Some(0) => "idle".into(),
            Some(r) => format!("{r}/s"),
            None => "max".into(),
        },
        target: rate,
        writes: n,
        achieved,
        applied,
        lag_rev_p50: pct(&lag_rev, 50.0),
        lag_rev_max: pct(&lag_rev, 100.0),
        lag_ms_p50: pct(&lag_ms, 50.0),
        lag_ms_max: pct(&lag_ms, 100.0),
        lag_ms_last_second,
        catch_up_ms,
        cpu_coord: (cpu1.0 - cpu0.0) / wall * 100.0,
        cpu_etcd: (cpu1.1 - cpu0.1) / wall * 100.0,
        cpu_bench: (cpu1.2 - cpu0.2) / wall * 100.0,
        fsync_ms,
        keeps_up,
    })
}

// ---------------------------------------------------------------------------
// Seed notification

/// Writes a complete backup of `shard` whose one file has a wrong hash (the
/// agent finds it, starts its restore and fails at the hash check, without ever
/// starting mysqld); returns its topo record.
async fn write_seed_backup(
    storage: &FileStorage,
    ks: &str,
    shard: &str,
) -> anyhow::Result<BackupRecord> {
    let now = Utc::now();
    let time = now.with_nanosecond(0).unwrap_or(now);
    let from = alias(999_999);
    let name = backup_name(time, &from);
    let w = storage.start_backup(ks, shard, &name).await?;
    let data = b"not a real data file\n";
    let mut sink = w.create_file("0").await?;
    sink.write_all(data)?;
    let stored = sink.finish()?;
    let mut m = Manifest {
        backup_name: name.clone(),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-1-1".into(),
        purged_position: String::new(),
        backup_time: time,
        finished_time: time,
        server_uuid: String::new(),
        tablet_alias: from.to_string(),
        hostname: "bench".into(),
        keyspace: ks.into(),
        shard: shard.into(),
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: CompressionEngine::None,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION,
    };
    m.set_file_entries(vec![FileEntry {
        base: base::DATA.into(),
        name: "bench/bogus.ibd".into(),
        stored_name: "0".into(),
        size: data.len() as u64,
        stored_size: stored,
        hash: "0".repeat(64),
        hash_algorithm: HASH_ALGORITHM_SHA256.into(),
    }]);
    w.write_manifest(&m).await?;
    Ok(BackupRecord {
        name,
        keyspace: ks.into(),
        shard: shard.into(),
        tablet_alias: from.to_string(),
        engine: cairn_topo::BackupMethod::Builtin,
        backup_time: time,
        finished_time: Some(time),
        position: m.position.clone(),
        size_bytes: stored,
        complete: true,
    })
}

/// One round: `n` fresh agents waiting in shards of their own, a seed for each,
/// one after another; returns the latencies in ms.
async fn seed_round(c: &Cluster, topo: &Topo, round: usize, n: usize) -> anyhow::Result<Vec<f64>> {
    let ks = "seed";
    let mut agents: Vec<TabletProcess> = Vec::new();
    for i in 0..n {
        let uid = 5000 + (round * n + i) as u32;
        let mut spec = c.tablet(uid, ks, &format!("r{round}a{i}"))?;
        spec.extra = vec![
            "--restore-from-backup".into(),
            "--wait-for-backup-interval".into(),
            "1h".into(),
        ];
        agents.push(c.spawn_tablet(&spec)?);
    }
    for a in agents.iter_mut() {
        let deadline = Instant::now() + WAIT;
        while !a.log().contains("waiting for a backup to restore") {
            if let Some(st) = a.try_exit() {
                bail!(
                    "agent {} exited ({st}):\n{}",
                    a.spec.alias(),
                    a.log_tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "agent {} did not start waiting:\n{}",
                    a.spec.alias(),
                    a.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let storage = FileStorage::new(c.backup_root());
    let mut put_at = Vec::new();
    for a in &agents {
        let rec = write_seed_backup(&storage, ks, &a.spec.shard).await?;
        let key = topo.keys().backup(ks, &a.spec.shard, &rec.name);
        let t = Utc::now();
        topo.put(&key, &rec, None).await?;
        put_at.push(t);
        // One seed at a time: each notification is measured on its own.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for (a, t) in agents.iter().zip(put_at) {
        let seen = wait_until(
            "the seed log line",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async { log_line(&a.log(), "seed backup found; restoring").map(|(ts, _)| ts) },
        )
        .await
        .with_context(|| format!("agent {}:\n{}", a.spec.alias(), a.log_tail(20)))?;
        out.push(ms_between(t, seen));
    }
    drop(agents);
    Ok(out)
}

/// One keyspace-wide schedule run, measured.
struct SchedRun {
    cron: String,
    /// From the cron slot (a whole second) to the first job in etcd.
    first_ms: f64,
    /// From the cron slot to every shard's job in etcd.
    all_ms: f64,
    /// The slot the coordinator logged, relative to the cron slot.
    coord_slot_ms: Option<f64>,
    /// When the coordinator logged "schedule run started", from the cron slot.
    logged_ms: Option<f64>,
    /// Jobs by state.
    states: String,
}

/// Sets a keyspace-wide schedule `name` firing a few seconds ahead and measures
/// until every shard's job is in etcd; with `clear`, deletes the schedule and all
/// jobs afterwards and waits until the coordinator saw that.
async fn schedule_run(
    c: &Cluster,
    topo: &Topo,
    coord: &CoordinatorProcess,
    shards: usize,
    name: &str,
    clear: bool,
) -> anyhow::Result<SchedRun> {
    let now = Utc::now();
    let slot = DateTime::from_timestamp(now.timestamp() + 3, 0).context("slot time")?;
    let cron = format!("{} {} {} * * *", slot.second(), slot.minute(), slot.hour());
    c.cli_ok(&["schedule", "set", name, "--cron", &cron, "--target", KS])?;
    if Utc::now() >= slot {
        bail!("`schedule set` returned after the slot {slot}; cannot measure");
    }
    let jobs_prefix = topo.keys().jobs_prefix();
    let mut first_job = None;
    let deadline = Instant::now() + WAIT;
    let all_jobs = loop {
        let n = count_keys(topo, &jobs_prefix).await?;
        let at = Utc::now();
        if n > 0 && first_job.is_none() {
            first_job = Some(at);
        }
        if n as usize >= shards {
            break at;
        }
        if Instant::now() > deadline {
            bail!(
                "only {n} of {shards} jobs after {WAIT:?}:\n{}",
                coord.log_tail(20)
            );
        }
        tokio::time::sleep(JOB_POLL).await;
    };
    let (kvs, _) = topo.list_raw(&jobs_prefix).await?;
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for (_, v, _) in &kvs {
        let j: Job = serde_json::from_slice(v)?;
        let tag = match (j.state, tablet_of(j.tablet_alias.uid.max(1)).1) {
            (JobState::Pending, false) => "PENDING on a replica".to_string(),
            (JobState::Pending, true) => "PENDING on a PRIMARY (wrong)".to_string(),
            (s, _) => format!("{s:?}"),
        };
        *states.entry(tag).or_default() += 1;
    }
    let needle = format!("schedule run started schedule={name} ");
    let logged = wait_until(
        "the run log line",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async { log_line(&coord.log(), &needle) },
    )
    .await
    .ok();
    let coord_slot = logged.as_ref().and_then(|(_, l)| {
        let at = l.find("slot=")? + "slot=".len();
        let end = l[at..].find(" UTC")? + at;
        chrono::NaiveDateTime::parse_from_str(&l[at..end], "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    });
    if clear {
        delete_prefix(topo, &jobs_prefix).await?;
        c.cli_ok(&["schedule", "remove", name])?;
        wait_until(
            "the coordinator to see the jobs deleted",
            WAIT,
            Duration::from_millis(50),
            || async { status(coord.port).await.ok().filter(|s| s.jobs.is_empty()) },
        )
        .await?;
    }
    Ok(SchedRun {
        cron,
        first_ms: ms_between(slot, first_job.unwrap_or(all_jobs)),
        all_ms: ms_between(slot, all_jobs),
        coord_slot_ms: coord_slot.map(|t| ms_between(slot, t)),
        logged_ms: logged.map(|(t, _)| ms_between(slot, t)),
        states: states
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

// ---------------------------------------------------------------------------

struct Figures {
    records: usize,
    write_secs: f64,
    load_log_ms: Option<u64>,
    spawn_to_loaded_ms: Option<f64>,
    spawn_to_status_ms: f64,
    mem_loaded: Option<(f64, f64)>,
    sched_runs: Vec<SchedRun>,
    mem_jobs: Option<(f64, f64)>,
    steps: Vec<Step>,
    seed: Vec<f64>,
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let bin = cairn_binary()?;
    let age = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or("?".into(), |d| format!("{:.0} min", d.as_secs_f64() / 60.0));
    let tablets = o.shards * TABLETS_PER_SHARD;
    say(format!(
        "bench_coordinator: {} shards, {tablets} tablets; {} cores; load average {}; cairn binary built {age} ago",
        o.shards,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    ));

    // 1. The topology.
    let c = Cluster::start(bin.clone()).await?;
    let topo = c.topo().await?;
    let lease = Arc::new(topo.lease(HEALTH_LEASE_TTL).await?);
    let t = Instant::now();
    let records = write_topology(&topo, lease.id(), o.shards).await?;
    let write_secs = t.elapsed().as_secs_f64();
    say(format!(
        "[1] wrote {records} records ({} keyspace, {} shards, {tablets} tablets, {tablets} health) in {:.2} s = {:.0} puts/s ({WRITE_CONCURRENCY} in flight, no watcher)",
        1, o.shards, write_secs, records as f64 / write_secs
    ));

    // 2. The coordinator loads it.
    let spawn_wall = Utc::now();
    let spawned = Instant::now();
    let coord: CoordinatorProcess = c.spawn_coordinator(
        "bench",
        &["--stagger-window", "0s", "--pending-timeout", "1h"],
    )?;
    let port = coord.port;
    let pid = wait_until(
        "the coordinator's pid",
        Duration::from_secs(5),
        Duration::from_millis(5),
        || async { coordinator_pid("bench") },
    )
    .await?;
    let want = tablets as u64;
    wait_until(
        "status with every tablet",
        WAIT,
        Duration::from_millis(10),
        || async { status(port).await.ok().filter(|s| s.tablets == want) },
    )
    .await
    .with_context(|| coord.log_tail(20))?;
    let spawn_to_status_ms = ms(spawned.elapsed());
    let loaded = log_line(&coord.log(), "topology loaded");
    let load_log_ms = loaded
        .as_ref()
        .and_then(|(_, l)| log_field(l, "elapsed_ms"));
    let spawn_to_loaded_ms = loaded.as_ref().map(|(t, _)| ms_between(spawn_wall, *t));
    wait_until("leadership", WAIT, Duration::from_millis(20), || async {
        status(port).await.ok().filter(|s| s.is_leader)
    })
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
        let r = schedule_run(
            &c,
            &topo,
            &coord,
            o.shards,
            &format!("{SCHEDULE}-{i}"),
            !last,
        )
        .await
        .with_context(|| format!("schedule run {i}"))?;
        say(format!(
            "[3] run {i}: cron `{}`: first job +{:.0} ms, all {} jobs +{:.0} ms after the slot ({}); the coordinator's slot +{} ms, \"schedule run started\" logged +{} ms",
            r.cron,
            r.first_ms,
            o.shards,
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
        o.shards,
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
        o.step.as_secs(),
        SAMPLE_EVERY.as_millis(),
        o.shards
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
            o.step,
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
        o.shards,
    );
    say(format!("load average at the end: {}", loadavg()));
    Ok(())
}

fn report(f: &Figures, tablets: usize, shards: usize) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let opt = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0} ms"));
    let mut seed = f.seed.clone();
    seed.sort_by(f64::total_cmp);
    // The fastest step the coordinator kept up with, and whether its rate was
    // limited by the writer (etcd, CPU) rather than by the coordinator.
    let best = f
        .steps
        .iter()
        .filter(|s| s.keeps_up && s.target != Some(0))
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved));
    let lagged: Vec<&str> = f
        .steps
        .iter()
        .filter(|s| !s.keeps_up)
        .map(|s| s.label.as_str())
        .collect();
    let etcd_max = f
        .steps
        .iter()
        .filter(|s| s.target.is_none())
        .map(|s| s.achieved)
        .fold(0.0, f64::max);
    let peak = f
        .mem_loaded
        .into_iter()
        .chain(f.mem_jobs)
        .map(|m| m.1)
        .fold(0.0, f64::max);
    let load = f.load_log_ms.map(|v| v as f64);
    // Each run's figure, then the median.
    let runs = |get: &dyn Fn(&SchedRun) -> Option<f64>| -> String {
        let mut v: Vec<f64> = f.sched_runs.iter().filter_map(get).collect();
        let each = v
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ");
        v.sort_by(f64::total_cmp);
        format!("{each} ms (median {:.0})", pct(&v, 50.0))
    };
    say("");
    say(format!(
        "== coordinator at {tablets} tablets / {shards} shards"
    ));
    let rows: Vec<(String, String, String, String)> = vec![
        (
            "synthetic topology written (no watcher)".into(),
            format!(
                "{} records in {:.2} s ({:.0} puts/s)",
                f.records,
                f.write_secs,
                f.records as f64 / f.write_secs
            ),
            "-".into(),
            "".into(),
        ),
        (
            "topology load (\"topology loaded\" elapsed_ms)".into(),
            opt(load),
            "< 2 s".into(),
            verdict(load.is_some_and(|v| v < 2000.0)).into(),
        ),
        (
            "spawn -> \"topology loaded\" logged".into(),
            opt(f.spawn_to_loaded_ms),
            "".into(),
            "".into(),
        ),
        (
            format!("spawn -> status answers tablets == {tablets}"),
            format!("{:.0} ms", f.spawn_to_status_ms),
            "".into(),
            "".into(),
        ),
        (
            "RSS after load (VmRSS / VmHWM)".into(),
            f.mem_loaded
                .map_or("?".into(), |m| format!("{:.1} / {:.1} MiB", m.0, m.1)),
            "< 150 MB".into(),
            "".into(),
        ),
        (
            format!("RSS after {shards} jobs (VmRSS / VmHWM)"),
            f.mem_jobs
                .map_or("?".into(), |m| format!("{:.1} / {:.1} MiB", m.0, m.1)),
            "< 150 MB".into(),
            verdict(peak > 0.0 && peak * 1.048_576 < 150.0).into(),
        ),
        (
            "cron slot -> first job in etcd".into(),
            runs(&|r| Some(r.first_ms)),
            "".into(),
            "".into(),
        ),
        (
            format!("cron slot -> all {shards} jobs in etcd (stagger 0 s)"),
            runs(&|r| Some(r.all_ms)),
            "< 5 s".into(),
            verdict(!f.sched_runs.is_empty() && f.sched_runs.iter().all(|r| r.all_ms < 5000.0))
                .into(),
        ),
        (
            "cron slot -> the coordinator's slot (logged)".into(),
            runs(&|r| r.coord_slot_ms),
            "".into(),
            "".into(),
        ),
        (
            "cron slot -> \"schedule run started\" logged".into(),
            runs(&|r| r.logged_ms),
            "".into(),
            "".into(),
        ),
        (
            "jobs created (last run)".into(),
            f.sched_runs.last().map_or("?".into(), |r| r.states.clone()),
            "".into(),
            "".into(),
        ),
        (
            "Health updates/s the coordinator keeps up with".into(),
            match best {
                Some(b) => format!(
                    "{:.0}/s ({} step{}); {}",
                    b.achieved,
                    b.label,
                    if b.target.is_none_or(|t| b.achieved < 0.95 * t as f64) {
                        ": the writes, not the coordinator, hit their limit"
                    } else {
                        ""
                    },
                    if lagged.is_empty() {
                        "no step lagged".to_string()
                    } else {
                        format!("lagged at: {}", lagged.join(", "))
                    }
                ),
                None => "none of the steps".into(),
            },
            "".into(),
            "".into(),
        ),
        (
            "etcd max Health put rate here (unpaced step)".into(),
            format!(
                "{etcd_max:.0}/s with the coordinator watching ({:.0} puts/s without a watcher, step 1)",
                f.records as f64 / f.write_secs
            ),
            "".into(),
            "".into(),
        ),
        (
            format!("seed: record put -> restore starts (n={})", seed.len()),
            format!(
                "p50 {:.1} / p99 {:.1} / max {:.1} ms",
                pct(&seed, 50.0),
                pct(&seed, 99.0),
                pct(&seed, 100.0)
            ),
            "p99 < 1 s".into(),
            verdict(!seed.is_empty() && pct(&seed, 99.0) < 1000.0).into(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (a, b, goal, v) in rows {
        say(format!("{a:<w0$}  {b:<w1$}  {goal:<9} {v}").trim_end());
    }
    say("(MB = 10^6 bytes: 150 MB = 143 MiB; p99 of n samples is the nearest rank, i.e. the max for n < 100)");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(o) = parse_args()? else {
        return Ok(());
    };
    // Dropping `run` (timeout, Ctrl-C) drops the clusters, coordinator and agents,
    // which kills their processes and removes their directories.
    tokio::select! {
        r = tokio::time::timeout(TOTAL_LIMIT, run(o)) => {
            r.map_err(|_| anyhow!("benchmark exceeded {TOTAL_LIMIT:?}; stopped and cleaned up"))?
        }
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
    }
}
