//! Continuous binlog archiving: the loss window under steady writes and what the
//! interval costs in storage requests and bytes. Real etcd and mariadbd on
//! loopback (a primary, a replica that archives, a coordinator), in a temporary
//! directory removed at the end.
//!
//! For each interval (the measured one, default 1s, then the default 5s as the
//! baseline) the shard is archived and a row is written on the primary every
//! 100 ms for `--seconds`; after each write the archive's state is read from etcd
//! and the loss window sampled: now minus the commit time (as this client saw it)
//! of the newest write the archive holds, 0 when it holds them all. Prints p50,
//! p99 and max against the target (interval + 2 s), the ratio to the baseline,
//! and segments (one PUT each) and stored bytes per hour.
//!
//! `cargo bench --bench bench_archive -- [--seconds 60] [--interval 1s]`
//! (or scripts/bench.sh --only archive)

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use cairn::testkit::{cairn_binary, wait_for, Cluster, TabletProcess};
use cairn_topo::{ArchiveRecord, Topo};
use chrono::{DateTime, Utc};
use clap::Parser;

use common::{loadavg, pct, say};

/// Loss window and storage cost of continuous archiving.
#[derive(Parser, Debug)]
#[command(name = "bench_archive", bin_name = "bench_archive")]
struct Opts {
    /// Seconds of writes per interval measured.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The archive interval measured (the baseline is 5s).
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const T: Duration = Duration::from_secs(180);

struct Figures {
    interval: String,
    p50: f64,
    p99: f64,
    max: f64,
    segments_per_hour: f64,
    bytes_per_hour: f64,
    writes: u64,
}

async fn state(topo: &Topo) -> anyhow::Result<ArchiveRecord> {
    let r = topo
        .get::<ArchiveRecord>(&topo.keys().archive("ks", "0"))
        .await?
        .context("no archive record")?;
    Ok(r.value)
}

fn archived_seq(r: &ArchiveRecord) -> u64 {
    cairn::mysql::gtid::parse_gtid_list(&r.state.position)
        .ok()
        .and_then(|p| p.iter().find(|g| g.domain == 0).map(|g| g.seq))
        .unwrap_or(0)
}

async fn measure(
    c: &Cluster,
    topo: &Topo,
    primary: &TabletProcess,
    interval: &str,
    seconds: u64,
    next_id: &mut u64,
) -> anyhow::Result<Figures> {
    c.cli_ok(&["archive", "set", "ks/0", "--interval", interval])?;
    wait_for("the archive running and caught up", T, || async {
        let r = state(topo).await?;
        let want = primary.sql("SELECT @@gtid_binlog_pos")?;
        Ok((r.state.updated_at.is_some() && r.state.position == want.trim()).then_some(()))
    })
    .await?;
    let start = state(topo).await?;
    let t0 = Instant::now();
    // (sequence number, when the INSERT returned)
    let mut writes: Vec<(u64, DateTime<Utc>)> = Vec::new();
    let mut losses = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while t0.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        *next_id += 1;
        let out = primary.sql(&format!(
            "INSERT INTO app.t VALUES ({}, REPEAT('x', 200)); SELECT @@gtid_binlog_pos",
            *next_id
        ))?;
        let seq = cairn::mysql::gtid::parse_gtid_list(out.trim())
            .ok()
            .and_then(|p| p.first().map(|g| g.seq))
            .context("reading the write's GTID")?;
        writes.push((seq, Utc::now()));
        let r = state(topo).await?;
        let done = archived_seq(&r);
        let now = Utc::now();
        let loss = match writes.iter().rev().find(|(s, _)| *s <= done) {
            Some((s, _)) if Some(s) == writes.last().map(|(s, _)| s) => 0.0,
            Some((_, at)) => (now - *at).num_milliseconds() as f64 / 1000.0,
            // Nothing of this run archived yet: since the run began.
            None => (now - writes[0].1).num_milliseconds() as f64 / 1000.0,
        };
        losses.push(loss);
    }
    let end = state(topo).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    c.cli_ok(&["archive", "remove", "ks/0"])?;
    wait_for("the archive job ended", T, || async {
        let out = c.cli_ok(&["jobs", "--json"])?;
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(jobs
            .iter()
            .all(|j| j["kind"] != "ARCHIVE" || (j["state"] != "RUNNING" && j["state"] != "PENDING"))
            .then_some(()))
    })
    .await?;
    losses.sort_by(f64::total_cmp);
    let per_hour = |x: u64| x as f64 * 3600.0 / elapsed;
    Ok(Figures {
        interval: interval.to_string(),
        p50: pct(&losses, 50.0),
        p99: pct(&losses, 99.0),
        max: losses.last().copied().unwrap_or(f64::NAN),
        segments_per_hour: per_hour(end.state.segments.saturating_sub(start.state.segments)),
        bytes_per_hour: per_hour(
            end.state
                .stored_bytes
                .saturating_sub(start.state.stored_bytes),
        ),
        writes: writes.len() as u64,
    })
}

fn target_seconds(interval: &str) -> f64 {
    cairn::common::duration::parse_duration(interval).map_or(f64::NAN, |d| d.as_secs_f64()) + 2.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if common::skipped_under_cargo_test("bench_archive") {
        return Ok(());
    }
    let o = Opts::parse();
    let c = Cluster::start(cairn_binary()?).await?;
    let topo = c.topo().await?;
    let mut tablets = Vec::new();
    for uid in [100, 101] {
        tablets.push(c.spawn_tablet(&c.tablet(uid, "ks", "0")?)?);
    }
    for t in tablets.iter_mut() {
        t.wait_healthy(&topo, T).await?;
    }
    c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])?;
    tablets[0].sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")?;
    let coord = c.spawn_coordinator("c1", &[])?;
    coord.wait_leader(T).await?;
    say(format!(
        "bench_archive: a write every 100 ms for {}s per interval; load average at start {} \
         (the machine is shared: figures include other work)",
        o.seconds,
        loadavg()
    ));
    let mut next_id = 0;
    let mut all = Vec::new();
    for interval in [o.interval.as_str(), "5s"] {
        let f = measure(&c, &topo, &tablets[0], interval, o.seconds, &mut next_id).await?;
        say(format!(
            "interval {:>3}: loss window p50 {:.2}s p99 {:.2}s max {:.2}s (target p99 <= {:.0}s: {}) \
             over {} writes; {:.0} segments (PUTs)/h, {:.1} MiB stored/h",
            f.interval,
            f.p50,
            f.p99,
            f.max,
            target_seconds(&f.interval),
            if f.p99 <= target_seconds(&f.interval) { "met" } else { "MISSED" },
            f.writes,
            f.segments_per_hour,
            f.bytes_per_hour / (1 << 20) as f64
        ));
        all.push(f);
    }
    if let [a, base] = &all[..] {
        say(format!(
            "ratio {} / {} (baseline): loss window p99 x{:.2}, segments/h x{:.2}, bytes/h x{:.2}",
            a.interval,
            base.interval,
            a.p99 / base.p99,
            a.segments_per_hour / base.segments_per_hour,
            a.bytes_per_hour / base.bytes_per_hour
        ));
    }
    say(format!("load average at the end: {}", loadavg()));
    drop(coord);
    Ok(())
}
