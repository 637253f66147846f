//! Phase 4, Health throughput: paced (or unpaced) Health puts for a step while the
//! coordinator's revision is sampled; its lag in revisions and time, catch-up,
//! and the CPU each process used.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use cairn::testkit::{Wait, WaitError};
use cairn_topo::Topo;

use super::probe::{etcd_fsyncs, etcd_revision, status};
use super::topology::health;
use super::{SAMPLE_EVERY, WRITE_CONCURRENCY};
use crate::common::{cpu_seconds, ms, pct};

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
pub struct Step {
    pub label: String,
    pub target: Option<u64>,
    pub writes: u64,
    pub achieved: f64,
    pub applied: f64,
    pub lag_rev_p50: f64,
    pub lag_rev_max: f64,
    pub lag_ms_p50: f64,
    pub lag_ms_max: f64,
    pub lag_ms_last_second: f64,
    pub catch_up_ms: Option<f64>,
    pub cpu_coord: f64,
    pub cpu_etcd: f64,
    pub cpu_bench: f64,
    /// Mean duration of etcd's WAL fsyncs during the step.
    pub fsync_ms: Option<f64>,
    pub keeps_up: bool,
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
pub async fn throughput_step(
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
    let polled = RefCell::new(Vec::new());
    let caught_up = Wait::new("the coordinator to catch up", Duration::from_secs(20))
        .every(Duration::from_millis(20))
        .fail_fast()
        .until(|| async {
            let s = sample(topo, port).await?;
            let done = (s.coord_rev >= final_rev).then_some(s.at);
            polled.borrow_mut().push(s);
            Ok(done)
        })
        .await;
    samples.extend(polled.into_inner());
    let catch_up_ms = match caught_up {
        Ok(at) => Some(ms(at.saturating_duration_since(writes_end))),
        Err(e) if e.is::<WaitError>() => None,
        Err(e) => return Err(e),
    };
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
